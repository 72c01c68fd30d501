"""Microphone input: a device stream in its own thread, resampled to the recognizer's rate.

PortAudio calls our callback on its own thread at the device's native rate; the callback
only copies the block into a queue (never blocks, so recognition can never make it drop
audio). :meth:`Microphone.read` resamples to 16 kHz with soxr. Overflows are counted in
the callback and logged by the watchdog, never fatal. The watchdog thread notices when
the device stops delivering (unplugged; on PulseAudio a suspended source just stalls) and
keeps trying to reopen it, so a hold's countdown carries on meanwhile. A reopened device
counts as back only once audio really arrives: a stream on a suspended source opens fine
but delivers nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from assistant.errors import UserFacingError

log = logging.getLogger(__name__)

TARGET_RATE = 16000
BLOCK_SECONDS = 0.02
OVERFLOW_LOG_SECONDS = 1.0
"""Overflows are logged at most this often (a struggling device overflows every block)."""


class InputStreamLike(Protocol):
    """The part of ``sounddevice.InputStream`` the microphone uses."""

    samplerate: float

    def start(self) -> None: ...

    def close(self, ignore_errors: bool = True) -> None: ...

    @property
    def active(self) -> bool: ...


Callback = Callable[[np.ndarray, int, Any, Any], None]
StreamFactory = Callable[[Callback], InputStreamLike]


@dataclass(frozen=True)
class Chunk:
    """A block of microphone audio at ``TARGET_RATE``."""

    samples: np.ndarray
    """Mono int16."""
    t: float
    """``time.monotonic()`` when the block's last sample was captured (about)."""


def parse_device(spec: str | int | None) -> str | int | None:
    """A config/CLI device: index ("3" → 3), name (or part of it), or None for the default."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, int):
        return spec
    return int(spec) if spec.strip().isdigit() else spec


def no_microphone_message(device: str | int | None, detail: str) -> str:
    which = f"microphone {device!r}" if device is not None else "a microphone"
    return (f"cannot open {which} ({detail}). Plug one in, pick another with --input "
            "(see 'cramp-coach devices'), or use the coach on the keyboard: cramp-coach --text")


def sounddevice_factory(device: str | int | None, block_seconds: float = BLOCK_SECONDS) -> StreamFactory:
    """Opens a real input stream at the device's native rate."""

    def open_stream(callback: Callback) -> InputStreamLike:
        import sounddevice as sd

        info = sd.query_devices(device, "input")
        rate = int(info["default_samplerate"])
        stream = sd.InputStream(device=device, samplerate=rate, channels=1, dtype="int16",
                                blocksize=int(rate * block_seconds), latency="low", callback=callback)
        log.info("microphone open: %s (%s) at %d Hz", device, info["name"], rate)
        return stream

    return open_stream


