"""Settings: one TOML file, environment variables and command-line options.

Precedence, lowest first: built-in defaults < the config file < environment variables
(``CRAMP_COACH_<KEY>``, e.g. ``CRAMP_COACH_ENGINE``) < command-line options. The file
is ``config.toml`` in the user's config dir, or whatever ``CRAMP_COACH_CONFIG`` names.
Other code reads the flat attributes of :class:`Config`; the file groups them in
sections. Every key is described once, in :data:`KEYS`, which also generates the
commented example file and is checked against ``docs/config.md`` by the tests.

``cramp-coach config`` prints every effective value and where it came from.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import UserFacingError

CONFIG_FILE = "config.toml"
ENV_PREFIX = "CRAMP_COACH_"


@dataclass(frozen=True)
class Config:
    """The effective settings. Paths are absolute."""

    engine: str
    """Speech engine: ``auto`` (the most accurate installed engine that answers in time here), ``vosk``,
    ``pocketsphinx``, ``whisper``."""
    model_path: Path | None
    """A Vosk model directory; None picks the installed one from ``models_dir``."""
    models_dir: Path
    """Where ``cramp-coach models install`` puts models."""
    input_device: str | None
    """Microphone: a device name (or part of it) or index; None for the system default."""
    output_device: str | None
    """Speaker: a device name (or part of it) or index; None for the system default."""
    tts: str
    """Text to speech: ``espeak`` (pyttsx3 + espeak-ng) or ``piper`` (neural voice)."""
    voice: str
    """espeak-ng voice name."""
    rate: int
    """Speaking rate in words per minute."""
    volume: float
    """Speech volume, 0..1."""
    hold_seconds: int | None
    """Overrides every routine's hold length; None keeps each routine's own."""
    silence_timeout: float
    """Seconds of silence before the coach re-prompts."""
    prompts_language: str
    """Language of the prompts (``prompts/<lang>`` files)."""
    prompts_dir: Path | None
    """Use prompts from this directory instead of the shipped ones."""
    diary_path: Path
    """The diary database file."""


@dataclass(frozen=True)
class Key:
    """One setting: its attribute, where it lives in the file, how it is checked."""

    attr: str
    section: str
    name: str
    kind: str
    """str | path | int | float | device | choice"""
    default: Callable[[], Any]
    help: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    optional: bool = False
    """None is allowed (leave the key out of the file for None)."""
    cli: str | None = None
    """The command-line option that sets it, if any."""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attr.upper()

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


def _data(name: str) -> Callable[[], Path]:
    def default() -> Path:
        from assistant.paths import data_dir

        return data_dir() / name

    return default


KEYS: tuple[Key, ...] = (
    Key("engine", "speech", "engine", "choice", lambda: "auto",
        "speech recognizer: auto (most accurate installed engine that answers in time), vosk, pocketsphinx, whisper",
        choices=("auto", "vosk", "pocketsphinx", "whisper"), cli="--engine"),
    Key("model_path", "speech", "model", "path", lambda: None,
        "Vosk model directory; unset = the model installed in models_dir", optional=True, cli="--model"),
    Key("models_dir", "speech", "models_dir", "path", _data("models"),
        "where 'cramp-coach models install' puts speech models"),
    Key("input_device", "audio", "input", "device", lambda: None,
        "microphone: device name (or part of it) or index from 'cramp-coach devices'; "
        "unset = system default", optional=True, cli="--input"),
    Key("output_device", "audio", "output", "device", lambda: None,
        "speaker: device name (or part of it) or index; unset = system default",
        optional=True, cli="--output"),
    Key("tts", "voice", "tts", "choice", lambda: "espeak",
        "text to speech: espeak (pyttsx3 + espeak-ng) or piper (neural voice, pip install '.[piper]')",
        choices=("espeak", "piper")),
    Key("voice", "voice", "name", "str", lambda: "en-us",
        "espeak-ng voice ('espeak-ng --voices' lists them)"),
    Key("rate", "voice", "rate", "int", lambda: 165, "speaking rate, words per minute",
        low=80, high=450),
    Key("volume", "voice", "volume", "float", lambda: 1.0, "speech volume, 0.0 to 1.0",
        low=0.0, high=1.0),
    Key("hold_seconds", "coach", "hold_seconds", "int", lambda: None,
        "hold every stretch this many seconds; unset = each routine's own length",
        low=5, high=300, optional=True),
    Key("silence_timeout", "coach", "silence_timeout", "float", lambda: 8.0,
        "seconds of silence before the coach asks again", low=2.0, high=120.0),
    Key("prompts_language", "coach", "prompts_language", "choice", lambda: "en",
        "language of what the coach says and understands", choices=("en",)),
    Key("prompts_dir", "coach", "prompts_dir", "path", lambda: None,
        "use your own edited copy of the prompts/ directory; unset = the shipped prompts",
        optional=True),
    Key("diary_path", "diary", "path", "path", _data("diary.sqlite3"),
        "the cramp diary (SQLite); kept readable only by you"),
)

KEYS_BY_ATTR = {k.attr: k for k in KEYS}
SECTIONS = tuple(dict.fromkeys(k.section for k in KEYS))

#: Command-line option dest names (assistant.commands.cli's live options) → attributes.
CLI_DESTS = {"engine": "engine", "model": "model_path", "input": "input_device", "output": "output_device"}


@dataclass(frozen=True)
class Source:
    """Where an effective value came from."""

    kind: str
    """default | file | env | cli"""
    detail: str = ""
    """``/path/config.toml:12``, ``CRAMP_COACH_RATE`` or ``--engine``."""

    def __str__(self) -> str:
        return self.kind if not self.detail else f"{self.kind} {self.detail}"


# ---------------------------------------------------------------------- public API


def config_path() -> Path:
    """The config file: ``CRAMP_COACH_CONFIG`` or ``<config dir>/config.toml``."""
    override = os.environ.get("CRAMP_COACH_CONFIG")
    if override:
        return Path(override).expanduser()
    from assistant.paths import config_dir

    return config_dir() / CONFIG_FILE


def load_config(cli: Mapping[str, object] | None = None, path: Path | None = None) -> Config:
    """The effective configuration; raises :class:`UserFacingError` on a bad value.

    ``cli`` maps attribute names (``engine``, ``model_path``...) to command-line values
    (None = not given); ``path`` overrides :func:`config_path`. A missing file is fine.
    """
    values, _ = _resolve(cli, path)
    return Config(**values)


def default_config() -> Config:
    """Built-in defaults only (e.g. to keep checking when the configuration is broken)."""
    return Config(**{k.attr: k.default() for k in KEYS})


def explain_config(
    cli: Mapping[str, object] | None = None, path: Path | None = None
) -> list[tuple[Key, Any, Source]]:
    """Each key with its effective value and where it came from, in file order."""
    values, sources = _resolve(cli, path)
    return [(k, values[k.attr], sources[k.attr]) for k in KEYS]


def cli_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The config values given as options to ``cramp-coach`` (``--engine``, ``--model``...)."""
    return {attr: getattr(args, dest) for dest, attr in CLI_DESTS.items()
            if getattr(args, dest, None) is not None}


