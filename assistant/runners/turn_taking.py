"""Turn-taking between the coach and the person, shared by the live loop and ``simulate``.

Both runners own a clock, a speaker and a recognizer; this class decides *when* things
happen so the two behave the same:

- the coach's lines are queued and said one after another; a countdown cue whose
  ``deadline`` has passed by the time the speaker is free is dropped, never said late;
- ``Tick`` at ``coach.next_deadline()``: timers run while the coach listens or speaks;
- ``Silence`` when a ``Listen`` with a timeout gets no speech that long after the coach
  finished speaking;
- half-duplex with barge-in: an utterance that *starts* while the coach is speaking is
  recognized only against the tiny barge-in grammar (stop / pause / wait / repeat);
- an utterance whose loudness follows what the speaker just played is the coach's own
  voice (:mod:`assistant.speech_in.echo`), whatever the recognizer made of it;
- an echo gate rejects an utterance (begun while speaking or within ``ECHO_TAIL``
  after) whose words are all words the coach was saying at that moment — its own voice
  coming back through the microphone.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence

from assistant.conversation.dialog import BARGE_IN_INTENTS, Coach
from assistant.conversation.events import (
    MICROPHONE,
    Action,
    DeviceBack,
    DeviceLost,
    EndSession,
    Heard,
    Listen,
    Say,
    Shutdown,
    Silence,
    SpeechTiming,
    StopSpeaking,
    Tick,
)
from assistant.conversation.intents import IntentSet, normalize
from assistant.conversation.timers import Clock
from assistant.runners.session import EventLog, Session
from assistant.speech_in.echo import ECHO_LIMIT
from assistant.speech_in.pipeline import Decoded, UtteranceContext
from assistant.speech_out.speakers import Speaker

log = logging.getLogger(__name__)

ECHO_TAIL = 0.25
"""Seconds after the speaker's last sample (its latency already counted) during which the
coach's voice may still come back through the microphone (room echo, a slow speaker)."""


SpeechOut = Speaker
"""The one speaker protocol (:class:`assistant.speech_out.speakers.Speaker`); old name.

A speaker may also have the optional capability ``say_line(say: Say) -> float``; turn
taking checks for it at run time and then hands over the whole line instead of its text
(text mode marks countdown cues). It is not part of the protocol."""


