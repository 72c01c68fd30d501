"""The events that flow through the coach: audio → recognizer → intent → dialog → speech.

Events go *into* the dialog core (:class:`Heard`, :class:`Silence`, :class:`Tick`,
:class:`SpeechTiming`);
actions come *out* of it (:class:`Say`, :class:`StopSpeaking`, :class:`Listen`,
:class:`StateChanged`, :class:`Record`, :class:`EndSession`). Runners (keyboard, live
audio, simulation) only translate these to and from devices, so every conversation
rule lives in one pure, testable place. Each event converts to a JSON-able dict for
the event log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# ---------------------------------------------------------------- events in


@dataclass(frozen=True)
class Heard:
    """The user said something; ``intent`` is None when it was not understood."""

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


@dataclass(frozen=True)
class Tick:
    """Time has passed: fire due countdown cues and deadlines (the core reads its clock)."""


@dataclass(frozen=True)
class SpeechTiming:
    """The runner has started saying the line ``key``; it ends at clock time ``ends_at``.

    Lets a hold start when its instruction has really been said instead of when the
    coach estimated it would be. Runners that cannot tell (the keyboard) never send it.
    """

    key: str
    ends_at: float


@dataclass(frozen=True)
class Shutdown:
    """The coach is being stopped (SIGTERM from the service manager, Ctrl-C).

    Mid-episode the coach says a short parting line and closes the diary entry as
    interrupted; in idle it does nothing.
    """

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

    kind: str
    """:data:`MICROPHONE` or :data:`SPEAKER`."""


@dataclass(frozen=True)
class DeviceBack:
    """A lost device works again (audio arrives / a line was really played)."""

    kind: str
    """:data:`MICROPHONE` or :data:`SPEAKER`."""


# ---------------------------------------------------------------- actions out


@dataclass(frozen=True)
class Say:
    """Speak a line. ``kind`` is ``"line"`` for prompts, ``"cue"`` for countdown cues."""

    text: str
    key: str
    """Which prompt it came from (e.g. ``routine.toe_pull.instruction``): for tests and logs."""
    kind: str = "line"
    deadline: float | None = None
    """Clock time after which a queued cue is stale and should be dropped, not said late."""


@dataclass(frozen=True)
class StopSpeaking:
    """Cut whatever is being spoken now (barge-in: stop, pause)."""


@dataclass(frozen=True)
class Listen:
    """The listening context: which intents make sense now.

    Recognizers narrow their grammar to ``intents``. When ``silence_timeout`` is set the
    runner sends :class:`Silence` if nothing is heard that long after the coach stops
    speaking; None means just keep listening (idle, or a hold in progress).
    """

    context: str
    intents: tuple[str, ...]
    silence_timeout: float | None = None


@dataclass(frozen=True)
class StateChanged:
    state: str


@dataclass(frozen=True)
class Record:
    """Something for the diary. Kinds: ``episode_start`` {side, location},
    ``routine`` {name}, ``outcome`` {result: better|worse|gave_up|stopped|interrupted},
    ``answer`` {cause, answer, slots}, ``episode_end`` {duration_s, [interrupted_by]}."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EndSession:
    """The keyboard runner may exit; live runners go back to idle listening."""


Event = Heard | Silence | Tick | SpeechTiming | Shutdown | DeviceLost | DeviceBack
Action = Say | StopSpeaking | Listen | StateChanged | Record | EndSession


def to_dict(item: Event | Action) -> dict[str, Any]:
    """``{"type": "say", ...fields}`` for the JSON Lines event log."""
    names = {Say: "say", Heard: "heard", StateChanged: "state", Listen: "listen",
             Record: "record", StopSpeaking: "stop_speaking", Silence: "silence",
             Tick: "tick", EndSession: "end", SpeechTiming: "speech_timing", Shutdown: "shutdown",
             DeviceLost: "device_lost", DeviceBack: "device_back"}
    out: dict[str, Any] = {"type": names[type(item)]}
    out.update(asdict(item))
    return out
