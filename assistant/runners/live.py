"""``cramp-coach``: the live, hands-free coach on a microphone and a speaker.

One loop on the real monotonic clock: microphone blocks (read in their own thread by
:mod:`assistant.speech_in.audio`) → endpointer (:mod:`assistant.speech_in.vad`) → recognizer in the
grammar :class:`~assistant.runners.turn_taking.TurnTaking` picks for the utterance → coach → speech.
Ticks and silences fire between blocks, so holds count down while the coach listens or
talks, and while the microphone is unplugged. No speaker → a text trace on stdout.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.config import config_for
from assistant.conversation.events import MICROPHONE, SPEAKER
from assistant.speech_in.echo import echo_score

if TYPE_CHECKING:
    from assistant.conversation.timers import Clock
    from assistant.runners.session import EventLog, Session
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.vad import Endpointer
    from assistant.speech_out.render import CachedRenderer
    from assistant.speech_out.speakers import Speaker

log = logging.getLogger(__name__)


SHUTDOWN_SPEECH_LIMIT = 8.0
"""Seconds the parting line may take when the coach is stopped mid-episode (a service
manager allows far more; a second Ctrl-C cuts it short)."""

BARGE_IN_MAX_SECONDS = 2.0
"""A barge-in word is short: audio beyond this, begun while the coach talks, is its own
voice or noise — it is not decoded (decoding it would only cost time)."""


RECOGNIZER_RETRIES = 3
"""Utterances in a row the recognizer may fail on before it is created afresh."""

RECOGNIZER_HANG_SECONDS = 10.0
"""A single recognizer call taking this long is stuck (decoding a long utterance takes
well under a second): its thread is abandoned and a fresh recognizer takes over."""


class RecognizerWorker:
    """Runs the recognizer in its own thread so decoding never delays a countdown cue.

    Every utterance gets a result. When the recognizer raises (or returns something that
    is not a transcript) the utterance is reported as heard-but-empty, so the coach says
    it didn't catch that and the silence re-prompts keep working; after
    ``RECOGNIZER_RETRIES`` failed utterances in a row a ``factory`` recreates it.
    """

    def __init__(self, recognizer: Any, intent_set: Any, factory: Callable[[], Any] | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.recognizer = recognizer
        """None: made by ``factory`` on the worker's own thread before the first job."""
        self.intent_set = intent_set
        self.factory = factory
        self._now = now
        self.busy_since: float | None = None
        """When the job now running began (``now`` clock); None while waiting for work."""
        self.owed: collections.deque[Any] = collections.deque()
        """Contexts of ended utterances whose result has not been posted yet."""
        self._jobs: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.results: queue.Queue[tuple[Any, Any, Any]] = queue.Queue()
        self.errors: queue.Queue[dict[str, Any]] = queue.Queue()
        """Event-log rows about failures (read by the loop, which owns the log)."""
        self.failures = 0
        """Failed utterances in a row."""
        self.recreated = 0
        self._failed = False
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="recognizer", daemon=True)
        self._thread.start()

    def start(self, ctx: Any) -> None:
        self._put("start", ctx)

    def audio(self, pcm: bytes) -> None:
        self._put("audio", pcm)

    def end(self, ctx: Any) -> None:
        self.owed.append(ctx)
        self._put("end", ctx)

    def hung(self, limit: float = RECOGNIZER_HANG_SECONDS) -> bool:
        """One call has been running ``limit`` seconds: the recognizer is stuck."""
        since = self.busy_since
        return since is not None and self._now() - since >= limit

    def _post(self, ctx: Any, transcript: Any, match: Any) -> None:
        if self.owed and self.owed[0] is ctx:
            self.owed.popleft()
        self.results.put((ctx, transcript, match))

    def abort(self) -> None:
        """Drop the utterance in progress without a result (the microphone went away)."""
        self._put("abort", None)

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
            self.busy_since = self._now()
            try:
                if self.recognizer is None and self.factory is not None:
                    self._create()
                self._do(kind, data)
            finally:
                self.busy_since = None
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _do(self, kind: str, data: Any) -> None:
        from assistant.speech_in.recognizers import Transcript, understand

        if kind == "start":
            self._failed = False
        elif self._failed and kind == "audio":
            return  # this utterance is lost already; don't log the same failure per block
        try:
            if kind == "start":
                self.recognizer.set_context(list(data.intents))
                self.recognizer.start_utterance()
            elif kind == "audio":
                self.recognizer.accept_audio(data)
            elif kind == "abort":
                self.recognizer.end_utterance()
            elif not self._failed:
                transcript = _checked(self.recognizer.end_utterance())
                match = understand(self.intent_set, transcript, list(data.intents))
                self.failures = 0
                self._post(data, transcript, match)
        except Exception as exc:  # noqa: BLE001 - one bad utterance must not end the coach
            log.exception("recognizer failed on %s", kind)
            self.errors.put({"type": "recognizer_error", "stage": kind, "error": _first_line(exc)})
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
            self.errors.put({"type": "recognizer_error", "stage": "create", "error": _first_line(exc)})
            return False
        return True


