"""A controllable microphone stream, for tests and the soak (faults and time, not hardware).

:class:`~assistant.speech_in.audio.Microphone` opens its device through a stream factory; this one
hands the microphone exactly the blocks the driver gives it, and can be "unplugged" so
opening fails and the stream stops, the way a USB microphone pulled out behaves.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _Overflowed:
    """PortAudio's callback status for a block that lost audio before we saw it."""

    input_overflow = True


class FlakySource:
    """A fake input device that delivers blocks until it is unplugged."""

    def __init__(self, rate: int = 48000) -> None:
        self.samplerate = float(rate)
        self.plugged = True
        self.opened = 0
        """Times the microphone opened it (the first open plus each reopen)."""
        self.callback: Any = None
        self._active = False

    def factory(self, callback: Any) -> FlakySource:
        if not self.plugged:
            raise OSError("device unavailable")
        self.opened += 1
        self.callback = callback
        return self

    def start(self) -> None:
        self._active = True

    def close(self, ignore_errors: bool = True) -> None:
        self._active = False

    @property
    def active(self) -> bool:
        return self._active and self.plugged

    def deliver(self, samples: np.ndarray, overflow: bool = False) -> bool:
        """Hand a block to the microphone's callback; False (nothing delivered) while unplugged."""
        if not self.active:
            return False
        self.callback(samples.reshape(-1, 1), len(samples), None, _Overflowed() if overflow else None)
        return True
