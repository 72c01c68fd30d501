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
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.errors import UserFacingError
from assistant.testing.fakes import ClockSpeaker

if TYPE_CHECKING:
    from assistant.conversation.timers import FakeClock
    from assistant.runners.session import EventLog
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.recognizers import Recognizer
    from assistant.speech_out.render import CachedRenderer

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


class MicTimeline:
    """What the microphone hears on the virtual clock: the person's turns, the coach's own
    voice coming back (``echo_gain`` × the speaker, ``echo_delay`` s later; 0 = none) and
    a faint room-noise floor (exact digital silence is not a microphone)."""

    def __init__(self, speaker: ClockSpeaker, echo_gain: float = 0.0, echo_delay: float = 0.1,
                 noise: float = 2.0, seed: int = 0) -> None:
        assert speaker.played_rate == RATE, "the echo path needs the speaker's output at the mic's rate"
        self.speaker = speaker
        self.echo_gain = echo_gain
        self.echo_delay = int(round(echo_delay * RATE))
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.user = np.zeros(0, np.float32)
        self.user_until = 0
        """Sample index where the person's last turn ends."""

    def add(self, samples: np.ndarray, at: float) -> float:
        """The person says ``samples`` (16 kHz) from clock time ``at``; returns when it ends."""
        start = int(round(at * RATE))
        if start + len(samples) > len(self.user):
            self.user = np.concatenate([self.user, np.zeros(start + len(samples) - len(self.user) + RATE * 10,
                                                            np.float32)])
        self.user[start:start + len(samples)] += samples.astype(np.float32)
        self.user_until = max(self.user_until, start + len(samples))
        return (start + len(samples)) / RATE

    def audible(self, i0: int, i1: int) -> bool:
        """Anything but the noise floor between sample ``i0`` and ``i1``."""
        if i0 < self.user_until and np.any(self.user[i0:min(i1, len(self.user))]):
            return True
        if self.echo_gain <= 0:
            return False
        played = self.speaker.played[max(0, i0 - self.echo_delay):max(0, i1 - self.echo_delay)]
        return bool(np.any(played))

    def block(self, i0: int, i1: int) -> np.ndarray:
        """Samples ``i0``..``i1`` as int16, as the microphone delivers them."""
        out = self.rng.normal(0.0, self.noise, i1 - i0)
        user = self.user[i0:i1]
        out[:len(user)] += user
        if self.echo_gain > 0:
            j0, j1 = i0 - self.echo_delay, i1 - self.echo_delay
            played = self.speaker.played[max(0, j0):max(0, j1)]
            if len(played):
                out[(i1 - i0) - len(played) if j0 < 0 else 0:][:len(played)] += self.echo_gain * played
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