def _checked(transcript: Any) -> Any:
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LiveLoop:
    """Microphone in, coach in the middle, speaker out.

    Device faults never stop it: a microphone or speaker that goes away (or comes back)
    becomes a ``DeviceLost``/``DeviceBack`` event for the coach, microphone overflows are
    counted into the event log, and the recognizer worker answers every utterance.
    """

    OVERFLOW_LOG_SECONDS = 1.0
    """At most one ``mic_overflow`` event-log row this often."""

    def __init__(self, turn_taking: TurnTaking, mic: Any, recognizer: Any, endpointer: Endpointer,
                 clock: Clock, recognizer_factory: Callable[[], Any] | None = None) -> None:
        self.tt = turn_taking
        self.mic = mic
        self.worker = RecognizerWorker(recognizer, turn_taking.intent_set, recognizer_factory, now=clock.now)
        self.recognizer_factory = recognizer_factory
        self.deaf = False
        """The recognizer got stuck and could not be replaced: nothing can be heard."""
        self.endpointer = endpointer
        self.clock = clock
        self.ctx: Any = None
        self.fed_seconds = 0.0
        self.running = True
        self.stop_reason: str | None = None
        """The signal that asked the loop to stop, if one did."""
        self.device_ok = {MICROPHONE: True, SPEAKER: True}
        """What the coach was last told about each device."""
        self._overflows_seen = 0
        self._overflow_row_at = -self.OVERFLOW_LOG_SECONDS

    def step(self, max_wait: float = 0.05) -> None:
        """Wait for audio (up to the next deadline) and handle whatever is due."""
        self._watch_devices()
        self._watch_recognizer()
        wake = self.tt.next_wakeup()
        wait = max_wait if wake is None else max(0.0, min(max_wait, wake - self.clock.now()))
        chunk = self.mic.read(wait) if self.mic is not None else None
        if self.mic is None:
            time.sleep(wait)
        if chunk is not None and len(chunk.samples) and not self.deaf:
            self._audio(chunk.samples, chunk.t)
        self._results()
        self.tt.poll()

    def _audio(self, samples: np.ndarray, t: float) -> None:
        seg = self.endpointer.process(samples)
        if seg.started:
            self.ctx = self.tt.utterance_started()
            self.fed_seconds = 0.0
            self.utterance: list[np.ndarray] = []
            self.worker.start(self.ctx)
            log.debug("speech started (barge-in grammar: %s)", self.ctx.barge_in)
        if self.ctx is not None:
            self.utterance.extend(seg.audio)
            for block in seg.audio:
                if self.ctx.barge_in and self.fed_seconds >= BARGE_IN_MAX_SECONDS:
                    break
                self.worker.audio(block.tobytes())
                self.fed_seconds += len(block) / 16000
        if seg.ended and self.ctx is not None:
            ctx = self.ctx
            if ctx.coach_text:  # begun over (or just after) the coach's voice: is it its echo?
                history = getattr(self.tt.speaker, "history", None)
                if history is not None and self.utterance:
                    score = echo_score(np.concatenate(self.utterance), t, history)
                    ctx = dataclasses.replace(ctx, echo_score=score)
                    log.debug("echo score %.2f", score)
            if ctx.barge_in and self.fed_seconds >= BARGE_IN_MAX_SECONDS:
                ctx = dataclasses.replace(ctx, too_long=True)
            self.worker.end(ctx)
            self.ctx = None

    def _watch_devices(self) -> None:
        """Turn device state into events for the coach (on transitions only)."""
        mic_ok = bool(getattr(self.mic, "available", True)) if self.mic is not None else True
        mic_ok = mic_ok and not self.deaf
        if mic_ok != self.device_ok[MICROPHONE]:
            self.device_ok[MICROPHONE] = mic_ok
            if not mic_ok and self.ctx is not None:  # cut off mid-utterance: nothing to decode
                self.worker.abort()
                self.ctx = None
            if not mic_ok:
                self.endpointer.reset()
            self.tt.device_changed(MICROPHONE, mic_ok)
        overflows = int(getattr(self.mic, "overflows", 0) or 0)
        now = self.clock.now()
        if overflows > self._overflows_seen and now - self._overflow_row_at >= self.OVERFLOW_LOG_SECONDS:
            self.tt.events.write({"type": "mic_overflow", "blocks": overflows - self._overflows_seen,
                                  "total": overflows})
            self._overflows_seen = overflows
            self._overflow_row_at = now
        check = getattr(self.tt.speaker, "check", None)
        if check is not None:
            check()
        speaker_ok = bool(getattr(self.tt.speaker, "available", True))
        if speaker_ok != self.device_ok[SPEAKER]:
            self.device_ok[SPEAKER] = speaker_ok
            self.tt.device_changed(SPEAKER, speaker_ok)

    def _watch_recognizer(self) -> None:
        """A recognizer stuck in one call: abandon its thread, answer what it owed, start afresh.

        Without a way to make a new recognizer the coach cannot hear any more, and says so
        (as for a lost microphone) rather than waiting for an answer that never comes.
        """
        old = self.worker
        if not old.hung():
            return
        log.error("the recognizer has been stuck for %.0f s; abandoning it", RECOGNIZER_HANG_SECONDS)
        self.tt.events.write({"type": "recognizer_hung", "seconds": RECOGNIZER_HANG_SECONDS})
        self.worker = RecognizerWorker(None, self.tt.intent_set, self.recognizer_factory, now=self.clock.now)
        if self.ctx is not None:  # the utterance in progress went to the stuck one
            self.ctx = None
            self.endpointer.reset()
            self.tt.user_speaking = False
        for ctx in list(old.owed):  # heard, not understood: the coach moves on
            self.tt.utterance_ended(ctx, "", 0.0, None, {})
        old.owed.clear()
        self.deaf = self.recognizer_factory is None  # (the next device check tells the coach)

    def _results(self) -> None:
        while True:
            try:
                row = self.worker.errors.get_nowait()
            except queue.Empty:
                break
            self.tt.events.write(row)
        while True:
            try:
                ctx, transcript, match = self.worker.results.get_nowait()
            except queue.Empty:
                return
            if getattr(ctx, "too_long", False):
                self.tt.utterance_ended(ctx, transcript.text, transcript.confidence, None, {})
                continue
            log.info("heard %r -> %s", transcript.text, match.intent if match else None)
            self.tt.utterance_ended(ctx, transcript.text, transcript.confidence,
                                    match.intent if match else None, match.slots if match else {})

    def run(self) -> None:
        self.tt.start()
        while self.running:
            self.step()

    def request_stop(self, reason: str) -> None:
        """From a signal handler: the loop ends after the current block, at a safe point."""
        self.stop_reason = reason
        self.running = False

    def wind_down(self, limit: float = SHUTDOWN_SPEECH_LIMIT) -> None:
        """Let the coach close the episode (diary first) and say its parting line, bounded."""
        self.tt.shutdown(self.stop_reason or "shutdown")
        end = time.monotonic() + limit
        while self.tt.busy and time.monotonic() < end:
            self.tt.pump()
            time.sleep(0.02)