class Microphone:
    """A microphone that survives being unplugged.

    ``open_stream`` makes a started-able input stream given the callback (real devices:
    :func:`sounddevice_factory`; tests may pass a source that drops out).
    """

    def __init__(self, open_stream: StreamFactory, target_rate: int = TARGET_RATE,
                 stall_seconds: float = 2.0, retry_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._open_stream = open_stream
        self.target_rate = target_rate
        self.stall_seconds = stall_seconds
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._queue: queue.Queue[tuple[np.ndarray, float, int]] = queue.Queue(maxsize=500)
        self._stream: InputStreamLike | None = None
        self._native_rate = 0
        self._resampler: Any = None
        self._last_data = 0.0
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.overflows = 0
        """Blocks the device reported as overflowed (audio lost before we saw it)."""
        self.dropped = 0
        """Blocks dropped because nobody read the queue."""
        self.reopens = 0
        self.available = False
        """Whether the device is delivering audio now."""
        self._generation = 0
        self._opened_at = 0.0
        self._fresh = False
        """Audio has arrived since the stream was (re)opened."""
        self._trial = False
        """A reopened stream that has not delivered audio yet."""
        self._overflows_logged = 0
        self._overflow_logged_at = -OVERFLOW_LOG_SECONDS

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Open the device now; raise :class:`UserFacingError` if there is none."""
        try:
            self._open()
        except Exception as exc:
            raise UserFacingError(no_microphone_message(None, str(exc))) from None
        self._watchdog = threading.Thread(target=self._watch, name="mic-watchdog", daemon=True)
        self._watchdog.start()

    def close(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=2)
        self._close_stream()

    def _open(self, trial: bool = False) -> None:
        """Open and start a stream; a ``trial`` one is not counted available until audio arrives."""
        self._generation += 1
        generation = self._generation

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status and getattr(status, "input_overflow", False):
                self.overflows += 1  # logged by the watchdog: no I/O on the audio thread
            self._last_data = self._clock()
            if generation == self._generation:
                self._fresh = True
            try:
                self._queue.put_nowait((indata[:, 0].copy(), self._last_data, generation))
            except queue.Full:
                self.dropped += 1

        stream = self._open_stream(callback)
        self._native_rate = int(stream.samplerate)
        self._resampler = None
        self._last_data = self._opened_at = self._clock()
        self._fresh = False
        stream.start()
        self._stream = stream
        self._trial = trial
        self.available = not trial

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close(ignore_errors=True)
            except Exception:  # noqa: BLE001 - a vanished device may fail to close
                log.debug("closing the microphone failed", exc_info=True)

    def check(self) -> None:
        """One watchdog step: log overflows, notice a lost device, reopen it (tests call this)."""
        now = self._clock()
        if self.overflows > self._overflows_logged and now - self._overflow_logged_at >= OVERFLOW_LOG_SECONDS:
            self._overflow_logged_at = now
            log.warning("microphone overflow: %d block(s) of audio lost (%d in all)",
                        self.overflows - self._overflows_logged, self.overflows)
            self._overflows_logged = self.overflows
        if self._trial:
            self._check_trial(now)
            return
        if self.available:
            stream = self._stream
            stalled = now - self._last_data > self.stall_seconds
            if stream is None or not stream.active or stalled:
                log.warning("microphone lost (%s); will keep trying to reopen it",
                            "stalled" if stalled else "stream stopped")
                self.available = False
                self._close_stream()
                self._last_try = now
            return
        if now - getattr(self, "_last_try", 0.0) < self.retry_seconds:
            return
        self._last_try = now
        try:
            self._open(trial=True)
        except Exception as exc:  # noqa: BLE001 - still gone; try again later
            log.debug("microphone still unavailable: %s", exc)
            self._close_stream()

    def _check_trial(self, now: float) -> None:
        """A reopened stream: back when audio arrives, closed again if none comes."""
        stream = self._stream
        if self._fresh and stream is not None and stream.active:
            self._trial = False
            self.available = True
            self.reopens += 1
            log.warning("microphone is back (reopened %d time(s))", self.reopens)
        elif stream is None or not stream.active or now - self._opened_at > self.stall_seconds:
            log.debug("reopened microphone delivers no audio; trying again later")
            self._trial = False
            self._close_stream()
            self._last_try = now

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watchdog must never die
                log.exception("microphone watchdog")

    # -------------------------------------------------------------- reading

    def read(self, timeout: float) -> Chunk | None:
        """The next block at ``target_rate``, or None if none arrived within ``timeout``."""
        try:
            samples, t, generation = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if generation != self._generation:
            return Chunk(np.zeros(0, np.int16), t)  # a block from a closed stream
        return Chunk(self._resample(samples), t)

    def drain(self) -> None:
        """Forget queued audio (e.g. what was captured while we were not listening)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        if self._native_rate == self.target_rate:
            return samples
        if self._resampler is None:
            import soxr

            self._resampler = soxr.ResampleStream(self._native_rate, self.target_rate, 1,
                                                  dtype="int16", quality="HQ")
        return self._resampler.resample_chunk(samples)


def check_microphone(device: str | int | None) -> None:
    """Raise :class:`UserFacingError` (pointing to ``--text`` and ``devices``) if there is no such input."""
    try:
        import sounddevice as sd

        sd.query_devices(device, "input")
    except Exception as exc:  # noqa: BLE001 - PortAudio raises several types
        raise UserFacingError(no_microphone_message(device, str(exc).splitlines()[0])) from None


def open_microphone(device: str | int | None) -> Microphone:
    """The configured microphone, started; :class:`UserFacingError` when there is none."""
    check_microphone(device)
    mic = Microphone(sounddevice_factory(device))
    try:
        mic.start()
    except UserFacingError:
        raise UserFacingError(no_microphone_message(device, "the device would not open")) from None
    return mic