def config_for(args: argparse.Namespace) -> Config:
    """The configuration for a parsed command line (what every runner should call)."""
    return load_config(cli_overrides(args))


# ---------------------------------------------------------------------- resolution


def _resolve(cli: Mapping[str, object] | None, path: Path | None) -> tuple[dict[str, Any], dict[str, Source]]:
    path = path if path is not None else config_path()
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for k in KEYS:
        values[k.attr] = k.default()
        sources[k.attr] = Source("default")

    for k, raw, line in _read_file(path):
        where = f"{path}:{line}" if line else str(path)
        values[k.attr] = _convert(k, raw, where, base=path.parent, from_text=False)
        sources[k.attr] = Source("file", where)

    for k in KEYS:
        text = os.environ.get(k.env)
        if text is None or text.strip() == "":
            continue
        values[k.attr] = _convert(k, text, f"environment variable {k.env}", base=Path.cwd(), from_text=True)
        sources[k.attr] = Source("env", k.env)

    for attr, raw in (cli or {}).items():
        if raw is None:
            continue
        known = KEYS_BY_ATTR.get(attr)
        if known is None:
            raise UserFacingError(f"unknown setting {attr!r}; known: {', '.join(KEYS_BY_ATTR)}")
        option = known.cli or attr
        values[attr] = _convert(known, raw, f"option {option}", base=Path.cwd(), from_text=isinstance(raw, str))
        sources[attr] = Source("cli", option)
    return values, sources


def _read_file(path: Path) -> list[tuple[Key, Any, int | None]]:
    """(key, raw value, line) for each setting in the file; [] if there is no file."""
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        why = ("it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError)
               else "it is a directory" if path.is_dir() else exc.strerror or str(exc))
        raise UserFacingError(
            f"cannot read the config file {path} ({why}). Fix it, or point CRAMP_COACH_CONFIG at another "
            "file ('cramp-coach config --example' prints a valid one)"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserFacingError(
            f"{path}: not valid TOML: {exc}. Each setting is 'key = value' under a [section]; "
            "strings need quotes. See docs/config.md"
        ) from None
    lines = _key_lines(text)
    found: list[tuple[Key, Any, int | None]] = []
    by_place = {(k.section, k.name): k for k in KEYS}
    for section, table in data.items():
        if not isinstance(table, dict) or section not in SECTIONS:
            line = lines.get((section, None)) or lines.get(("", section))
            where = f"{path}:{line}" if line else str(path)
            raise UserFacingError(
                f"{where}: unknown section [{section}]; sections are "
                + ", ".join(f"[{s}]" for s in SECTIONS)
            )
        for name, raw in table.items():
            line = lines.get((section, name))
            k = by_place.get((section, name))
            if k is None:
                where = f"{path}:{line}" if line else str(path)
                known = ", ".join(kk.name for kk in KEYS if kk.section == section)
                raise UserFacingError(f"{where}: unknown key '{name}' in [{section}]; known keys: {known}")
            found.append((k, raw, line))
    return found


_SECTION_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]")
_KEY_RE = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")