def make_speaker(renderer: CachedRenderer, device: str | int | None, events: EventLog) -> Speaker:
    """The speaker; while there is none (or it fails) a text trace on stdout, and it is
    tried again every few seconds (logged, never fatal)."""
    from assistant.speech_out.speakers import DeviceSpeaker, ResilientSpeaker

    speaker = ResilientSpeaker(renderer, lambda: DeviceSpeaker(renderer, device))
    if speaker.device is None:
        log.warning("no speaker (%s): the coach will print what it says instead", speaker.open_error)
        events.write({"type": "no_speaker", "error": speaker.open_error})
    return speaker


def run_live(args: argparse.Namespace) -> int:
    from assistant.conversation.timers import MonotonicClock
    from assistant.runners.memory import return_big_buffers_to_the_system
    from assistant.runners.session import EventLog, open_session
    from assistant.runners.signals import EXIT_CODES, graceful_shutdown
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.audio import check_microphone, open_microphone, parse_device
    from assistant.speech_in.recognizers import create_recognizer
    from assistant.speech_in.vad import Endpointer
    from assistant.speech_out.render import VoiceSettings, create_renderer

    return_big_buffers_to_the_system()  # days of audio buffers must not fragment the heap
    config = config_for(args)
    clock = MonotonicClock()
    input_device = parse_device(config.input_device)
    check_microphone(input_device)  # no mic → UserFacingError with the way out, before loading anything
    session = open_session(config, clock, seed=getattr(args, "seed", None))
    events = EventLog(_path(getattr(args, "log_events", None)), clock)
    renderer = create_renderer(VoiceSettings(config.tts, config.voice, config.rate, config.volume))
    _prewarm(renderer, session)
    speaker = make_speaker(renderer, parse_device(config.output_device), events)
    recognizer = create_recognizer(session.content.intents, config.engine, config.model_path)
    tt = TurnTaking(session, clock, speaker, events)
    mic = open_microphone(input_device)  # opened last: model loading must not stall its stream
    loop = LiveLoop(tt, mic, recognizer, Endpointer(), clock, recognizer_factory=lambda: create_recognizer(
        session.content.intents, config.engine, config.model_path))
    print("Cramp Coach is listening. Say \"my foot is cramping\" when it happens. Ctrl-C quits.", flush=True)
    with graceful_shutdown(loop.request_stop):
        try:
            loop.run()
            loop.wind_down()
        finally:
            if mic.overflows or mic.dropped:
                log.warning("microphone overflows: %d, dropped blocks: %d", mic.overflows, mic.dropped)
            mic.close()
            speaker.close()
            log.info("microphone and speaker released")
            events.close()
            session.close()
            log.info("diary closed")
    return EXIT_CODES.get(loop.stop_reason or "", 0)


def _prewarm(renderer: CachedRenderer, session: Session) -> None:
    """Render the lines that open an episode and the countdown cues now (~10 ms each)."""
    content = session.content
    texts = [t for key in ("relief.start", "help.idle") if key in content.lines
             for t in content.lines[key].options]
    texts += [t for cue in content.countdown for t in cue.say.options]
    renderer.prewarm(text for text in texts if "{" not in text)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
