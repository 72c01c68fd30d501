"""Real-time stand-ins for the microphone and speaker, to run the real live loop in benchmarks.

:class:`RealTimeMic` has the ``read(timeout)`` of :class:`assistant.speech_in.audio.Microphone`
but delivers a background (kitchen noise) plus whatever the benchmark makes the person
say, one 20 ms block per 20 ms of ``time.monotonic()`` — so
:class:`assistant.runners.live.LiveLoop` runs exactly as on a device. The speaker is
:class:`assistant.testing.fakes.ClockSpeaker` on the real clock: every line rendered
with the real voice, "busy" for the line's real duration, without needing a sound card.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import numpy as np

from bench.common import RATE

BLOCK = int(RATE * 0.02)


class RealTimeMic:
    """Background audio looped forever, user utterances mixed in when :meth:`say` is called."""

    def __init__(self, background: np.ndarray) -> None:
        from assistant.speech_in.audio import Chunk

        self._chunk_type = Chunk
        self.background = background.astype(np.float32)
        self.t0 = time.monotonic()
        self.blocks = 0
        self._speech: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()
        self.overflows = 0
        self.dropped = 0
        self.speech_ends: list[float] = []
        """monotonic time each utterance's last sample was delivered."""

    def say(self, pcm: np.ndarray) -> None:
        """The person starts saying ``pcm`` (int16, 16 kHz) now."""
        with self._lock:
            for i in range(0, len(pcm), BLOCK):
                block = pcm[i:i + BLOCK].astype(np.float32)
                if len(block) < BLOCK:
                    block = np.pad(block, (0, BLOCK - len(block)))
                self._speech.append(block)
            self._speech.append(np.zeros(0, np.float32))  # end marker

    @property
    def talking(self) -> bool:
        with self._lock:
            return bool(self._speech)

    def read(self, timeout: float) -> Any:
        """The next 20 ms block when it is due, or None after ``timeout`` seconds."""
        due = self.t0 + (self.blocks + 1) * 0.02
        now = time.monotonic()
        if due - now > timeout:
            time.sleep(max(0.0, timeout))
            return None
        if due > now:
            time.sleep(due - now)
        n = len(self.background)
        start = (self.blocks * BLOCK) % n
        block = np.take(self.background, np.arange(start, start + BLOCK), mode="wrap").copy()
        with self._lock:
            if self._speech and len(self._speech[0]) == 0:
                self._speech.popleft()
                self.speech_ends.append(due - 0.02)
            if self._speech:
                block += self._speech.popleft()
        self.blocks += 1
        samples = np.clip(np.rint(block), -32768, 32767).astype(np.int16)
        return self._chunk_type(samples, due)

    def close(self) -> None:
        pass


def kitchen_background(seconds: float, level_dbfs: float = -45.0, seed: int = 5) -> np.ndarray:
    """Water, fan and clatter one after another, at ``level_dbfs`` RMS (a quiet-ish kitchen)."""
    from assistant.testing.speechgen import NOISES, kitchen_noise

    rng = np.random.default_rng(seed)
    part = int(RATE * seconds / len(NOISES))
    noise = np.concatenate([kitchen_noise(kind, part, rng) for kind in NOISES])
    return noise * (32768.0 * 10 ** (level_dbfs / 20))
