"""Nothing recorded is ever lost: diary records that cannot be written now are kept.

The coach must keep coaching when its diary is locked by another program, read-only,
damaged, on a full disk or missing altogether — relief comes first. So the running
coach writes through a :class:`DiaryKeeper`: each record is stamped with its time and
written at once when the diary can take it; otherwise it is appended durably (fsync)
to the pending file next to the diary (:func:`~assistant.diary.store.pending_path`) at once —
so even a kill loses nothing — and retried with the next record and at close.
:class:`~assistant.diary.store.Diary` adds the pending file the next time it opens for
writing, skipping records that made it into the diary after all. A bad diary file is never replaced or "repaired":
the user gets one warning line saying what is wrong and what to do.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from assistant.conversation.events import Record
from assistant.diary.store import Diary, DiaryError, diary_error, pending_path, save_pending
from assistant.errors import UserFacingError

log = logging.getLogger(__name__)


class DiaryKeeper:
    """The coach's diary: writes records when it can, keeps them until it can.

    Also answers the dialog's questions (:class:`~assistant.diary.store.DiaryView`), counting
    records still waiting, and never raises: a failing read is logged and answered from
    what is known.
    """

    def __init__(self, path: Path, now: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self._now = now or (lambda: datetime.now(UTC))
        self.diary: Diary | None = None
        self.waiting: list[tuple[Record, datetime]] = []
        """Records not written yet, oldest first, each with the time it happened."""
        self._spooled = 0
        """How many of the oldest waiting records are already safe in the pending file."""
        self.problem: str | None = None
        """Why the diary could not be used when last tried (None once it works)."""
        self._warned = False
        if self._open():
            self._note(self.diary.write_problem() if self.diary else None)

    # ------------------------------------------------------------------ writing

    def record(self, action: Record) -> None:
        """Keep ``action`` with its time and write everything waiting, if the diary lets us."""
        self.waiting.append((action, self._now()))
        self.flush()

    def flush(self) -> bool:
        """Write the waiting records in order; True when none is left waiting."""
        if not self.waiting:
            return True
        if self.diary is None:
            if not self._open():
                self._spool()
                return False
            if self._spooled and not pending_path(self.path).exists():  # the open added them
                del self.waiting[:self._spooled]
                self._spooled = 0
        assert self.diary is not None
        while self.waiting:
            action, at = self.waiting[0]
            try:
                self.diary.record(action, at)
            except (sqlite3.Error, OSError) as exc:
                self._note(diary_error(self.path, exc))
                self._spool()
                return False
            except UserFacingError as exc:  # the file vanished and cannot be recreated
                self._note(exc)
                self._spool()
                return False
            self.waiting.pop(0)
            self._spooled = max(0, self._spooled - 1)
        if self.problem is not None:
            log.info("the diary %s works again; every kept record is written", self.path)
            self.problem = None
        return True

    def close(self) -> None:
        """Last try; records still waiting are (already) in the pending file."""
        if not self.flush() and self._spooled == len(self.waiting):
            log.info("kept %d diary record(s) in %s; they are added when the diary can be written",
                     len(self.waiting), pending_path(self.path))
            self.waiting = []
            self._spooled = 0
        if self.diary is not None:
            self.diary.close()
            self.diary = None

    def _spool(self) -> None:
        """Append the waiting records not yet in the pending file to it (fsync'd, mode 0600)."""
        new = self.waiting[self._spooled:]
        if not new:
            return
        try:
            save_pending(self.path, new)
        except OSError as exc:
            rows = [{"at": at.isoformat(), "kind": r.kind, "data": r.data} for r, at in new]
            log.error("could not keep %d diary record(s) in %s (%s); they were: %s",
                      len(new), pending_path(self.path), exc.strerror or exc, rows)
            return
        self._spooled = len(self.waiting)

    def _open(self) -> bool:
        try:
            self.diary = Diary(self.path, now=self._now)
        except UserFacingError as exc:
            self._note(exc)
            return False
        return True

    def _note(self, exc: UserFacingError | None) -> None:
        """Remember why the diary cannot be written; warn once per session, in one line."""
        if exc is None:
            return
        self.problem = str(exc)
        if self._warned:
            log.info("diary still unavailable: %s", exc)
            return
        self._warned = True
        reason = exc.reason if isinstance(exc, DiaryError) else "error"
        later = "when it is free again" if reason == "locked" else "the next time the diary can be written"
        log.warning("%s. The coach goes on; this session's records are kept and added %s (meanwhile in %s)",
                    exc, later, pending_path(self.path))

    # ------------------------------------------------------------------ DiaryView

    @property
    def readable(self) -> bool:
        """True when the dialog can ask the diary questions (it opened, maybe read-only)."""
        return self.diary is not None

    def _waiting_starts(self) -> list[datetime]:
        return [at for r, at in self.waiting if r.kind == "episode_start"]

    def count_since(self, since: datetime) -> int:
        waiting = sum(1 for at in self._waiting_starts() if at >= since.astimezone(UTC))
        try:
            return (self.diary.count_since(since) if self.diary else 0) + waiting
        except sqlite3.Error as exc:
            log.info("diary read failed (%s); counting only this session's waiting records", exc)
            return waiting

    def last_start(self) -> datetime | None:
        starts = self._waiting_starts()
        try:
            stored = self.diary.last_start() if self.diary else None
        except sqlite3.Error as exc:
            log.info("diary read failed (%s)", exc)
            stored = None
        return max([*starts, *([stored] if stored else [])], default=None)

    def remembered(self) -> dict[str, tuple[str, datetime]]:
        """Remembered cause answers, including ones still waiting to be written (in order)."""
        try:
            known = self.diary.remembered() if self.diary else {}
        except sqlite3.Error as exc:
            log.info("diary read failed (%s); using only this session's remembered answers", exc)
            known = {}
        for action, at in self.waiting:
            if action.kind == "forget_remembered":
                known = {k: v for k, v in known.items() if v[1] > at}
            elif action.kind == "remember" and action.data.get("answer") in ("yes", "no"):
                known[str(action.data.get("cause"))] = (str(action.data["answer"]), at)
        return known

    def first_use(self) -> bool:
        if self._waiting_starts():
            return False
        try:
            return self.diary.first_use() if self.diary else True
        except sqlite3.Error:
            return True  # unknown: say the first-use disclaimer once more rather than never
