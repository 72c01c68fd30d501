"""The conversation: a pure, synchronous core — events in, actions out.

No threads, devices or sleeping here: the runner (keyboard, live audio, simulation)
feeds :class:`~assistant.conversation.events.Heard`, :class:`~assistant.conversation.events.Silence` and
:class:`~assistant.conversation.events.Tick` events and carries out the actions. Time is read from an
injected clock, so tests drive a whole cramp episode in microseconds.

The flow follows the brief: idle → relief routines with timed holds and check-ins →
optional cause questions → summary and tips → back to idle, with the red-flag advice
whenever it is called for and the global commands available everywhere.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from assistant.conversation.content import Content, Cue, Phrases, Picker, Question, Routine
from assistant.conversation.events import (
    MICROPHONE,
    SPEAKER,
    Action,
    DeviceBack,
    DeviceLost,
    EndSession,
    Event,
    Heard,
    Listen,
    Record,
    Say,
    Shutdown,
    Silence,
    SpeechTiming,
    StateChanged,
    StopSpeaking,
    Tick,
)
from assistant.conversation.timers import Clock, Entry, Hold

log = logging.getLogger(__name__)



class State(StrEnum):
    """Where the conversation is. The values are the wire names in :class:`Listen`,
    :class:`StateChanged` and the event log, which other tools read: keep them."""

    IDLE = "idle"
    HOLD = "hold"
    CHECKIN = "checkin"
    OFFER = "offer"
    QUESTION = "question"
    PAUSED = "paused"
    CONFIRM = "confirm"
    """A bare "ow" or "my foot!" in idle: "Is it a cramp?" before starting a routine."""


ASKING = frozenset({State.CHECKIN, State.OFFER, State.QUESTION, State.CONFIRM})
"""States waiting for an answer: they have a silence timeout and the silence ladder."""

GLOBAL_INTENTS = ("stop", "pause", "resume", "repeat", "next", "back", "help", "time_left", "start_over")
"""Commands available in every state (:attr:`Coach._commands`)."""
ANSWERS = ("yes", "no", "unsure", "skip")
ASK_INTENTS: dict[str, str] = {"ask_causes": "causes", "ask_prevention": "prevention",
                               "ask_see_doctor": "see_doctor", "ask_why": "why"}
"""On-demand questions -> their answer in prompts/answers.yaml (in idle and after an episode)."""
# The intents each listening context accepts, in priority order (first wins on ties).
# Keyed by State, which is a str: ``CONTEXTS["idle"]`` works too.
CONTEXTS: dict[str, tuple[str, ...]] = {
    # Idle hears kitchen talk all day: besides reports and questions, only the commands that mean
    # something there ("repeat" too, just after an answer: IDLE_AFTER_ANSWER).
    State.IDLE: ("cramp_start", "pain", "diary_summary", *ASK_INTENTS, "forget_answers", "help", "stop", "pause",
                 "start_over"),
    State.HOLD: ("better", "worse", "still_cramping", "hold_longer", *GLOBAL_INTENTS, "ask_why"),
    State.CHECKIN: ("better", "still_cramping", "worse", "hold_longer", "yes", "no", "unsure", *GLOBAL_INTENTS,
                    "ask_why"),
    State.OFFER: (*ANSWERS, *GLOBAL_INTENTS, "cramp_start", "worse", *ASK_INTENTS),
    State.QUESTION: (*ANSWERS, "medication", *GLOBAL_INTENTS, "cramp_start", "worse", *ASK_INTENTS),
    State.PAUSED: ("resume", "stop", "start_over", "help", "repeat", "time_left", "next", "back", "pause",
                   "better", "worse"),
    State.CONFIRM: ("cramp_start", "yes", "no", "unsure", "pain", "worse", "better", *GLOBAL_INTENTS),
}
IDLE_AFTER_ANSWER = ("repeat",)
"""Added to the idle context for IDLE_REPEAT_WINDOW_S after the coach has said something there
that "say that again" can repeat (an answer, the diary count). Not always: on real speech in idle,
"could you pass me the salt" and "did you feed the dog" were heard as "could you say that again"."""
IDLE_REPEAT_WINDOW_S = 30.0
# While the coach is talking it only listens for these (barge-in): "worse" too, so a stretch
# that hurts more is heard over the coach's voice.
BARGE_IN_INTENTS = ("stop", "pause", "repeat", "worse")

PUBLIC_INTENTS: tuple[str, ...] = tuple(dict.fromkeys(
    name for names in (*CONTEXTS.values(), BARGE_IN_INTENTS) for name in names))
"""Every intent the coach can act on, derived from the listening contexts so it cannot drift:
the names other tools (recognize --only, the benchmarks, the speech test sets) rely on."""

REPROMPT_KEYS: dict[State, tuple[str, str]] = {
    State.CHECKIN: ("relief.checkin_short", "relief.checkin_shortest"),
    State.CONFIRM: ("relief.is_it_cramp_short", "relief.is_it_cramp_shortest"),
    State.OFFER: ("causes.offer_short", "causes.offer_shortest"),
}
"""The silence ladder's shorter prompts (questions use their own short form)."""

OFFER_KEYS: dict[str, tuple[str, str, str]] = {
    "causes": ("causes.offer", "causes.offer_short", "causes.offer_shortest"),
    "more": ("causes.more", "causes.more_short", "causes.offer_shortest"),
    "carry_on": ("causes.carry_on", "causes.carry_on_short", "causes.offer_shortest"),
}
"""The yes/no offers after relief (look at causes; a few more questions; carry on after a
red flag): the offer, then the silence ladder's shorter forms."""
SUMMARY_LINE_WORDS = 20
"""Summary lines are cut to about this many words: the person has just had a cramp."""
GRADE_ORDER = ("now", "soon", "next_visit")
"""advice.yaml grades, most urgent first."""

