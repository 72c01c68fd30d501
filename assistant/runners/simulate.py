"""``cramp-coach simulate``: a whole conversation from recorded user turns, no sound hardware.

The user's turns (WAV files) go through the same voice-activity detector, recognizer and
turn-taking as the live coach, on a virtual clock (faster than real time unless
``--realtime``). The coach's lines are rendered by the real voice into one WAV, each at
the moment it would be said, with silence where it waited; a JSON Lines event log
records every line, cue, heard intent and state change with its time.

Turn specification (``--turns``), read left to right:

``FILE.wav``   the person says this as soon as the coach is quiet (done talking);
``@SECONDS``   let that much time pass first (holds count down, silences re-prompt);
``?STATE``     wait until the coach listens in that state (``checkin``, ``offer``,
               ``question``, ``idle``...) and is quiet — "answer when asked";
``+SECONDS``   the next FILE is said that long after the coach *starts* its next line,
               over its voice (barge-in: ``+1.5 stop.wav``).

After the last turn the simulation runs until the coach is back in idle and quiet
(or ``--max-seconds``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.errors import UserFacingError
from assistant.testing.fakes import ClockSpeaker

if TYPE_CHECKING:
    from assistant.conversation.timers import FakeClock
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.recognizers import Recognizer

log = logging.getLogger(__name__)

CHUNK_SECONDS = 0.02
RATE = 16000


@dataclass(frozen=True)
class Turn:
    """One step of the turn specification."""

    kind: str
    """``say`` | ``wait`` | ``state`` | ``barge``."""
    path: Path | None = None
    seconds: float = 0.0
    state: str = ""


def parse_turns(tokens: list[str]) -> list[Turn]:
    """Turn ``["foot.wav", "@20", "?checkin", "+1.5", "stop.wav"]`` into steps."""
    turns: list[Turn] = []
    barge: float | None = None
    for token in tokens:
        if token.startswith(("@", "+")):
            try:
                seconds = float(token[1:])
            except ValueError:
                raise UserFacingError(f"--turns: {token!r} is not {token[0]}SECONDS (e.g. {token[0]}2.5)") from None
            if seconds < 0:
                raise UserFacingError(f"--turns: {token!r}: seconds cannot be negative")
            if token[0] == "@":
                turns.append(Turn("wait", seconds=seconds))
            else:
                barge = seconds
        elif token.startswith("?"):
            if len(token) < 2:
                raise UserFacingError("--turns: '?' needs a state name, e.g. ?checkin")
            turns.append(Turn("state", state=token[1:]))
        else:
            path = Path(token)
            if not path.is_file():
                raise UserFacingError(f"--turns: {token}: file not found")
            turns.append(Turn("barge" if barge is not None else "say", path, barge or 0.0))
            barge = None
    if barge is not None:
        raise UserFacingError("--turns: '+SECONDS' must be followed by a WAV file")
    return turns


class Simulation:
    """Runs turns against a :class:`TurnTaking` on a :class:`FakeClock`."""

    def __init__(self, turn_taking: TurnTaking, speaker: ClockSpeaker, recognizer: Recognizer,
                 clock: FakeClock, realtime: bool = False, with_user: bool = False, seed: int = 0) -> None:
        from assistant.speech_in.vad import Endpointer

        self.tt = turn_taking
        self.speaker = speaker
        self.recognizer = recognizer
        self.clock = clock
        self.realtime = realtime
        self.with_user = with_user
        self.endpointer = Endpointer(RATE)
        self.rng = np.random.default_rng(seed)
        self._real_origin = time.monotonic()

    # ------------------------------------------------------------- time

    def _advance_to(self, t: float) -> None:
        now = self.clock.now()
        if t <= now:
            return
        if self.realtime:
            delay = t - (time.monotonic() - self._real_origin)
            if delay > 0:
                time.sleep(delay)
        self.clock.set(t)

    def _step(self, limit: float) -> None:
        """Advance to the next thing due (or ``limit``) and handle it."""
        now = self.clock.now()
        times = [limit]
        wake = self.tt.next_wakeup()
        if wake is not None:
            times.append(wake)
        if self.speaker.speaking:
            times.append(self.speaker.busy_until)
        elif not self.tt.quiet:
            from assistant.runners.turn_taking import ECHO_TAIL

            times.append(self.tt.spoken_until + ECHO_TAIL)
        self._advance_to(max(now, min(times)))
        self.tt.poll()

    def run_for(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            self._step(end)

    def run_until(self, done: Callable[[], bool], limit: float) -> bool:
        end = self.clock.now() + limit
        while not done():
            if self.clock.now() >= end:
                return False
            self._step(end)
        return True

    def quiet(self) -> bool:
        return self.tt.quiet

    # ------------------------------------------------------------- turns

    def run(self, turns: list[Turn], max_seconds: float) -> None:
        self.tt.start()
        for turn in turns:
            if turn.kind == "wait":
                self.run_for(turn.seconds)
            elif turn.kind == "state":
                def reached(s: str = turn.state) -> bool:
                    return self.quiet() and self.tt.coach.state == s

                if not self.run_until(reached, max_seconds):
                    raise UserFacingError(f"--turns: the coach never reached state {turn.state!r} "
                                          f"(it is in {self.tt.coach.state!r})")
            elif turn.kind == "say":
                assert turn.path is not None
                self.run_until(self.quiet, max_seconds)
                self.speak(turn.path)
            elif turn.kind == "barge":
                lines = len(self.speaker.started_lines)
                def next_line_started(n: int = lines) -> bool:
                    return len(self.speaker.started_lines) > n

                self.run_until(next_line_started, max_seconds)
                assert turn.path is not None
                self.run_for(turn.seconds)
                self.speak(turn.path)
        self.run_until(lambda: self.quiet() and self.tt.coach.state == "idle"
                       and self.tt.coach.next_deadline() is None, max_seconds)

    def speak(self, path: Path) -> None:
        """The person says a WAV: fed through VAD and recognizer, 20 ms at a time."""
        from assistant.speech_in.recognizers import understand
        from assistant.speech_in.wav import read_wav

        audio = read_wav(path)
        start = self.clock.now()
        self.tt.events.write({"type": "user_audio", "file": str(path), "duration": round(len(audio) / RATE, 3)})
        if self.with_user:
            self.speaker.mix_in(audio, start, gain=0.8)
        tail = np.zeros(int(RATE * 1.0), np.int16)  # room quiet after the sentence: lets the VAD close
        audio = np.concatenate([audio, tail]).astype(np.float32) + self.rng.normal(0, 2.0, len(audio) + len(tail))
        audio = np.clip(np.rint(audio), -32768, 32767).astype(np.int16)
        n = int(RATE * CHUNK_SECONDS)
        ctx = None
        for i in range(0, len(audio), n):
            self._advance_to(start + (i + n) / RATE)
            self.tt.poll()
            seg = self.endpointer.process(audio[i:i + n])
            if seg.started:
                ctx = self.tt.utterance_started()
                self.recognizer.set_context(list(ctx.intents))
                self.recognizer.start_utterance()
            if ctx is not None:
                for block in seg.audio:
                    self.recognizer.accept_audio(block.tobytes())
            if seg.ended and ctx is not None:
                transcript = self.recognizer.end_utterance()
                match = understand(self.tt.intent_set, transcript, list(ctx.intents))
                self.tt.utterance_ended(ctx, transcript.text, transcript.confidence,
                                        match.intent if match else None, match.slots if match else {})
                ctx = None
                break
        else:
            self.tt.user_speaking = False
        self.endpointer.reset()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", nargs="+", required=True, metavar="TURN",
                        help="user turns: FILE.wav, @SECONDS (wait), ?STATE (wait for state), "
                             "+SECONDS FILE.wav (say it SECONDS into the coach's next line)")
    parser.add_argument("--out", type=Path, help="WAV file for everything the coach said")
    parser.add_argument("--log", type=Path, help="JSON Lines event log")
    parser.add_argument("--realtime", action="store_true", help="run at real speed, not faster")
    parser.add_argument("--with-user", action="store_true", help="mix the user's turns into --out too")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="give up waiting for the coach after this long (virtual time)")
    parser.add_argument("--hold-seconds", type=int, help="hold every stretch this long (shorter sessions)")
    parser.add_argument("--diary", action="store_true", help="write the episode to the real diary")


def run(args: argparse.Namespace) -> int:
    from assistant.config import config_for
    from assistant.conversation.timers import FakeClock
    from assistant.runners.session import EventLog, open_session
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.recognizers import create_recognizer
    from assistant.speech_out.render import VoiceSettings, create_renderer

    turns = parse_turns(args.turns)
    config = config_for(args)
    if args.hold_seconds is not None:
        config = dataclasses.replace(config, hold_seconds=args.hold_seconds)
    clock = FakeClock(0.0)
    session = open_session(config, clock, seed=getattr(args, "seed", None), use_diary=args.diary)
    renderer = create_renderer(VoiceSettings(config.tts, config.voice, config.rate, config.volume))
    speaker = ClockSpeaker(renderer, clock, record=True)
    recognizer = create_recognizer(session.content.intents, config.engine, config.model_path)
    events = EventLog(args.log, clock)
    tt = TurnTaking(session, clock, speaker, events)
    sim = Simulation(tt, speaker, recognizer, clock, realtime=args.realtime, with_user=args.with_user)
    try:
        sim.run(turns, args.max_seconds)
    finally:
        events.close()
        session.close()
    if args.out:
        from assistant.speech_in.wav import write_wav

        write_wav(args.out, speaker.samples(clock.now()), speaker.rate)
    print(f"simulated {clock.now():.1f} s: {len(speaker.started_lines)} lines said, "
          f"ended in state {tt.coach.state}" + (f"; audio in {args.out}" if args.out else ""))
    return 0
