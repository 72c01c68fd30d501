"""``cramp-coach simulate``: a whole session from recorded turns, on a virtual clock."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from user_turns import make_turns

from assistant.commands.cli import main
from assistant.errors import UserFacingError
from assistant.runners.simulate import parse_turns


@pytest.fixture(scope="module")
def turns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_turns(tmp_path_factory.mktemp("turns"))


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_full_session_cues_on_schedule(turns: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CRAMP_COACH_DIARY_PATH", str(tmp_path / "diary.sqlite3"))
    out, log = tmp_path / "coach.wav", tmp_path / "events.jsonl"
    rc = main(["--seed", "3", "simulate", "--turns", str(turns["left_foot"]), "?checkin", str(turns["still"]),
               "?checkin", str(turns["better"]), "?offer", str(turns["no"]), "--out", str(out), "--log", str(log)])
    assert rc == 0
    events = _events(log)
    heard = [(e["intent"], e["slots"]) for e in events if e["type"] == "heard"]
    assert heard == [("cramp_start", {"side": "left", "location": "foot"}), ("still_cramping", {}),
                     ("better", {}), ("no", {})]
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states[:4] == ["idle", "hold", "checkin", "hold"] and states[-1] == "idle"
    # Two holds, each with its full countdown on an absolute schedule: every cue at exactly
    # its offset from the release, however long the lines around it ran.
    cues = [e for e in events if e["type"] == "cue"]
    releases = [e for e in cues if e["key"] == "countdown.0"]
    assert len(releases) == 2
    for release in releases:
        hold = [c for c in cues if release["t"] - 31 < c["t"] <= release["t"]]
        offsets = {c["key"]: round(release["t"] - c["t"], 2) for c in hold}
        for left in (20, 10, 5, 4, 3, 2, 1):
            assert offsets[f"countdown.{left}"] == left, (offsets, left)
    # The reply to the first turn starts right after the sentence ends (VAD hangover).
    first = next(e for e in events if e["type"] == "user_audio")
    first_say = next(e for e in events if e["type"] == "say")
    assert first_say["t"] - (first["t"] + first["duration"]) < 1.0
    # The coach's speech is in the WAV, at the logged times, silence in between.
    with wave.open(str(out)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    assert len(audio) / rate >= events[-1]["t"]
    for say in (e for e in events if e["type"] in ("say", "cue")):
        at = int(say["t"] * rate)
        assert np.abs(audio[at:at + rate // 2]).max() > 1000, say
    hold_gap = releases[0]["t"] - 4.5  # between "five" and the 10-second cue nobody speaks
    assert np.abs(audio[int(hold_gap * rate):int((hold_gap + 0.3) * rate)]).max() < 50
    assert "ended in state idle" in capsys.readouterr().out


def test_barge_in_stop_cuts_the_line(turns: dict[str, Path], tmp_path: Path) -> None:
    out, log = tmp_path / "coach.wav", tmp_path / "events.jsonl"
    rc = main(["simulate", "--turns", str(turns["foot"]), "+4", str(turns["stop"]),
               "--out", str(out), "--log", str(log)])
    assert rc == 0
    events = _events(log)
    instruction = next(e for e in events if e["type"] == "say" and e["key"].endswith("instruction"))
    heard = next(e for e in events if e["type"] == "heard" and e["t"] > instruction["t"])
    assert heard["intent"] == "stop"
    assert [e["type"] for e in events if e["t"] == heard["t"]][:2] == ["heard", "stop_speaking"]
    with wave.open(str(out)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    # The instruction was cut: at the end of the "okay, I'll stop" line (espeak leaves
    # ~0.3 s of quiet there) the recording is silent, though the instruction alone would
    # still have been playing.
    stopped, hint = [e for e in events if e["type"] == "say" and e["t"] >= heard["t"]][:2]
    assert stopped["key"] == "commands.stopped"
    assert instruction["t"] + 3 < heard["t"] < instruction["t"] + 6
    quiet = audio[int((hint["t"] - 0.2) * rate):int(hint["t"] * rate)]
    assert np.abs(quiet).max() < 50
    uncut = audio[int((heard["t"] - 0.5) * rate):int(heard["t"] * rate)]
    assert np.abs(uncut).max() > 1000  # it was speaking right up to the cut


def test_turn_spec_errors(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    assert [t.kind for t in parse_turns([str(wav), "@2", "?checkin", "+1", str(wav)])] == \
        ["say", "wait", "state", "barge"]
    for bad in (["@x"], ["missing.wav"], ["+1"], ["?"]):
        with pytest.raises(UserFacingError):
            parse_turns(bad)


def test_the_coachs_own_voice_coming_back_is_rejected_by_its_sound(turns: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--echo``: the coach's voice comes back into the microphone while it talks and
    counts down. The utterance pipeline scores it against what the speaker played, as the
    live loop does, so none of it is taken for the person (it is decoded as "enough",
    i.e. stop, at times)."""
    monkeypatch.setenv("CRAMP_COACH_HOLD_SECONDS", "5")
    monkeypatch.setenv("CRAMP_COACH_SILENCE_TIMEOUT", "4")
    log = tmp_path / "events.jsonl"
    assert main(["--seed", "1", "simulate", "--turns", str(turns["foot"]), "--echo", "1.0",
                 "--max-seconds", "40", "--log", str(log)]) == 0
    events = _events(log)
    assert [e["intent"] for e in events if e["type"] == "heard"] == ["cramp_start"]
    ignored = [e for e in events if e["type"] == "ignored"]
    assert len(ignored) >= 5 and {e["reason"] for e in ignored} == {"echo_audio"}, ignored
    assert any(e["type"] == "cue" for e in events) and any(e["type"] == "silence" for e in events)
