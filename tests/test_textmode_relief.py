"""The relief part of ``cramp-coach --text`` as a person in pain types it (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

from test_textmode import TextSession

from assistant.diary.store import Diary


def _events(s: TextSession) -> list[dict]:
    return [json.loads(line) for line in s.log_path.read_text().splitlines()]


def test_ow_gets_is_it_a_cramp_then_yes_starts_the_stretch(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("ow ow ow")
    s.expect("is it a cramp")
    s.type("yeah")
    s.expect("toes of your foot")
    s.type("stop")
    s.expect("stop")
    assert s.close() == 0
    states = [e["state"] for e in _events(s) if e["type"] == "state"]
    assert states[:3] == ["idle", "confirm", "hold"]


def test_worse_mid_stretch_eases_off_into_something_gentler(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("my foot is cramping")
    s.expect("toes of your foot")
    s.type("it's getting worse")
    s.expect("ease off")
    s.expect("gentler")
    s.expect("thumb")                      # the arch massage, not urgent care
    s.type("stop")
    s.expect("stop")
    assert s.close() == 0
    keys = [e.get("key") for e in _events(s) if e["type"] == "say"]
    assert "red_flag" not in keys


def test_hold_longer_then_silence_after_walking_it_off_closes_quietly(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("my foot is cramping")
    s.expect("hold longer")                # the check-in offers it
    s.type("can I hold it longer")
    s.expect("same stretch")
    s.expect("hold longer")
    for _ in range(4):                     # still hurts, through to warmth and walking it off
        s.type("no it still hurts")
        s.expect("hold longer")
    s.expect("say cramp if you need me again", within=60)  # nobody answers: a short, quiet close
    assert s.close() == 0
    events = _events(s)
    says = [e for e in events if e["type"] == "say"]
    assert "red_flag" not in [e["key"] for e in says]
    assert not any("release" in e["text"].lower() for e in says if e["key"].startswith("routine.warm_walk"))
    assert events[-1]["type"] != "error"
    diary = Diary(tmp_path / "data" / "diary.sqlite3")
    (episode,) = diary.episodes()
    assert episode.outcome == "no_answer" and episode.closed  # not "gave_up"
    assert episode.routines[-1] == "warm_walk"