HELP_KEYS: dict[State, str] = {
    State.IDLE: "help.idle", State.HOLD: "help.hold", State.CHECKIN: "help.checkin",
    State.OFFER: "help.question", State.QUESTION: "help.question", State.PAUSED: "help.paused",
    State.CONFIRM: "help.confirm",
}

RELIEF_LIMIT_S = 600.0
"""A cramp still going after this long gets the red-flag advice (not during aftercare: warmth,
walking it off)."""
WORSE_LIMIT = 2
"""The first "worse" eases off into something gentler; this many in one episode means seek care."""
HOLD_LONGER_S = 15.0
"""Seconds added when someone asks to hold longer during a hold."""
PATTERN_WEEKLY_COUNT = 3
"""This many episodes in seven days adds the see-a-professional advice."""
LONG_RELIEF_S = 300.0
"""A cramp that took this long to ease adds the see-a-professional advice."""


class DiaryView(Protocol):
    """What the dialog reads from the diary (the diary module implements it)."""

    def count_since(self, since: datetime) -> int: ...

    def last_start(self) -> datetime | None: ...

    def first_use(self) -> bool: ...


@runtime_checkable
class AnswerMemory(Protocol):
    """A diary that also keeps the answers that do not change between episodes (causes.yaml
    ``remember_days``), so they are not asked every time."""

    def remembered(self) -> Mapping[str, tuple[str, datetime]]:
        """Cause id -> (yes | no, when it was answered)."""
        ...


@dataclass
class Settings:
    """Timing knobs; defaults suit a person standing in a kitchen."""

    silence_timeout: float = 8.0
    """Seconds of silence before re-prompting a question."""
    speech_rate_wpm: float = 165.0
    """Used to estimate how long a line takes to say, so a hold starts after its instruction."""
    settle_seconds: float = 1.5
    """Time to get into position after the instruction before the hold's clock starts."""
    hold_seconds: int | None = None
    """Overrides every routine's hold length (config)."""
    during_offset: float = 4.0
    """When the 'while you hold' line is said, seconds into the hold."""


@dataclass
class _Episode:
    started_at: float
    side: str | None
    location: str | None
    order: tuple[str, ...]
    routine_index: int = 0
    relief_done: bool = False
    answers: dict[str, str] = field(default_factory=dict)
    red_flags: list[str] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)
    question_index: int = -1
    relief_seconds: float | None = None
    worse_count: int = 0
    """How often they said it is getting worse during relief."""
    silent_checkins: int = 0
    """Check-ins in a row whose silence ladder ran out: two mean they have walked away."""
    advised: bool = False
    """The see-a-professional advice (or a red flag) has been given this episode."""
    offer: str = "causes"
    """Which yes/no offer is open in State.OFFER (a key of OFFER_KEYS)."""
    more_offered: bool = False
    """The "a few more questions?" offer has been made (or made moot)."""
    memory: dict[str, tuple[str, datetime]] | None = None
    """Remembered answers, read from the diary once per episode."""
    remembered_said: bool = False
    flag_lines: list[Say] = field(default_factory=list)
    """The red-flag advice last said for an answer (what "repeat" says if the questions stop there)."""
    asked_since_flag: bool = True
    """A question was asked after that advice (so the summary ends by repeating it)."""


