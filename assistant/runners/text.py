"""``cramp-coach --text``: the whole conversation on the keyboard and screen.

Typed lines go through the same intent templates as speech, in the same listening
context; the coach's lines are printed as they would be spoken, countdown cues at their
real times (``--time-scale`` speeds the clock up for scripted runs).
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from pathlib import Path
from typing import TextIO

from assistant.config import config_for
from assistant.conversation.events import Action, EndSession, Heard, Listen, Say, Shutdown, Silence, Tick
from assistant.conversation.timers import ScaledClock
from assistant.runners.session import EventLog, Session, open_session
from assistant.runners.signals import EXIT_CODES, graceful_shutdown


class TextRunner:
    """Feeds typed lines, silences and ticks to the coach; prints what it says."""

    def __init__(self, session: Session, clock: ScaledClock, out: TextIO, log: EventLog) -> None:
        self.session = session
        self.coach = session.coach
        self.clock = clock
        self.out = out
        self.log = log
        self.silence_at: float | None = None
        self.stop_reason: str | None = None

    def apply(self, actions: list[Action]) -> None:
        self.session.keep_records(actions)
        for action in actions:
            self.log.write(action)
            if isinstance(action, Say):
                marker = "   ... " if action.kind == "cue" else ""
                print(f"coach: {marker}{action.text}", file=self.out, flush=True)
            elif isinstance(action, Listen):
                self.silence_at = None
            elif isinstance(action, EndSession):
                print("", file=self.out, flush=True)
        timeout = self.coach.listening.silence_timeout
        if timeout is not None and any(isinstance(a, Say) and a.kind == "line" for a in actions):
            self.silence_at = self.clock.now() + timeout
        elif timeout is None:
            self.silence_at = None

    def hear(self, line: str) -> None:
        only = self.coach.listening.intents
        match = self.session.content.intents.match(line, only=only)
        heard = Heard(match.intent, match.slots, line) if match else Heard(None, {}, line)
        self.log.write(heard)
        self.apply(self.coach.handle(heard))

    def run(self, lines: queue.Queue[str | None]) -> None:
        self.apply(self.coach.start())
        while True:
            deadlines = [d for d in (self.coach.next_deadline(), self.silence_at) if d is not None]
            wait = self.clock.real_seconds(min(deadlines) - self.clock.now()) if deadlines else None
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                if self.silence_at is not None and self.clock.now() >= self.silence_at:
                    self.silence_at = None
                    self.log.write(Silence())
                    self.apply(self.coach.handle(Silence()))
                else:
                    self.apply(self.coach.handle(Tick()))
                continue
            if line is None:
                return
            if line.strip():
                self.hear(line)

    def shutdown(self, reason: str) -> None:
        """Stopped by a signal: the coach closes the episode and says its parting line."""
        self.stop_reason = reason
        event = Shutdown(reason)
        self.log.write(event)
        self.apply(self.coach.handle(event))


def _read_lines(stream: TextIO, into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


def run_text(args: argparse.Namespace) -> int:
    config = config_for(args)
    clock = ScaledClock(getattr(args, "time_scale", None) or 1.0)
    session = open_session(config, clock, seed=getattr(args, "seed", None))
    log_path = getattr(args, "log_events", None)
    log = EventLog(Path(log_path) if log_path else None, clock)
    print("Cramp Coach, text mode. Type what you would say (e.g. 'my foot is cramping'). Ctrl-D quits.",
          flush=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(sys.stdin, lines), daemon=True).start()
    runner = TextRunner(session, clock, sys.stdout, log)
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
            log.close()
            session.close()
    return EXIT_CODES.get(runner.stop_reason or "", 0)