class Simulation:
    """Runs turns against a :class:`TurnTaking` on a :class:`FakeClock`, hearing through the
    same utterance pipeline as the live loop, 20 ms of microphone at a time."""

    def __init__(self, turn_taking: TurnTaking, speaker: ClockSpeaker, recognizer: Recognizer,
                 clock: FakeClock, realtime: bool = False, with_user: bool = False, seed: int = 0,
                 echo_gain: float = 0.0, echo_delay: float = 0.1) -> None:
        from assistant.speech_in.pipeline import Decoder, UtterancePipeline
        from assistant.speech_in.vad import Endpointer

        self.tt = turn_taking
        self.speaker = speaker
        self.recognizer = recognizer
        self.clock = clock
        self.realtime = realtime
        self.with_user = with_user
        self.endpointer = Endpointer(RATE)
        self.mic = MicTimeline(speaker, echo_gain, echo_delay, seed=seed)
        self.pipeline = UtterancePipeline(Decoder(recognizer, turn_taking.intent_set), self.endpointer,
                                          turn_taking.utterance_started, self._echo_reference)
        self.heard_until = int(round(clock.now() * RATE))
        """Sample index up to which the microphone has been fed."""
        self._real_origin = time.monotonic()

    def _echo_reference(self) -> Any:
        """What the echo check compares an utterance with: the speaker's playback history
        when its voice can reach this microphone (``--echo``). Without an echo path nothing
        the microphone hears can be the coach, so nothing is scored (a short word said over
        the coach can follow its loudness by chance: "stop" scored 0.63 over an instruction)."""
        return self.speaker.history if self.mic.echo_gain > 0 else None

    # ------------------------------------------------------------- time

    def _set_clock(self, t: float) -> None:
        if t <= self.clock.now():
            return
        if self.realtime:
            delay = t - (time.monotonic() - self._real_origin)
            if delay > 0:
                time.sleep(delay)
        self.clock.set(t)

    def _advance_to(self, t: float) -> None:
        """Let time pass to ``t``: the microphone is heard block by block while there is
        sound in it (or an utterance under way); silent stretches are skipped."""
        n = int(RATE * CHUNK_SECONDS)
        target = int(round(t * RATE))
        while self.heard_until + n <= target:
            i0, i1 = self.heard_until, self.heard_until + n
            wake = self.tt.next_wakeup()
            if wake is not None and self.clock.now() < wake < i1 / RATE:
                self._set_clock(wake)  # a cue is due mid-block: on time, as live
                self.tt.poll()
            if self.pipeline.ctx is None and not self.endpointer.in_speech and not self.mic.audible(i0, target):
                self.heard_until = target - (target - i0) % n  # nothing to hear: jump (whole blocks)
                self._set_clock(self.heard_until / RATE)
                self.tt.poll()
                continue
            self._set_clock(i1 / RATE)
            self.tt.poll()
            self.pipeline.feed(self.mic.block(i0, i1), i1 / RATE)
            for decoded in self.pipeline.results():
                self.tt.heard(decoded)
            self.heard_until = i1
        self._set_clock(t)

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
        if self.pipeline.ctx is not None or self.mic.audible(self.heard_until, self.heard_until + 1) \
                or self.endpointer.in_speech:
            times.append(now + CHUNK_SECONDS)  # something to hear: one block at a time
        self._advance_to(max(now, min(times)))
        self.tt.poll()

    def run_for(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
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
        """The person says a WAV into the microphone now; returns once it has been heard
        (the utterance it started has ended, or the audio ran out)."""
        from assistant.speech_in.wav import read_wav

        audio = read_wav(path)
        start = self.clock.now()
        self.tt.events.write({"type": "user_audio", "file": str(path), "duration": round(len(audio) / RATE, 3)})
        if self.with_user:
            self.speaker.mix_in(audio, start, gain=0.8)
        end = self.mic.add(audio, start)
        self.run_for(end - start)
        self.run_until(lambda: self.pipeline.ctx is None, 30.0)  # the endpointer's hangover


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
    parser.add_argument("--echo", type=float, default=0.0, metavar="GAIN",
                        help="the coach's own voice comes back into the microphone at this gain (0: none)")
    parser.add_argument("--echo-delay", type=float, default=0.1, metavar="SECONDS",
                        help="how late the echo arrives (default 0.1)")


def run(args: argparse.Namespace) -> int:
    from assistant.config import config_for
    from assistant.conversation.timers import FakeClock
    from assistant.runners.session import build_session

    turns = parse_turns(args.turns)
    config = config_for(args)
    if args.hold_seconds is not None:
        config = dataclasses.replace(config, hold_seconds=args.hold_seconds)
    clock = FakeClock(0.0)

    def clock_speaker(renderer: CachedRenderer | None, _events: EventLog) -> ClockSpeaker:
        assert renderer is not None
        # --out records it; --echo plays it back into the microphone; the echo check reads its history
        return ClockSpeaker(renderer, clock, record=True, history=True, played_rate=RATE)

    running = build_session(config, clock, clock_speaker, events=args.log, seed=getattr(args, "seed", None),
                            use_diary=args.diary, prewarm=False)
    speaker = running.speaker
    assert isinstance(speaker, ClockSpeaker) and running.recognizer is not None
    tt = running.turn_taking
    sim = Simulation(tt, speaker, running.recognizer, clock, realtime=args.realtime, with_user=args.with_user,
                     echo_gain=getattr(args, "echo", 0.0), echo_delay=getattr(args, "echo_delay", 0.1))
    try:
        sim.run(turns, args.max_seconds)
    finally:
        running.close()
    if args.out:
        from assistant.speech_in.wav import write_wav

        write_wav(args.out, speaker.samples(clock.now()), speaker.rate)
    print(f"simulated {clock.now():.1f} s: {len(speaker.started_lines)} lines said, "
          f"ended in state {tt.coach.state}" + (f"; audio in {args.out}" if args.out else ""))
    return 0
