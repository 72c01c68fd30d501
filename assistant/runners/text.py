"""``cramp-coach --text``: the whole conversation on the keyboard and screen.

The same coach, built the same way and run by the same
:class:`~assistant.runners.turn_taking.TurnTaking` as the live coach: typed lines are
understood in the current listening context like speech, the coach's lines are printed
as they would be spoken (instantly), countdown cues at their real times, silences
re-prompt, and the event log has the same rows (``--time-scale`` speeds the clock up
for scripted runs).
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from assistant.config import config_for
from assistant.conversation.events import Say
from assistant.conversation.timers import ScaledClock
from assistant.runners.session import Running, build_session
from assistant.runners.signals import EXIT_CODES, graceful_shutdown
from assistant.speech_out.speakers import TextSpeaker


class PrintedVoice(TextSpeaker):
    """The coach's voice in text mode: the no-speaker trace, with countdown cues marked."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(stream=out)

    def say_line(self, say: Say) -> float:
        marker = "   ... " if say.kind == "cue" else ""
        return self.say(f"{marker}{say.text}")


class TextRunner:
    """Feeds typed lines to the turn taking; ticks and silences fire on the (scaled) clock."""

    def __init__(self, running: Running, clock: ScaledClock) -> None:
        self.running = running
        self.tt = running.turn_taking
        self.clock = clock
        self.stop_reason: str | None = None

    def run(self, lines: queue.Queue[str | None]) -> None:
        self.tt.start()
        while True:
            wake = self.tt.next_wakeup()
            wait = self.clock.real_seconds(max(0.0, wake - self.clock.now())) if wake is not None else None
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                self.tt.poll()
                continue
            if line is None:
                return
            if line.strip():
                self.tt.typed(line)

    def shutdown(self, reason: str) -> None:
        """Stopped by a signal: the coach closes the episode and says its parting line."""
        self.stop_reason = reason
        self.tt.shutdown(reason)


def _read_lines(stream: TextIO, into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


def run_text(args: argparse.Namespace) -> int:
    config = config_for(args)
    clock = ScaledClock(getattr(args, "time_scale", None) or 1.0)
    log_path = getattr(args, "log_events", None)

    def voice(_renderer: Any, _events: Any) -> PrintedVoice:
        return PrintedVoice(sys.stdout)

    running = build_session(config, clock, voice, events=Path(log_path) if log_path else None,
                            seed=getattr(args, "seed", None), voice=False, speech_in=False)
    print("Cramp Coach, text mode. Type what you would say (e.g. 'my foot is cramping'). Ctrl-D quits.",
          flush=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(sys.stdin, lines), daemon=True).start()
    runner = TextRunner(running, clock)
    stopped: list[str] = []

    def request_stop(reason: str) -> None:  # from the signal handler: wake the runner
        stopped.append(reason)
        lines.put(None)

    with graceful_shutdown(request_stop):
        try:
            runner.run(lines)
            if stopped:
                runner.shutdown(stopped[0])
        finally:
            running.close()
    return EXIT_CODES.get(runner.stop_reason or "", 0)
