"""Configuration: defaults < file < environment < command line, and clear errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from assistant.config import KEYS, Config, example_toml, explain_config, load_config
from assistant.errors import UserFacingError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray CRAMP_COACH_* settings from the caller; per-test data and config dirs."""
    for name in list(os.environ):
        if name.startswith("CRAMP_COACH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CRAMP_COACH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CRAMP_COACH_CONFIG_DIR", str(tmp_path / "conf"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(path=tmp_path / "missing.toml")
    assert cfg == Config(
        engine="auto", model_path=None, models_dir=tmp_path / "data" / "models", input_device=None,
        output_device=None, tts="espeak", voice="en-us", rate=165, volume=1.0, hold_seconds=None,
        silence_timeout=8.0, prompts_language="en", prompts_dir=None,
        diary_path=tmp_path / "data" / "diary.sqlite3",
    )


def test_default_file_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.toml").write_text("[voice]\nrate = 120\n")
    assert load_config().rate == 120
    other = _write(tmp_path, "[voice]\nrate = 140\n")
    monkeypatch.setenv("CRAMP_COACH_CONFIG", str(other))
    assert load_config().rate == 140


def test_precedence_default_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, """
[speech]
engine = "vosk"
model = "models/small"     # relative to the config file

[audio]
input = 2
output = "USB Audio"

[voice]
rate = 140
volume = 0.5

[coach]
hold_seconds = 20
""")
    file_only = load_config(path=path)
    assert file_only.engine == "vosk" and file_only.rate == 140 and file_only.volume == 0.5
    assert file_only.model_path == tmp_path / "models" / "small"
    assert file_only.input_device == "2" and file_only.output_device == "USB Audio"
    assert file_only.hold_seconds == 20 and file_only.voice == "en-us"  # untouched default

    monkeypatch.setenv("CRAMP_COACH_ENGINE", "pocketsphinx")
    monkeypatch.setenv("CRAMP_COACH_RATE", "150")
    monkeypatch.setenv("CRAMP_COACH_HOLD_SECONDS", "none")   # back to each routine's own
    monkeypatch.setenv("CRAMP_COACH_VOICE", "")               # empty = not set
    with_env = load_config(path=path)
    assert (with_env.engine, with_env.rate, with_env.hold_seconds, with_env.voice) == (
        "pocketsphinx", 150, None, "en-us")
    assert with_env.volume == 0.5

    cli = {"engine": "vosk", "input_device": "pulse", "model_path": None}
    final = load_config(cli, path=path)
    assert final.engine == "vosk" and final.input_device == "pulse" and final.rate == 150
    assert final.model_path == tmp_path / "models" / "small"  # None on the CLI = not given

    sources = {k.attr: str(src) for k, _, src in explain_config(cli, path=path)}
    assert sources["engine"] == "cli --engine"
    assert sources["rate"] == "env CRAMP_COACH_RATE"
    assert sources["volume"] == f"file {path}:12"
    assert sources["output_device"] == f"file {path}:8"
    assert sources["voice"] == "default"


@pytest.mark.parametrize(("text", "pattern"), [
    ('[voice]\nrate = 165\nname = en-us\n',
     r"config.toml: not valid TOML: .*line 3.*strings need quotes"),
    ('[voice]\nrate = 165\nspeed = 2\n',
     r"config.toml:3: unknown key 'speed' in \[voice\]; known keys: tts, name, rate, volume"),
    ('[speech]\nengine = "kaldi"\n',
     r"config.toml:2: bad value 'kaldi' for speech.engine: allowed: auto, vosk, pocketsphinx, whisper"),
    ('[voice]\n\nvolume = 1.5\n',
     r"config.toml:3: bad value 1.5 for voice.volume: allowed range 0 to 1"),
    ('[voice]\nrate = "fast"\n',
     r"config.toml:2: bad value 'fast' for voice.rate: expected a whole number"),
    ('[coach]\nhold_seconds = 2.5\n', r"config.toml:2: bad value 2.5 for coach.hold_seconds"),
    ('[sound]\ninput = 1\n', r"config.toml:1: unknown section \[sound\]; sections are \[speech\]"),
    ('engine = "vosk"\n', r"config.toml:1: unknown section \[engine\]"),
    ('[audio]\ninput = true\n', r"config.toml:2: .*audio.input: expected a device name"),
])
def test_file_errors_name_file_line_and_what_is_allowed(tmp_path: Path, text: str, pattern: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UserFacingError, match=pattern) as info:
        load_config(path=path)
    assert str(path) in str(info.value)


def test_env_and_cli_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAMP_COACH_SILENCE_TIMEOUT", "soon")
    with pytest.raises(UserFacingError, match="environment variable CRAMP_COACH_SILENCE_TIMEOUT: .*a number"):
        load_config(path=tmp_path / "none.toml")
    monkeypatch.delenv("CRAMP_COACH_SILENCE_TIMEOUT")
    with pytest.raises(UserFacingError, match="option --engine: bad value 'google'"):
        load_config({"engine": "google"}, path=tmp_path / "none.toml")
    with pytest.raises(UserFacingError, match="unknown setting 'colour'"):
        load_config({"colour": "blue"}, path=tmp_path / "none.toml")


def test_example_file_is_current_and_loads(tmp_path: Path) -> None:
    shipped = (ROOT / "deploy" / "config.example.toml").read_text()
    assert shipped == example_toml(), "regenerate: cramp-coach config --example > deploy/config.example.toml"
    assert load_config(path=ROOT / "deploy" / "config.example.toml") == load_config(path=tmp_path / "no.toml")
    # Uncommenting every setting gives a valid file too.
    uncommented = re.sub(r"^# (\w+ = )", r"\1", shipped, flags=re.M)
    data = tomllib.loads(uncommented)
    assert sum(len(t) for t in data.values()) == len(KEYS)
    load_config(path=_write(tmp_path, uncommented))


def test_every_key_documented() -> None:
    doc = (ROOT / "docs" / "config.md").read_text()
    for k in KEYS:
        assert f"`{k.name}`" in doc and k.env in doc, f"docs/config.md lacks {k.dotted}"


def test_config_command_shows_values_and_sources(tmp_path: Path) -> None:
    path = _write(tmp_path, "[voice]\nrate = 130\n")
    env = dict(os.environ, CRAMP_COACH_CONFIG=str(path), CRAMP_COACH_VOLUME="0.25")
    out = subprocess.run([sys.executable, "-m", "assistant.commands.cli", "--engine", "pocketsphinx", "config"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = {line.split("=")[0].strip(): line for line in out.stdout.splitlines()}
    assert "from cli --engine" in lines["speech.engine"] and '"pocketsphinx"' in lines["speech.engine"]
    assert f"from file {path}:2" in lines["voice.rate"] and "130" in lines["voice.rate"]
    assert "from env CRAMP_COACH_VOLUME" in lines["voice.volume"]
    assert "from default" in lines["voice.name"]

    path.write_text("[voice]\nrate = 1000\n")
    bad = subprocess.run([sys.executable, "-m", "assistant.commands.cli", "config"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{path}:2: bad value 1000 for voice.rate: allowed range 80 to 450" in bad.stderr


def test_bad_config_stops_the_coach_at_start_up(tmp_path: Path) -> None:
    path = _write(tmp_path, '[speech]\nengine = "kaldi"\n')
    env = dict(os.environ, CRAMP_COACH_CONFIG=str(path))
    result = subprocess.run([sys.executable, "-m", "assistant.commands.cli", "--text"], env=env, input="",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:2: bad value 'kaldi' for speech.engine: allowed: auto, vosk, pocketsphinx, whisper" in result.stderr
