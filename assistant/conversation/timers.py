"""Clocks and the hold schedule behind spoken countdowns.

Every cue of a hold sits at a fixed offset from the hold's start on a monotonic
clock. A cue that comes due while the coach is still busy (a line that ran long) is
dropped or merged with the next one — never pushed later — so nothing drifts. Pausing
shifts the whole remaining schedule by exactly the paused time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``."""

    def now(self) -> float:
        return time.monotonic()


@dataclass
class FakeClock:
    """A clock tests and simulations move by hand."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.t += seconds

    def set(self, t: float) -> None:
        if t < self.t:
            raise ValueError("time does not go backwards")
        self.t = t


@dataclass
class Entry(Generic[T]):
    """Something due ``offset`` seconds into a hold."""

    offset: float
    payload: T
    droppable: bool = True
    """Whether it may be skipped when late (a release cue never is)."""
    merge_group: str | None = None
    """Entries of one group due together are merged: only the latest is kept."""


@dataclass
class Hold(Generic[T]):
    """A timed hold on an absolute schedule from ``started_at``."""

    duration: float
    started_at: float
    entries: list[Entry[T]] = field(default_factory=list)
    late_tolerance: float = 1.0
    """How late (s) a droppable entry may still be delivered."""
    _paused_at: float | None = None
    _paused_total: float = 0.0
    _fired: bool = False

    def __post_init__(self) -> None:
        self.entries = sorted(self.entries, key=lambda e: e.offset)

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def due_at(self, entry: Entry[T]) -> float:
        """Clock time at which ``entry`` is due (shifted by completed pauses)."""
        return self.started_at + self._paused_total + entry.offset

    @property
    def ends_at(self) -> float:
        return self.started_at + self._paused_total + self.duration

    def elapsed(self, now: float) -> float:
        ref = self._paused_at if self._paused_at is not None else now
        return max(0.0, ref - self.started_at - self._paused_total)

    def remaining(self, now: float) -> float:
        return max(0.0, self.duration - self.elapsed(now))

    def pause(self, now: float) -> None:
        if self._paused_at is None:
            self._paused_at = now

    def resume(self, now: float) -> None:
        if self._paused_at is not None:
            self._paused_total += max(0.0, now - self._paused_at)
            self._paused_at = None

    def next_due(self) -> float | None:
        """When the next entry is due, or None if paused or nothing is left."""
        if self.paused or not self.entries:
            return None
        return self.due_at(self.entries[0])

    @property
    def untouched(self) -> bool:
        """Nothing has fired yet, so the start may still be moved."""
        return not self._fired

    def pop_due(self, now: float) -> list[tuple[Entry[T], float]]:
        """Entries due by ``now`` with their due times, late ones dropped or merged."""
        if self.paused:
            return []
        self._fired = self._fired or any(self.due_at(e) <= now for e in self.entries)
        due = [e for e in self.entries if self.due_at(e) <= now]
        self.entries = [e for e in self.entries if self.due_at(e) > now]
        kept: list[Entry[T]] = []
        for entry in due:
            late = now - self.due_at(entry)
            if entry.droppable and late > self.late_tolerance:
                continue
            if kept and entry.merge_group and kept[-1].merge_group == entry.merge_group:
                kept[-1] = entry
                continue
            kept.append(entry)
        return [(e, self.due_at(e)) for e in kept]


@dataclass
class ScaledClock:
    """Monotonic time running ``scale`` times faster: demos and scripted text sessions."""

    scale: float = 1.0
    _origin: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.scale

    def real_seconds(self, virtual: float) -> float:
        """How long to really wait for ``virtual`` seconds to pass."""
        return max(0.0, virtual) / self.scale
