"""Is this sound the coach's own voice coming back through the microphone?

The speaker remembers the loudness envelope of what it played (one value per 10 ms
output block, stamped with the time it reaches the air). An utterance heard while the
coach talks is compared with that envelope at echo delays of 0–0.4 s. A cheap
double-talk detector — no adaptive filter, no extra dependency — working alongside the
word-level echo gate in :mod:`assistant.runners.turn_taking`.

Correlation alone is not enough: a short "stop" has ~100 frames of a smooth envelope
and 41 delays to try, so a person talking over the coach with no echo path at all
matched its voice at r = 0.63–0.80 by chance (bench/results/echo_check.md) and was
ignored. The score therefore asks what is physically true of an echo:

- *level consistency*: above the microphone's noise floor, the loudness is the
  playback's times one path gain ``g`` at one delay (fit through the origin, g ≥ 0);
  the score starts from the fraction of the loudness that fit explains;
- *nothing louder than the echo path allows*: frames louder than twice the echo
  predicted by the path gain (the median mic/playback ratio; a reverb tail fading by
  1 dB per 10 ms) are a person talking; their share of the loudness is subtracted (a
  Geigel-style double-talk test);
- *a plausible path gain*: the fitted gain must not exceed ``MAX_GAIN``;
- *stand out from chance*: the same utterance is compared with the playback at
  implausible offsets (0.8–3 s earlier); when it matches those nearly as well, the match
  is what any speech-like envelope does, and the score is lowered.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

FRAME = 0.01
ECHO_LIMIT = 0.72
"""An :func:`echo_score` at or above this means: it is the coach's voice. bench/echo_check.py
(150 scenes each, espeak-ng lines with per-line rate commands): its own voice through a room
in kitchen noise scored ≥ 0.73, people talking over it ≤ 0.62, people over an echo path
≤ 0.70 (at 0.68, 2 of those 150 were taken for echo)."""
MAX_DELAY = 0.4
NULL_DELAYS = np.arange(0.8, 3.0 + 1e-9, 0.05)
"""Offsets at which no echo arrives: matches there are chance."""
REVERB_FRAMES = 30
"""A room keeps the coach's voice audible up to this many frames after it played (0.3 s)..."""
DECAY_DB = 1.0
"""...fading by this much per frame (RT60 0.6 s, a lively kitchen)."""
EXCESS_FACTOR = 2.0
"""Louder than this times the fitted echo is not the echo."""
MAX_GAIN = 1.6
"""The speaker heard back through the air is not louder at the mic than it was played
(digital playback level → microphone level; the PulseAudio loopback is 1.0, a room
less; the fit reads up to ~1.4× the true gain with reverb and noise). A fit needing
more is a person louder than the coach whose word happened to match its rhythm —
live, a "stop" matched the isolated "sit." of the instruction at r = 0.85, g = 1.8."""
NULL_SLACK, NULL_WEIGHT = 0.2, 0.3
"""Chance matches up to this are normal; above it, this much of the excess is subtracted."""


class LoudnessHistory(Protocol):
    """What the speaker played: (frame times, mean absolute level) between two times."""

    def window(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]: ...


