"""The cramp diary: durable records, what the dialog asks, listing, CSV, forgetting."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assistant.conversation.events import Record
from assistant.diary.store import Diary, DiaryView, summarize
from assistant.errors import UserFacingError

T0 = datetime(2024, 3, 4, 9, 30, tzinfo=UTC)  # a Monday


def _episode(diary: Diary, start: datetime, *, side: str | None = "left", location: str | None = "calf",
             routines: tuple[str, ...] = ("toe_pull",), result: str = "better",
             answers: tuple[tuple[str, str], ...] = (), duration: float = 90.0) -> None:
    diary.record(Record("episode_start", {"side": side, "location": location}), start)
    for i, name in enumerate(routines):
        diary.record(Record("routine", {"name": name}), start + timedelta(seconds=5 + 30 * i))
    diary.record(Record("outcome", {"result": result}), start + timedelta(seconds=duration - 20))
    for j, (cause, answer) in enumerate(answers):
        diary.record(Record("answer", {"cause": cause, "answer": answer, "slots": {}}),
                     start + timedelta(seconds=duration - 10 + j))
    diary.record(Record("episode_end", {"duration_s": duration}), start + timedelta(seconds=duration))


def test_files_are_private_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "diary.sqlite3"
    old = os.umask(0o022)
    try:
        with Diary(path) as diary:
            diary.record(Record("episode_start", {"side": None, "location": None}), T0)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            wal = path.with_name(path.name + "-wal")
            assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
            assert diary.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert diary.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_diary_view_for_the_dialog(tmp_path: Path) -> None:
    diary = Diary(tmp_path / "d.sqlite3")
    view: DiaryView = diary
    assert view.first_use() and view.last_start() is None and view.count_since(T0) == 0
    _episode(diary, T0)
    _episode(diary, T0 + timedelta(days=3))
    _episode(diary, T0 + timedelta(days=9))
    assert not view.first_use()
    assert view.last_start() == T0 + timedelta(days=9)
    assert view.count_since(T0) == 3
    assert view.count_since(T0 + timedelta(days=3)) == 3 - 1  # at/after, inclusive
    assert view.count_since(T0 + timedelta(days=3, seconds=1)) == 1
    # naive datetimes are local time; the same instant gives the same answer
    local_naive = (T0 + timedelta(days=3)).astimezone().replace(tzinfo=None)
    assert view.count_since(local_naive) == 2
    diary.close()


def test_records_attach_to_the_open_episode(tmp_path: Path) -> None:
    with Diary(tmp_path / "d.sqlite3") as diary:
        _episode(diary, T0, routines=("toe_pull", "calf_stretch"), answers=(("dehydration", "yes"),))
        diary.record(Record("episode_start", {"side": "right", "location": "toes"}), T0 + timedelta(hours=5))
        diary.record(Record("routine", {"name": "toe_spread"}), T0 + timedelta(hours=5, seconds=3))
        diary.record(Record("answer", {"cause": "medication", "answer": "yes",
                                       "slots": {"medication": "statin"}}), T0 + timedelta(hours=5, seconds=50))
        first, second = diary.episodes()
    assert first.routines == ("toe_pull", "calf_stretch") and first.helped == "calf_stretch"
    assert first.closed and first.duration_s == 90.0 and first.outcome == "better"
    assert [(a.cause, a.answer) for a in first.answers] == [("dehydration", "yes")]
    assert (second.side, second.location, second.routines) == ("right", "toes", ("toe_spread",))
    assert second.answers[0].slots == {"medication": "statin"}
    assert not second.closed and second.duration_s == 50.0  # estimated from its last record


def test_record_without_open_episode(tmp_path: Path) -> None:
    """After a restart, late answers join the recent episode; much later ones start a new one."""
    path = tmp_path / "d.sqlite3"
    with Diary(path) as diary:
        diary.record(Record("episode_start", {"side": "left", "location": None}), T0)
        diary.record(Record("episode_end", {"duration_s": 60}), T0 + timedelta(seconds=60))
    with Diary(path) as diary:  # a new process
        diary.record(Record("answer", {"cause": "cold", "answer": "yes", "slots": {}}), T0 + timedelta(minutes=3))
        diary.record(Record("routine", {"name": "walk_it_off"}), T0 + timedelta(days=1))
        episodes = diary.episodes()
    assert len(episodes) == 2
    assert episodes[0].answers[0].cause == "cold"
    assert episodes[1].routines == ("walk_it_off",) and episodes[1].started_at == T0 + timedelta(days=1)


def test_summary_counts(tmp_path: Path) -> None:
    with Diary(tmp_path / "d.sqlite3") as diary:
        # 3 in the week of T0, 1 the next week, 1 the month after (mid-day: no timezone edge)
        _episode(diary, T0, answers=(("dehydration", "yes"), ("footwear", "no")), duration=60)
        _episode(diary, T0 + timedelta(days=1), routines=("toe_pull", "massage"), duration=120,
                 answers=(("dehydration", "yes"),))
        _episode(diary, T0 + timedelta(days=2), result="worse", duration=600)
        _episode(diary, T0 + timedelta(days=7), answers=(("cold", "yes"),), duration=30)
        _episode(diary, T0 + timedelta(days=31), result="gave_up", duration=90)
        summary = diary.summary()
    local = [T0 + timedelta(days=d) for d in (0, 7, 31)]
    weeks = [f"{d.astimezone().isocalendar()[0]}-W{d.astimezone().isocalendar()[1]:02d}" for d in local]
    assert summary.total == 5
    assert summary.per_week == [(weeks[0], 3), (weeks[1], 1), (weeks[2], 1)]
    assert summary.per_month == [("2024-03", 4), ("2024-04", 1)]
    assert summary.average_duration_s == pytest.approx((60 + 120 + 600 + 30 + 90) / 5)
    assert summary.helped == [("toe_pull", 2), ("massage", 1)]
    assert summary.causes == [("dehydration", 2), ("cold", 1)]
    assert dict(summary.outcomes) == {"better": 3, "worse": 1, "gave_up": 1}
    assert summarize([]).total == 0 and summarize([]).average_duration_s is None


_KILLED_WRITER = r"""
import os, sys
from datetime import datetime, timezone
from assistant.diary.store import Diary
from assistant.conversation.events import Record
diary = Diary(sys.argv[1])
t = datetime(2024, 3, 4, 9, 30, tzinfo=timezone.utc)
diary.record(Record("episode_start", {"side": "left", "location": "arch"}), t)
diary.record(Record("routine", {"name": "toe_pull"}), t.replace(second=10))
diary.record(Record("answer", {"cause": "dehydration", "answer": "yes", "slots": {}}), t.replace(second=40))
print("recorded", flush=True)
sys.stdin.read()   # wait here, mid-episode, until killed
"""


def test_durable_across_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "diary.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "recorded"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    # The WAL file is still there (no clean close): the data lives in it until a checkpoint.
    assert path.with_name(path.name + "-wal").exists()
    with Diary(path) as diary:
        (episode,) = diary.episodes()
        assert not diary.first_use() and diary.count_since(T0) == 1
    assert (episode.side, episode.location) == ("left", "arch")
    assert episode.routines == ("toe_pull",)
    assert [(a.cause, a.answer) for a in episode.answers] == [("dehydration", "yes")]
    assert not episode.closed and episode.duration_s == 40.0


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "diary.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserFacingError, match="cannot open the diary .*--forget"):
        Diary(path)


def _cli(*args: str, env_diary: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRAMP_COACH_DIARY_PATH=str(env_diary), CRAMP_COACH_CONFIG=str(env_diary) + ".toml")
    return subprocess.run([sys.executable, "-m", "assistant.commands.cli", "diary", *args], env=env, text=True,
                          capture_output=True, input=stdin, timeout=60)


def test_cli_list_summary_and_csv_export(tmp_path: Path) -> None:
    path = tmp_path / "diary.sqlite3"
    with Diary(path) as diary:
        _episode(diary, T0, answers=(("dehydration", "yes"),))
        _episode(diary, T0 + timedelta(days=1), side=None, location=None,
                 routines=("calf_stretch", "massage"), result="worse", duration=300)
        diary.record(Record("episode_start", {"side": "right", "location": "toes"}), T0 + timedelta(days=2))
        diary.record(Record("routine", {"name": "toe_spread"}), T0 + timedelta(days=2, seconds=25))

    listed = _cli("list", env_diary=path)
    assert listed.returncode == 0, listed.stderr
    assert "3 episode(s)" in listed.stdout and "(interrupted)" in listed.stdout
    assert "dehydration=yes" in listed.stdout

    summary = _cli("summary", env_diary=path)
    assert summary.returncode == 0, summary.stderr
    assert "3 episode(s)" in summary.stdout and "2024-03: 3" in summary.stdout
    assert "routines that helped: toe_pull (1)" in summary.stdout

    out = tmp_path / "export.csv"
    exported = _cli("export", "--csv", str(out), env_diary=path)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["time", "side", "location", "duration_s", "routines", "outcome", "answers"]
    assert len(rows) == 3
    assert datetime.fromisoformat(rows[0]["time"]) == T0
    assert rows[0]["side"] == "left" and rows[0]["duration_s"] == "90.0" and rows[0]["outcome"] == "better"
    assert json.loads(rows[0]["answers"]) == [{"cause": "dehydration", "answer": "yes"}]
    assert rows[1]["routines"] == "calf_stretch;massage" and rows[1]["side"] == ""
    assert rows[2]["duration_s"] == "25.0" and rows[2]["outcome"] == ""

    missing = _cli("export", env_diary=path)
    assert missing.returncode == 2 and "--csv FILE" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_reading_never_creates_a_diary(tmp_path: Path) -> None:
    path = tmp_path / "none" / "diary.sqlite3"
    result = _cli("list", env_diary=path)
    assert result.returncode == 0 and "No diary yet" in result.stdout
    assert not path.parent.exists()


def test_forget(tmp_path: Path) -> None:
    path = tmp_path / "diary.sqlite3"
    with Diary(path) as diary:
        _episode(diary, T0)
    # Not on a terminal and no --yes: refuses, keeps the data.
    refused = _cli("--forget", env_diary=path, stdin="forget\n")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert path.exists()
    done = _cli("--forget", "--yes", env_diary=path)
    assert done.returncode == 0, done.stderr
    assert not any(p.name.startswith("diary.sqlite3") for p in tmp_path.iterdir())
    again = _cli("--forget", "--yes", env_diary=path)
    assert again.returncode == 0 and "nothing to forget" in again.stdout


def test_forget_asks_on_a_terminal(tmp_path: Path) -> None:
    """The typed confirmation, through a real pseudo-terminal."""
    import pty

    path = tmp_path / "diary.sqlite3"
    with Diary(path) as diary:
        _episode(diary, T0)

    def run_on_tty(answer: bytes) -> tuple[int, str]:
        main, sub = pty.openpty()
        env = dict(os.environ, CRAMP_COACH_DIARY_PATH=str(path))
        proc = subprocess.Popen([sys.executable, "-m", "assistant.commands.cli", "diary", "--forget"],
                                stdin=sub, stdout=sub, stderr=sub, env=env)
        os.close(sub)
        output = b""
        deadline = time.monotonic() + 30
        while b"Type 'forget'" not in output and time.monotonic() < deadline:
            output += os.read(main, 4096)
        os.write(main, answer)
        code = proc.wait(timeout=30)
        try:
            while chunk := os.read(main, 4096):
                output += chunk
        except OSError:
            pass
        os.close(main)
        return code, output.decode()

    code, text = run_on_tty(b"no\n")
    assert code == 1 and "Kept the diary" in text and path.exists()
    code, text = run_on_tty(b"forget\n")
    assert code == 0 and "Deleted" in text and not path.exists()


def test_writes_after_forget_start_a_new_diary(tmp_path: Path) -> None:
    """A running coach whose diary was forgotten keeps recording into a fresh file."""
    from assistant.diary.store import forget

    path = tmp_path / "diary.sqlite3"
    with Diary(path) as diary:
        _episode(diary, T0)
        assert forget(path)
        _episode(diary, T0 + timedelta(days=1))
    with Diary(path) as diary:
        assert [e.started_at for e in diary.episodes()] == [T0 + timedelta(days=1)]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM episodes").fetchone()[0] == 1
    conn.close()


# ---------------------------------------------------------------------- remembered answers


def test_remembered_answers_are_kept_across_reopening_and_updated(tmp_path: Path) -> None:
    path = tmp_path / "diary.sqlite3"
    with Diary(path) as diary:
        assert diary.remembered() == {}
        diary.record(Record("remember", {"cause": "medication", "answer": "yes", "slots": {"medication": "statin"}}),
                     T0)
        diary.record(Record("remember", {"cause": "pregnancy", "answer": "no", "slots": {}}), T0)
        diary.record(Record("remember", {"cause": "aging", "answer": "maybe", "slots": {}}), T0)  # not kept
    with Diary(path) as diary:  # a restart: still there
        assert diary.remembered() == {"medication": ("yes", T0), "pregnancy": ("no", T0)}
        diary.record(Record("remember", {"cause": "medication", "answer": "no", "slots": {}}), T0 + timedelta(days=1))
        (med, preg) = diary.remembered_answers()
        assert (med.cause, med.answer, med.slots, med.at) == ("medication", "no", {}, T0 + timedelta(days=1))
        assert diary.episodes() == []  # remembered answers are not episodes
        assert diary.forget_remembered() == 2
        assert diary.remembered() == {}


def test_remembered_answers_go_through_the_pending_file_and_the_keeper(tmp_path: Path) -> None:
    from assistant.diary.keeper import DiaryKeeper
    from assistant.diary.store import save_pending

    path = tmp_path / "diary.sqlite3"
    save_pending(path, [(Record("remember", {"cause": "aging", "answer": "yes", "slots": {}}), T0)])
    with Diary(path) as diary:  # added from the pending file when the diary opens
        assert diary.remembered() == {"aging": ("yes", T0)}
        # A pending "forget" from before a later answer does not delete that later answer.
        diary.record(Record("remember", {"cause": "pregnancy", "answer": "no", "slots": {}}), T0 + timedelta(hours=2))
        diary.record(Record("forget_remembered", {}), T0 + timedelta(hours=1))
        assert diary.remembered() == {"pregnancy": ("no", T0 + timedelta(hours=2))}
    keeper = DiaryKeeper(path, now=lambda: T0 + timedelta(hours=3))
    assert keeper.diary is not None
    keeper.waiting.append((Record("remember", {"cause": "medication", "answer": "no", "slots": {}}),
                           T0 + timedelta(hours=3)))  # not written yet: still counts
    assert keeper.remembered() == {"pregnancy": ("no", T0 + timedelta(hours=2)),
                                   "medication": ("no", T0 + timedelta(hours=3))}
    keeper.waiting.append((Record("forget_remembered", {}), T0 + timedelta(hours=4)))
    assert keeper.remembered() == {}
    assert keeper.flush()
    keeper.close()
    with Diary(path, readonly=True) as diary:
        assert diary.remembered() == {}


def test_a_version_1_diary_gains_remembered_answers_and_keeps_its_episodes(tmp_path: Path) -> None:
    path = tmp_path / "diary.sqlite3"
    with Diary(path) as diary:
        _episode(diary, T0)
    conn = sqlite3.connect(path)  # as written by the version before remembered answers
    conn.execute("DROP TABLE profile")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with Diary(path, readonly=True) as diary:  # reading changes nothing and shows no remembered answers
        assert diary.remembered_answers() == [] and len(diary.episodes()) == 1
    with Diary(path) as diary:
        diary.record(Record("remember", {"cause": "aging", "answer": "no", "slots": {}}), T0)
        assert diary.remembered() == {"aging": ("no", T0)} and len(diary.episodes()) == 1
        assert diary.conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_cli_lists_and_forgets_remembered_answers(tmp_path: Path) -> None:
    path = tmp_path / "diary.sqlite3"
    with Diary(path) as diary:
        _episode(diary, T0)
        diary.record(Record("remember", {"cause": "medication", "answer": "yes", "slots": {"medication": "statin"}}),
                     T0)
    listed = _cli("list", env_diary=path)
    assert listed.returncode == 0, listed.stderr
    assert "Remembered answers: medication=yes medication=statin" in listed.stdout
    assert "--forget-answers" in listed.stdout
    forgot = _cli("--forget-answers", env_diary=path)
    assert forgot.returncode == 0 and "Forgot 1 remembered answer" in forgot.stdout
    with Diary(path, readonly=True) as diary:
        assert diary.remembered() == {} and len(diary.episodes()) == 1  # the episodes stay
    assert "Remembered" not in _cli("list", env_diary=path).stdout
    # --forget deletes the whole file: the remembered answers with it.
    with Diary(path) as diary:
        diary.record(Record("remember", {"cause": "aging", "answer": "no", "slots": {}}), T0)
    assert _cli("--forget", "--yes", env_diary=path).returncode == 0
    with Diary(path) as diary:
        assert diary.remembered() == {}
