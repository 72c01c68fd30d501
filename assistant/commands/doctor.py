"""``cramp-coach doctor``: check the installation and the audio, each problem with its fix.

Meant for the person setting up the Pi, not for developers: every line says what was
checked and, if it failed, the one thing to do about it. The exit status is non-zero
when something the coach cannot work without is broken (a warning is not).
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "ok", "warn", "FAIL"

#: (distribution, essential, why) — essential packages make the coach unusable when missing.
PACKAGES: tuple[tuple[str, bool, str], ...] = (
    ("pocketsphinx", True, "built-in speech recognizer"),
    ("vosk", False, "main speech recognizer (with an installed model)"),
    ("pyttsx3", True, "text to speech"),
    ("sounddevice", True, "microphone and speaker"),
    ("hassil", True, "sentence templates"),
    ("numpy", True, "audio buffers"),
    ("PyYAML", True, "prompts files"),
    ("soxr", True, "resampling"),
    ("platformdirs", True, "config and data folders"),
)

SILENT_DBFS = -70.0
"""An input quieter than this over a whole second is a muted or disconnected microphone."""
LOUD_DBFS = -1.0
"""A peak above this is clipping: the input gain is too high."""


@dataclass(frozen=True)
class Check:
    """One result line."""

    status: str
    """ok | warn | FAIL"""
    what: str
    fix: str | None = None

    def line(self) -> str:
        text = f"[{self.status}] {self.what}"
        return text + (f" — fix: {self.fix}" if self.fix and self.status != OK else "")


# ---------------------------------------------------------------------- environment


def check_python() -> Check:
    v = sys.version_info
    text = f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):
        return Check(FAIL, text, "install Python 3.11 or newer (Raspberry Pi OS Bookworm has 3.11)")
    return Check(OK, text)


def check_packages() -> Iterator[Check]:
    for dist, essential, why in PACKAGES:
        try:
            yield Check(OK, f"{dist} {metadata.version(dist)} ({why})")
        except metadata.PackageNotFoundError:
            fix = f"pip install {dist}   (or reinstall: pip install -e . in the checkout)"
            yield Check(FAIL if essential else WARN, f"{dist} is not installed ({why})", fix)


def check_espeak() -> Check:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return Check(FAIL, "espeak-ng not found (the coach's voice)", "sudo apt install espeak-ng")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(FAIL, f"espeak-ng does not run: {exc}", "sudo apt install --reinstall espeak-ng")
    return Check(OK, f"{(out.strip().splitlines() or ['espeak-ng'])[0]} ({exe})")


def check_portaudio() -> tuple[Check, Any | None]:
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio library itself is missing
        return Check(FAIL, f"PortAudio cannot be loaded: {exc}", "sudo apt install libportaudio2"), None
    except ImportError:
        return Check(FAIL, "sounddevice is not installed", "pip install sounddevice"), None
    return Check(OK, f"PortAudio: {sd.get_portaudio_version()[1]}"), sd


# ---------------------------------------------------------------------- audio devices


def level_dbfs(samples: Any) -> tuple[float, float]:
    """(RMS, peak) of float samples in -1..1, in dBFS (-inf for digital silence)."""
    import numpy as np

    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        return -math.inf, -math.inf
    rms = float(np.sqrt(np.mean(x * x)))
    peak = float(np.max(np.abs(x)))
    return _db(rms), _db(peak)


def _db(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else -math.inf


def _describe(sd: Any, device: str | int | None, kind: str) -> dict[str, Any]:
    info = sd.query_devices(device, kind)
    return {"name": info["name"], "rate": int(info["default_samplerate"]),
            "index": info.get("index")}


def _wait_stream(sd: Any, seconds: float) -> None:
    """Wait for sd.rec/sd.play to finish, but never hang on a stuck device."""
    deadline = time.monotonic() + seconds + 5.0
    stream = sd.get_stream()
    while stream.active and time.monotonic() < deadline:
        time.sleep(0.05)
    if stream.active:
        sd.stop()
        raise TimeoutError("the device stopped delivering audio")
    sd.stop()


def _find_device(sd: Any, device: str | int | None, kind: str, problem: str, fix: str) -> dict[str, Any] | Check:
    """The device's description, or the failed check that says it is missing."""
    try:
        return _describe(sd, device, kind)
    except Exception as exc:
        which = f"default {kind}" if device is None else f"{kind} {device!r}"
        return Check(FAIL, f"{problem}: {which}: {exc}", fix)


