"""One utterance, one way: endpointer → recognizer → clean-up → echo score → barge-in cap → understand.

The live loop, ``simulate``, ``cramp-coach recognize`` and the benchmarks all hear
through this module, so the same audio gives the same result in all four:

- :class:`UtterancePipeline` is the microphone side. It cuts a stream of blocks into
  utterances (:mod:`assistant.speech_in.vad`), asks its owner for the
  :class:`UtteranceContext` when one starts (which intents; begun over the coach's voice?),
  stops feeding a barge-in past :data:`BARGE_IN_MAX_SECONDS`, and scores the finished
  utterance against what the speaker played (:mod:`assistant.speech_in.echo`).
- :class:`Decoder` is the recognizer side: start / audio / end jobs, the recognizer's
  result made safe (:func:`checked`), then :func:`~assistant.speech_in.recognizers.understand`.
  A failing recognizer gives "heard, not understood", never an exception, and is made
  afresh after :data:`RECOGNIZER_RETRIES` failures. It runs inline (simulate, recognize,
  benchmarks: decoding takes no virtual time) or, as :class:`ThreadedDecoder`, on its own
  thread so decoding never delays a countdown cue (live).

The decision that needs the coach (echo words, barge-in grammar miss) stays in
:class:`~assistant.runners.turn_taking.TurnTaking`, which gets a :class:`Decoded` per utterance.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.speech_in.echo import echo_score

if TYPE_CHECKING:
    from assistant.conversation.intents import IntentMatch, IntentSet
    from assistant.speech_in.echo import LoudnessHistory
    from assistant.speech_in.recognizers import Transcript
    from assistant.speech_in.vad import Endpointer

log = logging.getLogger(__name__)

RATE = 16000

BARGE_IN_MAX_SECONDS = 2.0
"""A barge-in word is short: audio beyond this, begun while the coach talks, is its own
voice or noise — it is not decoded (decoding it would only cost time)."""

EARLY_DROPS = 1
"""Early decodes an utterance may drop (speech resumed) before it waits for the real end:
over a fan at 12 dB the level dips and recovers again and again, and each drop costs a
decode of everything so far (bench/results/hangover_decode.md)."""

RECOGNIZER_RETRIES = 3
"""Utterances in a row the recognizer may fail on before it is created afresh."""


@dataclass(frozen=True)
class UtteranceContext:
    """How an utterance is to be understood, fixed when it starts."""

    intents: tuple[str, ...] | None
    """The intents it may be (None: every intent, as ``recognize`` without ``--only``)."""
    barge_in: bool = False
    """Started while the coach was talking: barge-in grammar only."""
    coach_text: str = ""
    """What the coach was saying around then, up to the echo tail after (the echo gate)."""
    too_long: bool = False
    """Begun over the coach's voice and longer than any barge-in word: not a command."""
    echo_score: float = 0.0
    """How closely the sound followed what the speaker played (:mod:`assistant.speech_in.echo`)."""

    @property
    def only(self) -> list[str] | None:
        return list(self.intents) if self.intents is not None else None


@dataclass(frozen=True)
class Decoded:
    """One utterance, heard and understood (or not)."""

    ctx: UtteranceContext
    transcript: Transcript
    match: IntentMatch | None
    """None: not understood (no full match, low confidence, or a barge-in too long)."""

    @property
    def intent(self) -> str | None:
        return self.match.intent if self.match is not None else None

    @property
    def slots(self) -> dict[str, str]:
        return dict(self.match.slots) if self.match is not None else {}


