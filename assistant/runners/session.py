"""Wiring shared by every runner (keyboard, live audio, simulation, the soak).

:func:`build_session` is the one way to put a running coach together: prompts, diary
keeper, coach, event log, voice, speaker, recognizer and turn taking, with the clock and
the wall clock injected (a simulation or soak runs on virtual time, the diary included).
The diary is written record by record as it happens (a failing diary never interrupts
relief, and its records are kept: see :mod:`assistant.diary.keeper`); the event log is
JSON Lines.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from assistant.config import Config
from assistant.conversation.content import Content, load_content
from assistant.conversation.dialog import Coach, Settings
from assistant.conversation.events import Action, Event, Record, to_dict
from assistant.conversation.timers import Clock
from assistant.errors import UserFacingError

if TYPE_CHECKING:
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.recognizers import Recognizer
    from assistant.speech_out.render import CachedRenderer
    from assistant.speech_out.speakers import Speaker

log = logging.getLogger(__name__)


@dataclass
class Session:
    """A ready coach with its content, configuration and (optional) diary."""

    config: Config
    content: Content
    coach: Coach
    diary: Any | None

    def keep_records(self, actions: Iterable[Action]) -> None:
        """Write the diary records among ``actions`` right away (durability over speed).

        A record the diary cannot take now is kept by the keeper and written later (or
        saved to the pending file at close); nothing here may stop the coaching.
        """
        if self.diary is None:
            return
        for action in actions:
            if isinstance(action, Record):
                try:
                    self.diary.record(action)
                except Exception:  # the keeper never raises; this is a last guard for relief
                    log.exception("could not keep a diary record for %s", self.config.diary_path)

    def close(self) -> None:
        if self.diary is not None:
            self.diary.close()


def open_session(config: Config, clock: Clock, *, seed: int | None = None, use_diary: bool = True,
                 wall_clock: Callable[[], datetime] | None = None) -> Session:
    """Load and validate prompts, open the diary, build the coach.

    ``wall_clock`` dates the diary records and answers "this week" (virtual in a soak)."""
    content = load_content(config.prompts_dir)
    if content.intents.intents.language != config.prompts_language:
        raise UserFacingError(
            f"{content.intents.path}: the prompts are in {content.intents.intents.language!r} but the "
            f"configuration asks for {config.prompts_language!r}; set [coach] prompts_language or prompts_dir"
        )
    diary = _open_diary(config, wall_clock) if use_diary else None
    settings = Settings(silence_timeout=config.silence_timeout, speech_rate_wpm=float(config.rate),
                        hold_seconds=config.hold_seconds)
    coach = Coach(content, clock, rng=random.Random(seed), diary=diary if diary and diary.readable else None,
                  wall_clock=wall_clock, settings=settings)
    return Session(config, content, coach, diary)


def _open_diary(config: Config, wall_clock: Callable[[], datetime] | None = None) -> Any:
    """A keeper for the diary: a locked, read-only or damaged file warns once and loses nothing."""
    from assistant.diary.keeper import DiaryKeeper

    return DiaryKeeper(config.diary_path, now=wall_clock)


SpeakerFactory = Callable[["CachedRenderer | None", "EventLog"], "Speaker"]
"""Makes the runner's speaker from the voice (None in text mode) and the event log."""


@dataclass
class Running:
    """A coach put together by :func:`build_session`, ready for a runner's loop."""

    session: Session
    events: EventLog
    turn_taking: TurnTaking
    speaker: Speaker
    renderer: CachedRenderer | None
    """The voice (None: text mode prints instead)."""
    recognizer: Recognizer | None
    """The speech recognizer (None: text mode reads typed lines)."""
    recognizer_factory: Callable[[], Recognizer] | None
    """Makes a fresh recognizer, for when one fails or gets stuck."""

    def close(self) -> None:
        """Event log, then the diary (the speaker and microphone belong to the runner)."""
        self.events.close()
        self.session.close()


def build_session(config: Config, clock: Clock, speaker: SpeakerFactory, *,
                  events: Path | IO[str] | EventLog | None = None, seed: int | None = None,
                  use_diary: bool = True, wall_clock: Callable[[], datetime] | None = None,
                  voice: bool = True, speech_in: bool = True, prewarm: bool = True) -> Running:
    """The one way every runner (live, simulate, text, the soak) builds its coach.

    ``voice=False`` / ``speech_in=False`` leave out the renderer / recognizer (text mode);
    ``events`` is a path, an open stream or a ready :class:`EventLog` (the soak counts rows).
    """
    from assistant.runners.turn_taking import TurnTaking

    session = open_session(config, clock, seed=seed, use_diary=use_diary, wall_clock=wall_clock)
    log_ = events if isinstance(events, EventLog) else EventLog(events, clock)
    try:
        renderer = None
        if voice:
            from assistant.speech_out.render import VoiceSettings, create_renderer

            renderer = create_renderer(VoiceSettings(config.tts, config.voice, config.rate, config.volume))
            if prewarm:  # an optimisation only: a line that fails now is reported when it is said
                renderer.prewarm(opening_lines(session.content))
        recognizer = factory = None
        if speech_in:
            from assistant.speech_in.recognizers import create_recognizer

            intents = session.content.intents

            def factory() -> Recognizer:
                return create_recognizer(intents, config.engine, config.model_path)

            recognizer = factory()  # before the speaker: loading a model must not stall its stream
        out = speaker(renderer, log_)
    except BaseException:
        log_.close()
        session.close()
        raise
    return Running(session, log_, TurnTaking(session, clock, out, log_), out, renderer, recognizer, factory)


def opening_lines(content: Content) -> list[str]:
    """The lines that open an episode and the countdown cues: rendered before they are
    needed (~10 ms each), so the first reply is not held up by the voice."""
    texts = [t for key in ("relief.start", "help.idle") if key in content.lines
             for t in content.lines[key].options]
    texts += [t for cue in content.countdown for t in cue.say.options]
    return [t for t in texts if "{" not in t]


class EventLog:
    """JSON Lines: ``{"t": seconds since start, "type": ..., ...}``, flushed per line."""

    def __init__(self, target: Path | IO[str] | None, clock: Clock) -> None:
        self.clock = clock
        self.t0 = clock.now()
        self._own = isinstance(target, Path)
        self._fh: IO[str] | None = target.open("w", encoding="utf-8") if isinstance(target, Path) else target

    def write(self, item: Event | Action | dict[str, Any], t: float | None = None) -> None:
        if self._fh is None:
            return
        row = item if isinstance(item, dict) else to_dict(item, self.t0)
        stamp = (self.clock.now() if t is None else t) - self.t0
        self._fh.write(json.dumps({"t": round(stamp, 3), **row}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None and self._own:
            self._fh.close()
        self._fh = None
