"""Is this sound the coach's own voice coming back through the microphone?

The speaker remembers the loudness envelope of what it played (one value per 10 ms
output block, stamped with the time it reaches the air). An utterance heard while the
coach talks is compared with that envelope at echo delays of 0–0.4 s: the coach's own
voice follows it closely (Pearson r near 1), a person talking over it does not. This is
a cheap double-talk detector — no adaptive filter, no extra dependency — and it works
alongside the word-level echo gate in :mod:`assistant.runners.turn_taking`.
"""

from __future__ import annotations

import collections
import threading
from typing import Protocol

import numpy as np

FRAME = 0.01
ECHO_LIMIT = 0.6
"""Envelope correlation at or above this means: it is the coach's voice."""


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


def echo_score(mic: np.ndarray, mic_end: float, history: LoudnessHistory, rate: int = 16000,
               max_delay: float = 0.4) -> float:
    """Highest envelope correlation between the utterance and recent playback (0 if none)."""
    env = envelope(mic, rate)
    if len(env) < 10:
        return 0.0
    times = mic_end - (len(env) - np.arange(len(env))) * FRAME
    ref_t, ref_v = history.window(times[0] - max_delay - 0.1, mic_end + 0.05)
    if len(ref_t) < 10 or ref_v.max() <= 0:
        return 0.0
    best = 0.0
    for delay in np.arange(0.0, max_delay + 1e-9, FRAME):
        ref = np.interp(times - delay, ref_t, ref_v, left=0.0, right=0.0)
        if ref.std() == 0 or env.std() == 0:
            continue
        best = max(best, float(np.corrcoef(env, ref)[0, 1]))
    return best
