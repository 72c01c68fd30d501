"""``cramp-coach recognize`` as other tools use it: a subprocess printing JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from speech_fixtures import AUDIO_CACHE, intent_set, speech_cases  # noqa: F401

from assistant.speech_in.wav import write_wav
from assistant.testing.speechgen import VOICES, pad, synthesize


def recognize(*args: str, models: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRAMP_COACH_MODELS": str(models)}  # no Vosk model: the embedded engine
    return subprocess.run([sys.executable, "-m", "assistant.commands.cli", "recognize", "--json", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_json_line_per_file_and_a_bad_file_does_not_stop_the_rest(speech_cases, tmp_path):  # noqa: F811
    cramp = next(c for c in speech_cases if c.intent == "cramp_start" and c.slots.get("side"))
    chatter = next(c for c in speech_cases if c.intent is None)
    bad = tmp_path / "recipe.wav"
    bad.write_text("two eggs, a cup of flour")
    files = [str(AUDIO_CACHE / cramp.file), str(bad), str(AUDIO_CACHE / chatter.file)]
    result = recognize(*files, models=tmp_path / "none")
    assert result.returncode == 1
    out = lines(result.stdout)
    assert [o["file"] for o in out] == files
    assert {"file", "text", "intent", "slots", "confidence"} <= set(out[0])
    assert out[0]["intent"] == "cramp_start" and out[0]["slots"] == cramp.slots
    assert 0 <= out[0]["confidence"] <= 1
    assert "error" in out[1] and out[1]["intent"] is None
    assert "recipe.wav" in result.stderr and "not a readable WAV" in result.stderr
    assert "Traceback" not in result.stderr
    assert out[2]["intent"] is None  # kitchen talk is not a command


def test_only_restricts_to_the_named_intents(speech_cases, tmp_path):  # noqa: F811
    stops = [c for c in speech_cases if c.intent == "stop"]
    # One that says "stop": forced onto yes/no, "that's enough" can come out as "that's right".
    stop = next((c for c in stops if c.text.startswith("stop")), stops[0])
    wav = str(AUDIO_CACHE / stop.file)
    assert lines(recognize("--only", "stop,pause", wav, models=tmp_path).stdout)[0]["intent"] == "stop"
    assert lines(recognize("--only", "yes,no", wav, models=tmp_path).stdout)[0]["intent"] is None
    bad = recognize("--only", "fly", wav, models=tmp_path)
    assert bad.returncode == 2 and "unknown intent(s) fly" in bad.stderr


def test_intents_file_of_another_domain(tmp_path):
    lights = tmp_path / "lights.yaml"
    lights.write_text(
        "language: en\n"
        "intents:\n"
        "  light_on:\n    data:\n      - sentences: ['turn on the {room} (light|lights)', '{room} lights on']\n"
        "  light_off:\n    data:\n      - sentences: ['turn off the {room} (light|lights)']\n"
        "lists:\n  room:\n    values:\n      - kitchen\n      - in: (bedroom|bed room)\n        out: bedroom\n",
        encoding="utf-8",
    )
    rng = __import__("numpy").random.default_rng(3)
    on = tmp_path / "on.wav"
    off = tmp_path / "off.wav"
    write_wav(on, pad(synthesize("turn on the kitchen lights", VOICES["joe"]), rng))
    write_wav(off, pad(synthesize("turn off the bedroom light", VOICES["joe"]), rng))
    result = recognize("--intents", str(lights), "--engine", "pocketsphinx", str(on), str(off), models=tmp_path)
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert (out[0]["intent"], out[0]["slots"]) == ("light_on", {"room": "kitchen"})
    assert (out[1]["intent"], out[1]["slots"]) == ("light_off", {"room": "bedroom"})


def test_forcing_vosk_without_a_model_says_what_to_do(speech_cases, tmp_path):  # noqa: F811
    result = recognize("--engine", "vosk", str(AUDIO_CACHE / speech_cases[0].file), models=tmp_path)
    assert result.returncode == 2
    assert "cramp-coach models install" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", ["nothing.yaml"])
def test_missing_intent_file_is_a_clear_error(tmp_path, missing, speech_cases):  # noqa: F811
    result = recognize("--intents", str(tmp_path / missing), str(AUDIO_CACHE / speech_cases[0].file),
                       models=tmp_path)
    assert result.returncode == 2 and f"{missing}: file not found" in result.stderr
