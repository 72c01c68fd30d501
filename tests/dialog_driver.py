"""Drives the pure dialog core with a fake clock, the way a runner would."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from assistant.conversation.content import Content, load_content
from assistant.conversation.dialog import Coach, Settings
from assistant.conversation.events import Action, EndSession, Heard, Record, Say, Silence, Tick
from assistant.conversation.timers import FakeClock

_CONTENT: Content | None = None


def content() -> Content:
    global _CONTENT
    if _CONTENT is None:
        _CONTENT = load_content()
    return _CONTENT


@dataclass
class MemoryDiary:
    """A diary view backed by a list of start times (the real one is tested in test_diary)."""

    starts: list[datetime] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    def count_since(self, since: datetime) -> int:
        return sum(1 for s in self.starts if s >= since)

    def last_start(self) -> datetime | None:
        return max(self.starts, default=None)

    def first_use(self) -> bool:
        return not self.starts


class Driver:
    def __init__(self, *, diary=None, seed: int = 0, settings: Settings | None = None, now=None) -> None:
        self.clock = FakeClock()
        self.coach = Coach(content(), self.clock, rng=random.Random(seed), diary=diary,
                           settings=settings, wall_clock=now)
        self.log: list[tuple[float, Action]] = []
        self._apply(self.coach.start())

    def _apply(self, actions: list[Action]) -> list[Action]:
        self.log.extend((self.clock.now(), a) for a in actions)
        return actions

    @property
    def state(self) -> str:
        return self.coach.state

    def hear(self, intent: str | None, text: str = "", **slots: str) -> list[Action]:
        return self._apply(self.coach.handle(Heard(intent, slots, text)))

    def silence(self) -> list[Action]:
        return self._apply(self.coach.handle(Silence()))

    def tick_until(self, t: float) -> list[Action]:
        """Send Ticks exactly at each deadline up to clock time ``t``."""
        out: list[Action] = []
        while (d := self.coach.next_deadline()) is not None and d <= t:
            self.clock.set(max(d, self.clock.now()))
            out += self._apply(self.coach.handle(Tick()))
        self.clock.set(max(t, self.clock.now()))
        return out

    def finish_hold(self) -> list[Action]:
        out: list[Action] = []
        while self.state == "hold":
            d = self.coach.next_deadline()
            assert d is not None, "a hold must always have a next deadline"
            self.clock.set(max(d, self.clock.now()))
            out += self._apply(self.coach.handle(Tick()))
        return out

    # -- views
    def said(self, since: int = 0) -> list[Say]:
        return [a for _, a in self.log[since:] if isinstance(a, Say)]

    def keys(self, since: int = 0) -> list[str]:
        return [s.key for s in self.said(since)]

    def records(self, kind: str | None = None) -> list[Record]:
        return [a for _, a in self.log if isinstance(a, Record) and (kind is None or a.kind == kind)]

    def ended(self) -> bool:
        return any(isinstance(a, EndSession) for _, a in self.log)

    def mark(self) -> int:
        return len(self.log)


def said_keys(actions: list[Action]) -> list[str]:
    return [a.key for a in actions if isinstance(a, Say)]
