"""The cramp diary: every episode, kept on the device in one SQLite file.

The dialog core emits :class:`~assistant.conversation.events.Record` actions as an episode unfolds
(start, each routine, the outcome, each cause answer, the end). :meth:`Diary.record`
commits each one immediately, so a coach that is killed or loses power mid-episode
keeps everything said so far. The dialog only reads the diary through the small
:class:`DiaryView` protocol ("how many this week", "when was the last one").

Durability: WAL journal with ``synchronous=FULL``. In WAL mode ``NORMAL`` already
survives a killed *process*, but a Pi in a kitchen also gets unplugged, and ``NORMAL``
may then lose the last commits. An episode writes a handful of rows, so the extra
fsync per commit costs nothing noticeable, even on an SD card.

Privacy: the file is created with mode 0600 (SQLite gives its ``-wal``/``-shm``
files the same mode) in a directory created with mode 0700.

Never silently replaced: a diary that is damaged, read-only, locked or not a file is
reported (:class:`DiaryError`, with the fix) and left exactly as it is. Reading
(``cramp-coach diary``) opens it read-only. Records that could not be written are kept
in a *pending file* next to it (:func:`save_pending`, see :mod:`assistant.diary.keeper`)
and added the next time the diary opens for writing.

Remembered answers: a few cause answers do not change between episodes (regular medicines,
pregnancy, age group; ``remember_days`` in prompts/causes.yaml). The dialog sends them as
``remember`` records and they are kept in a small ``profile`` table of the same file, as
durable as the episodes, so the coach does not ask them every time. ``forget_remembered``
records, :meth:`Diary.forget_remembered` (``cramp-coach diary --forget-answers``) and
deleting the whole diary (``--forget``) clear them.

Times are stored as UTC ISO-8601 strings (which sort as text); they are shown in
local time.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from assistant.conversation.events import Record
from assistant.errors import UserFacingError

log = logging.getLogger(__name__)

DIARY_FILE = "diary.sqlite3"
SCHEMA_VERSION = 2
"""2 added the ``profile`` table (remembered answers); a version-1 diary gets it when opened for writing."""

BUSY_TIMEOUT_MS = 50
"""How long a write waits for another program's lock: short, so a diary write never
delays a countdown cue noticeably; a record that cannot wait is kept and retried."""
PENDING_SUFFIX = ".pending.jsonl"

EPISODE_KINDS = ("episode_start", "routine", "outcome", "answer", "episode_end")
PROFILE_KINDS = ("remember", "forget_remembered")
"""Records about the person rather than one episode: kept in the ``profile`` table."""

#: A record that arrives with no episode open (e.g. cause answers after the process was
#: restarted) joins the most recent episode if that was active this recently.
ATTACH_WINDOW = timedelta(hours=1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,      -- UTC ISO-8601
    last_at     TEXT NOT NULL,      -- time of the latest record of this episode
    ended_at    TEXT,               -- NULL while open (or if the coach was killed)
    side        TEXT,
    location    TEXT,
    duration_s  REAL                -- from episode_end; NULL if never closed
);
CREATE INDEX IF NOT EXISTS episodes_started ON episodes(started_at);
CREATE TABLE IF NOT EXISTS records (
    id          INTEGER PRIMARY KEY,
    episode_id  INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL       -- JSON
);
CREATE INDEX IF NOT EXISTS records_episode ON records(episode_id);
CREATE TABLE IF NOT EXISTS profile (
    cause       TEXT PRIMARY KEY,   -- the cause question's id (causes.yaml), e.g. medication
    answer      TEXT NOT NULL,      -- yes | no
    slots       TEXT NOT NULL,      -- JSON, e.g. {"medication": "statin"}
    at          TEXT NOT NULL       -- UTC ISO-8601, when it was answered
);
"""


class DiaryView(Protocol):
    """What the dialog core may ask the diary (read-only)."""

    def count_since(self, since: datetime) -> int:
        """Episodes started at or after ``since``."""
        ...

    def last_start(self) -> datetime | None:
        """Start time of the most recent episode (UTC), or None."""
        ...

    def first_use(self) -> bool:
        """True if no episode has ever been recorded."""
        ...