def _key_lines(text: str) -> dict[tuple[str, str | None], int]:
    """Line numbers of section headers and plain ``key =`` lines (good enough for messages)."""
    lines: dict[tuple[str, str | None], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _SECTION_RE.match(line):
            section = m.group(1)
            lines.setdefault((section, None), number)
        elif m := _KEY_RE.match(line):
            name = next(g for g in m.groups() if g is not None)
            lines.setdefault((section, name), number)
    return lines


def _convert(k: Key, raw: object, where: str, *, base: Path, from_text: bool) -> Any:
    """Check and convert one value; ``where`` names its origin for the error message."""

    def bad(allowed: str) -> UserFacingError:
        return UserFacingError(f"{where}: bad value {raw!r} for {k.dotted}: {allowed}")

    if from_text and isinstance(raw, str) and k.optional and raw.strip().lower() in ("none", "default"):
        return None
    if k.kind == "choice":
        if not isinstance(raw, str) or raw.strip().lower() not in k.choices:
            raise bad("allowed: " + ", ".join(k.choices))
        return raw.strip().lower()
    if k.kind == "str":
        if not isinstance(raw, str) or not raw.strip():
            raise bad("expected a non-empty string in quotes")
        return raw.strip()
    if k.kind == "device":
        if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
            raise bad("expected a device name in quotes or a device index number")
        return str(raw).strip()
    if k.kind == "path":
        if not isinstance(raw, str) or not raw.strip():
            raise bad("expected a path in quotes")
        p = Path(raw.strip()).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    if k.kind in ("int", "float"):
        number: float
        if from_text and isinstance(raw, str):
            try:
                number = int(raw) if k.kind == "int" else float(raw)
            except ValueError:
                raise bad(f"expected {'a whole number' if k.kind == 'int' else 'a number'}") from None
        elif isinstance(raw, bool) or not isinstance(raw, int | float):
            raise bad(f"expected {'a whole number' if k.kind == 'int' else 'a number'} (no quotes)")
        elif k.kind == "int" and not isinstance(raw, int):
            raise bad("expected a whole number")
        else:
            number = raw
        if not math.isfinite(number) or (k.low is not None and number < k.low) or (
            k.high is not None and number > k.high
        ):
            raise bad(f"allowed range {_fmt(k.low)} to {_fmt(k.high)}")
        return int(number) if k.kind == "int" else float(number)
    raise AssertionError(k.kind)


def _fmt(x: float | None) -> str:
    return "" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


# ---------------------------------------------------------------------- example file


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def example_toml() -> str:
    """A commented config file listing every key with its default (all commented out)."""
    out = [
        "# Cramp Coach configuration: copy to ~/.config/cramp-coach/config.toml",
        "# (or point CRAMP_COACH_CONFIG at it). Every key is optional; the values",
        "# shown are the defaults. Uncomment a line to change it.",
        "# Environment variables CRAMP_COACH_<NAME> override this file, and",
        "# command-line options override both. 'cramp-coach config' shows the result.",
    ]
    for section in SECTIONS:
        out += ["", f"[{section}]"]
        for k in (k for k in KEYS if k.section == section):
            out.append(f"# {k.help}")
            out.append(f"#   env {k.env}" + (f", option {k.cli}" if k.cli else ""))
            out.append(f"# {k.name} = {_example_default(k)}")
    return "\n".join(out) + "\n"


def _example_default(k: Key) -> str:
    examples = {"model_path": '"~/.local/share/cramp-coach/models/vosk-model-small-en-us-0.15"',
                "input_device": '"USB"', "output_device": '"USB"', "hold_seconds": "30",
                "prompts_dir": '"~/my-prompts"'}
    if k.attr in examples:
        return examples[k.attr] + "   # example; default: unset"
    if k.attr == "models_dir":
        return '"~/.local/share/cramp-coach/models"'
    if k.attr == "diary_path":
        return '"~/.local/share/cramp-coach/diary.sqlite3"'
    return _toml_value(k.default())


# ---------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", action="store_true", help="print only the config file's path")
    parser.add_argument("--example", action="store_true",
                        help="print a commented example config file with every key and its default")


def run(args: argparse.Namespace) -> int:
    if args.path:
        print(config_path())
        return 0
    if args.example:
        print(example_toml(), end="")
        return 0
    path = config_path()
    rows = explain_config(cli_overrides(args), path)
    state = "exists" if path.exists() else "not found; using defaults"
    print(f"config file: {path} ({state})")
    width = max(len(k.dotted) for k, _, _ in rows)
    for k, value, source in rows:
        shown = "(unset)" if value is None else _toml_value(str(value) if isinstance(value, Path) else value)
        print(f"  {k.dotted:<{width}} = {shown:<40} # {k.attr}, from {source}")
    return 0


__all__ = ["Config", "KEYS", "load_config", "default_config", "explain_config", "config_path", "cli_overrides",
           "config_for", "example_toml", "configure", "run"]
