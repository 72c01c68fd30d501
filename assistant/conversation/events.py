"""The events that flow through the coach: audio → recognizer → intent → dialog → speech.

Events go *into* the dialog core (:class:`Heard`, :class:`Silence`, :class:`Tick`,
:class:`SpeechTiming`);
actions come *out* of it (:class:`Say`, :class:`StopSpeaking`, :class:`Listen`,
:class:`StateChanged`, :class:`Record`, :class:`EndSession`). Runners (keyboard, live
audio, simulation) only translate these to and from devices, so every conversation
rule lives in one pure, testable place.

Every row type of the JSON Lines event log is declared here, in the style of Rhasspy's
wyoming protocol: each class carries its wire name (``wire_name``), :func:`to_dict`
writes it, :func:`from_dict` reads it back. The runners' own rows (what was really
spoken, dropped, ignored, device and recognizer trouble) are declared below the
actions. A log therefore replays into the core: feed its events (:func:`replay_events`)
to a coach on a clock set to each row's time and it takes the same actions again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

# ---------------------------------------------------------------- events in


@dataclass(frozen=True)
class Heard:
    """The user said something; ``intent`` is None when it was not understood."""

    wire_name: ClassVar[str] = "heard"

    intent: str | None
    """Matched intent name, or None for speech that matched nothing."""
    slots: dict[str, str] = field(default_factory=dict)
    """Slot values, e.g. ``{"side": "left", "location": "toes"}``."""
    text: str = ""
    """What the recognizer heard (for logs and the diary)."""
    confidence: float = 1.0
    """Recognizer confidence in 0..1."""


@dataclass(frozen=True)
class Silence:
    """Nothing was said for the ``silence_timeout`` of the last :class:`Listen`."""

    wire_name: ClassVar[str] = "silence"


@dataclass(frozen=True)
class Tick:
    """Time has passed: fire due countdown cues and deadlines (the core reads its clock)."""

    wire_name: ClassVar[str] = "tick"


@dataclass(frozen=True)
class SpeechTiming:
    """The runner has started saying the line ``key``; it ends at clock time ``ends_at``.

    Lets a hold start when its instruction has really been said instead of when the
    coach estimated it would be. Runners that cannot tell (the keyboard) never send it.
    """

    wire_name: ClassVar[str] = "speech_timing"
    clock_fields: ClassVar[tuple[str, ...]] = ("ends_at",)

    key: str
    ends_at: float


@dataclass(frozen=True)
class Shutdown:
    """The coach is being stopped (SIGTERM from the service manager, Ctrl-C).

    Mid-episode the coach says a short parting line and closes the diary entry as
    interrupted; in idle it does nothing.
    """

    wire_name: ClassVar[str] = "shutdown"

    reason: str = ""
    """What asked for it, e.g. ``SIGTERM`` (for the log and the diary)."""


MICROPHONE = "microphone"
SPEAKER = "speaker"


@dataclass(frozen=True)
class DeviceLost:
    """The microphone or speaker stopped working (unplugged, stalled, failing voice).

    The runner keeps retrying; the coach explains (out loud when it is the microphone)
    and carries on: countdowns keep their schedule either way.
    """

    wire_name: ClassVar[str] = "device_lost"

    kind: str
    """:data:`MICROPHONE` or :data:`SPEAKER`."""


@dataclass(frozen=True)
class DeviceBack:
    """A lost device works again (audio arrives / a line was really played)."""

    wire_name: ClassVar[str] = "device_back"

    kind: str
    """:data:`MICROPHONE` or :data:`SPEAKER`."""


# ---------------------------------------------------------------- actions out


@dataclass(frozen=True)
class Say:
    """Speak a line. ``kind`` is ``"line"`` for prompts, ``"cue"`` for countdown cues."""

    wire_name: ClassVar[str] = "say"
    clock_fields: ClassVar[tuple[str, ...]] = ("deadline",)

    text: str
    key: str
    """Which prompt it came from (e.g. ``routine.toe_pull.instruction``): for tests and logs."""
    kind: str = "line"
    deadline: float | None = None
    """Clock time after which a queued cue is stale and should be dropped, not said late."""


@dataclass(frozen=True)
class StopSpeaking:
    """Cut whatever is being spoken now (barge-in: stop, pause)."""

    wire_name: ClassVar[str] = "stop_speaking"


@dataclass(frozen=True)
class Listen:
    """The listening context: which intents make sense now.

    Recognizers narrow their grammar to ``intents``. When ``silence_timeout`` is set the
    runner sends :class:`Silence` if nothing is heard that long after the coach stops
    speaking; None means just keep listening (idle, or a hold in progress).
    """

    wire_name: ClassVar[str] = "listen"

    context: str
    intents: tuple[str, ...]
    silence_timeout: float | None = None


@dataclass(frozen=True)
class StateChanged:
    wire_name: ClassVar[str] = "state"
    state: str


@dataclass(frozen=True)
class Record:
    """Something for the diary. Kinds: ``episode_start`` {side, location},
    ``routine`` {name}, ``outcome`` {result: better|worse|gave_up|stopped|interrupted},
    ``answer`` {cause, answer, slots}, ``episode_end`` {duration_s, [interrupted_by]}."""

    wire_name: ClassVar[str] = "record"

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EndSession:
    """The keyboard runner may exit; live runners go back to idle listening."""

    wire_name: ClassVar[str] = "end"


# ---------------------------------------------------------------- runner rows
# What the runners log besides the core's events and actions. They never go into the
# core; they say what the devices did with its actions.


@dataclass(frozen=True)
class Spoken:
    """A line handed to the speaker now (a :class:`Say` leaves the core earlier, when queued).

    Logged as ``say`` for lines and ``cue`` for countdown cues; replays as the :class:`Say`."""

    wire_name: ClassVar[str] = "say"
    text: str
    key: str
    kind: str = "line"


@dataclass(frozen=True)
class Dropped:
    """A queued cue whose moment passed before the speaker was free: not said late."""

    wire_name: ClassVar[str] = "dropped"
    text: str
    key: str
    kind: str = "cue"


@dataclass(frozen=True)
class Ignored:
    """An utterance not passed to the core: ``echo`` / ``echo_audio`` (the coach's own
    voice), ``while_speaking`` (not a barge-in word)."""

    wire_name: ClassVar[str] = "ignored"
    text: str
    reason: str
    score: float | None = None
    """The echo score, for ``echo_audio``."""


@dataclass(frozen=True)
class UserAudio:
    """``simulate``: the person's recorded turn starts now."""

    wire_name: ClassVar[str] = "user_audio"
    file: str
    duration: float