def check_input(sd: Any, device: str | int | None, seconds: float) -> Check:
    """Record ``seconds`` from the microphone and report its level."""
    fix_pick = "plug in the USB microphone, then choose it with [audio] input (see 'cramp-coach devices')"
    info = _find_device(sd, device, "input", "no microphone", fix_pick)
    if isinstance(info, Check):
        return info
    try:
        data = sd.rec(int(info["rate"] * seconds), samplerate=info["rate"], channels=1, dtype="float32",
                      device=device)
        _wait_stream(sd, seconds)
    except Exception as exc:
        return Check(FAIL, f"microphone '{info['name']}' cannot record: {exc}",
                     "check it is not used by another program; " + fix_pick)
    rms, peak = level_dbfs(data)
    what = (f"microphone '{info['name']}': recorded {seconds:.1f} s at {info['rate']} Hz, "
            f"level {rms:.1f} dBFS (peak {peak:.1f} dBFS)")
    if rms < SILENT_DBFS:
        return Check(WARN, what + " — silence",
                     "unmute the microphone and raise its level (alsamixer, or wpctl set-mute/set-volume), "
                     "or pick another with [audio] input; speak during the check")
    if peak > LOUD_DBFS:
        return Check(WARN, what + " — clipping", "lower the microphone's input level (alsamixer or wpctl)")
    return Check(OK, what)