def checked(transcript: Any) -> Transcript:
    """A recognizer's result made safe: text must be text; a confidence that is not a
    number in 0..1 (NaN, inf, negative) counts as no confidence at all."""
    from assistant.speech_in.recognizers import Transcript

    text = transcript.text
    if not isinstance(text, str):
        raise TypeError(f"recognizer returned {type(text).__name__} instead of text")
    try:
        confidence = float(transcript.confidence)
    except (TypeError, ValueError):
        confidence = 0.0
    if not math.isfinite(confidence) or not 0.0 <= confidence <= 1.0001:
        log.warning("recognizer confidence %r is out of range; treating it as 0", transcript.confidence)
        confidence = 0.0
    return Transcript(text, min(confidence, 1.0))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Decoder:
    """The recognizer side of the pipeline, run inline: each ended utterance gets a result.

    When the recognizer raises (or returns something that is not a transcript) the
    utterance is reported as heard-but-empty, so the coach says it didn't catch that and
    the silence re-prompts keep working; after ``RECOGNIZER_RETRIES`` failed utterances
    in a row a ``factory`` recreates it.
    """

    def __init__(self, recognizer: Any, intent_set: IntentSet, factory: Callable[[], Any] | None = None,
                 now: Callable[[], float] = time.monotonic, floor: float | None = None) -> None:
        from assistant.speech_in.recognizers import DEFAULT_FLOOR

        self.recognizer = recognizer
        """None: made by ``factory`` before the first job."""
        self.intent_set = intent_set
        self.factory = factory
        self.floor = DEFAULT_FLOOR if floor is None else floor
        self._now = now
        self.busy_since: float | None = None
        """When the job now running began (``now`` clock); None while waiting for work."""
        self.owed: collections.deque[UtteranceContext] = collections.deque()
        """Contexts of ended utterances whose result has not been posted yet."""
        self.results: queue.Queue[Decoded] = queue.Queue()
        self.errors: queue.Queue[dict[str, Any]] = queue.Queue()
        """Event-log rows about failures (read by the owner of the log)."""
        self.failures = 0
        """Failed utterances in a row."""
        self.recreated = 0
        self._failed = False

    # -- jobs (the same for inline and threaded decoding)
    def start(self, ctx: UtteranceContext) -> None:
        self._put("start", ctx)

    def audio(self, pcm: bytes) -> None:
        self._put("audio", pcm)

    def end(self, ctx: UtteranceContext) -> None:
        self.owed.append(ctx)
        self._put("end", ctx)

    def abort(self) -> None:
        """Drop the utterance in progress without a result (the microphone went away)."""
        self._put("abort", None)

    def hung(self, limit: float) -> bool:
        """One call has been running ``limit`` seconds: the recognizer is stuck."""
        since = self.busy_since
        return since is not None and self._now() - since >= limit

    def wait_idle(self, timeout: float) -> bool:
        """Block until every queued job is done (inline: always done)."""
        return True

    def _put(self, kind: str, data: Any) -> None:
        self._run(kind, data)

    def _run(self, kind: str, data: Any) -> None:
        self.busy_since = self._now()
        try:
            if self.recognizer is None and self.factory is not None:
                self._create()
            self._do(kind, data)
        finally:
            self.busy_since = None

    def _post(self, ctx: UtteranceContext, transcript: Transcript, match: IntentMatch | None) -> None:
        if self.owed and self.owed[0] is ctx:
            self.owed.popleft()
        self.results.put(Decoded(ctx, transcript, None if ctx.too_long else match))

    def _do(self, kind: str, data: Any) -> None:
        from assistant.speech_in.recognizers import Transcript, understand

        if kind == "start":
            self._failed = False
        elif self._failed and kind == "audio":
            return  # this utterance is lost already; don't log the same failure per block
        try:
            if kind == "start":
                self.recognizer.set_context(data.only)
                self.recognizer.start_utterance()
            elif kind == "audio":
                self.recognizer.accept_audio(data)
            elif kind == "abort":
                self.recognizer.end_utterance()
            elif not self._failed:
                transcript = checked(self.recognizer.end_utterance())
                match = None if data.too_long else understand(self.intent_set, transcript, data.only, self.floor)
                self.failures = 0
                self._post(data, transcript, match)
        except Exception as exc:  # noqa: BLE001 - one bad utterance must not end the coach
            log.exception("recognizer failed on %s", kind)
            self.errors.put({"type": "recognizer_error", "stage": kind, "error": first_line(exc)})
            self._failed = True
        if kind == "end" and self._failed:
            try:  # leave the decoder out of the broken utterance, if it still answers
                self.recognizer.end_utterance()
            except Exception:  # noqa: BLE001 - it is failing already
                log.debug("end_utterance after a failure", exc_info=True)
            self._post(data, Transcript("", 0.0), None)  # heard, not understood
            self.failures += 1
            if self.failures >= RECOGNIZER_RETRIES:
                self._recreate()

    def _recreate(self) -> None:
        if self.factory is None:
            return
        log.warning("the recognizer failed %d utterances in a row; creating it afresh", self.failures)
        if self._create():
            self.recreated += 1
            self.failures = 0
            self.errors.put({"type": "recognizer_recreated", "count": self.recreated})

    def _create(self) -> bool:
        assert self.factory is not None
        try:
            self.recognizer = self.factory()
        except Exception as exc:  # noqa: BLE001 - keep the old one; try again after more failures
            log.exception("could not create the recognizer")
            self.errors.put({"type": "recognizer_error", "stage": "create", "error": first_line(exc)})
            return False
        return True