@dataclass(frozen=True)
class Answer:
    """One answered cause question."""

    cause: str
    answer: str
    """yes | no | unsure | skip (as the dialog reported it)."""
    slots: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Remembered:
    """A cause answer kept between episodes (``cramp-coach diary`` lists them)."""

    cause: str
    answer: str
    slots: dict[str, str]
    at: datetime
    """UTC, when it was answered."""


@dataclass(frozen=True)
class Episode:
    """One cramp, as listed and exported."""

    id: int
    started_at: datetime
    """UTC."""
    side: str | None
    location: str | None
    duration_s: float
    """From ``episode_end``; for an episode never closed, estimated from its last record."""
    closed: bool
    """False if the coach stopped (killed, power loss) before the episode ended."""
    routines: tuple[str, ...]
    outcome: str | None
    """The last outcome reported: better | worse | gave_up | stopped."""
    answers: tuple[Answer, ...]
    helped: str | None
    """The routine done just before the outcome "better", if any."""


@dataclass(frozen=True)
class Summary:
    """Counts and patterns for ``cramp-coach diary summary``."""

    total: int
    per_week: list[tuple[str, int]]
    """(ISO week like ``2024-W07``, episodes), oldest first, local time."""
    per_month: list[tuple[str, int]]
    """(``2024-02``, episodes), oldest first, local time."""
    average_duration_s: float | None
    helped: list[tuple[str, int]]
    """Routines that ended an episode with "better", most often first."""
    causes: list[tuple[str, int]]
    """Causes answered "yes", most often first."""
    outcomes: list[tuple[str, int]]


def to_utc_text(when: datetime) -> str:
    """UTC ISO text that sorts correctly; a naive ``when`` is taken as local time."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def from_utc_text(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def default_path() -> Path:
    from assistant.paths import data_dir

    return data_dir() / DIARY_FILE


class DiaryError(UserFacingError):
    """The diary cannot be used as it is; the message says why and what to do."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """damaged | locked | readonly | unreadable | directory | newer"""


def diary_error(path: Path, exc: BaseException) -> DiaryError:
    """Turn an SQLite or OS error about the diary at ``path`` into a message with the fix."""
    text = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    low = text.lower()
    if path.is_dir():
        return DiaryError(f"the diary {path} is a directory, not a diary file. Rename or remove that directory, "
                          "or set [diary] path in the config file", "directory")
    if "locked" in low or "busy" in low:
        return DiaryError(f"the diary {path} is in use by another program ({text}). Close it (is another "
                          "cramp-coach running?) and try again", "locked")
    if "readonly" in low or "read-only" in low:
        files = " ".join(str(f) for f in list(diary_files(path))[:3] if f.exists()) or str(path)
        return DiaryError(f"the diary {path} is read-only ({text}). Make it writable (chmod u+w {files}) "
                          "or set [diary] path to a file you own", "readonly")
    if isinstance(exc, OSError) or "unable to open" in low or "permission" in low:
        return DiaryError(f"cannot open the diary {path} ({text}). Check that you can read and write it and "
                          "its folder, or set [diary] path to a file you own", "unreadable")
    return DiaryError(
        f"cannot open the diary {path}: it is damaged ({text}). Nothing was changed. Move it aside "
        f"(mv {path} {path}.damaged): a new diary is then started and your old file is kept; "
        "or delete it with 'cramp-coach diary --forget'", "damaged")


def pending_path(path: Path) -> Path:
    """The file next to the diary holding records that could not be written yet."""
    return path.with_name(path.stem + PENDING_SUFFIX)


def save_pending(path: Path, records: list[tuple[Record, datetime]]) -> Path:
    """Append ``records`` durably (fsync, mode 0600) to the pending file of the diary ``path``."""
    target = pending_path(path)
    lines = "".join(json.dumps({"at": to_utc_text(at), "kind": r.kind, "data": r.data}, sort_keys=True) + "\n"
                    for r, at in records)
    created = not target.exists()
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, lines.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target


def read_pending(path: Path) -> tuple[list[tuple[Record, datetime]], int]:
    """(records, lines that could not be read) from the pending file of the diary ``path``."""
    target = pending_path(path)
    records: list[tuple[Record, datetime]] = []
    bad = 0
    try:
        text = target.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            records.append((Record(str(row["kind"]), dict(row["data"])), from_utc_text(row["at"])))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return records, bad


def _make_private_dir(directory: Path) -> None:
    """Create missing directories with mode 0700 (existing ones are left alone)."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700)
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask


