"""Turn-taking and the live loop on a fake clock, with a microphone that drops out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from assistant.config import load_config
from assistant.conversation.events import Heard
from assistant.conversation.timers import FakeClock
from assistant.runners.live import LiveLoop
from assistant.runners.session import EventLog, open_session
from assistant.runners.turn_taking import TurnTaking, is_echo, words_around
from assistant.speech_in.audio import Microphone
from assistant.speech_in.vad import Endpointer
from assistant.speech_out.speakers import TextSpeaker
from assistant.testing.fakes import FlakySource


def test_echo_gate_looks_at_the_words_being_said_then() -> None:
    line = "You can say better, worse, still cramping, how long left, pause, next, repeat, or stop."
    assert is_echo("still cramping", line)
    assert not is_echo("my foot", line)
    assert not is_echo("", line)
    start = words_around(0.0, 6.0, line, 0.5)
    end = words_around(0.0, 6.0, line, 6.0)
    assert "better" in start and "stop." not in start
    assert "stop." in end and "better," not in end


def test_countdown_continues_while_the_microphone_is_unplugged(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    config = load_config(path=tmp_path / "none.toml")
    session = open_session(config, clock, seed=1, use_diary=False)
    trace = io.StringIO()
    log = io.StringIO()
    tt = TurnTaking(session, clock, TextSpeaker(stream=trace), EventLog(log, clock))
    src = FlakySource(16000)
    mic = Microphone(src.factory, clock=clock.now, stall_seconds=2.0, retry_seconds=1.0)
    mic._open()
    loop = LiveLoop(tt, mic, recognizer=None, endpointer=Endpointer(), clock=clock)
    tt.start()
    tt.apply(session.coach.handle(Heard("cramp_start", {"location": "foot"}, "my foot is cramping")))
    src.plugged = False  # unplugged right as the hold begins
    while clock.now() < 90 and session.coach.state != "checkin":
        clock.advance(0.05)
        mic.check()
        loop.step(max_wait=0.0)
    assert not mic.available
    events = [json.loads(x) for x in log.getvalue().splitlines()]
    cues = [e["key"] for e in events if e["type"] == "cue"]
    assert cues[-1] == "countdown.0" and "countdown.5" in cues
    assert session.coach.state == "checkin"
    assert "coach:" in trace.getvalue()
    src.plugged = True  # plugged back in: reopened, audio flows again
    clock.advance(1.1)
    mic.check()
    src.deliver(np.zeros(320, np.int16))
    mic.check()
    assert mic.available and mic.reopens == 1
    assert mic.read(0.1) is not None