class PlaybackHistory:
    """The last ``seconds`` of output loudness, 10 ms per entry."""

    def __init__(self, seconds: float = 15.0) -> None:
        self._frames: collections.deque[tuple[float, float]] = collections.deque(maxlen=int(seconds / FRAME))
        self._lock = threading.Lock()

    def add(self, t_heard: float, block: np.ndarray) -> None:
        """One output block (any rate), audible from ``t_heard`` on."""
        level = float(np.abs(block.astype(np.float32)).mean()) if len(block) else 0.0
        with self._lock:
            self._frames.append((t_heard, level))

    def cut(self, t: float) -> None:
        """Forget what was queued to be heard after ``t`` (the line was stopped)."""
        with self._lock:
            while self._frames and self._frames[-1][0] > t:
                self._frames.pop()

    def window(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            frames = [(t, v) for t, v in self._frames if t0 <= t <= t1]
        if not frames:
            return np.zeros(0), np.zeros(0)
        arr = np.array(frames)
        return arr[:, 0], arr[:, 1]


def envelope(samples: np.ndarray, rate: int = 16000) -> np.ndarray:
    n = int(rate * FRAME)
    k = len(samples) // n
    return np.abs(samples[:k * n].astype(np.float32)).reshape(k, n).mean(axis=1)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    sa, sb = float(a.std()), float(b.std())
    if sa == 0 or sb == 0:
        return None
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


@dataclass(frozen=True)
class EchoCheck:
    """The parts of the decision, for the benchmark and the debug log."""

    score: float
    r: float = 0.0
    """Best envelope correlation at a plausible echo delay."""
    delay: float = 0.0
    explained: float = 0.0
    """Share of the loudness above the floor explained by ``gain`` × playback at ``delay``."""
    gain: float = 0.0
    excess: float = 0.0
    """Share of the loudness louder than the echo path allows."""
    chance: float = 0.0
    """90th percentile of the correlations at implausible offsets (0 when there is no playback there)."""


def echo_check(mic: np.ndarray, mic_end: float, history: LoudnessHistory, rate: int = 16000,
               max_delay: float = MAX_DELAY) -> EchoCheck:
    """Score how much the utterance ``mic`` (ending at ``mic_end``) is the speaker's echo."""
    env = envelope(mic, rate).astype(np.float64)
    n = len(env)
    if n < 10:
        return EchoCheck(0.0)
    times = mic_end - (n - np.arange(n)) * FRAME
    ref_t, ref_v = history.window(times[0] - NULL_DELAYS[-1] - 0.1, mic_end + 0.05)
    if len(ref_t) < 10 or ref_v.max() <= 0:
        return EchoCheck(0.0)

    def ref_at(delay: float) -> np.ndarray:
        return np.interp(times - delay, ref_t, ref_v, left=0.0, right=0.0)

    best, best_d = 0.0, 0.0
    for delay in np.arange(0.0, max_delay + 1e-9, FRAME):
        c = _corr(env, ref_at(float(delay)))
        if c is not None and c > best:
            best, best_d = c, float(delay)
    if best <= 0:
        return EchoCheck(0.0)
    nulls = []
    for delay in NULL_DELAYS:
        ref = ref_at(float(delay))
        c = _corr(env, ref)
        if c is not None and np.count_nonzero(ref) > n // 2:  # the coach was talking then
            nulls.append(c)
    chance = float(np.percentile(nulls, 90)) if nulls else 0.0

    ref = ref_at(best_d)
    m = env - float(np.percentile(env, 10))  # above the noise floor
    energy = max(float(np.dot(m, m)), 1e-9)
    gain = max(0.0, float(np.dot(m, ref)) / max(float(np.dot(ref, ref)), 1e-9))
    explained = 1.0 - float(np.sum((m - gain * ref) ** 2)) / energy
    tail = ref.copy()  # the room's reverb: what was played fades by ~1 dB per frame (RT60 0.6 s)
    for k in range(1, REVERB_FRAMES + 1):
        np.maximum(tail[k:], ref[:-k] * 10 ** (-k * DECAY_DB / 20), out=tail[k:])
    loud = ref > 0.3 * ref.max()
    path = float(np.median(np.maximum(m[loud], 0.0) / ref[loud])) if loud.any() else gain
    excess = float(np.sum(np.maximum(0.0, m - EXCESS_FACTOR * min(gain, path) * tail) ** 2)) / energy
    score = explained - excess - NULL_WEIGHT * max(0.0, chance - NULL_SLACK)
    if gain > MAX_GAIN:
        score = 0.0
    return EchoCheck(max(0.0, score), best, best_d, explained, gain, excess, chance)


def echo_score(mic: np.ndarray, mic_end: float, history: LoudnessHistory, rate: int = 16000,
               max_delay: float = MAX_DELAY) -> float:
    """How much the utterance is the coach's own voice (≥ ``ECHO_LIMIT``: it is); 0 if no playback."""
    return echo_check(mic, mic_end, history, rate, max_delay).score
