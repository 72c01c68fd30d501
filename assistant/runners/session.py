"""Wiring shared by every runner (keyboard, live audio, simulation).

Builds the coach from the configuration, keeps the diary writing each record as it
happens (a failing diary never interrupts relief, and its records are kept: see
:mod:`assistant.diary.keeper`), and writes the JSON Lines event log.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from assistant.config import Config
from assistant.conversation.content import Content, load_content
from assistant.conversation.dialog import Coach, Settings
from assistant.conversation.events import Action, Event, Record, to_dict
from assistant.conversation.timers import Clock
from assistant.errors import UserFacingError

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


def open_session(config: Config, clock: Clock, *, seed: int | None = None, use_diary: bool = True) -> Session:
    """Load and validate prompts, open the diary, build the coach."""
    content = load_content(config.prompts_dir)
    if content.intents.intents.language != config.prompts_language:
        raise UserFacingError(
            f"{content.intents.path}: the prompts are in {content.intents.intents.language!r} but the "
            f"configuration asks for {config.prompts_language!r}; set [coach] prompts_language or prompts_dir"
        )
    diary = _open_diary(config) if use_diary else None
    settings = Settings(silence_timeout=config.silence_timeout, speech_rate_wpm=float(config.rate),
                        hold_seconds=config.hold_seconds)
    coach = Coach(content, clock, rng=random.Random(seed), diary=diary if diary and diary.readable else None,
                  settings=settings)
    return Session(config, content, coach, diary)


def _open_diary(config: Config) -> Any:
    """A keeper for the diary: a locked, read-only or damaged file warns once and loses nothing."""
    from assistant.diary.keeper import DiaryKeeper

    return DiaryKeeper(config.diary_path)


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
