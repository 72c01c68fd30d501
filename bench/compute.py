"""Compute budget: real-time factor on one core, start-up, peak memory, idle-listening CPU.

Each measurement runs in a fresh subprocess so its memory high-water mark and CPU time
are its own:

* ``rtf``     — pinned to one core (``sched_setaffinity``): decode held-out utterances
  (clean and 12 dB) in their dialog contexts; RTF = decoder CPU time / audio time (also
  wall time, which includes waiting for the core when other work shares the machine).
  Its peak RSS (VmHWM) is the recognizer's memory.
* ``idle``    — pinned to one core: the real :class:`assistant.runners.live.LiveLoop` (endpointer,
  recognizer worker thread, coach) fed kitchen noise in real time for N seconds; CPU =
  process CPU time / wall time.
* start-up    — ``cramp-coach --text`` and the live ``cramp-coach`` (on PulseAudio's
  virtual devices, when available): process start → the first ``listen`` event in its
  event log. The live coach's peak RSS is read from /proc when it is listening.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, pct

TARGET_RTF = 0.1
TARGET_STARTUP_S = 2.0
TARGET_PEAK_MB = 200.0
TARGET_IDLE_CPU = 0.10


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pin_one_core() -> int | None:
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return core
    except (AttributeError, OSError):
        return None


def measure_rtf(engine: str, model: Path | None, count: int) -> dict[str, Any]:
    """(In the subprocess.) Decode ``count`` held-out utterances on one core."""
    core = _pin_one_core()
    from assistant.conversation.dialog import CONTEXTS
    from assistant.conversation.intents import IntentSet
    from assistant.speech_in.recognizers import create_recognizer, recognize_pcm
    from bench.command_accuracy import VOICES, audio_for, plan

    t0 = time.perf_counter()
    intent_set = IntentSet.load(ROOT / "prompts" / "intents.yaml")
    recognizer = create_recognizer(intent_set, engine, model)
    for ctx in CONTEXTS.values():
        recognizer.set_context(ctx)
    load_s = time.perf_counter() - t0
    utts, _ = plan(intent_set, 1, VOICES, (12.0,), all_voices=False)
    utts = utts[:count]
    audio = [audio_for(u) for u in utts]
    cpu = wall = seconds = 0.0
    per_utt = []
    for utt, pcm in zip(utts, audio, strict=True):
        c0, w0 = time.process_time(), time.perf_counter()
        recognize_pcm(recognizer, pcm.tobytes(), CONTEXTS[utt.context], intent_set)
        dc, dw = time.process_time() - c0, time.perf_counter() - w0
        cpu += dc
        wall += dw
        seconds += len(pcm) / 16000
        per_utt.append(dc / (len(pcm) / 16000))
    return {"engine": recognizer.name, "core": core, "utterances": len(utts), "audio_seconds": round(seconds, 1),
            "rtf_cpu": round(cpu / seconds, 4), "rtf_wall": round(wall / seconds, 4),
            "rtf_cpu_p95_utterance": round(pct(per_utt, 95) or 0, 4),
            "rtf_cpu_clean": round(sum(r for r, u in zip(per_utt, utts, strict=True) if u.noise is None)
                                   / max(1, sum(u.noise is None for u in utts)), 4),
            "rtf_cpu_noisy": round(sum(r for r, u in zip(per_utt, utts, strict=True) if u.noise is not None)
                                   / max(1, sum(u.noise is not None for u in utts)), 4),
            "load_and_compile_s": round(load_s, 2), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def measure_idle(engine: str, model: Path | None, seconds: float) -> dict[str, Any]:
    """(In the subprocess.) The live loop listening to a kitchen for ``seconds``, on one core."""
    core = _pin_one_core()
    import random

    from assistant.config import default_config
    from assistant.conversation.content import load_content
    from assistant.conversation.dialog import Coach
    from assistant.conversation.timers import MonotonicClock
    from assistant.runners.live import LiveLoop
    from assistant.runners.session import EventLog, Session
    from assistant.runners.turn_taking import TurnTaking
    from assistant.speech_in.recognizers import create_recognizer
    from assistant.speech_in.vad import Endpointer
    from assistant.speech_out.render import create_renderer
    from assistant.testing.fakes import ClockSpeaker
    from bench.livefeed import RealTimeMic, kitchen_background

    clock = MonotonicClock()
    content = load_content(ROOT / "prompts")
    coach = Coach(content, clock, rng=random.Random(0))
    session = Session(default_config(), content, coach, None)
    events: list[dict[str, Any]] = []

    class Log(EventLog):
        def write(self, item: Any, t: float | None = None) -> None:  # noqa: ARG002
            from assistant.conversation.events import to_dict

            events.append(item if isinstance(item, dict) else to_dict(item))

    recognizer = create_recognizer(content.intents, engine, model)
    tt = TurnTaking(session, clock, ClockSpeaker(create_renderer()), Log(None, clock))
    mic = RealTimeMic(kitchen_background(30.0, level_dbfs=-42.0))
    loop = LiveLoop(tt, mic, recognizer, Endpointer(), clock)
    tt.start()
    for _ in range(25):  # settle: endpointer learns the floor, imports done
        loop.step()
    c0, w0 = time.process_time(), time.monotonic()
    while time.monotonic() - w0 < seconds:
        loop.step()
    cpu, wall = time.process_time() - c0, time.monotonic() - w0
    heard = [e for e in events if e.get("type") in ("heard", "ignored")]
    return {"engine": recognizer.name, "core": core, "seconds": round(wall, 1), "cpu_fraction": round(cpu / wall, 4),
            "utterances_seen": len(heard), "woke_up": sum(1 for e in heard if e.get("intent")),
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _subprocess(kind: str, engine: str, model: Path | None, amount: float, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.compute", kind, "--engine", engine, "--amount", str(amount)]
    if model:
        cmd += ["--model", str(model)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pulse_env() -> dict[str, str] | None:
    if shutil.which("pulseaudio") is None:
        return None
    out = subprocess.run(["bash", str(ROOT / ".ci" / "pulse.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    runtime = out.stdout.strip().splitlines()[-1]
    return dict(os.environ, XDG_RUNTIME_DIR=runtime, PULSE_SERVER=f"unix:{runtime}/pulse/native")


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure_startup(live: bool, engine: str, runs: int, env: dict[str, str] | None) -> dict[str, Any]:
    """Process start → first ``listen`` event; for the live coach also its peak RSS once listening."""
    times: list[float] = []
    rss: list[float] = []
    errors: list[str] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="cramp-bench-") as tmp:
            log = Path(tmp) / "events.jsonl"
            run_env = dict(env or os.environ, CRAMP_COACH_DIARY_PATH=str(Path(tmp) / "diary.sqlite3"),
                           CRAMP_COACH_CONFIG=str(Path(tmp) / "none.toml"))
            cmd = [sys.executable, "-m", "assistant.commands.cli", "--log-events", str(log), "--engine", engine]
            cmd += ["--input", "pulse", "--output", "pulse"] if live else ["--text"]
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=run_env, stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            found = None
            deadline = t0 + 30
            while time.monotonic() < deadline and proc.poll() is None:
                if log.exists() and '"type": "listen"' in log.read_text(encoding="utf-8"):
                    found = time.monotonic() - t0
                    break
                time.sleep(0.005)
            if found is not None:
                times.append(found)
                if live:
                    time.sleep(1.0)  # the microphone stream is running; let the loop settle
                    hwm = _vm_hwm_mb(proc.pid)
                    if hwm:
                        rss.append(hwm)
            else:
                errors.append((proc.stderr.read().decode()[-300:] if proc.poll() is not None else "timeout")
                              if proc.stderr else "no listen event")
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    median = pct(times, 50)
    out: dict[str, Any] = {"runs": runs, "median_s": round(median, 3) if median is not None else None,
                           "max_s": round(max(times), 3) if times else None}
    if live:
        out["peak_rss_mb"] = round(max(rss), 1) if rss else None
    if errors:
        out["errors"] = errors[:2]
    return out


def run(engine: str, model: Path | None, smoke: bool) -> dict[str, Any]:
    rtf = _subprocess("rtf", engine, model, 12 if smoke else 60, 900)
    idle = _subprocess("idle", engine, model, 8 if smoke else 60, 300)
    runs = 1 if smoke else 3
    text = measure_startup(False, engine, runs, None)
    env = _pulse_env()
    live: dict[str, Any] = measure_startup(True, engine, runs, env) if env else {"skipped": "PulseAudio not available"}
    peak: list[float] = [v for v in (rtf.get("peak_rss_mb"), live.get("peak_rss_mb")) if v]
    startup: float | None = live.get("median_s") or text.get("median_s")
    result: dict[str, Any] = {"rtf": rtf, "idle": idle, "startup_text": text, "startup_live": live}
    result["targets"] = [
        _target("recognizer real-time factor, one core (CPU time / audio)", f"<= {TARGET_RTF}", rtf.get("rtf_cpu"),
                TARGET_RTF, "x"),
        _target("start-up to listening (live coach)" if live.get("median_s") else "start-up to listening (--text)",
                f"<= {TARGET_STARTUP_S:g} s", startup, TARGET_STARTUP_S, "s"),
        _target("peak memory (RSS high-water mark)", f"<= {TARGET_PEAK_MB:g} MB", max(peak) if peak else None,
                TARGET_PEAK_MB, "MB"),
        _target("CPU while idle-listening (fraction of one core)", f"<= {TARGET_IDLE_CPU:.0%}",
                idle.get("cpu_fraction"), TARGET_IDLE_CPU, "fraction"),
    ]
    return result


def _target(name: str, text: str, value: float | None, limit: float, unit: str) -> dict[str, Any]:
    return {"name": name, "target": text, "value": value, "unit": unit,
            "met": value is not None and value <= limit,
            "gap": None if value is None else round(value - limit, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one compute measurement (run by bench.compute.run)")
    parser.add_argument("kind", choices=("rtf", "idle"))
    parser.add_argument("--engine", default="pocketsphinx")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--amount", type=float, default=20, help="utterances (rtf) or seconds (idle)")
    args = parser.parse_args(argv)
    if args.kind == "rtf":
        result = measure_rtf(args.engine, args.model, int(args.amount))
    else:
        result = measure_idle(args.engine, args.model, args.amount)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