def tone(rate: int, seconds: float = 0.4, freq: float = 880.0, dbfs: float = -12.0) -> Any:
    """A short sine with soft edges (no clicks)."""
    import numpy as np

    t = np.arange(int(rate * seconds)) / rate
    wave = np.sin(2 * np.pi * freq * t) * (10 ** (dbfs / 20))
    ramp = min(len(t) // 4, int(rate * 0.02))
    if ramp:
        edge = np.linspace(0.0, 1.0, ramp)
        wave[:ramp] *= edge
        wave[-ramp:] *= edge[::-1]
    return wave.astype(np.float32)


def check_output(sd: Any, device: str | int | None) -> Check:
    fix_pick = "connect the speaker, then choose it with [audio] output (see 'cramp-coach devices')"
    info = _find_device(sd, device, "output", "no speaker", fix_pick)
    if isinstance(info, Check):
        return info
    import numpy as np

    beep = tone(info["rate"])
    # Trailing silence: stopping the stream may drop what is still in the device buffer.
    padded = np.concatenate([beep, np.zeros(int(info["rate"] * 0.3), np.float32)])
    try:
        sd.play(padded, samplerate=info["rate"], device=device)
        _wait_stream(sd, len(padded) / info["rate"])
    except Exception as exc:
        return Check(FAIL, f"speaker '{info['name']}' cannot play: {exc}",
                     "check it is not used by another program; " + fix_pick)
    return Check(OK, f"speaker '{info['name']}': played a {len(beep) / info['rate']:.1f} s tone "
                     f"at {info['rate']} Hz (you should have heard a beep)")


# ---------------------------------------------------------------------- coach pieces


def check_prompts(prompts: Path | None) -> tuple[list[Check], Any | None]:
    """The intent templates and the spoken content; returns the IntentSet for the engine check."""
    from assistant.paths import prompts_dir

    folder = prompts or prompts_dir()
    fix = ("correct the file at the line shown" + ("" if prompts is None else
           ", or remove [coach] prompts_dir to use the shipped prompts"))
    checks: list[Check] = []
    intent_set = None
    try:
        from assistant.conversation.intents import IntentSet

        intent_set = IntentSet.load(folder / "intents.yaml")
        checks.append(Check(OK, f"intents: {len(intent_set.names)} intents in {folder / 'intents.yaml'}"))
    except Exception as exc:
        checks.append(Check(FAIL, f"intents: {exc}", fix))
    try:
        from assistant.conversation.content import load_content
    except ImportError:
        checks.append(Check(WARN, "prompts: assistant.conversation.content is missing", "reinstall cramp-coach"))
        return checks, intent_set
    try:
        content = load_content(prompts)
        parts = [f"{len(content.routines)} routines", f"{len(content.questions)} cause questions",
                 f"{len(content.lines)} lines"]
        checks.append(Check(OK, f"prompts: {', '.join(parts)} in {folder}"))
    except Exception as exc:
        checks.append(Check(FAIL, f"prompts: {exc}", fix))
    return checks, intent_set


def check_engine(config: Any, intent_set: Any | None) -> Iterator[Check]:
    """Which recognizer the coach will use, with the model, loaded for real."""
    try:
        from assistant.speech_in.models import INSTALL_HINT, find_model, model_problem
        from assistant.speech_in.recognizers import create_recognizer
    except ImportError as exc:
        yield Check(FAIL, f"speech engine: cannot import the recognizer ({exc})", "reinstall cramp-coach")
        return
    engine = config.engine
    model = config.model_path
    if engine == "auto" and model is None:
        from assistant.speech_in.engine_choice import choose_engine, installed_engines

        choice = choose_engine(installed_engines(config.models_dir))
        yield Check(OK, f"engine auto: {choice.engine} on this board ({choice.board}): {choice.reason}. "
                        + "; ".join(choice.considered))
        engine = choice.engine
    if engine == "whisper":
        from assistant.speech_in.models import WHISPER_INSTALL_HINT, find_whisper, whisper_problem

        model = model or find_whisper(config.models_dir)
        if model is None:
            yield Check(FAIL, f"Whisper model: none installed in {config.models_dir}", WHISPER_INSTALL_HINT)
            return
        problem = whisper_problem(model)
        if problem:
            yield Check(FAIL, f"Whisper model {model}: {problem}", WHISPER_INSTALL_HINT)
            return
        yield Check(OK, f"Whisper model: {model}")
    elif model is None and config.engine != "pocketsphinx":
        model = find_model(config.models_dir)
        if model is None:
            status = FAIL if engine == "vosk" else WARN
            yield Check(status, f"Vosk model: none installed in {config.models_dir}"
                        + ("" if status == FAIL else "; using PocketSphinx (built in, less accurate)"),
                        INSTALL_HINT)
    elif model is not None:
        problem = model_problem(model)
        if problem:
            yield Check(FAIL, f"Vosk model {model}: {problem}", INSTALL_HINT)
            return
        yield Check(OK, f"Vosk model: {model}")
    if intent_set is None:
        yield Check(FAIL, "speech engine: not tried (the intents file did not load)", "fix the intents file first")
        return
    started = time.monotonic()
    try:
        recognizer = create_recognizer(intent_set, engine, model if engine != "pocketsphinx" else None)
        if engine == "whisper":
            _ = recognizer.model  # type: ignore[attr-defined]  # loads lazily: load it now, for real
    except Exception as exc:
        yield Check(FAIL, f"speech engine {engine}: {exc}",
                    "use --engine pocketsphinx, or reinstall the model: " + INSTALL_HINT)
        return
    yield Check(OK, f"speech engine: {getattr(recognizer, 'name', type(recognizer).__name__)} "
                    f"(setting '{config.engine}'), loaded in {time.monotonic() - started:.1f} s")


def check_voice(config: Any) -> Check:
    """Render one sentence with the configured text-to-speech."""
    try:
        from assistant.speech_out.render import VoiceSettings, create_renderer
    except ImportError as exc:
        return Check(WARN, f"voice: not checked ({exc})", "reinstall cramp-coach")
    try:
        renderer = create_renderer(VoiceSettings(config.tts, config.voice, config.rate, config.volume))
        rendered = renderer.render("Pull your toes towards your shin.")
    except Exception as exc:
        return Check(FAIL, f"voice ({config.tts}, {config.voice}): {exc}",
                     "sudo apt install espeak-ng; check [voice] name with 'espeak-ng --voices'")
    if rendered.duration <= 0.2:
        return Check(FAIL, f"voice ({config.tts}, {config.voice}) rendered no audio",
                     "check [voice] name with 'espeak-ng --voices'")
    what = (f"voice: {config.tts} '{config.voice}' at {config.rate} wpm "
            f"(a test sentence renders to {rendered.duration:.1f} s of speech)")
    if config.tts == "espeak" and not espeak_knows(config.voice):
        return Check(WARN, what + f" — espeak-ng has no voice '{config.voice}', so it uses its default",
                     "pick a name from 'espeak-ng --voices' (Language, VoiceName or File column) for [voice] name")
    return Check(OK, what)


def espeak_knows(voice: str) -> bool:
    """Whether ``voice`` (optionally with a ``+variant``) is in ``espeak-ng --voices``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return False
    try:
        listing = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    wanted = voice.split("+")[0].strip().lower()
    for row in listing.splitlines()[1:]:
        cols = row.split()
        if len(cols) >= 5 and wanted in (cols[1].lower(), cols[3].lower(), cols[4].lower()):
            return True
    return False


def check_diary(path: Path) -> Iterator[Check]:
    """Path, permissions and readability of the diary (never creates it)."""
    import os
    import stat

    if not path.exists():
        parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            yield Check(FAIL, f"diary: cannot be created at {path} ({parent} is not writable)",
                        "set [diary] path to a folder you own")
        else:
            yield Check(OK, f"diary: {path} (will be created, mode 0600, at the first cramp)")
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        yield Check(FAIL, f"diary: {path} is readable by others (mode {mode:04o})", f"chmod 600 {path}")
    elif not os.access(path, os.R_OK | os.W_OK):
        yield Check(FAIL, f"diary: {path} is not readable and writable by you", f"chown $USER {path}")
    try:
        from assistant.diary.store import Diary

        with Diary(path) as diary:
            count = len(diary.episodes())
            integrity = diary.conn.execute("PRAGMA quick_check").fetchone()[0]
    except Exception as exc:
        yield Check(FAIL, f"diary: {exc}", "move the file away or run 'cramp-coach diary --forget'")
        return
    if integrity != "ok":
        yield Check(FAIL, f"diary: {path} is damaged ({integrity})",
                    "export what you can (cramp-coach diary export --csv FILE), then move the file away")
    elif not mode & 0o077:
        yield Check(OK, f"diary: {path} (mode {mode:04o}, {count} episode(s))")


# ---------------------------------------------------------------------- running


def run_checks(config: Any, *, audio: bool = True, seconds: float = 1.0,
               report: Callable[[Check], None] | None = None) -> list[Check]:
    """Every check in order; ``report`` sees each result as soon as it is known."""
    results: list[Check] = []

    def add(check: Check) -> None:
        results.append(check)
        if report:
            report(check)

    add(check_python())
    for c in check_packages():
        add(c)
    add(check_espeak())
    pa_check, sd = check_portaudio()
    add(pa_check)
    if audio and sd is not None:
        from assistant.speech_in.audio import parse_device

        add(check_input(sd, parse_device(config.input_device), seconds))
        add(check_output(sd, parse_device(config.output_device)))
    prompt_checks, intent_set = check_prompts(config.prompts_dir)
    for c in prompt_checks:
        add(c)
    for c in check_engine(config, intent_set):
        add(c)
    add(check_voice(config))
    for c in check_diary(config.diary_path):
        add(c)
    return results


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-audio", action="store_true", help="skip the microphone and speaker tests")
    parser.add_argument("--seconds", type=float, default=1.0, help="how long to record from the microphone")


def run(args: argparse.Namespace) -> int:
    from assistant.config import cli_overrides, config_path, default_config, load_config
    from assistant.errors import UserFacingError

    def show(check: Check) -> None:
        print(check.line(), flush=True)

    path = config_path()
    try:
        config = load_config(cli_overrides(args))
        first = Check(OK, f"config: {path}" + ("" if path.exists() else " (not found; using defaults)"))
    except UserFacingError as exc:
        config = default_config()
        first = Check(FAIL, f"config: {exc}", "correct it (see docs/config.md); the checks below use defaults")
    show(first)
    results = [first, *run_checks(config, audio=not args.no_audio, seconds=args.seconds, report=show)]
    failures = [c for c in results if c.status == FAIL]
    warnings = [c for c in results if c.status == WARN]
    print(f"{len(failures)} problem(s), {len(warnings)} warning(s)." if failures or warnings
          else "Everything looks good.")
    return 1 if failures else 0