def _create_private_file(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class Diary:
    """The diary file: write records, answer the dialog's questions, list episodes.

    ``now`` gives the wall-clock time for records written without an explicit ``at``
    (tests inject a fixed clock).
    """

    def __init__(self, path: Path | None = None, *, now: Callable[[], datetime] | None = None,
                 readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._now = now or (lambda: datetime.now(UTC))
        self.readonly = readonly
        """Open for reading only: never creates, changes or imports anything."""
        self._current: int | None = None
        self._conn: sqlite3.Connection | None = None
        self.imported = 0
        """Records added from the pending file when the diary was opened."""
        self._connect()
        if not readonly:
            self._import_pending()

    # ------------------------------------------------------------------ file handling

    def _connect(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            if self.path.is_dir():
                raise IsADirectoryError(21, "is a directory")
            if self.readonly:
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                       isolation_level=None, check_same_thread=False)
            else:
                _make_private_dir(self.path.parent)
                if not self.path.exists():
                    _create_private_file(self.path)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DiaryError(
                    f"the diary {self.path} was written by a newer cramp-coach (schema {version}); "
                    "upgrade cramp-coach or set [diary] path to another file", "newer"
                )
            if not self.readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                if version < SCHEMA_VERSION:  # a new (empty) file, or version 1 (adds the profile table)
                    conn.executescript(_SCHEMA)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
        except DiaryError:
            if conn is not None:
                conn.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise diary_error(self.path, exc) from None
        self._conn = conn
        self._current = None

    def has_tables(self) -> bool:
        """False for an empty file (a diary created but never written to)."""
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'episodes'").fetchone() is not None

    def write_problem(self) -> DiaryError | None:
        """Why a record cannot be written right now (locked, read-only...), or None."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            return diary_error(self.path, exc)
        return None

    def _import_pending(self) -> None:
        """Add the records an earlier session could not write, then remove the pending file."""
        records, bad = read_pending(self.path)
        target = pending_path(self.path)
        if not records and not bad:
            return
        try:
            with _transaction(self.conn):
                for action, at in records:
                    when = to_utc_text(at)
                    if self.conn.execute(  # already there (a crash between commit and removal)
                        "SELECT 1 FROM records WHERE at = ? AND kind = ? AND data = ?",
                        (when, action.kind, json.dumps(dict(action.data), sort_keys=True)),
                    ).fetchone() is None:
                        self._insert(action, when)
                        self.imported += 1
        except sqlite3.Error as exc:
            log.info("pending diary records in %s not added yet: %s", target, exc)
            self._current = None
            return
        self._current = None  # live records attach by time, not to an imported open episode
        if bad:
            kept = target.with_name(target.name + ".unreadable")
            target.replace(kept)
            log.warning("%d unreadable line(s) in %s; the file is kept as %s", bad, target, kept)
        else:
            target.unlink(missing_ok=True)
        log.info("added %d pending record(s) from %s to the diary", self.imported, target)

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "diary is closed"
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Diary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def record(self, action: Record, at: datetime | None = None) -> int:
        """Store one record, committed before returning; returns its episode id.

        ``episode_start`` opens a new episode; other kinds attach to the open one.
        ``episode_end`` closes it. A record with no episode open joins the most recent
        episode if that was active within :data:`ATTACH_WINDOW`, else starts one (so
        nothing is ever dropped).
        """
        if action.kind not in EPISODE_KINDS and action.kind not in PROFILE_KINDS:
            log.warning("diary: ignoring unknown record kind %r", action.kind)
            return self._current or 0
        if not self.path.exists():  # forgotten while we were running: start afresh
            log.info("diary file %s disappeared; starting a new one", self.path)
            self.close()
            self._connect()
        when = to_utc_text(at or self._now())
        saved = self._current
        try:
            with _transaction(self.conn):
                return self._insert(action, when)
        except BaseException:
            self._current = saved  # not written: the record will be offered again
            raise

    def _insert(self, action: Record, when: str) -> int:
        """Add one record inside the caller's transaction; returns its episode id."""
        data = dict(action.data)
        conn = self.conn
        if action.kind in PROFILE_KINDS:
            self._profile(action.kind, data, when)
            return self._current or 0
        if action.kind == "episode_start":
            episode = self._open_episode(when, data.get("side"), data.get("location"))
        elif self._current is not None:
            episode = self._current
        else:
            episode, opened = self._attach_target(when)
            if opened:  # records without a start: treat this as the open episode
                self._current = episode
        conn.execute(
            "INSERT INTO records(episode_id, at, kind, data) VALUES (?, ?, ?, ?)",
            (episode, when, action.kind, json.dumps(data, sort_keys=True)),
        )
        conn.execute("UPDATE episodes SET last_at = max(last_at, ?) WHERE id = ?", (when, episode))
        if action.kind == "episode_end":
            duration = data.get("duration_s")
            conn.execute(
                "UPDATE episodes SET ended_at = ?, duration_s = ? WHERE id = ?",
                (when, float(duration) if isinstance(duration, int | float) else None, episode),
            )
        if action.kind == "episode_start":
            self._current = episode
        elif action.kind == "episode_end":
            self._current = None
        return episode

    def _profile(self, kind: str, data: dict[str, Any], when: str) -> None:
        """Keep (``remember``) or clear (``forget_remembered``) remembered answers."""
        if kind == "forget_remembered":  # only what was known then (a re-imported pending record is late)
            self.conn.execute("DELETE FROM profile WHERE at <= ?", (when,))
            return
        cause, answer = data.get("cause"), data.get("answer")
        if not isinstance(cause, str) or answer not in ("yes", "no"):
            log.warning("diary: ignoring a remembered answer without a cause or a yes/no: %r", data)
            return
        slots = data.get("slots") if isinstance(data.get("slots"), dict) else {}
        self.conn.execute(
            "INSERT INTO profile(cause, answer, slots, at) VALUES (?, ?, ?, ?) ON CONFLICT(cause) DO UPDATE "
            "SET answer = excluded.answer, slots = excluded.slots, at = excluded.at WHERE excluded.at >= profile.at",
            (cause, answer, json.dumps(slots, sort_keys=True), when),
        )

    def _open_episode(self, when: str, side: Any, location: Any) -> int:
        cur = self.conn.execute(
            "INSERT INTO episodes(started_at, last_at, side, location) VALUES (?, ?, ?, ?)",
            (when, when, side or None, location or None),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def _attach_target(self, when: str) -> tuple[int, bool]:
        """(episode id, whether it was just opened) for a record with no episode open."""
        row = self.conn.execute(
            "SELECT id, last_at FROM episodes ORDER BY started_at DESC, id DESC LIMIT 1"
        ).fetchone()
        if row and from_utc_text(when) - from_utc_text(row[1]) <= ATTACH_WINDOW:
            return int(row[0]), False
        return self._open_episode(when, None, None), True

    # ------------------------------------------------------------------ DiaryView

    def count_since(self, since: datetime) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM episodes WHERE started_at >= ?", (to_utc_text(since),)
        ).fetchone()
        return int(row[0])

    def last_start(self) -> datetime | None:
        row = self.conn.execute("SELECT max(started_at) FROM episodes").fetchone()
        return from_utc_text(row[0]) if row and row[0] else None

    def first_use(self) -> bool:
        return self.conn.execute("SELECT 1 FROM episodes LIMIT 1").fetchone() is None

    def remembered(self) -> dict[str, tuple[str, datetime]]:
        """Remembered cause answers for the dialog: cause id -> (yes | no, when answered, UTC)."""
        return {r.cause: (r.answer, r.at) for r in self.remembered_answers()}

    # ------------------------------------------------------------------ remembered answers

    def remembered_answers(self) -> list[Remembered]:
        """The remembered answers, by cause (none in a version-1 diary opened read-only)."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'profile'").fetchone() is None:
            return []
        return [Remembered(cause, answer, {str(k): str(v) for k, v in json.loads(slots).items()},
                           from_utc_text(at))
                for cause, answer, slots, at in self.conn.execute(
                    "SELECT cause, answer, slots, at FROM profile ORDER BY cause")]

    def forget_remembered(self) -> int:
        """Delete every remembered answer (the episodes stay); returns how many there were."""
        with _transaction(self.conn):
            return int(self.conn.execute("DELETE FROM profile").rowcount)

    # ------------------------------------------------------------------ reading

    def episodes(self, since: datetime | None = None) -> list[Episode]:
        """All episodes (oldest first), with their routines, outcome and answers."""
        where, params = ("WHERE started_at >= ?", (to_utc_text(since),)) if since else ("", ())
        rows = self.conn.execute(
            "SELECT id, started_at, last_at, ended_at, side, location, duration_s FROM episodes "
            f"{where} ORDER BY started_at, id",
            params,
        ).fetchall()
        records: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        for episode_id, kind, data in self.conn.execute(
            "SELECT episode_id, kind, data FROM records ORDER BY at, id"
        ):
            records.setdefault(episode_id, []).append((kind, json.loads(data)))
        return [_episode(row, records.get(row[0], [])) for row in rows]

    def summary(self) -> Summary:
        return summarize(self.episodes())


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _episode(row: tuple[Any, ...], records: list[tuple[str, dict[str, Any]]]) -> Episode:
    episode_id, started_at, last_at, ended_at, side, location, duration_s = row
    start = from_utc_text(started_at)
    if duration_s is None:  # never closed, or closed without a duration
        duration_s = (from_utc_text(ended_at or last_at) - start).total_seconds()
    routines: list[str] = []
    answers: list[Answer] = []
    outcome: str | None = None
    helped: str | None = None
    for kind, data in records:
        if kind == "routine" and data.get("name"):
            routines.append(str(data["name"]))
        elif kind == "outcome":
            outcome = data.get("result")
            if outcome == "better" and routines:
                helped = routines[-1]
        elif kind == "answer":
            slots = data.get("slots") or {}
            answers.append(Answer(str(data.get("cause")), str(data.get("answer")),
                                  {str(k): str(v) for k, v in slots.items()}))
    return Episode(
        id=episode_id, started_at=start, side=side, location=location,
        duration_s=float(duration_s), closed=ended_at is not None, routines=tuple(routines),
        outcome=outcome, answers=tuple(answers), helped=helped,
    )


def summarize(episodes: list[Episode]) -> Summary:
    """Per-week/month counts (local time), average duration, what helped, likely causes."""
    weeks: Counter[str] = Counter()
    months: Counter[str] = Counter()
    helped: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for ep in episodes:
        local = ep.started_at.astimezone()
        year, week, _ = local.isocalendar()
        weeks[f"{year}-W{week:02d}"] += 1
        months[local.strftime("%Y-%m")] += 1
        if ep.helped:
            helped[ep.helped] += 1
        if ep.outcome:
            outcomes[ep.outcome] += 1
        for a in ep.answers:
            if a.answer == "yes":
                causes[a.cause] += 1
    durations = [ep.duration_s for ep in episodes]
    return Summary(
        total=len(episodes),
        per_week=sorted(weeks.items()),
        per_month=sorted(months.items()),
        average_duration_s=sum(durations) / len(durations) if durations else None,
        helped=helped.most_common(),
        causes=causes.most_common(),
        outcomes=outcomes.most_common(),
    )


def diary_files(path: Path) -> Iterator[Path]:
    """The database, its WAL/shared-memory companions and its records still pending."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        yield path.with_name(path.name + suffix)
    yield pending_path(path)


def forget(path: Path) -> bool:
    """Delete the diary and its companion files; True if anything was deleted."""
    deleted = False
    for f in diary_files(path):
        try:
            f.unlink()
            deleted = True
        except FileNotFoundError:
            pass
    return deleted
