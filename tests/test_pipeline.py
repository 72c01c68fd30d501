"""The one utterance pipeline (assistant/speech_in/pipeline.py) on real speech and the real
embedded recognizer: decoding in the endpointer's hangover, and the result it gives."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.conversation.dialog import CONTEXTS
from assistant.conversation.intents import IntentSet
from assistant.paths import prompts_dir
from assistant.speech_in.pipeline import Decoded, Decoder, UtteranceContext, UtterancePipeline
from assistant.speech_in.recognizers import PocketSphinxRecognizer
from assistant.speech_in.vad import Endpointer
from assistant.testing.speechgen import VOICES, synthesize

RATE = 16000
BLOCK = 320


@pytest.fixture(scope="module")
def intent_set() -> IntentSet:
    return IntentSet.load(prompts_dir() / "intents.yaml")


@pytest.fixture(scope="module")
def sphinx(intent_set: IntentSet) -> PocketSphinxRecognizer:
    return PocketSphinxRecognizer(intent_set)


def _room(*parts: np.ndarray | float, seed: int = 5) -> np.ndarray:
    """Speech parts and pauses (seconds) in a quiet room, 0.5 s of it before and 1 s after."""
    pieces = [np.zeros(RATE // 2)]
    for part in parts:
        pieces.append(np.zeros(int(RATE * part)) if isinstance(part, float) else part.astype(np.float64))
    pieces.append(np.zeros(RATE))
    audio = np.concatenate(pieces) + np.random.default_rng(seed).normal(0, 2, sum(len(p) for p in pieces))
    return np.clip(np.rint(audio), -32768, 32767).astype(np.int16)


def _trimmed(text: str) -> np.ndarray:
    """The voice saying ``text`` without the quiet the synthesizer leaves around it."""
    audio = synthesize(text, VOICES["joe"])
    env = np.abs(audio[:len(audio) // 160 * 160].astype(np.float64)).reshape(-1, 160).mean(axis=1)
    loud = np.nonzero(env > 0.02 * env.max())[0]
    return audio[loud[0] * 160:(loud[-1] + 1) * 160]


def _hear(recognizer: PocketSphinxRecognizer, intent_set: IntentSet, audio: np.ndarray,
          early: bool) -> tuple[list[tuple[float, Decoded]], UtterancePipeline]:
    """Stream ``audio`` in 20 ms blocks; (stream time the result was there, result) per utterance."""
    ctx = UtteranceContext(tuple(CONTEXTS["idle"]))
    pipeline = UtterancePipeline(Decoder(recognizer, intent_set), Endpointer(RATE), lambda: ctx, early=early)
    out = []
    for i in range(0, len(audio) - BLOCK + 1, BLOCK):
        pipeline.feed(audio[i:i + BLOCK], (i + BLOCK) / RATE)
        out += [((i + BLOCK) / RATE, d) for d in pipeline.results()]
    return out, pipeline


def test_a_sentence_that_resumes_after_a_pause_is_decoded_whole(sphinx: PocketSphinxRecognizer,
                                                                  intent_set: IntentSet) -> None:
    # A pause longer than the "probably the end" hint but shorter than the hangover: the
    # early decode of "my left foot" must be dropped and the whole sentence decoded.
    settings = Endpointer().s
    pause = (settings.quiet_hint + settings.hangover) / 2
    head, tail = _trimmed("my left foot"), _trimmed("is cramping")
    audio = _room(head, pause, tail)
    results, pipeline = _hear(sphinx, intent_set, audio, early=True)
    assert pipeline.early_decodes >= 1 and pipeline.early_dropped == 1  # the work was started, then dropped
    assert [(d.intent, d.slots) for _, d in results] == [("cramp_start", {"side": "left", "location": "foot"})]
    assert results[0][1].transcript.text.startswith("my left foot is cramping")  # both halves
    # ... exactly what decoding after the hangover gives.
    late, _ = _hear(sphinx, intent_set, audio, early=False)
    assert [(d.intent, d.slots, d.transcript.text) for _, d in late] == \
        [(d.intent, d.slots, d.transcript.text) for _, d in results]


def test_the_early_result_stands_when_the_sentence_has_ended(sphinx: PocketSphinxRecognizer,
                                                             intent_set: IntentSet) -> None:
    audio = _room(synthesize("my foot is cramping", VOICES["joe"]))
    early, pipeline = _hear(sphinx, intent_set, audio, early=True)
    late, _ = _hear(sphinx, intent_set, audio, early=False)
    assert pipeline.early_decodes == 1 and pipeline.early_dropped == 0  # one decode, no wasted work
    assert [d.intent for _, d in early] == [d.intent for _, d in late] == ["cramp_start"]
    assert early[0][0] == late[0][0]  # given out when the hangover ends, as before: same turn timing