class ThreadedDecoder(Decoder):
    """The same jobs on the decoder's own thread, so decoding never delays a countdown cue."""

    def __init__(self, recognizer: Any, intent_set: IntentSet, factory: Callable[[], Any] | None = None,
                 now: Callable[[], float] = time.monotonic, floor: float | None = None) -> None:
        super().__init__(recognizer, intent_set, factory, now, floor)
        self._jobs: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="recognizer", daemon=True)
        self._thread.start()

    def wait_idle(self, timeout: float) -> bool:
        """Block until every queued job is done (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _put(self, kind: str, data: Any) -> None:
        with self._idle:
            self._pending += 1
        self._jobs.put((kind, data))

    def _work(self) -> None:
        while True:
            kind, data = self._jobs.get()
            try:
                self._run(kind, data)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


class UtterancePipeline:
    """Microphone blocks in, one :class:`Decoded` per utterance out (from :meth:`results`).

    ``begin`` is asked for the context when speech starts (the turn taking knows whether
    the coach is talking); ``playback`` gives what the speaker played, for the echo score
    of an utterance begun over (or just after) the coach's voice.

    ``early`` (on everywhere, so every runner hears alike): decoding starts once the
    utterance has gone quiet (:attr:`~assistant.speech_in.vad.VadSettings.quiet_hint`) instead
    of after the endpointer's whole hangover, so on the live coach's decoder thread the
    result is (nearly) ready when the hangover confirms the end — the hangover is most of
    the reply delay. If speech resumes, that early decode is dropped and the whole
    utterance so far is decoded again, so nothing said is lost; after :data:`EARLY_DROPS`
    such drops the utterance waits for its real end (bounded wasted work in noise). The
    early decode does not see the rest of the hangover (only quiet).
    """

    def __init__(self, decoder: Decoder, endpointer: Endpointer,
                 begin: Callable[[], UtteranceContext],
                 playback: Callable[[], LoudnessHistory | None] | None = None, rate: int = RATE,
                 early: bool = True) -> None:
        self.decoder = decoder
        self.endpointer = endpointer
        self.begin = begin
        self.playback = playback
        self.rate = rate
        self.early = early
        self.ctx: UtteranceContext | None = None
        """The utterance under way, if any."""
        self.fed_seconds = 0.0
        self.early_decodes = 0
        """Early decodes started (statistics)."""
        self.early_dropped = 0
        """Early decodes dropped because speech resumed."""
        self._audio: list[np.ndarray] = []
        self._drops = 0
        """Early decodes dropped in the utterance under way."""
        self._early: UtteranceContext | None = None
        """The context the early decode of the utterance under way was ended with."""
        self._dropped: dict[int, UtteranceContext] = {}
        """Early decodes whose result is to be thrown away (by id; the value keeps it alive)."""
        self._final: dict[int, tuple[UtteranceContext, UtteranceContext]] = {}
        """Early decodes that stand: early context → the context at the real end."""
        self._held: list[Decoded] = []
        """Early results that came back before the hangover ended."""

    def feed(self, samples: np.ndarray, t: float) -> bool:
        """Audio heard up to stream time ``t``; True when an utterance ended in it."""
        n = self.endpointer.frame_len
        ended = False
        for i in range(0, len(samples), n):  # frame by frame: "went quiet" and "resumed" in order
            frame = samples[i:i + n]
            ended |= self._frame(frame, t - (len(samples) - i - len(frame)) / self.rate)
        return ended

    def _frame(self, samples: np.ndarray, t: float) -> bool:
        seg = self.endpointer.process(samples)
        if seg.started:
            self.ctx = self.begin()
            self.fed_seconds = 0.0
            self._audio = []
            self._early = None
            self.decoder.start(self.ctx)
            log.debug("speech started (barge-in grammar: %s)", self.ctx.barge_in)
        if self.ctx is None:
            return False
        if seg.started:
            self._drops = 0
        if seg.resumed and self._early is not None:  # not the end: decode the whole utterance again
            self._dropped[id(self._early)] = self._early
            self._early = None
            self.early_dropped += 1
            self._drops += 1
            self.decoder.start(self.ctx)
            self.fed_seconds = 0.0
            self._send(self._audio)
        self._audio.extend(seg.audio)
        if self._early is None:
            self._send(seg.audio)
        if seg.ended:
            self._end(t)
            return True
        if seg.went_quiet and self.early and self._early is None and self._drops < EARLY_DROPS:
            self._early = self.finish(self.ctx, t)
            self.early_decodes += 1
            self.decoder.end(self._early)
        return False

    def _send(self, blocks: list[np.ndarray]) -> None:
        assert self.ctx is not None
        for block in blocks:
            if self.ctx.barge_in and self.fed_seconds >= BARGE_IN_MAX_SECONDS:
                break
            self.decoder.audio(block.tobytes())
            self.fed_seconds += len(block) / self.rate

    def finish(self, ctx: UtteranceContext, t: float) -> UtteranceContext:
        """The context as the utterance ends: its echo score and whether it ran too long."""
        if ctx.coach_text:  # begun over (or just after) the coach's voice: is it its echo?
            history = self.playback() if self.playback is not None else None
            if history is not None and self._audio:
                score = echo_score(np.concatenate(self._audio), t, history, self.rate)
                ctx = dataclasses.replace(ctx, echo_score=score)
                log.debug("echo score %.2f", score)
        if ctx.barge_in and self.fed_seconds >= BARGE_IN_MAX_SECONDS:
            ctx = dataclasses.replace(ctx, too_long=True)
        return ctx

    def flush(self, t: float) -> bool:
        """The audio ran out mid-utterance (a file, a benchmark scene): decode what there is."""
        if self.ctx is None:
            return False
        self._end(t)
        self.endpointer.reset()
        return True

    def _end(self, t: float) -> None:
        """The utterance under way ended at ``t``: decode it, or let its early decode stand."""
        assert self.ctx is not None
        final = self.finish(self.ctx, t)
        if self._early is not None:
            self._final[id(self._early)] = (self._early, final)
        else:
            self.decoder.end(final)
        self.ctx = None
        self._early = None
        self._audio = []

    def abort(self) -> None:
        """The microphone went away mid-utterance: nothing to decode."""
        if self.ctx is not None:
            if self._early is not None:  # its result will come; nobody wants it
                self._dropped[id(self._early)] = self._early
                self._early = None
            else:
                self.decoder.abort()
            self.ctx = None
            self._audio = []
        self.endpointer.reset()

    def drop(self) -> None:
        """Forget the utterance under way without telling the decoder (it is stuck)."""
        self.ctx = None
        self._early = None
        self._audio = []
        self.endpointer.reset()

    def settle(self, ctx: UtteranceContext) -> UtteranceContext | None:
        """What an ended utterance owed by an abandoned decoder stands for: its context at
        the real end, or None for an early decode that was dropped or whose utterance is
        still going (it is forgotten with the decoder)."""
        if self._dropped.pop(id(ctx), None) is not None:
            return None
        if id(ctx) in self._final:
            return self._final.pop(id(ctx))[1]
        return None if ctx is self._early else ctx

    def results(self) -> Iterator[Decoded]:
        """Results ready now, oldest first."""
        ready: list[Decoded] = []
        held, self._held = self._held, []
        for decoded in held:
            if self._dropped.pop(id(decoded.ctx), None) is not None:
                continue  # speech resumed after this early result came back
            (ready if id(decoded.ctx) in self._final else self._held).append(decoded)
        while True:
            try:
                decoded = self.decoder.results.get_nowait()
            except queue.Empty:
                break
            key = id(decoded.ctx)
            if self._dropped.pop(key, None) is not None:
                continue  # speech resumed after this early decode
            if decoded.ctx is self._early:
                self._held.append(decoded)  # early: wait for the hangover to confirm the end
                continue
            ready.append(decoded)
        for decoded in ready:
            pair = self._final.pop(id(decoded.ctx), None)
            yield dataclasses.replace(decoded, ctx=pair[1]) if pair is not None else decoded

    def error_rows(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                yield self.decoder.errors.get_nowait()
            except queue.Empty:
                return


def decode_whole(decoder: Decoder, pcm: bytes, ctx: UtteranceContext, chunk: int = 4096) -> Decoded:
    """One pre-cut utterance (a WAV file: the file is the utterance, no endpointer) through
    the same decoder, clean-up and barge-in cap as a live one."""
    decoder.start(ctx)
    fed = 0
    cap = int(BARGE_IN_MAX_SECONDS * RATE) * 2 if ctx.barge_in else None
    for start in range(0, len(pcm), chunk):
        if cap is not None and fed >= cap:
            ctx = dataclasses.replace(ctx, too_long=True)
            break
        piece = pcm[start:start + chunk]
        decoder.audio(piece)
        fed += len(piece)
    decoder.end(ctx)
    decoder.wait_idle(60.0)
    return decoder.results.get_nowait()


def listen(decoder: Decoder, endpointer: Endpointer, audio: np.ndarray, only: Sequence[str] | None,
           block: float = 0.02) -> Iterator[tuple[float, Decoded, bool]]:
    """A stream of int16 16 kHz audio cut and decoded as the live coach does, in one context;
    yields ``(end time s, decoded, cut)`` per utterance, ``cut`` for one still going when
    the audio ran out."""
    ctx = UtteranceContext(tuple(only) if only is not None else None)
    pipeline = UtterancePipeline(decoder, endpointer, lambda: ctx)
    n = int(RATE * block)
    for i in range(0, len(audio) - n + 1, n):
        if pipeline.feed(audio[i:i + n], (i + n) / RATE):
            decoder.wait_idle(60.0)
            for decoded in pipeline.results():
                yield i / RATE, decoded, False
    if pipeline.flush(len(audio) / RATE):
        decoder.wait_idle(60.0)
        for decoded in pipeline.results():
            yield len(audio) / RATE, decoded, True