@dataclass(frozen=True)
class MicOverflow:
    """The microphone lost ``blocks`` blocks of audio before the coach read them."""

    wire_name: ClassVar[str] = "mic_overflow"
    blocks: int
    total: int


@dataclass(frozen=True)
class NoSpeaker:
    """No output device at start: the coach prints what it says."""

    wire_name: ClassVar[str] = "no_speaker"
    error: str | None = None


@dataclass(frozen=True)
class RecognizerError:
    """The recognizer raised at ``stage`` (create, start, audio, end)."""

    wire_name: ClassVar[str] = "recognizer_error"
    stage: str
    error: str


@dataclass(frozen=True)
class RecognizerRecreated:
    """A failing recognizer was replaced (``count`` times so far)."""

    wire_name: ClassVar[str] = "recognizer_recreated"
    count: int


@dataclass(frozen=True)
class RecognizerHung:
    """The recognizer was stuck in one call for ``seconds`` and was abandoned."""

    wire_name: ClassVar[str] = "recognizer_hung"
    seconds: float


Event = Heard | Silence | Tick | SpeechTiming | Shutdown | DeviceLost | DeviceBack
Action = Say | StopSpeaking | Listen | StateChanged | Record | EndSession
RunnerRow = Spoken | Dropped | Ignored | UserAudio | MicOverflow | NoSpeaker | RecognizerError | RecognizerRecreated \
    | RecognizerHung
Row = Event | Action | RunnerRow

EVENT_TYPES: tuple[type[Event], ...] = (Heard, Silence, Tick, SpeechTiming, Shutdown, DeviceLost, DeviceBack)
ACTION_TYPES: tuple[type[Action], ...] = (Say, StopSpeaking, Listen, StateChanged, Record, EndSession)
RUNNER_ROW_TYPES: tuple[type[RunnerRow], ...] = (Spoken, Dropped, Ignored, UserAudio, MicOverflow, NoSpeaker,
                                                 RecognizerError, RecognizerRecreated, RecognizerHung)
ROW_TYPES: dict[str, type[Row]] = {
    **{cls.wire_name: cls for cls in (*EVENT_TYPES, *ACTION_TYPES)},
    **{cls.wire_name: cls for cls in RUNNER_ROW_TYPES if cls is not Spoken},
    "say": Spoken,  # what the log calls "say" is the line as spoken; Say itself only leaves the core
    "cue": Spoken,
}
"""Wire name → row class, for reading a log back."""


def to_dict(item: Row, t0: float = 0.0) -> dict[str, Any]:
    """``{"type": "say", ...fields}`` for the JSON Lines event log.

    Clock times inside an item (:attr:`SpeechTiming.ends_at`, :attr:`Say.deadline`) are
    written relative to ``t0``, the log's start, like the row's own ``t``.
    """
    out: dict[str, Any] = {"type": type(item).wire_name}
    if isinstance(item, Spoken) and item.kind == "cue":
        out["type"] = "cue"
    out.update(asdict(item))
    for name in getattr(item, "clock_fields", ()):
        if out.get(name) is not None:
            out[name] = out[name] - t0
    return out


class UnknownRow(ValueError):
    """A log row of a type not declared here (or with fields its class does not have)."""


def from_dict(row: Mapping[str, Any], t0: float = 0.0) -> Row:
    """The event, action or runner row that :func:`to_dict` wrote (``t`` and unknown keys aside).

    Raises :class:`UnknownRow` for a type not declared here or a row missing a field.
    """
    cls = ROW_TYPES.get(str(row.get("type")))
    if cls is None:
        raise UnknownRow(f"unknown event-log row type {row.get('type')!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {name: row[name] for name in fields if name in row}
    for name in getattr(cls, "clock_fields", ()):
        if values.get(name) is not None:
            values[name] = values[name] + t0
    if "intents" in values:  # JSON has no tuples
        values["intents"] = tuple(values["intents"])
    try:
        return cls(**values)
    except TypeError as exc:
        raise UnknownRow(f"event-log row {dict(row)!r} does not fit {cls.__name__}: {exc}") from None


def replay_events(rows: Iterable[Mapping[str, Any]], t0: float = 0.0) -> Iterator[tuple[float, Event]]:
    """The events the core was given, with the clock time of each: ``(t0 + row t, event)``.

    Rows the core never saw (its actions, the runners' rows) are skipped, so the pairs
    can be fed to a fresh coach whose clock is set to each time in turn.
    """
    for row in rows:
        item = from_dict(row, t0)
        if isinstance(item, EVENT_TYPES):
            yield t0 + float(row.get("t", 0.0)), item
