"""The event log reads back: every row type is declared, and a logged conversation replays.

A conversation is run by ``cramp-coach simulate`` (real speech through the real
recognizer, the real voice, a virtual clock). Its JSON Lines log is then read back with
``from_dict`` and its events are fed, at their logged times, to a fresh coach: the coach
must take the same actions it logged. That is what makes a log from a real kitchen
usable to reproduce a bug in the core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from user_turns import make_turns

from assistant.commands.cli import main
from assistant.config import load_config
from assistant.conversation import events as ev
from assistant.conversation.timers import FakeClock
from assistant.runners.session import open_session

ACTION_ROWS = {cls.wire_name for cls in ev.ACTION_TYPES} - {"say"}
"""Actions the runners log as the core emits them (a Say is logged when it is spoken)."""


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """A conversation with a barge-in, a re-prompt after silence and a whole relief."""
    tmp = tmp_path_factory.mktemp("log")
    turns = make_turns(tmp)
    log = tmp / "events.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRAMP_COACH_CONFIG_DIR", str(tmp / "cfg"))
        mp.setenv("CRAMP_COACH_DATA", str(tmp / "data"))
        rc = main(["--seed", "3", "simulate", "--hold-seconds", "25", "--turns", str(turns["left_foot"]),
                   "?checkin", "@12", str(turns["still"]), "+1.0", str(turns["stop"]),
                   str(turns["foot"]), "?checkin", str(turns["better"]), "?offer", str(turns["no"]),
                   "--log", str(log)])
    assert rc == 0
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_every_row_reads_back_into_its_declared_type(logged: list[dict[str, Any]]) -> None:
    types = {row["type"] for row in logged}
    assert {"heard", "say", "cue", "listen", "state", "tick", "silence", "speech_timing", "stop_speaking",
            "record", "user_audio"} <= types
    for row in logged:
        item = ev.from_dict(row)
        again = json.loads(json.dumps(ev.to_dict(item)))  # as written to the file
        assert again == {k: v for k, v in row.items() if k != "t"}, row


def test_unknown_rows_are_refused() -> None:
    with pytest.raises(ev.UnknownRow):
        ev.from_dict({"type": "teleport", "t": 1.0})
    with pytest.raises(ev.UnknownRow):
        ev.from_dict({"type": "heard", "t": 1.0})  # no intent


def test_clock_fields_are_written_relative_to_the_log_start() -> None:
    row = ev.to_dict(ev.SpeechTiming("relief.start", 1002.5), t0=1000.0)
    assert row == {"type": "speech_timing", "key": "relief.start", "ends_at": 2.5}
    assert ev.from_dict(row, t0=1000.0) == ev.SpeechTiming("relief.start", 1002.5)


def test_a_logged_conversation_replays_into_the_core_with_the_same_actions(
        logged: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAMP_COACH_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("CRAMP_COACH_DATA", str(tmp_path / "data"))
    config = load_config({"hold_seconds": 25})
    clock = FakeClock(0.0)
    coach = open_session(config, clock, seed=3, use_diary=False).coach

    replayed: list[ev.Action] = list(coach.start())
    for t, event in ev.replay_events(logged):
        # The log keeps times to the millisecond: a tick was logged because something was
        # due, so let the clock reach that deadline if rounding left it just short.
        due = coach.next_deadline()
        if isinstance(event, ev.Tick) and due is not None and t < due <= t + 0.001:
            t = due
        clock.set(max(clock.now(), t))
        replayed += coach.handle(event)

    def rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k not in ("t", "deadline")} for row in items
                if row["type"] in ACTION_ROWS]

    assert rows([json.loads(json.dumps(ev.to_dict(a))) for a in replayed if not isinstance(a, ev.Say)]) == rows(logged)
    # Every line the runner spoke or dropped came out of the replayed core, in order
    # (a Say still queued when "stop" cleared the queue is neither spoken nor dropped).
    says = iter([(a.key, a.text) for a in replayed if isinstance(a, ev.Say)])
    spoken = [(row["key"], row["text"]) for row in logged if row["type"] in ("say", "cue", "dropped")]
    assert len(spoken) > 10
    assert all(line in says for line in spoken), "a logged line the replayed coach never said"
    assert any(row["type"] == "stop_speaking" for row in logged)
    assert any(row["type"] == "silence" for row in logged)
