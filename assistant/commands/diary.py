"""``cramp-coach diary``: list, summarize, export (CSV) or forget the cramp diary.

``--forget`` deletes the whole diary, remembered answers included; ``--forget-answers``
deletes only the remembered answers (regular medicines, pregnancy, age group), so the
coach asks them again.

Reading never creates or changes a diary: it is opened read-only, and with no file
yet the commands say so and exit 0. A damaged, locked or unreadable diary is one line
naming the file and the fix, and is left exactly as it is.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from assistant.errors import UserFacingError

if TYPE_CHECKING:  # keep start-up light: diary (sqlite3) is imported only when used
    from assistant.diary.store import Answer, Episode, Remembered, Summary

CSV_COLUMNS = ("time", "side", "location", "duration_s", "routines", "outcome", "answers")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("list", "summary", "export"), default="list",
                        help="list episodes (default), summarize them, or export them as CSV")
    parser.add_argument("--csv", metavar="FILE", help="with 'export': the CSV file to write ('-' for stdout)")
    parser.add_argument("--forget", action="store_true",
                        help="delete the whole diary, remembered answers included (asks first)")
    parser.add_argument("--forget-answers", action="store_true",
                        help="forget only the remembered answers (medicines, pregnancy, age): they are asked again")
    parser.add_argument("--yes", action="store_true", help="with --forget: do not ask (for scripts)")
    parser.add_argument("--diary", metavar="FILE", help="use this diary file instead of the configured one")


def run(args: argparse.Namespace) -> int:
    path = _diary_path(args)
    if args.forget:
        return _forget(path, assume_yes=args.yes)
    if args.forget_answers:
        return _forget_answers(path)
    if args.action == "export" and not args.csv:
        raise UserFacingError("export needs a file: cramp-coach diary export --csv FILE (or --csv - for stdout)")
    if not path.exists():
        print(f"No diary yet ({path}): it starts with your first cramp.")
        _mention_pending(path)
        return 0
    import sqlite3

    from assistant.diary.store import Diary, diary_error

    with Diary(path, readonly=True) as diary:
        try:
            episodes = diary.episodes() if diary.has_tables() else []
            summary = summarize_episodes(episodes)
        except sqlite3.Error as exc:
            raise diary_error(path, exc) from None
        if args.action == "summary":
            print_summary(summary, path)
        elif args.action == "export":
            if args.csv == "-":
                write_csv(episodes, sys.stdout)
            else:
                out = Path(args.csv)
                try:
                    with out.open("w", newline="", encoding="utf-8") as f:
                        write_csv(episodes, f)
                except OSError as exc:
                    raise UserFacingError(f"cannot write {out}: {exc.strerror}") from None
                print(f"Wrote {len(episodes)} episode(s) to {out}")
        else:
            print_list(episodes, path)
            print_remembered(diary.remembered_answers())
    _mention_pending(path)
    return 0


def summarize_episodes(episodes: list[Episode]) -> Summary:
    from assistant.diary.store import summarize

    return summarize(episodes)


def _mention_pending(path: Path) -> None:
    """Records a session could not write yet (the diary was locked, read-only or damaged)."""
    from assistant.diary.store import pending_path, read_pending

    records, bad = read_pending(path)
    if records or bad:
        print(f"{len(records) + bad} more record(s) are waiting in {pending_path(path)}: they are added to "
              "the diary the next time the coach can write to it", file=sys.stderr)


def _diary_path(args: argparse.Namespace) -> Path:
    if getattr(args, "diary", None):
        return Path(args.diary).expanduser()
    from assistant.config import config_for

    return config_for(args).diary_path


def _forget_answers(path: Path) -> int:
    """Forget the remembered answers only; the episodes stay (no confirmation: nothing else is lost)."""
    if not path.exists():
        print(f"No diary at {path}; no remembered answers to forget.")
        return 0
    import sqlite3

    from assistant.diary.store import Diary, diary_error

    with Diary(path) as diary:
        try:
            count = diary.forget_remembered()
        except sqlite3.Error as exc:
            raise diary_error(path, exc) from None
    print(f"Forgot {count} remembered answer(s) in {path}; the coach will ask them again.")
    return 0


def _forget(path: Path, *, assume_yes: bool) -> int:
    from assistant.diary.store import diary_files, forget

    if path.is_dir():
        raise UserFacingError(f"{path} is a directory, not a diary file; nothing was deleted. "
                              "Remove or rename it yourself if it is not needed")
    if not any(f.exists() for f in diary_files(path)):
        print(f"No diary at {path}; nothing to forget.")
        return 0
    if not assume_yes:
        if not sys.stdin.isatty():
            raise UserFacingError("--forget asks for confirmation on a terminal; add --yes to skip it")
        print(f"This deletes every cramp recorded in {path}. It cannot be undone.")
        reply = input("Type 'forget' to delete the diary: ").strip().lower()
        if reply != "forget":
            print("Kept the diary.")
            return 1
    try:
        forget(path)
    except OSError as exc:
        raise UserFacingError(f"cannot delete the diary {path} ({exc.strerror}); check the permissions of "
                              f"{path.parent}") from None
    print(f"Deleted the diary {path}.")
    return 0


# ---------------------------------------------------------------------- formatting


def _minutes(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _answers_text(answers: Iterable[Answer]) -> str:
    parts = []
    for a in answers:
        slots = "".join(f" {k}={v}" for k, v in sorted(a.slots.items()))
        parts.append(f"{a.cause}={a.answer}{slots}")
    return "; ".join(parts)


def print_list(episodes: list[Episode], path: Path, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if not episodes:
        print(f"The diary {path} is empty.", file=out)
        return
    print(f"{len(episodes)} episode(s) in {path} (local time):", file=out)
    for ep in episodes:
        where = " ".join(x for x in (ep.side, ep.location) if x) or "-"
        dur = _minutes(ep.duration_s) + ("" if ep.closed else " (interrupted)")
        print(f"  {ep.started_at.astimezone():%Y-%m-%d %H:%M}  {where:<12} {dur:<18} "
              f"{', '.join(ep.routines) or '-'} -> {ep.outcome or '?'}", file=out)
        if ep.answers:
            print(f"      answers: {_answers_text(ep.answers)}", file=out)


def print_remembered(remembered: list[Remembered], out: TextIO | None = None) -> None:
    """The answers kept between episodes, and how to forget them."""
    if not remembered:
        return
    out = out or sys.stdout
    parts = [f"{r.cause}={r.answer}" + "".join(f" {k}={v}" for k, v in sorted(r.slots.items()))
             + f" ({r.at.astimezone():%Y-%m-%d})" for r in remembered]
    print("Remembered answers: " + "; ".join(parts), file=out)
    print("  (cramp-coach diary --forget-answers forgets them)", file=out)


def print_summary(s: Summary, path: Path, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    print(f"Diary {path}: {s.total} episode(s)", file=out)
    if not s.total or s.average_duration_s is None:
        return
    print(f"  average duration: {_minutes(s.average_duration_s)}", file=out)
    print("  per week:  " + ", ".join(f"{w}: {n}" for w, n in s.per_week), file=out)
    print("  per month: " + ", ".join(f"{m}: {n}" for m, n in s.per_month), file=out)
    for title, items in (("outcomes", s.outcomes), ("routines that helped", s.helped),
                         ("causes answered yes", s.causes)):
        print(f"  {title}: " + (", ".join(f"{name} ({n})" for name, n in items) or "-"), file=out)


def write_csv(episodes: list[Episode], out: TextIO) -> None:
    """One row per episode; routines joined with ';', answers as a JSON list."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for ep in episodes:
        writer.writerow([
            ep.started_at.astimezone().isoformat(timespec="seconds"),
            ep.side or "",
            ep.location or "",
            f"{ep.duration_s:.1f}",
            ";".join(ep.routines),
            ep.outcome or "",
            json.dumps([{"cause": a.cause, "answer": a.answer, **({"slots": a.slots} if a.slots else {})}
                        for a in ep.answers]),
        ])
