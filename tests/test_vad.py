"""Endpointing on real synthesized speech in synthesized kitchen noise."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.speech_in.vad import FRAME_SECONDS, Endpointer
from assistant.testing.speechgen import VOICES, kitchen_noise, synthesize

RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize("my foot is cramping", VOICES["joe"])


def _scene(speech: np.ndarray, noise: str | None, snr_db: float, lead: float = 1.5, tail: float = 1.5,
           seed: int = 1) -> tuple[np.ndarray, float, float]:
    """Speech placed in noise; returns audio and the true speech start/end in seconds."""
    rng = np.random.default_rng(seed)
    voiced = np.flatnonzero(np.abs(speech) > 0.05 * np.abs(speech).max())
    s0, s1 = voiced[0] / RATE, voiced[-1] / RATE
    total = np.concatenate([np.zeros(int(lead * RATE)), speech.astype(np.float64), np.zeros(int(tail * RATE))])
    active = speech[voiced[0]:voiced[-1]].astype(np.float64)
    rms = np.sqrt(np.mean(active ** 2))
    if noise:
        total += kitchen_noise(noise, len(total), rng) * rms / 10 ** (snr_db / 20)
    else:
        total += rng.normal(0, 3, len(total))  # a quiet mic's own hiss
    return np.clip(total, -32768, 32767).astype(np.int16), lead + s0, lead + s1


def _run(audio: np.ndarray, block: int = 320 * 3) -> tuple[list[float], list[float], int]:
    ep = Endpointer(RATE)
    starts, ends, n_audio = [], [], 0
    for i in range(0, len(audio), block):
        seg = ep.process(audio[i:i + block])
        if seg.started:
            starts.append(round(seg.start_time or 0.0, 3))
            n_audio = 0
        n_audio += sum(len(a) for a in seg.audio)
        if seg.ended:
            ends.append(seg.end_time or 0.0)
    return starts, ends, n_audio


@pytest.mark.parametrize("noise,snr", [(None, 0.0), ("fan", 15.0), ("water", 12.0)])
def test_one_utterance_found_with_onset_and_prompt_end(speech: np.ndarray, noise: str | None, snr: float) -> None:
    audio, t0, t1 = _scene(speech, noise, snr)
    ep = Endpointer(RATE)
    started_at = ended_at = None
    collected: list[np.ndarray] = []
    for i in range(0, len(audio), 320):
        seg = ep.process(audio[i:i + 320])
        if seg.started:
            started_at = ep.stream_time
        if started_at is not None and ended_at is None:
            collected.extend(seg.audio)
        if seg.ended and ended_at is None:
            ended_at = ep.stream_time
    assert started_at is not None and ended_at is not None
    utterance = np.concatenate(collected)
    first_sample_time = ended_at - len(utterance) / RATE
    assert first_sample_time <= t0, "pre-roll must reach back before the first word"
    # Declared finished soon after the last word: the reply can start within a second.
    assert t1 <= ended_at <= t1 + 0.6, (t1, ended_at)


def test_silence_and_steady_noise_are_not_speech() -> None:
    rng = np.random.default_rng(3)
    for kind in ("fan", "water"):
        noise = (kitchen_noise(kind, RATE * 6, rng) * 800).astype(np.int16)
        starts, _, _ = _run(noise)
        assert starts == [], kind
    hiss = rng.normal(0, 3, RATE * 3).astype(np.int16)
    assert _run(hiss)[0] == []


def test_two_turns_are_two_utterances(speech: np.ndarray) -> None:
    a, _, _ = _scene(speech, None, 0, lead=1.0, tail=1.0, seed=4)
    starts, ends, _ = _run(np.concatenate([a, a]))
    assert len(starts) == 2 and len(ends) == 2


def test_frame_boundaries_do_not_matter(speech: np.ndarray) -> None:
    audio, _, _ = _scene(speech, "fan", 15.0, seed=5)
    assert _run(audio, 7)[:2] == _run(audio, 1600)[:2]
    assert FRAME_SECONDS == 0.02
