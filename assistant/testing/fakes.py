"""Fakes for time and faults, never for the parts under test (the voice stays real).

- :class:`FlakySource`: a controllable microphone stream.
  :class:`~assistant.speech_in.audio.Microphone` opens its device through a stream
  factory; this one hands the microphone exactly the blocks the driver gives it, and can
  be "unplugged" so opening fails and the stream stops, the way a USB microphone pulled
  out behaves.
- :class:`ClockSpeaker`: the one clock-driven speaker. It renders every line with the
  real voice and is busy for the line's real duration on an injected clock (virtual for
  ``simulate`` and the soak, real for the live-feed benchmarks), without a sound card.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from assistant.speech_in.wav import resample
from assistant.speech_out.render import Renderer


class _Now(Protocol):
    def now(self) -> float: ...


class _Monotonic:
    def now(self) -> float:
        return time.monotonic()


class ClockSpeaker:
    """A speaker on a clock: follows :class:`~assistant.speech_out.speakers.Speaker`.

    A line said while another is still playing starts when that one ends (a device
    speaker queues the same way). Optional extras, each what one user needs:
    ``record`` keeps everything said as one recording at ``rate`` on the clock's
    timeline (``simulate --out``); ``history`` keeps the playback loudness the echo check
    reads, like :class:`~assistant.speech_out.speakers.DeviceSpeaker` (the soak,
    ``simulate``); ``played_rate`` keeps what came out of the speaker alone at that rate,
    cut where a line was stopped (the echo a simulated microphone hears: ``simulate --echo``).
    """

    def __init__(self, renderer: Renderer, clock: _Now | None = None, *, rate: int = 22050,
                 record: bool = False, history: bool = False, played_rate: int | None = None) -> None:
        self.renderer = renderer
        self.clock: _Now = clock if clock is not None else _Monotonic()
        self.rate = rate
        self.record = record
        self.audio = np.zeros(0, np.float32)
        """The recording (``record=True``), float32 at ``rate`` from clock time 0."""
        self.history: Any = None
        """:class:`~assistant.speech_in.echo.PlaybackHistory` of what was played (``history=True``)."""
        if history:
            from assistant.speech_in.echo import PlaybackHistory

            self.history = PlaybackHistory()
        self.played_rate = played_rate
        self.played = np.zeros(0, np.float32)
        """The speaker's output alone at ``played_rate`` from clock time 0 (no ``mix_in``)."""
        self.busy_until = 0.0
        """Clock time the last queued line ends."""
        self.said: list[tuple[float, float, str]] = []
        """(clock start, duration, text) of every line."""
        self.last: Any = None
        """The last :class:`~assistant.speech_out.render.Rendered` line (None after close)."""
        self._line: tuple[float, float, str] | None = None

    # ------------------------------------------------------------- the protocol

    def say(self, text: str) -> float:
        rendered = self.renderer.render(text)
        samples = resample(rendered.samples, rendered.rate, self.rate)
        start = max(self.clock.now(), self.busy_until)
        duration = len(samples) / self.rate
        if self.record:
            at = int(start * self.rate)
            self._ensure(at + len(samples))
            self.audio[at:at + len(samples)] += samples.astype(np.float32)
        if self.played_rate is not None:
            heard = resample(rendered.samples, rendered.rate, self.played_rate)
            at = int(round(start * self.played_rate))
            self.played = _grown(self.played, at + len(heard), self.played_rate)
            self.played[at:at + len(heard)] += heard.astype(np.float32)
        if self.history is not None:  # from the mic-rate copy if there is one: whole 10 ms frames
            self._add_history(*((heard, self.played_rate) if self.played_rate is not None else (samples, self.rate)),
                              start)
        self.busy_until = start + duration
        self._line = (start, self.busy_until, text)
        self.said.append((start, duration, text))
        self.last = rendered
        return duration

    def stop(self) -> None:
        now = self.clock.now()
        if self._line and now < self.busy_until:
            if self.record:
                self.audio[int(now * self.rate):int(self.busy_until * self.rate) + 1] = 0.0
            if self.played_rate is not None:
                self.played[int(round(now * self.played_rate)):int(self.busy_until * self.played_rate) + 1] = 0.0
            if self.history is not None:
                self.history.cut(now)
            self.busy_until = now

    @property
    def speaking(self) -> bool:
        return self.clock.now() < self.busy_until

    @property
    def current_text(self) -> str | None:
        return self._line[2] if self._line and self.speaking else None

    def close(self) -> None:
        self.last = None

    # ------------------------------------------------------------- extras

    @property
    def started_lines(self) -> list[float]:
        """Clock times at which lines started."""
        return [start for start, _, _ in self.said]

    @property
    def lines(self) -> int:
        """Lines said so far."""
        return len(self.said)

    def mix_in(self, samples: np.ndarray, at: float, gain: float = 1.0, rate: int = 16000) -> None:
        """Add other sound to the recording at clock time ``at`` (``simulate --with-user``)."""
        pcm = resample(samples, rate, self.rate).astype(np.float32) * gain
        start = int(at * self.rate)
        self._ensure(start + len(pcm))
        self.audio[start:start + len(pcm)] += pcm

    def samples(self, until: float) -> np.ndarray:
        """The recording up to clock time ``until`` (or the end of the last line), int16."""
        n = int(max(until, self.busy_until) * self.rate)
        self._ensure(n)
        return np.clip(self.audio[:n], -32768, 32767).astype(np.int16)

    def _ensure(self, n: int) -> None:
        self.audio = _grown(self.audio, n, self.rate)

    def _add_history(self, samples: np.ndarray, rate: int, start: float) -> None:
        from assistant.speech_in.echo import FRAME

        n = int(rate * FRAME)
        for i in range(0, len(samples) - n + 1, n):
            self.history.add(start + i / rate, samples[i:i + n])


def _grown(buf: np.ndarray, n: int, rate: int) -> np.ndarray:
    """``buf`` at least ``n`` samples long (grown by 10 s more, zero-filled)."""
    if n > len(buf):
        return np.concatenate([buf, np.zeros(n - len(buf) + rate * 10, np.float32)])
    return buf


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