class TurnTaking:
    """Feeds the coach events and carries out its actions on one clock."""

    def __init__(self, session: Session, clock: Clock, speaker: Speaker, events: EventLog) -> None:
        self.session = session
        self.coach: Coach = session.coach
        self.intent_set: IntentSet = session.content.intents
        self.clock = clock
        self.speaker = speaker
        self.events = events
        self.pending: collections.deque[Say] = collections.deque()
        self.spoken_until = clock.now() - 2 * ECHO_TAIL
        """Clock time the coach last finished (or will finish) speaking."""
        self.recent_lines: collections.deque[tuple[float, float, str]] = collections.deque(maxlen=4)
        """(start, end, text) of the last lines handed to the speaker."""
        self.silence_armed = False
        self.user_speaking = False
        self.ended = False
        self.barge_ins = 0
        self.echo_rejections = 0

    # ---------------------------------------------------------------- coach → devices

    def start(self) -> None:
        self.apply(self.coach.start())

    def shutdown(self, reason: str) -> None:
        """The runner is stopping: the coach closes the episode and queues its parting line."""
        event = Shutdown(reason)
        self.events.write(event)
        self.apply(self.coach.handle(event))

    def device_changed(self, kind: str, available: bool) -> None:
        """The microphone or speaker went away or came back: the coach explains and carries on."""
        event = DeviceBack(kind) if available else DeviceLost(kind)
        self.events.write(event)
        if kind == MICROPHONE and not available:
            self.user_speaking = False  # an utterance cut off by the loss gets no result
        actions = self.coach.handle(event)
        if kind == MICROPHONE and available:
            unsaid = [say for say in self.pending if say.key.startswith("device.mic_lost")]
            if unsaid:  # back before "I can't hear you" was even said: say neither
                self.pending = collections.deque(say for say in self.pending if say not in unsaid)
                for say in unsaid:
                    self.events.write({"type": "dropped", "text": say.text, "key": say.key, "kind": say.kind})
                actions = [a for a in actions if not (isinstance(a, Say) and a.key == "device.mic_back")]
        self.apply(actions)

    def apply(self, actions: Sequence[Action]) -> None:
        self.session.keep_records(actions)
        for action in actions:
            if isinstance(action, Say):
                self.pending.append(action)
                continue
            self.events.write(action)
            if isinstance(action, StopSpeaking):
                self.pending.clear()
                self.speaker.stop()
                self.spoken_until = min(self.spoken_until, self.clock.now())
            elif isinstance(action, Listen):
                self.silence_armed = action.silence_timeout is not None
            elif isinstance(action, EndSession):
                self.ended = True
        if any(isinstance(a, Say) and a.kind == "line" for a in actions):
            self.silence_armed = self.coach.listening.silence_timeout is not None
        self.pump()

    def pump(self) -> None:
        """Hand the next queued line to the speaker when it is free."""
        while self.pending and not self.speaker.speaking:
            say = self.pending.popleft()
            now = self.clock.now()
            if say.deadline is not None and now > say.deadline:
                self.events.write({"type": "dropped", "text": say.text, "key": say.key, "kind": say.kind})
                continue
            row = {"type": "cue" if say.kind == "cue" else "say", "text": say.text, "key": say.key,
                   "kind": say.kind}
            self.events.write(row)
            try:
                say_line = getattr(self.speaker, "say_line", None)
                duration = say_line(say) if say_line is not None else self.speaker.say(say.text)
            except Exception as exc:  # a vanished speaker must not end the session
                log.warning("could not speak (%s): %s", exc, say.text)
                duration = 0.0
            self.spoken_until = now + duration
            self.recent_lines.append((now, now + duration, say.text))
            timing = SpeechTiming(say.key, now + duration)
            self.events.write(timing)  # an input to the core: logged, so the log replays
            self.apply(self.coach.handle(timing))

    @property
    def quiet(self) -> bool:
        """Done talking, echo tail included: a person would answer now."""
        return not self.busy and self.clock.now() >= self.spoken_until + ECHO_TAIL

    @property
    def busy(self) -> bool:
        """The coach is talking or has lines waiting."""
        return bool(self.pending) or self.speaker.speaking

    # ---------------------------------------------------------------- time

    def silence_due(self) -> float | None:
        timeout = self.coach.listening.silence_timeout
        if not self.silence_armed or timeout is None or self.busy or self.user_speaking:
            return None
        return self.spoken_until + timeout

    def next_wakeup(self) -> float | None:
        """The earliest clock time something is due (a tick or a silence)."""
        times = [t for t in (self.coach.next_deadline(), self.silence_due()) if t is not None]
        return min(times) if times else None

    def poll(self) -> None:
        """Fire what is due now: ticks, silence; then keep the speaker fed."""
        now = self.clock.now()
        deadline = self.coach.next_deadline()
        if deadline is not None and now >= deadline:
            self.events.write(Tick())
            self.apply(self.coach.handle(Tick()))
        due = self.silence_due()
        if due is not None and self.clock.now() >= due:
            self.silence_armed = False
            self.events.write(Silence())
            self.apply(self.coach.handle(Silence()))
        self.pump()

    # ---------------------------------------------------------------- person → coach

    def utterance_started(self) -> UtteranceContext:
        """Called when voice activity begins: fixes the grammar for this utterance."""
        self.user_speaking = True
        now = self.clock.now()
        coach_text = " ".join(words_around(start, end, text, now)
                              for start, end, text in self.recent_lines if end + ECHO_TAIL >= now)
        if self.busy:
            return UtteranceContext(BARGE_IN_INTENTS, True, coach_text)
        return UtteranceContext(tuple(self.coach.listening.intents), False, coach_text)

    def heard(self, decoded: Decoded) -> None:
        """The pipeline's result for one utterance (:mod:`assistant.speech_in.pipeline`)."""
        self.utterance_ended(decoded.ctx, decoded.transcript.text, decoded.transcript.confidence,
                             decoded.intent, decoded.slots)

    def typed(self, text: str) -> None:
        """A line typed at the keyboard (``--text``): understood in the listening context
        like speech, at full confidence; typing has no echo and no barge-in grammar."""
        from assistant.speech_in.recognizers import Transcript, understand

        ctx = UtteranceContext(tuple(self.coach.listening.intents))
        transcript = Transcript(text, 1.0)
        self.heard(Decoded(ctx, transcript, understand(self.intent_set, transcript, ctx.only)))

    def utterance_ended(self, ctx: UtteranceContext, text: str, confidence: float,
                        match_intent: str | None, slots: dict[str, str]) -> None:
        """The recognizer's result for an utterance begun with ``ctx``."""
        self.user_speaking = False
        if ctx.echo_score >= ECHO_LIMIT:
            self.echo_rejections += 1
            self.events.write({"type": "ignored", "text": text, "reason": "echo_audio",
                               "score": round(ctx.echo_score, 2)})
            return
        if ctx.coach_text and is_echo(text, ctx.coach_text):
            self.echo_rejections += 1
            self.events.write({"type": "ignored", "text": text, "reason": "echo"})
            return
        if ctx.barge_in:
            if match_intent is None:
                log.debug("ignored while speaking: %r", text)
                self.events.write({"type": "ignored", "text": text, "reason": "while_speaking"})
                return
            self.barge_ins += 1
        heard = Heard(match_intent, slots, text, confidence)
        self.events.write(heard)
        self.silence_armed = False
        self.apply(self.coach.handle(heard))


def words_around(start: float, end: float, text: str, t: float,
                 before: float = 1.0, after: float = 2.0) -> str:
    """The words of a line spoken from ``start`` to ``end`` that fall near time ``t``.

    Word timing is estimated linearly over the line. The window reaches back ``before``
    seconds (the detector needs a moment to notice the voice) and ``after`` seconds on.
    Limiting the echo gate to this window lets the person say "stop" while the coach is
    saying "...pause, next, repeat, or stop" at the other end of the line.
    """
    words = text.split()
    if not words or end <= start:
        return text
    span = end - start
    lo = max(0, int((t - before - start) / span * len(words)))
    hi = min(len(words), int((t + after - start) / span * len(words)) + 1)
    return " ".join(words[lo:hi])


def is_echo(heard_text: str, coach_text: str) -> bool:
    """Every word heard is a word the coach is saying: probably its own voice."""
    heard = normalize(heard_text).split()
    said = set(normalize(coach_text).split())
    return bool(heard) and all(word in said for word in heard)
