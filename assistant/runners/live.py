"""``cramp-coach``: the live, hands-free coach on a microphone and a speaker.

One loop on the real monotonic clock: microphone blocks (read in their own thread by
:mod:`assistant.speech_in.audio`) → endpointer (:mod:`assistant.speech_in.vad`) → recognizer in the
grammar :class:`~assistant.runners.turn_taking.TurnTaking` picks for the utterance → coach → speech.
Ticks and silences fire between blocks, so holds count down while the coach listens or
talks, and while the microphone is unplugged. No speaker → a text trace on stdout.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.config import config_for
from assistant.conversation.events import MICROPHONE, SPEAKER
from assistant.speech_in.pipeline import (  # noqa: F401 - BARGE_IN_MAX_SECONDS, RECOGNIZER_RETRIES: re-exported
    BARGE_IN_MAX_SECONDS,
    RECOGNIZER_RETRIES,
    Decoded,
    ThreadedDecoder,
    UtteranceContext,
    UtterancePipeline,
)
from assistant.speech_in.recognizers import Transcript

if TYPE_CHECKING:
    from assistant.conversation.timers import Clock
    from assistant.runners.session import EventLog
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.vad import Endpointer
    from assistant.speech_out.render import CachedRenderer
    from assistant.speech_out.speakers import Speaker

log = logging.getLogger(__name__)


SHUTDOWN_SPEECH_LIMIT = 8.0
"""Seconds the parting line may take when the coach is stopped mid-episode (a service
manager allows far more; a second Ctrl-C cuts it short)."""

RECOGNIZER_HANG_SECONDS = 10.0
"""A single recognizer call taking this long is stuck (decoding a long utterance takes
well under a second): its thread is abandoned and a fresh recognizer takes over."""

RecognizerWorker = ThreadedDecoder
"""The live loop's decoder: the pipeline's recognizer side on its own thread."""


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
        self.recognizer_factory = recognizer_factory
        self.pipeline = UtterancePipeline(
            ThreadedDecoder(recognizer, turn_taking.intent_set, recognizer_factory, now=clock.now),
            endpointer, turn_taking.utterance_started, lambda: getattr(self.tt.speaker, "history", None))
        self.deaf = False
        """The recognizer got stuck and could not be replaced: nothing can be heard."""
        self.endpointer = endpointer
        self.clock = clock
        self.running = True
        self.stop_reason: str | None = None
        """The signal that asked the loop to stop, if one did."""
        self.device_ok = {MICROPHONE: True, SPEAKER: True}
        """What the coach was last told about each device."""
        self._overflows_seen = 0
        self._overflow_row_at = -self.OVERFLOW_LOG_SECONDS

    @property
    def worker(self) -> ThreadedDecoder:
        """The recognizer side of the pipeline (replaced when it gets stuck)."""
        decoder = self.pipeline.decoder
        assert isinstance(decoder, ThreadedDecoder)
        return decoder

    @property
    def ctx(self) -> UtteranceContext | None:
        """The utterance under way, if any."""
        return self.pipeline.ctx

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
        self.pipeline.feed(samples, t)

    def _watch_devices(self) -> None:
        """Turn device state into events for the coach (on transitions only)."""
        mic_ok = bool(getattr(self.mic, "available", True)) if self.mic is not None else True
        mic_ok = mic_ok and not self.deaf
        if mic_ok != self.device_ok[MICROPHONE]:
            self.device_ok[MICROPHONE] = mic_ok
            if not mic_ok:  # cut off mid-utterance: nothing to decode
                self.pipeline.abort()
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
        if not old.hung(RECOGNIZER_HANG_SECONDS):
            return
        log.error("the recognizer has been stuck for %.0f s; abandoning it", RECOGNIZER_HANG_SECONDS)
        self.tt.events.write({"type": "recognizer_hung", "seconds": RECOGNIZER_HANG_SECONDS})
        self.pipeline.decoder = ThreadedDecoder(None, self.tt.intent_set, self.recognizer_factory,
                                                now=self.clock.now)
        owed = [self.pipeline.settle(ctx) for ctx in list(old.owed)]
        if self.ctx is not None:  # the utterance in progress went to the stuck one
            self.pipeline.drop()
            self.tt.user_speaking = False
        for ctx in owed:  # heard, not understood: the coach moves on
            if ctx is not None:
                self.tt.heard(Decoded(ctx, Transcript("", 0.0), None))
        old.owed.clear()
        self.deaf = self.recognizer_factory is None  # (the next device check tells the coach)

    def _results(self) -> None:
        for row in self.pipeline.error_rows():
            self.tt.events.write(row)
        for decoded in self.pipeline.results():
            if not decoded.ctx.too_long:
                log.info("heard %r -> %s", decoded.transcript.text, decoded.intent)
            self.tt.heard(decoded)

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


def make_speaker(renderer: CachedRenderer | None, device: str | int | None, events: EventLog) -> Speaker:
    """The speaker; while there is none (or it fails) a text trace on stdout, and it is
    tried again every few seconds (logged, never fatal)."""
    from assistant.speech_out.speakers import DeviceSpeaker, ResilientSpeaker

    assert renderer is not None, "the live coach needs a voice"
    speaker = ResilientSpeaker(renderer, lambda: DeviceSpeaker(renderer, device))
    if speaker.device is None:
        log.warning("no speaker (%s): the coach will print what it says instead", speaker.open_error)
        events.write({"type": "no_speaker", "error": speaker.open_error})
    return speaker


def run_live(args: argparse.Namespace) -> int:
    from assistant.conversation.timers import MonotonicClock
    from assistant.runners.memory import return_big_buffers_to_the_system
    from assistant.runners.session import build_session
    from assistant.runners.signals import EXIT_CODES, graceful_shutdown
    from assistant.speech_in.audio import check_microphone, open_microphone, parse_device
    from assistant.speech_in.vad import Endpointer

    return_big_buffers_to_the_system()  # days of audio buffers must not fragment the heap
    config = config_for(args)
    clock = MonotonicClock()
    input_device = parse_device(config.input_device)
    check_microphone(input_device)  # no mic → UserFacingError with the way out, before loading anything
    output_device = parse_device(config.output_device)
    run = build_session(config, clock, lambda renderer, events: make_speaker(renderer, output_device, events),
                        events=_path(getattr(args, "log_events", None)), seed=getattr(args, "seed", None))
    mic = open_microphone(input_device)  # opened last: model loading must not stall its stream
    loop = LiveLoop(run.turn_taking, mic, run.recognizer, Endpointer(), clock,
                    recognizer_factory=run.recognizer_factory)
    print("Cramp Coach is listening. Say \"my foot is cramping\" when it happens. Ctrl-C quits.", flush=True)
    with graceful_shutdown(loop.request_stop):
        try:
            loop.run()
            loop.wind_down()
        finally:
            if mic.overflows or mic.dropped:
                log.warning("microphone overflows: %d, dropped blocks: %d", mic.overflows, mic.dropped)
            mic.close()
            run.speaker.close()
            log.info("microphone and speaker released")
            run.close()
            log.info("diary closed")
    return EXIT_CODES.get(loop.stop_reason or "", 0)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
