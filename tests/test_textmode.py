"""``cramp-coach --text`` driven like a person at a keyboard: answer when asked."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path


class TextSession:
    def __init__(self, tmp_path: Path, *extra: str) -> None:
        env = dict(os.environ, CRAMP_COACH_DATA=str(tmp_path / "data"),
                   CRAMP_COACH_CONFIG_DIR=str(tmp_path / "cfg"), PYTHONUNBUFFERED="1")
        self.log_path = tmp_path / "events.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.commands.cli", "--text", "--time-scale", "20", "--seed", "4",
             "--log-events", str(self.log_path), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.transcript: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, fragment: str, within: float = 30.0) -> str:
        """Read the coach's output until a line contains ``fragment`` (a deadline, not a sleep)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.transcript.append(line)
            if fragment.lower() in line.lower():
                return line
        raise AssertionError(f"never saw {fragment!r}; transcript:\n" + "\n".join(self.transcript))

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


def test_text_mode_completes_a_whole_session(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("ow my left calf is cramping")
    s.expect("counter")                      # the calf stretch comes first for a calf cramp
    s.type("how long left")
    s.expect("seconds left")
    s.expect("five")
    s.expect("release")                      # countdown printed as time passes
    s.expect("still cramping")
    s.type("still cramping")
    s.expect("toes of your left foot")       # next routine: the toe pull
    s.expect("still cramping")
    s.type("better")
    s.expect("caused it")
    s.type("yes")
    s.expect("swelling")
    for answer in ["no", "yes", "no", "yes", "not sure", "skip", "no", "no", "no", "no", "no", "no", "no"]:
        s.type(answer)
    s.expect("may play a part")
    s.expect("Drink water")
    s.expect("support your arch")
    s.expect("comes back")
    assert s.close() == 0
    events = [json.loads(line) for line in s.log_path.read_text().splitlines()]
    cues = [e for e in events if e["type"] == "cue"]  # cue rows, as in the live coach's log
    assert cues and all(e["kind"] == "cue" for e in cues)
    assert not [e for e in events if e["type"] == "say" and e["kind"] == "cue"]
    assert [e["key"] for e in cues[-8:]] == [f"countdown.{n}" for n in (20, 10, 5, 4, 3, 2, 1, 0)]
    gaps = [b["t"] - a["t"] for a, b in zip(cues[-6:], cues[-5:], strict=False)]
    assert all(abs(g - 1.0) < 0.5 for g in gaps), gaps  # 1 s apart on the coach's (scaled) clock
    heard = [e for e in events if e["type"] == "heard"]
    assert heard[0]["intent"] == "cramp_start" and heard[0]["slots"] == {"side": "left", "location": "calf"}
    diary = tmp_path / "data" / "diary.sqlite3"
    assert diary.exists()


def test_text_mode_says_when_it_did_not_understand(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("my foot is cramping")
    s.expect("toes")
    s.type("what's the weather like")
    s.expect("sorry, i")
    s.type("stop")
    s.expect("stop")
    assert s.close() == 0
