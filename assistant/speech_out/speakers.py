"""Speakers: where rendered lines are played, and the one protocol they share.

pyttsx3's own ``say()`` cannot be interrupted or pointed at a device, so lines are
rendered first (:mod:`assistant.speech_out.render`) and played by :class:`DeviceSpeaker`
through a sounddevice output stream whose callback hands out small blocks; ``stop()``
empties the queue, so the sound ends within one block plus the device latency.
:class:`ResilientSpeaker` keeps the countdown going when the voice or the device fails
(a text trace instead), :class:`TextSpeaker` is the no-speaker trace itself. The
clock-driven fake for simulations and benchmarks is
:class:`assistant.testing.fakes.ClockSpeaker`.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from assistant.speech_in.wav import resample
from assistant.speech_out.render import Rendered, Renderer

log = logging.getLogger(__name__)

BLOCK_SECONDS = 0.01
"""Output callback block: the granularity of ``stop()``."""


class Speaker(Protocol):
    """What turn taking needs from speech out: the one speaker protocol (device, resilient,
    text, and the clock-driven fake all follow it)."""

    def say(self, text: str) -> float:
        """Queue a line; returns its duration in seconds."""
        ...

    def stop(self) -> None:
        """Cut everything queued or playing."""
        ...

    @property
    def speaking(self) -> bool: ...

    @property
    def current_text(self) -> str | None:
        """The line being played (for the echo gate)."""
        ...

    def close(self) -> None: ...


class DeviceSpeaker:
    """Plays rendered lines on an output device through one long-lived stream.

    The stream stays open so a reply starts without an open delay; its callback copies
    ``BLOCK_SECONDS`` at a time from a queue of lines, so :meth:`stop` takes effect at
    the next block. If the device fails, the stream is reopened on the next line. A
    device that stops asking for audio while lines wait (PulseAudio: a suspended sink
    stalls the stream without any error) is :attr:`stalled`.
    """

    STALL_SECONDS = 1.0
    """No callback this long: the device is not playing (a vanished PulseAudio sink stalls
    the stream ~1.2 s before PulseAudio moves it elsewhere; a suspended one for good)."""
    STARTUP_SECONDS = 3.0
    """No stall verdict this soon after opening: a new ALSA-pulse stream takes one callback
    and then pauses ~1.8 s before it runs steadily (measured here)."""
    CONFIRM_CALLBACKS = 25
    """Callbacks (10 ms each) after opening before the device counts as really playing."""

    def __init__(self, renderer: Renderer, device: int | str | None = None,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        import sounddevice as sd

        self._sd = sd
        self.renderer = renderer
        self.device = device
        self.on_error = on_error
        info = sd.query_devices(device, "output")
        self.rate = int(info["default_samplerate"])
        self._lines: collections.deque[tuple[str, np.ndarray]] = collections.deque()
        self._pos = 0
        self._lock = threading.Lock()
        self._stream: Any = None
        self._busy_until = 0.0
        """monotonic time until which queued audio is still coming out of the device."""
        self._playing_text: str | None = None
        self.stop_requested_at: float | None = None
        self._opened_at = 0.0
        self._last_callback = 0.0
        self._callbacks = 0
        from assistant.speech_in.echo import PlaybackHistory

        self.history = PlaybackHistory()
        """Loudness of what was played, for telling the coach's echo from the person."""
        resample(np.zeros(64, np.int16), 22050, self.rate + 1)  # import soxr now, not on the first reply
        self._open()

    def _open(self) -> None:
        self._opened_at = time.monotonic()
        self._callbacks = 0
        self._stream = self._sd.OutputStream(
            device=self.device, samplerate=self.rate, channels=1, dtype="int16",
            blocksize=int(self.rate * BLOCK_SECONDS), latency="low", callback=self._callback,
            finished_callback=self._finished)
        self._stream.start()
        log.info("speaker open: %s at %d Hz, latency %.0f ms", self.device, self.rate,
                 1000 * self._stream.latency)

    def _finished(self) -> None:
        log.debug("speaker stream closed")

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._last_callback = time.monotonic()
        self._callbacks += 1
        out = outdata[:, 0]
        filled = 0
        with self._lock:
            while filled < frames and self._lines:
                text, samples = self._lines[0]
                self._playing_text = text
                take = min(frames - filled, len(samples) - self._pos)
                out[filled:filled + take] = samples[self._pos:self._pos + take]
                filled += take
                self._pos += take
                if self._pos >= len(samples):
                    self._lines.popleft()
                    self._pos = 0
            if filled:
                self._busy_until = time.monotonic() + self._stream.latency + filled / self.rate
            elif self._playing_text is not None and time.monotonic() >= self._busy_until:
                self._playing_text = None
        out[filled:] = 0
        self.history.add(time.monotonic() + self._stream.latency, out)

    @property
    def stalled(self) -> bool:
        """The device has not asked for audio for ``STALL_SECONDS`` (an open stream asks all
        the time, silence included), or its stream has stopped."""
        stream = self._stream
        if stream is None or not stream.active:
            return True
        now = time.monotonic()
        if now - self._opened_at < self.STARTUP_SECONDS:
            return False
        return now - self._last_callback > self.STALL_SECONDS

    @property
    def confirmed(self) -> bool:
        """The device keeps taking audio since the stream was opened (it really plays)."""
        return self._callbacks >= self.CONFIRM_CALLBACKS and not self.stalled

    def take_unplayed(self) -> list[str]:
        """Empty the queue; the texts of lines not yet (fully) played, for the text trace."""
        with self._lock:
            texts = [text for text, _ in self._lines]
            self._lines.clear()
            self._pos = 0
            self._busy_until = 0.0
            self._playing_text = None
        return texts

    def _ensure_open(self) -> None:
        if self._stream is not None and self._stream.active:
            return
        try:
            if self._stream is not None:
                self._stream.close(ignore_errors=True)
            self._open()
        except Exception as exc:  # device gone: keep going, the caller logs a text trace
            self._stream = None
            if self.on_error:
                self.on_error(exc)
            raise

    def say(self, text: str) -> float:
        rendered = self.renderer.render(text)
        return self.play(rendered)

    def play(self, rendered: Rendered) -> float:
        samples = resample(rendered.samples, rendered.rate, self.rate)
        self._ensure_open()
        with self._lock:
            self._lines.append((rendered.text, samples))
            if self._playing_text is None:
                self._playing_text = rendered.text
            self._busy_until = max(self._busy_until, time.monotonic() + self._stream.latency)
            self.stop_requested_at = None
        return len(samples) / self.rate

    def stop(self) -> None:
        with self._lock:
            self.stop_requested_at = time.monotonic()
            self._lines.clear()
            self._pos = 0

    @property
    def speaking(self) -> bool:
        with self._lock:
            return bool(self._lines) or time.monotonic() < self._busy_until

    @property
    def current_text(self) -> str | None:
        with self._lock:
            if self._lines:
                return self._lines[0][0]
            return self._playing_text if time.monotonic() < self._busy_until else None

    def wait(self, timeout: float) -> bool:
        """Block until everything queued has been heard (for ``demo``); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.speaking:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close(ignore_errors=True)
            self._stream = None


class ResilientSpeaker:
    """Speech out that survives a failing voice or output device.

    A line that cannot be rendered, or that the device cannot play (gone, or stalled with
    the line still queued), is printed as a text trace and logged instead: the countdown
    never waits for a speaker. The device is reopened at most every ``retry_seconds``,
    also between lines (:meth:`check`, called by the live loop), and :attr:`available`
    says whether the voice really reaches the person, so the loop can tell the coach
    (``DeviceLost``/``DeviceBack``).
    """

    def __init__(self, renderer: Renderer, open_device: Callable[[], Any], *, trace: Any = None,
                 retry_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.renderer = renderer
        self._open_device = open_device
        self.text = TextSpeaker(stream=trace)
        self.retry_seconds = retry_seconds
        self._clock = clock
        self.device: Any = None
        """The open device speaker (a :class:`DeviceSpeaker`), None while there is none."""
        self.open_error: str | None = None
        """Why the device last failed to open."""
        self.voice_ok = True
        self.tts_failures = 0
        """Lines the voice failed to render (each was printed instead)."""
        self.device_failures = 0
        """Times the device was given up (gone or stalled) and later retried."""
        self.printed = 0
        """Lines that went to the text trace instead of the speaker."""
        self._last_try = clock()
        self._reopen()
        self.available = self.device is not None
        """The voice reaches the person: a working voice on a device that really plays."""

    # -------------------------------------------------------------- speaking

    def say(self, text: str) -> float:
        try:
            rendered = self.renderer.render(text)
        except Exception as exc:  # noqa: BLE001 - any engine error: print the line, retry the next one
            self.tts_failures += 1
            self.voice_ok = False
            log.warning("the voice failed on %r (%s): printing it", text[:40], _first_line(exc))
            self.available = False
            return self._print(text)
        self.voice_ok = True
        device = self.device
        if device is None and self._clock() - self._last_try >= self.retry_seconds:
            device = self._reopen()
        if device is None:
            self._lost(self.open_error or "no device")
            return self._print(text)
        try:
            duration = float(device.play(rendered))
        except Exception as exc:  # noqa: BLE001 - PortAudio raises several types
            self._drop(f"cannot play: {_first_line(exc)}")
            return self._print(text)
        if not self.available and device.confirmed:
            self._back()
        return duration

    def check(self) -> None:
        """Between lines: give up a stalled device (printing what it did not play), retry a
        missing one, and notice one that plays again."""
        device = self.device
        if device is None:
            if self._clock() - self._last_try >= self.retry_seconds:
                self._reopen()
            return
        if device.stalled:
            unplayed = device.take_unplayed()
            self._drop("stalled: the device stopped taking audio")
            for text in unplayed:
                self._print(text)
            return
        if not self.available and self.voice_ok and device.confirmed:
            self._back()

    def stop(self) -> None:
        if self.device is not None:
            self.device.stop()

    @property
    def speaking(self) -> bool:
        device = self.device
        return device is not None and device.speaking and not device.stalled

    @property
    def current_text(self) -> str | None:
        return self.device.current_text if self.device is not None else None

    @property
    def history(self) -> Any:
        """What the device played (the echo check), None without one."""
        return getattr(self.device, "history", None)

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None

    # -------------------------------------------------------------- state

    def _print(self, text: str) -> float:
        self.printed += 1
        log.info("said as text: %s", text)
        return self.text.say(text)

    def _reopen(self) -> Any:
        self._last_try = self._clock()
        try:
            self.device = self._open_device()
        except Exception as exc:  # noqa: BLE001 - still gone: try again later
            self.open_error = _first_line(exc)
            log.debug("speaker still unavailable: %s", self.open_error)
            self.device = None
        return self.device

    def _drop(self, reason: str) -> None:
        device, self.device = self.device, None
        self.device_failures += 1
        self._last_try = self._clock()
        if device is not None:
            try:
                device.close()
            except Exception:  # noqa: BLE001 - a vanished device may fail to close
                log.debug("closing the speaker failed", exc_info=True)
        self._lost(reason)

    def _lost(self, reason: str) -> None:
        if self.available:
            log.warning("speaker lost (%s): printing what the coach says until it is back", reason)
        self.available = False

    def _back(self) -> None:
        self.available = True
        log.warning("speaker is back")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TextSpeaker:
    """No speaker: log what would have been said and keep a text trace on stdout."""

    def __init__(self, renderer: Renderer | None = None, stream: Any = None) -> None:
        self.renderer = renderer
        self.stream = stream if stream is not None else sys.stdout

    def say(self, text: str) -> float:
        print(f"coach: {text}", file=self.stream, flush=True)
        return 0.0

    def stop(self) -> None:
        pass

    @property
    def speaking(self) -> bool:
        return False

    @property
    def current_text(self) -> str | None:
        return None

    def close(self) -> None:
        pass
