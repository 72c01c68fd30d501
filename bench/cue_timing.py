"""Countdown cue timing: a 10-minute session on the real clock, with speech in between.

The real :class:`assistant.runners.live.LiveLoop` runs on :class:`~assistant.conversation.timers.MonotonicClock`
with a real-time microphone stand-in (quiet kitchen noise) and a speaker that renders
every line with the real voice and stays busy for its real duration
(:mod:`bench.livefeed`). A scripted person (Piper voice, through the endpointer and the
real recognizer) reports cramps, asks "how long is left" in the middle of holds (so the
coach talks over the schedule), says "still cramping" to move through the routines, then
"better", and declines the cause questions — again and again for the whole session.

Each countdown cue's emission (the moment the loop hands it to the speaker) is compared
with its due time on the hold's absolute schedule. Cues due while the speaker was free
give the timing error (target: p99 <= 30 ms); cues due while the coach was still
talking wait for it (or are dropped when stale) by design and are counted separately.
Drift: the error of the last cue vs the first, per hold and over the session.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import ROOT, pct, speech

TARGET_P99_MS = 30.0
USER_VOICE = "joe"


@dataclass
class Due:
    """A cue the hold released: when it was due and how things stood."""

    key: str
    due: float
    popped: float
    speaker_free: bool
    hold: int


def _phrase(intent_set: Any, intent: str, context: tuple[str, ...], prefer: str | None = None) -> str:
    from assistant.testing.speechgen import sentences_for

    options = [t for t in sentences_for(intent_set, intent)
               if (m := intent_set.match(t, context)) is not None and m.intent == intent]
    if prefer and prefer in options:
        return prefer
    return min(options, key=len)


def run(smoke: bool, seconds: float | None = None) -> dict[str, Any]:
    """The whole session (``seconds`` of real time) and its timing figures."""
    from assistant.config import default_config
    from assistant.conversation.content import Cue, load_content
    from assistant.conversation.dialog import CONTEXTS, Coach, Settings
    from assistant.conversation.events import Heard
    from assistant.conversation.timers import Hold, MonotonicClock
    from assistant.runners.live import LiveLoop
    from assistant.runners.session import EventLog, Session
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.recognizers import create_recognizer
    from assistant.speech_in.vad import Endpointer
    from assistant.speech_out.render import create_renderer
    from assistant.testing.fakes import ClockSpeaker
    from bench.livefeed import RealTimeMic, kitchen_background

    seconds = seconds if seconds is not None else (50.0 if smoke else 600.0)
    clock = MonotonicClock()
    content = load_content(ROOT / "prompts")
    settings = Settings(hold_seconds=20 if smoke else None)
    coach = Coach(content, clock, rng=random.Random(3), settings=settings)
    session = Session(default_config(), content, coach, None)
    intents = content.intents

    # --- instrumentation: every cue a hold releases, and every cue the loop emits or drops
    dues: list[Due] = []
    emitted: list[tuple[str, float, str]] = []  # (key, time, "said"|"dropped")
    holds: dict[int, int] = {}
    tt_ref: dict[str, Any] = {}
    original_pop = Hold.pop_due

    def pop_due(self: Hold[Any], now: float) -> Any:
        popped = time.monotonic()
        kept = original_pop(self, now)
        hold_no = holds.setdefault(id(self), len(holds))
        busy = tt_ref["tt"].busy if "tt" in tt_ref else False
        for entry, due in kept:
            if isinstance(entry.payload, Cue):
                dues.append(Due(entry.payload.say.key, due, popped, not busy, hold_no))
        return kept

    Hold.pop_due = pop_due  # type: ignore[method-assign]  # the benchmark times each cue as it is popped

    class Log(EventLog):
        def write(self, item: Any, t: float | None = None) -> None:  # noqa: ARG002
            now = time.monotonic()
            if isinstance(item, dict) and item.get("kind") == "cue" and item.get("type") in ("cue", "dropped"):
                emitted.append((str(item["key"]), now, "said" if item["type"] == "cue" else "dropped"))
            if isinstance(item, dict) and item.get("type") == "ignored":
                heard_log.append(("ignored", str(item.get("text"))))
            elif isinstance(item, Heard):
                heard_log.append((str(item.intent), item.text))

    heard_log: list[tuple[str, str]] = []
    recognizer = create_recognizer(intents, "pocketsphinx")
    speaker = ClockSpeaker(create_renderer())
    tt = TurnTaking(session, clock, speaker, Log(None, clock))
    tt_ref["tt"] = tt
    mic = RealTimeMic(kitchen_background(30.0, level_dbfs=-52.0))
    loop = LiveLoop(tt, mic, recognizer, Endpointer(), clock)

    lines = {
        "cramp": _phrase(intents, "cramp_start", CONTEXTS["idle"], "my left calf is cramping"),
        "time_left": _phrase(intents, "time_left", CONTEXTS["hold"], "how long is left"),
        "still": _phrase(intents, "still_cramping", CONTEXTS["checkin"], "still cramping"),
        "better": _phrase(intents, "better", CONTEXTS["checkin"], "better"),
        "no": _phrase(intents, "no", CONTEXTS["offer"], "no thanks"),
        "skip": _phrase(intents, "skip", CONTEXTS["question"], "skip"),
        "resume": _phrase(intents, "resume", CONTEXTS["paused"], "resume"),
    }
    audio = {k: speech(v, USER_VOICE) for k, v in lines.items()}
    said: list[tuple[float, str]] = []
    asked_in_hold: set[int] = set()
    routines_in_episode = 0
    last_state = ""
    quiet_since = time.monotonic()

    try:
        tt.start()
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            loop.step()
            now = time.monotonic()
            state = coach.state
            if state != last_state:
                if state == "hold" and last_state != "paused":
                    routines_in_episode += 1
                if state == "idle":
                    routines_in_episode = 0
                last_state = state
            if tt.busy or mic.talking or tt.user_speaking or loop.ctx is not None:
                quiet_since = now
                continue
            if now - quiet_since < 1.0:
                continue
            say = None
            if state == "idle":
                say = "cramp"
            elif state == "hold" and coach.hold is not None:
                hold_id = id(coach.hold)
                if hold_id not in asked_in_hold and coach.hold.elapsed(clock.now()) > coach.hold.duration * 0.3:
                    asked_in_hold.add(hold_id)
                    say = "time_left"
            elif state == "checkin":
                say = "still" if routines_in_episode < 3 else "better"
            elif state == "offer":
                say = "no"
            elif state == "question":
                say = "skip"
            elif state == "paused":
                say = "resume"
            if say is not None:
                mic.say(audio[say])
                said.append((now - start, say))
                quiet_since = now + len(audio[say]) / 16000
    finally:
        Hold.pop_due = original_pop  # type: ignore[method-assign]  # put the real method back

    # --- match releases to emissions, in order (each due cue is said or dropped exactly once)
    rows = []
    queue = list(emitted)
    for d in dues:
        for i, (key, t, what) in enumerate(queue):
            if key == d.key:
                rows.append((d, t, what))
                del queue[i]
                break
    free = [(d, t) for d, t, what in rows if d.speaker_free and what == "said"]
    errors_ms = [1000 * (t - d.due) for d, t in free]
    waited = [1000 * (t - d.due) for d, t, what in rows if not d.speaker_free and what == "said"]
    dropped = sum(1 for _, _, what in rows if what == "dropped")
    per_hold: dict[int, list[float]] = {}
    for d, t in free:
        per_hold.setdefault(d.hold, []).append(1000 * (t - d.due))
    drift_per_hold = [e[-1] - e[0] for e in per_hold.values() if len(e) >= 2]
    session_first = errors_ms[0] if errors_ms else None
    session_last = errors_ms[-1] if errors_ms else None
    slope = None
    if len(free) >= 3:
        x = np.array([d.due for d, _ in free]) - free[0][0].due
        slope = float(np.polyfit(x / 60.0, np.array(errors_ms), 1)[0])
    p99 = pct(errors_ms, 99)
    no_drift = slope is not None and abs(slope) < 5.0 and session_first is not None and \
        abs((session_last or 0) - session_first) < TARGET_P99_MS
    user_turns: dict[str, int] = {}
    for _, s in said:
        user_turns[s] = user_turns.get(s, 0) + 1
    return {
        "session_seconds": round(seconds, 1),
        "holds": len(holds),
        "cues_due": len(dues),
        "cues_on_free_speaker": len(free),
        "error_ms": {"median": _r(pct(errors_ms, 50)), "p95": _r(pct(errors_ms, 95)), "p99": _r(p99),
                     "max": _r(max(errors_ms) if errors_ms else None),
                     "min": _r(min(errors_ms) if errors_ms else None)},
        "cues_waiting_for_speech": len(waited),
        "waiting_delay_ms": {"median": _r(pct(waited, 50)), "max": _r(max(waited) if waited else None)},
        "cues_dropped_stale": dropped,
        "drift": {"first_cue_error_ms": _r(session_first), "last_cue_error_ms": _r(session_last),
                  "slope_ms_per_minute": _r(slope),
                  "max_abs_last_minus_first_in_a_hold_ms": _r(max((abs(v) for v in drift_per_hold), default=None))},
        "user_turns": user_turns,
        "coach_lines": len(speaker.said),
        "utterances_heard": [f"{k}: {t}" for k, t in heard_log[:30]],
        "user_utterances_understood": sum(1 for k, _ in heard_log if k not in ("ignored", "None")),
        "user_utterances_not_understood_or_ignored": sum(1 for k, _ in heard_log if k in ("ignored", "None")),
        "targets": [
            {"name": "countdown cue timing error, p99 (speaker free)", "target": f"<= {TARGET_P99_MS:g} ms",
             "value": _r(p99), "unit": "ms", "met": p99 is not None and p99 <= TARGET_P99_MS,
             "gap": None if p99 is None else round(p99 - TARGET_P99_MS, 1)},
            {"name": "no cumulative drift (last cue vs first; slope)",
             "target": "last − first < 30 ms, slope < 5 ms/min (absolute)",
             "value": _r(slope), "unit": "ms/min", "met": no_drift, "gap": None},
        ],
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description="countdown cue timing on the real clock")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--smoke", action="store_true", help="20-second holds")
    parser.add_argument("--json", type=Path, help="write the result here (else stdout)")
    args = parser.parse_args(argv)
    result = run(args.smoke, args.seconds)
    text = json.dumps(result, indent=1) + "\n"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
