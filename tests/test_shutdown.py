"""Stopping the coach mid-episode: SIGTERM and SIGINT wind down cleanly, SIGKILL loses nothing.

The real ``cramp-coach`` process, in text mode and live on PulseAudio virtual devices,
is signalled in the middle of a hold. A clean stop says a parting line, closes the diary
entry as interrupted, releases the devices and exits (0 for SIGTERM, 130 for SIGINT);
a kill leaves the diary holding every step recorded before it.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import Pulse
from test_live_e2e import Coach, turns  # noqa: F401 - the module-scoped fixture is used below
from test_textmode import TextSession

from assistant.conversation.content import load_content
from assistant.diary.store import Diary, Episode

PARTING = load_content().lines["session.shutdown"].options[0]


def only_episode(diary_path: Path) -> Episode:
    with Diary(diary_path) as diary:
        (episode,) = diary.episodes()
    return episode


def text_session_in_a_hold(tmp_path: Path) -> TextSession:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("my left foot is cramping")
    s.expect("...")  # the first countdown cue: mid-hold
    return s


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_text_mode_signal_mid_hold_says_goodbye_and_closes_the_diary_entry(
        tmp_path: Path, sig: signal.Signals, code: int) -> None:
    s = text_session_in_a_hold(tmp_path)
    s.proc.send_signal(sig)
    s.expect(PARTING, within=15)
    assert s.proc.wait(timeout=15) == code
    assert s.proc.stderr is not None and "Traceback" not in s.proc.stderr.read()
    episode = only_episode(tmp_path / "data" / "diary.sqlite3")
    assert episode.closed and episode.outcome == "interrupted" and episode.side == "left"
    assert episode.routines  # the routine under way was recorded before the signal


def test_text_mode_sigkill_keeps_every_step_recorded_so_far(tmp_path: Path) -> None:
    s = text_session_in_a_hold(tmp_path)
    s.proc.send_signal(signal.SIGKILL)
    assert s.proc.wait(timeout=15) == -signal.SIGKILL
    episode = only_episode(tmp_path / "data" / "diary.sqlite3")
    assert not episode.closed and episode.side == "left" and len(episode.routines) == 1


def live_coach_in_a_hold(pulse: Pulse, tmp_path: Path, wav: Path) -> Coach:
    coach = Coach(pulse, tmp_path)
    pulse.play(wav).wait(timeout=20)
    coach.wait_for(lambda e: e["type"] == "state" and e["state"] == "hold", timeout=20)
    return coach


@pytest.mark.audio
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_live_coach_signal_mid_hold_winds_down_and_releases_the_devices(
        pulse: Pulse, tmp_path: Path, turns: dict[str, Path], sig: signal.Signals, code: int) -> None:  # noqa: F811
    coach = live_coach_in_a_hold(pulse, tmp_path, turns["left_foot"])
    try:
        coach.proc.send_signal(sig)
        assert coach.proc.wait(timeout=20) == code
    finally:
        coach.close()
    said = [e for e in coach.events() if e["type"] == "say"]
    assert said[-1]["key"] == "session.shutdown"
    assert any(e["type"] == "shutdown" and e["reason"] == sig.name for e in coach.events())
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in stderr
    assert stderr.index("microphone and speaker released") < stderr.index("diary closed")
    assert not client_streams(pulse, "source-outputs") and not client_streams(pulse, "sink-inputs")
    episode = only_episode(tmp_path / "diary.sqlite3")
    assert episode.closed and episode.outcome == "interrupted" and episode.side == "left"


def client_streams(pulse: Pulse, kind: str) -> list[str]:
    """Streams opened by a client (the remap source's own stream has no client: "-")."""
    rows = [line.split("\t") for line in pulse.pactl("list", "short", kind).splitlines()]
    return [row[0] for row in rows if len(row) > 2 and row[2] != "-"]


@pytest.mark.audio
def test_live_coach_sigkill_mid_hold_keeps_every_step_recorded_so_far(
        pulse: Pulse, tmp_path: Path, turns: dict[str, Path]) -> None:  # noqa: F811
    coach = live_coach_in_a_hold(pulse, tmp_path, turns["left_foot"])
    coach.proc.send_signal(signal.SIGKILL)
    assert coach.proc.wait(timeout=10) == -signal.SIGKILL
    episode = only_episode(tmp_path / "diary.sqlite3")
    assert not episode.closed and episode.side == "left" and len(episode.routines) == 1