class Coach:
    """The dialog manager. Call :meth:`start`, then :meth:`handle` for every event."""

    def __init__(
        self,
        content: Content,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        diary: DiaryView | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.content = content
        self.clock = clock
        self.picker = Picker(rng)
        self.diary = diary
        self.wall_clock = wall_clock or (lambda: datetime.now().astimezone())
        self.settings = settings or Settings()
        self.state = State.IDLE
        self.listening = Listen(State.IDLE.value, CONTEXTS[State.IDLE])
        self.hold: Hold[Cue | Phrases] | None = None
        self.episode: _Episode | None = None
        self._prompt: list[Say] = []
        self._silences = 0
        self._paused_from: State | None = None
        self._out: list[Action] = []
        self._disclaimer_due = False
        self._last_routine: str | None = None
        """The last routine of the last episode (for "why this stretch?" afterwards)."""
        self.devices_lost: set[str] = set()
        """Devices reported lost (:class:`DeviceLost`) and not back yet."""
        self._pending_slots: dict[str, str] = {}
        """Slots heard with a bare pain word, kept while asking "Is it a cramp?"."""
        self._repeat_until: float | None = None
        """Idle: until when "repeat" is heard (something was just answered); None: nothing to repeat."""
        self._repeat_for: list[Say] | None = None
        self._hold_after: str | None = None
        """Key of the line the hold starts after (its real end moves the start: SpeechTiming)."""
        # Explicit dispatch tables: every intent and state maps to one method, checked here.
        self._commands: dict[str, Callable[[], None]] = {
            "stop": self._cmd_stop, "pause": self._cmd_pause, "resume": self._cmd_resume,
            "repeat": self._cmd_repeat, "next": self._cmd_next, "back": self._cmd_back,
            "help": self._cmd_help, "time_left": self._cmd_time_left, "start_over": self._cmd_start_over,
        }
        assert set(self._commands) == set(GLOBAL_INTENTS)
        # Intents that mean the same in every state that hears them ("worse" is heard everywhere).
        self._anywhere: dict[str, Callable[[dict[str, str]], None]] = {"worse": self._on_worse}
        # State-specific intents; a handler returns False when the intent means nothing there.
        self._handlers: dict[State, Callable[[str, dict[str, str]], bool]] = {
            State.IDLE: self._in_idle, State.HOLD: self._in_hold, State.CHECKIN: self._in_checkin,
            State.OFFER: self._in_offer, State.QUESTION: self._in_question, State.PAUSED: self._in_paused,
            State.CONFIRM: self._in_confirm,
        }
        # The silence ladder's last step in each asking state: never a dead end.
        self._safe_defaults: dict[State, Callable[[], None]] = {
            State.CHECKIN: self._default_checkin, State.OFFER: self._default_offer,
            State.QUESTION: self._default_question, State.CONFIRM: self._default_confirm,
        }
        assert set(self._handlers) == set(State) and set(self._safe_defaults) == ASKING

    # ------------------------------------------------------------------ public API

    def start(self) -> list[Action]:
        """Actions to begin with: listen in the idle context."""
        self._set_state(State.IDLE, force=True)
        return self._flush()

    def handle(self, event: Event) -> list[Action]:
        """Process one event and return what to do, in order."""
        if isinstance(event, Heard):
            self._on_heard(event)
        elif isinstance(event, Silence):
            self._on_silence()
        elif isinstance(event, Tick):
            self._on_tick()
        elif isinstance(event, SpeechTiming):
            self._on_speech_timing(event)
        elif isinstance(event, Shutdown):
            self._on_shutdown(event)
        elif isinstance(event, DeviceLost | DeviceBack):
            self._on_device(event)
        else:  # pragma: no cover - typing guards this
            raise TypeError(f"not an event: {event!r}")
        return self._flush()

    def next_deadline(self) -> float | None:
        """Clock time at which the runner should send the next :class:`Tick`."""
        times: list[float] = []
        if self.hold is not None and self.state == State.HOLD:
            nxt = self.hold.next_due()
            if nxt is not None:
                times.append(nxt)
        limit = self._relief_limit()
        if limit is not None:
            times.append(limit)
        if self.state == State.IDLE and self._repeat_until is not None:
            times.append(self._repeat_until)
        return min(times) if times else None

    def time_left(self) -> float | None:
        """Seconds left in the current hold (None when no hold is running)."""
        if self.hold is None:
            return None
        return self.hold.remaining(self.clock.now())

    # ------------------------------------------------------------------ helpers: output

    def _say(self, phrases: Phrases, fields: dict[str, object] | None = None, *,
             kind: str = "line", deadline: float | None = None) -> Say:
        say = Say(self.picker.pick(phrases, **(fields or {})), phrases.key, kind, deadline)
        self._out.append(say)
        return say

    def _line(self, key: str, **fields: object) -> Say:
        return self._say(self.content.lines[key], fields)

    def _prompt_with(self, *says: Say) -> None:
        """Remember the current prompt (what 'repeat' says again)."""
        self._prompt = list(says)
        self._silences = 0

    def _record(self, kind: str, **data: object) -> None:
        self._out.append(Record(kind, dict(data)))

    def _set_state(self, state: State, force: bool = False) -> None:
        if state != self.state or force:
            self._out.append(StateChanged(state.value))
        self.state = state
        timeout = self.settings.silence_timeout if state in ASKING else None
        self.listening = Listen(state.value, CONTEXTS[state], timeout)
        self._out.append(self.listening)

    def _flush(self) -> list[Action]:
        if self.state == State.IDLE:
            self._idle_listening()
        out, self._out = self._out, []
        return out

    def _idle_listening(self) -> None:
        """Idle listens for "repeat" only while there is a fresh answer to repeat."""
        if not self._prompt:
            self._repeat_until = self._repeat_for = None
        elif self._prompt is not self._repeat_for:
            self._repeat_until, self._repeat_for = self.clock.now() + IDLE_REPEAT_WINDOW_S, self._prompt
        wanted = CONTEXTS[State.IDLE] + (IDLE_AFTER_ANSWER if self._repeat_until is not None else ())
        if self.listening.intents != wanted:
            self.listening = Listen(State.IDLE.value, wanted)
            self._out.append(self.listening)

    def _foot(self) -> str:
        side = self.episode.side if self.episode else None
        if side:
            return self.picker.pick(self.content.lines["words.foot_side"], side=side)
        return self.picker.pick(self.content.lines["words.foot_unknown"])

    def _speech_seconds(self, *texts: str) -> float:
        words = sum(len(t.split()) for t in texts)
        return words / (self.settings.speech_rate_wpm / 60.0)

    # ------------------------------------------------------------------ events

    def _on_heard(self, heard: Heard) -> None:
        intent = heard.intent
        if intent is None:
            self._not_understood()
            return
        if self.episode is not None:
            self.episode.silent_checkins = 0  # someone is there
        command = self._commands.get(intent)
        anywhere = self._anywhere.get(intent)
        if command is not None:
            command()
        elif anywhere is not None:
            anywhere(heard.slots)
        elif not self._handlers[self.state](intent, heard.slots):
            self._not_understood()

    def _on_silence(self) -> None:
        if self.state not in ASKING:
            return
        if MICROPHONE in self.devices_lost:  # it cannot hear an answer: no re-prompts
            self._safe_default()
            return
        self._silences += 1
        if self._silences == 1:
            self._reprompt(level=1)
        elif self._silences == 2:
            self._reprompt(level=2)
        else:
            self._safe_default()

    def _on_speech_timing(self, timing: SpeechTiming) -> None:
        """Start the hold when its last step has really been said, not when estimated."""
        hold = self.hold
        if self.state == State.HOLD and hold is not None and hold.untouched and not hold.paused \
                and timing.key == self._hold_after:
            hold.started_at = timing.ends_at + self.settings.settle_seconds

    def _on_shutdown(self, event: Shutdown) -> None:
        """Stopped mid-episode: a parting line, and the diary entry closed as interrupted."""
        ep = self.episode
        if ep is None:
            return
        self._out.append(StopSpeaking())
        self._line("session.shutdown")
        if not ep.relief_done:
            self._record("outcome", result="interrupted")
        self._finish_episode(closing=False, interrupted_by=event.reason or "shutdown")

    def _on_device(self, event: DeviceLost | DeviceBack) -> None:
        """Say what a device change means for the person; the schedule carries on regardless."""
        lost = isinstance(event, DeviceLost)
        if lost == (event.kind in self.devices_lost):
            return  # no change
        if lost:
            self.devices_lost.add(event.kind)
        else:
            self.devices_lost.discard(event.kind)
        asks = self.state in ASKING
        if event.kind == MICROPHONE:
            if lost:
                in_episode = self.episode is not None and self.state != State.PAUSED
                self._line("device.mic_lost" if in_episode else "device.mic_lost_idle")
                return
            self._line("device.mic_back")
        elif event.kind == SPEAKER:
            if lost or self.state == State.IDLE:
                return  # it cannot speak; the runner prints and logs
            self._line("device.speaker_back")
        if asks:  # the question may have gone unheard, or its answer unheard: ask again
            self._silences = 0
            self._repeat_prompt()

    def _not_understood(self) -> None:
        if self.state == State.IDLE:
            return  # idle hears kitchen talk all day: say nothing
        self._line("commands.not_understood")
        if self.state in ASKING:  # an answer we could not use counts like silence
            self._on_silence()

    def _on_tick(self) -> None:
        now = self.clock.now()
        if self.state == State.IDLE and self._repeat_until is not None and now >= self._repeat_until:
            self._prompt = []  # too long ago to "say that again": idle narrows again (_flush)
        limit = self._relief_limit()
        if limit is not None and now >= limit:
            self._red_flag_in_relief("too_long")
            return
        if self.hold is None or self.state != State.HOLD:
            return
        for entry, due in self.hold.pop_due(now):
            payload = entry.payload
            if isinstance(payload, Cue):
                deadline = None if not entry.droppable else due + self.hold.late_tolerance
                self._say(payload.say, kind="cue", deadline=deadline)
                if payload.left == 0:
                    self._hold_finished()
                    return
            else:
                self._say(payload, deadline=due + self.hold.late_tolerance)
                if payload.key == "relief.disclaimer":
                    self._disclaimer_due = False

    # ------------------------------------------------------------------ idle

    def _in_idle(self, intent: str, slots: dict[str, str]) -> bool:
        if intent == "cramp_start":
            self._begin_episode(slots)
        elif intent == "pain":
            self._ask_if_cramp(slots)
        elif intent == "diary_summary":
            self._diary_summary(slots.get("period", "week"))
        elif intent in ASK_INTENTS:
            self._answer(intent)
        elif intent == "forget_answers":  # the spoken twin of 'cramp-coach diary --forget-answers'
            self._record("forget_remembered")
            self._prompt_with(self._line("causes.forgotten"))
        else:
            return False
        return True

    def _begin_episode(self, slots: dict[str, str]) -> None:
        location = slots.get("location")
        order = self.content.order.get(location or "default", self.content.order["default"])
        self._disclaimer_due = self.diary is None or self.diary.first_use()
        self.episode = _Episode(self.clock.now(), slots.get("side"), location, order)
        self._record("episode_start", side=self.episode.side, location=location)
        self._start_routine(0, intro="relief.start")

    def _diary_summary(self, period: str) -> None:
        if self.diary is None:
            self._prompt_with(self._line("diary.unavailable"))
            return
        now = self.wall_clock()
        if period == "last":
            last = self.diary.last_start()
            if last is None:
                say = self._line("diary.last_none")
            else:
                last = last.astimezone(now.tzinfo) if now.tzinfo else last
                days = (now.date() - last.date()).days
                time_text = last.strftime("%H:%M")
                if days <= 0:
                    say = self._line("diary.last_today", time=time_text)
                elif days == 1:
                    say = self._line("diary.last_yesterday", time=time_text)
                else:
                    say = self._line("diary.last_days", days=days)
        else:
            span = "month" if period == "month" else "week"
            count = self.diary.count_since(now - timedelta(days=30 if span == "month" else 7))
            suffix = "_zero" if count == 0 else "_one" if count == 1 else ""
            say = self._line(f"diary.count_{span}{suffix}", count=count)
        self._prompt_with(say)

    # ------------------------------------------------------------------ relief

    def _routine(self) -> Routine:
        assert self.episode is not None
        return self.content.routines[self.episode.order[self.episode.routine_index]]

    def _start_routine(self, index: int, intro: str | None = None,
                       intro_fields: dict[str, object] | None = None) -> None:
        ep = self.episode
        assert ep is not None
        ep.routine_index = index
        routine = self._routine()
        self._record("routine", name=routine.id)
        said: list[Say] = []
        if intro is not None:
            said.append(self._line(intro, **(intro_fields or {})))
        said += [self._say(step, {"foot": self._foot()}) for step in routine.all_steps]
        self._prompt_with(*said)
        self._begin_hold(said, self.settings.hold_seconds or routine.hold_seconds, quiet_line=True)

    def _begin_hold(self, said: list[Say], duration: float, quiet_line: bool) -> None:
        """The hold of the current routine, starting once ``said`` has been said and the person is in place."""
        routine = self._routine()
        starts = self.clock.now()
        if said:  # after the lines, time to get into position (holding longer: they already are)
            starts += self._speech_seconds(*(s.text for s in said)) + self.settings.settle_seconds
        self._hold_after = said[-1].key if said else None
        entries: list[Entry[Cue | Phrases]] = [
            Entry(duration - cue.left, cue, droppable=cue.left != 0, merge_group="countdown")
            for cue in routine.countdown or self.content.countdown if cue.left < duration
        ]
        # One quiet-moment line, if it fits before the first cue: the first-use disclaimer, else a tip.
        quiet = self._first_cue_offset(entries) - self.settings.during_offset
        candidates = [self.content.lines["relief.disclaimer"]] if self._disclaimer_due else []
        candidates += [routine.during] if routine.during is not None else []
        for extra in candidates if quiet_line else []:
            if quiet >= self._speech_seconds(max(extra.options, key=len)) + 1.0:
                entries.append(Entry(self.settings.during_offset, extra))
                break
        self.hold = Hold(duration, starts, entries)
        self._set_state(State.HOLD)

    @staticmethod
    def _first_cue_offset(entries: list[Entry[Cue | Phrases]]) -> float:
        return min((e.offset for e in entries if isinstance(e.payload, Cue)), default=0.0)

    def _hold_finished(self) -> None:
        routine = self._routine()
        self.hold = None
        said: list[Say] = []
        if routine.after is not None:
            said.append(self._say(routine.after, {"foot": self._foot()}))
        said.append(self._line("relief.checkin"))
        self._prompt_with(*said)
        self._set_state(State.CHECKIN)

    def _in_hold(self, intent: str, slots: dict[str, str]) -> bool:
        if intent == "ask_why":  # the countdown carries on
            self._answer(intent)
        elif intent == "still_cramping":
            self._line("relief.keep_holding")
        elif intent == "hold_longer":
            self._hold_longer()
        elif intent == "better":
            self._eased()
        else:
            return False
        return True

    def _in_checkin(self, intent: str, slots: dict[str, str]) -> bool:
        if intent == "ask_why":
            self._answer(intent)
        elif intent in ("yes", "better"):
            self._eased()
        elif intent in ("no", "still_cramping", "unsure"):
            self._next_routine()
        elif intent == "hold_longer":
            self._hold_again()
        else:
            return False
        return True

    def _in_paused(self, intent: str, slots: dict[str, str]) -> bool:
        """Answers while paused ("better") carry on where the pause was, then count there."""
        if intent != "better" or self._paused_from is None:
            return False
        self._unpause()
        return self._handlers[self.state](intent, slots)

    def _unpause(self) -> State:
        resumed, self._paused_from = self._paused_from or State.IDLE, None
        if resumed == State.HOLD and self.hold is not None:
            self.hold.resume(self.clock.now())
        self._set_state(resumed)
        return resumed

    def _hold_longer(self) -> None:
        """During a hold: the same stretch, counted down again with a little more time."""
        hold = self.hold
        assert hold is not None
        left = hold.remaining(self.clock.now())
        self._out.append(StopSpeaking())
        self._prompt_with(self._line("relief.hold_longer"))
        self._begin_hold([], left + HOLD_LONGER_S, quiet_line=False)

    def _hold_again(self) -> None:
        """At the check-in: back into the same stretch for another full hold."""
        said = self._line("relief.hold_again")
        self._prompt_with(said)
        self._begin_hold([said], self.settings.hold_seconds or self._routine().hold_seconds, quiet_line=False)

    def _on_worse(self, slots: dict[str, str]) -> None:
        """It hurts more. During relief: ease off into something gentler; seek care only if it keeps
        getting worse or is severe ("it's unbearable"). Anywhere else the cramp is (back) on: relief at once."""
        self._out.append(StopSpeaking())
        if self.state == State.PAUSED:
            self._unpause()
        ep = self.episode
        if ep is None:
            pending, self._pending_slots = self._pending_slots if self.state == State.CONFIRM else {}, {}
            self._begin_episode({**pending, **slots})
            return
        if ep.relief_done:
            self._restart_relief(slots)
            return
        ep.worse_count += 1
        if ep.worse_count >= WORSE_LIMIT or slots.get("severity") == "severe":
            self._red_flag_in_relief("worse")
            return
        self.hold = None
        self._line("relief.ease_off")
        routine = self._routine()
        if routine.gentler is None:
            self._next_routine()
            return
        i = ep.routine_index
        rest = tuple(r for r in ep.order[i + 1:] if r != routine.gentler)
        ep.order = (*ep.order[:i + 1], routine.gentler, *rest)
        gentler = self.content.routines[routine.gentler]
        self._start_routine(i + 1, "relief.gentler", {"name": self.picker.pick(gentler.name)})

    def _relief_limit(self) -> float | None:
        """When a cramp not eased by then gets the seek-care advice; None while paused, in aftercare
        (warmth or a walk is not a cramp going on) or outside relief."""
        ep = self.episode
        if ep is None or ep.relief_done or self.state == State.PAUSED or self._routine().aftercare:
            return None
        return ep.started_at + RELIEF_LIMIT_S

    def _walked_away(self) -> None:
        """Nobody answers (gone, or fine after warmth or a walk): a short, quiet close; not "gave up"."""
        ep = self.episode
        assert ep is not None
        self.hold = None
        ep.relief_done = True
        self._record("outcome", result="no_answer")
        self._line("relief.walked_away")
        self._finish_episode(closing=False)

    # ------------------------------------------------------------------ "Is it a cramp?"

    def _ask_if_cramp(self, slots: dict[str, str]) -> None:
        self._pending_slots = dict(slots)
        self._prompt_with(self._line("relief.is_it_cramp"))
        self._set_state(State.CONFIRM)

    def _in_confirm(self, intent: str, slots: dict[str, str]) -> bool:
        if intent in ("yes", "unsure", "pain", "cramp_start"):
            pending, self._pending_slots = self._pending_slots, {}
            self._begin_episode({**pending, **slots})
        elif intent in ("no", "better"):
            self._back_to_idle("relief.not_a_cramp")
        else:
            return False
        return True

    def _default_confirm(self) -> None:
        self._back_to_idle("relief.no_answer_idle")

    def _back_to_idle(self, key: str) -> None:
        self._pending_slots = {}
        self._line(key)
        self._prompt = []
        self._set_state(State.IDLE)

    def _next_routine(self, intro: str = "relief.next_routine") -> None:
        ep = self.episode
        assert ep is not None
        if ep.routine_index + 1 >= len(ep.order):
            self._line("relief.exhausted")
            self._red_flag_in_relief("not_easing")
            return
        nxt = self.content.routines[ep.order[ep.routine_index + 1]]
        self._start_routine(ep.routine_index + 1, intro, {"name": self.picker.pick(nxt.name)})

    def _eased(self) -> None:
        ep = self.episode
        assert ep is not None
        self.hold = None
        ep.relief_done = True
        ep.relief_seconds = self.clock.now() - ep.started_at
        self._record("outcome", result="better")
        self._line("relief.eased")
        self._line("relief.aftercare")
        self._offer_causes()

    def _red_flag_in_relief(self, reason: str) -> None:
        ep = self.episode
        assert ep is not None
        self.hold = None
        ep.relief_done = True
        self._record("outcome", result="worse" if reason == "worse" else "gave_up")
        self._red_flag(reason)
        self._finish_episode()

    def _red_flag(self, reason: str) -> list[Say]:
        """The reason, then what its grade says to do (seek care now / see a doctor soon), in short lines."""
        if self.episode is not None and reason not in self.episode.red_flags:
            self.episode.red_flags.append(reason)
        said = [self._say(self.content.lines["red_flag"],
                          {"reason": self.picker.pick(self.content.red_flag_reasons[reason])})]
        return said + self._grade_lines(self.content.grades[reason])

    def _grade_lines(self, grade: str) -> list[Say]:
        return [self._say(line) for line in self.content.advice[grade]]

    def _red_flag_recap(self, reasons: list[str]) -> list[Say]:
        """Every reason given this episode, then the most urgent grade's advice once."""
        said = [self._say(self.content.lines["red_flag"],
                          {"reason": self.picker.pick(self.content.red_flag_reasons[r])}) for r in reasons]
        grade = min((self.content.grades[r] for r in reasons), key=GRADE_ORDER.index)
        return said + self._grade_lines(grade)

    # ------------------------------------------------------------------ after relief: offers, questions, summary

    def _offer(self, kind: str, *before: Say) -> None:
        """A yes/no offer (OFFER_KEYS); ``before`` is said again with it on "repeat"."""
        ep = self.episode
        assert ep is not None
        ep.offer = kind
        self._prompt_with(*before, self._line(OFFER_KEYS[kind][0]))
        self._set_state(State.OFFER)

    def _offer_causes(self) -> None:
        self._offer("causes")

    def _after_relief_common(self, intent: str, slots: dict[str, str]) -> bool:
        """Intents an offer and a question both take before their own answers: a new cramp
        restarts relief, a question is answered (and the open one asked again). True if handled."""
        if intent == "cramp_start":
            self._restart_relief(slots)
        elif intent in ASK_INTENTS:
            self._answer(intent)
        else:
            return False
        return True

    def _in_offer(self, intent: str, slots: dict[str, str]) -> bool:
        ep = self.episode
        assert ep is not None
        if self._after_relief_common(intent, slots):
            return True
        if intent not in ANSWERS:
            return False
        accepted = intent == "yes"
        if ep.offer == "causes":
            if accepted:
                self._ask_question(0)
            else:
                self._declined()
        elif accepted:  # "more" or "carry_on": the next question
            self._ask_question(ep.question_index + 1)
        else:
            self._summary()
        return True

    def _declined(self) -> None:
        """No to the causes: the article still reaches them, in a few short lines."""
        ep = self.episode
        assert ep is not None
        said = [self._line("causes.declined")]
        said += [self._say(line) for line in self.content.answers["declined"]]
        said.append(self._line("advice.see_professional"))  # a long cramp still gets its own line
        self._finish_episode()
        self._prompt = said  # "repeat" in idle says the tips again

    def _applies(self, q: Question) -> bool:
        assert self.episode is not None
        return q.ask_if is None or self.episode.answers.get(q.ask_if) == "yes"

    def _remembered(self, q: Question) -> str | None:
        """A yes or no given in an earlier episode and still fresh (``remember_days``), else None."""
        ep = self.episode
        assert ep is not None
        if q.remember_days is None or not isinstance(self.diary, AnswerMemory):
            return None
        if ep.memory is None:
            ep.memory = dict(self.diary.remembered())
        kept = ep.memory.get(q.id)
        if kept is None:
            return None
        answer, at = kept
        now = self.wall_clock()
        now = now if now.tzinfo is not None else now.astimezone()
        return answer if now - at <= timedelta(days=q.remember_days) else None

    def _next_question(self, start: int) -> int | None:
        """Index of the next question to ask from ``start``; remembered answers are taken as given."""
        ep = self.episode
        assert ep is not None
        questions = self.content.questions
        for i in range(start, len(questions)):
            q = questions[i]
            if not self._applies(q):
                continue
            kept = self._remembered(q)
            if kept is None:
                return i
            if q.id not in ep.answers:
                ep.answers[q.id] = kept
                self._record("answer", cause=q.id, answer=kept, slots={}, remembered=True)
                if not ep.remembered_said:
                    ep.remembered_said = True
                    self._line("causes.remembered")
        return None

    def _ask_question(self, start: int) -> None:
        ep = self.episode
        assert ep is not None
        index = self._next_question(start)
        if index is None:
            self._summary()
            return
        q = self.content.questions[index]
        if q.more and not ep.more_offered:  # the first few are done: the rest only if wanted
            ep.more_offered = True
            self._offer("more")
            return
        ep.question_index = index
        ep.asked_since_flag = True
        if not ep.asked or ep.asked[-1] != index:
            ep.asked.append(index)
        self._prompt_with(self._say(q.ask))
        self._set_state(State.QUESTION)

    def _in_question(self, intent: str, slots: dict[str, str]) -> bool:
        ep = self.episode
        assert ep is not None
        if self._after_relief_common(intent, slots):
            return True
        q = self.content.questions[ep.question_index]
        if intent == "medication" or (intent == "yes" and "medication" in slots):
            if q.slot != "medication":  # a medicine's name answers only the medicine question
                self._line("causes.not_an_answer")
                return True
            intent = "yes"
        if intent not in ANSWERS:
            return False
        ep.answers[q.id] = intent
        kept_slots = {q.slot: slots[q.slot]} if q.slot and q.slot in slots else {}
        self._record("answer", cause=q.id, answer=intent, slots=kept_slots)
        if q.remember_days is not None and intent in ("yes", "no"):
            self._record("remember", cause=q.id, answer=intent, slots=kept_slots)
        if intent == "yes" and q.red_flag:
            said = self._red_flag(q.red_flag)
            ep.flag_lines, ep.asked_since_flag = said, False
            later = self.content.questions[ep.question_index + 1:]
            if any(self._applies(later_q) for later_q in later):  # they may rather stop and get help
                if later and next(x for x in later if self._applies(x)).more:
                    ep.more_offered = True  # "carry on" is the offer of more
                self._offer("carry_on", *said)
                return True
        self._ask_question(ep.question_index + 1)
        return True

    def _summary(self) -> None:
        """Likely contributors, their tips and when to get help, in short lines; "repeat" replays it."""
        ep = self.episode
        assert ep is not None
        yes = [q for q in self.content.questions if ep.answers.get(q.id) == "yes"]
        named = [q.contributor for q in yes if q.contributor]
        stopped_at_flag = bool(ep.red_flags) and not ep.asked_since_flag
        said: list[Say] = []
        if named:
            said += self._contributor_lines(named)
            tips = [q.tip for q in yes if q.contributor and q.tip is not None]
            if tips:
                said.append(self._line("summary.tips_intro"))
                said += [self._say(tip) for tip in tips]
        elif not stopped_at_flag:  # (right after the red-flag advice "nothing stood out" would jar)
            said.append(self._line("summary.none"))
            said.append(self._line("advice.see_professional"))
            ep.advised = True
        if any(q.see_professional for q in yes):
            said += self._grade_lines("next_visit")
            ep.advised = True
        elif named and not ep.red_flags:  # the article's when-to-see-a-professional reaches everyone
            said.append(self._line("advice.see_professional"))
        if ep.red_flags and said:  # repeated at the end so it is the last thing heard
            said += self._red_flag_recap(ep.red_flags)
        elif ep.red_flags:  # the questions stopped at the advice: it was the last thing said
            said = list(ep.flag_lines)
        self._finish_episode()
        self._prompt = said  # "repeat" in idle replays the summary

    def _contributor_lines(self, names: list[str]) -> list[Say]:
        """"These may play a part: a, b and c." cut into lines of about SUMMARY_LINE_WORDS words."""
        def words(key: str) -> int:
            return max(len(o.replace("{causes}", "").split()) for o in self.content.lines[key].options)

        chunks: list[list[str]] = [[]]
        for name in names:
            key = "summary.contributors" if len(chunks) == 1 else "summary.more_causes"
            trial = [*chunks[-1], name]
            if chunks[-1] and words(key) + len(self._join(trial).split()) > SUMMARY_LINE_WORDS:
                chunks.append([name])
            else:
                chunks[-1] = trial
        said = [self._line("summary.contributors", causes=self._join(chunks[0]))]
        return said + [self._line("summary.more_causes", causes=self._join(c)) for c in chunks[1:]]

    def _join(self, items: list[str]) -> str:
        words = [w for w in items if w]
        if len(words) <= 1:
            return "".join(words)
        conj = self.picker.pick(self.content.lines["words.and"])
        return f"{', '.join(words[:-1])} {conj} {words[-1]}"

    def _answer(self, intent: str) -> None:
        """An on-demand answer from answers.yaml; an open question or check-in is asked again after it."""
        topic = ASK_INTENTS[intent]
        if topic == "why":
            lines = self.content.why.get(self._why_routine() or "", self.content.why["default"])
        else:
            lines = self.content.answers[topic]
        said = [self._say(line) for line in lines]
        if self.state == State.IDLE:
            self._prompt_with(*said)
        elif self.state != State.HOLD:  # the countdown carries on by itself
            self._repeat_prompt()

    def _why_routine(self) -> str | None:
        ep = self.episode
        if ep is not None and ep.order:
            return ep.order[ep.routine_index]
        return self._last_routine

    def _restart_relief(self, slots: dict[str, str]) -> None:
        self._finish_episode(closing=False)
        self._begin_episode(slots)

    def _finish_episode(self, closing: bool = True, interrupted_by: str | None = None) -> None:
        ep = self.episode
        if ep is None:
            return
        if closing:
            self._pattern_advice(ep)
            self._line("closing")
        end: dict[str, object] = {"duration_s": round(self.clock.now() - ep.started_at, 1)}
        if interrupted_by:
            end["interrupted_by"] = interrupted_by
        self._record("episode_end", **end)
        self._last_routine = ep.order[ep.routine_index] if ep.order else None
        self.episode = None
        self.hold = None
        self._prompt = []
        self._set_state(State.IDLE)
        self._out.append(EndSession())

    def _pattern_advice(self, ep: _Episode) -> None:
        """Frequent or long cramps: suggest a professional, once per episode."""
        if ep.red_flags:
            return
        count = self.diary.count_since(self.wall_clock() - timedelta(days=7)) if self.diary else 0
        if count >= PATTERN_WEEKLY_COUNT:
            self._line("advice.pattern", count=count)
        elif not ep.advised and ep.relief_seconds is not None and ep.relief_seconds >= LONG_RELIEF_S:
            self._line("advice.long_cramp", minutes=round(ep.relief_seconds / 60))

    # ------------------------------------------------------------------ silence ladder

    def _reprompt(self, level: int) -> None:
        """A shorter form of the open question (level 1), then the shortest (level 2)."""
        if self.state == State.QUESTION:
            assert self.episode is not None
            q = self.content.questions[self.episode.question_index]
            if level == 1:
                self._say(q.short)
            else:
                self._line("causes.answer_options")
            return
        if self.state == State.OFFER and self.episode is not None:
            keys = OFFER_KEYS[self.episode.offer][1:]
        else:
            keys = REPROMPT_KEYS[self.state]
        self._line(keys[0] if level == 1 else keys[1])

    def _safe_default(self) -> None:
        """Never a dead end: keep guiding the stretch, skip the question, or wind down."""
        self._safe_defaults[self.state]()

    def _default_checkin(self) -> None:
        """Keep guiding; but silence twice in a row, after aftercare, or at the last routine is
        someone who has walked away (or is fine): close quietly, never with seek-care advice."""
        ep = self.episode
        assert ep is not None
        ep.silent_checkins += 1
        if ep.silent_checkins >= 2 or self._routine().aftercare or ep.routine_index + 1 >= len(ep.order):
            self._walked_away()
            return
        self._line("relief.keep_guiding")
        self._next_routine()

    def _default_question(self) -> None:
        self._line("causes.skipped")
        self._in_question("skip", {})

    def _default_offer(self) -> None:
        if self.episode is not None and self.episode.offer != "causes":
            self._summary()  # no answer to "more?" or "carry on?": what we have so far
            return
        self._line("causes.declined")  # walked away after relief: a short, quiet close
        self._finish_episode()

    # ------------------------------------------------------------------ global commands

    def _cmd_stop(self) -> None:
        self._out.append(StopSpeaking())
        if self.state == State.IDLE:
            return
        self._line("commands.stopped")
        self._line("commands.stopped_idle_hint")
        if self.episode is not None and not self.episode.relief_done:
            self._record("outcome", result="stopped")
        self._paused_from = None
        if self.episode is None:
            self._prompt = []
            self._set_state(State.IDLE)
        else:
            self._finish_episode(closing=False)

    def _cmd_pause(self) -> None:
        self._out.append(StopSpeaking())
        if self.state in (State.IDLE, State.PAUSED):
            return
        self._paused_from = self.state
        if self.hold is not None and self.state == State.HOLD:
            now = self.clock.now()
            self.hold.pause(now)
            self._line("commands.paused_hold", seconds=math.ceil(self.hold.remaining(now)))
        else:
            self._line("commands.paused")
        self._set_state(State.PAUSED)

    def _cmd_resume(self) -> None:
        if self.state != State.PAUSED:
            self._cmd_repeat()
            return
        self._line("commands.resumed")
        if self._paused_from != State.HOLD or self.hold is None:
            self._repeat_prompt()
        self._unpause()

    def _cmd_repeat(self) -> None:
        self._out.append(StopSpeaking())
        if not self._prompt:
            if self.state == State.IDLE:
                self._line("help.idle")
            else:
                self._line("commands.nothing_to_repeat")
            return
        self._repeat_prompt()

    def _repeat_prompt(self) -> None:
        for say in self._prompt:
            self._out.append(say)

    def _cmd_next(self) -> None:
        if self.state == State.PAUSED and self._paused_from is not None:
            self._unpause()  # "next" while paused: carry on, with the next step
        if self.state in (State.HOLD, State.CHECKIN):
            self._out.append(StopSpeaking())
            self._next_routine()
        elif self.state == State.QUESTION:
            self._in_question("skip", {})
        elif self.state == State.OFFER:
            self._in_offer("no", {})
        else:
            self._cmd_help()

    def _cmd_back(self) -> None:
        if self.state == State.PAUSED and self._paused_from is not None:
            self._unpause()
        ep = self.episode
        if self.state in (State.HOLD, State.CHECKIN) and ep is not None:
            self._out.append(StopSpeaking())
            if ep.routine_index == 0:
                self._line("relief.no_previous")
                self._repeat_prompt()
                return
            prev = self.content.routines[ep.order[ep.routine_index - 1]]
            self._start_routine(ep.routine_index - 1, "relief.previous_routine", {"name": self.picker.pick(prev.name)})
        elif self.state == State.QUESTION and ep is not None:
            if len(ep.asked) < 2:
                self._line("causes.first_question")
                self._repeat_prompt()
                return
            ep.asked.pop()
            self._ask_question(ep.asked.pop())
        elif self.state == State.OFFER:
            self._repeat_prompt()
        else:
            self._cmd_help()

    def _cmd_help(self) -> None:
        self._line(HELP_KEYS[self.state])

    def _cmd_time_left(self) -> None:
        left = self.time_left()
        if left is None:
            self._line("commands.no_timer")
        else:
            self._line("commands.time_left", seconds=max(1, math.ceil(left)))

    def _cmd_start_over(self) -> None:
        self._out.append(StopSpeaking())
        ep = self.episode
        self._paused_from = None
        if ep is None:
            self._line("commands.start_over")
            self._begin_episode({})
        elif ep.relief_done:
            self._line("commands.start_over")
            ep.answers.clear()
            ep.red_flags.clear()
            ep.asked.clear()
            ep.more_offered = ep.remembered_said = False
            self._ask_question(0)
        else:
            self.hold = None
            self._start_routine(0, intro="commands.start_over")
