"""Reply latency of the live coach through real (virtual) audio devices.

Starts PulseAudio's virtual devices (.ci/pulse.sh), runs the real ``cramp-coach``
process on them and, N times: plays "my foot is cramping" (Piper voice) into the
microphone, and measures from the end of the user's speech (captured on
``micfeed.monitor``) to the first sample of the coach's reply (captured on
``speaker.monitor``); then says "stop" and waits for quiet. Both captures are stamped
with the same monotonic clock, so their small capture latencies cancel.

Also measures the speaker's cut-off: ``DeviceSpeaker.stop()`` → last sound sample.

    python bench/latency.py [--runs 10] [--engine whisper --json bench/results/latency-whisper.json]

Writes bench/results/latency.json and latency.md (or ``--json`` and its ``.md``); the
per-engine figures feed assistant/speech_in/engine_costs.json (bench/realspeech_report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
RATE = 16000
EARLIEST_REPLY_S = 0.3
"""A reply cannot start sooner than the endpointer's hangover (0.4 s) after the end of speech."""


class Capture:
    """parecord into memory; every 20 ms block stamped with time.monotonic()."""

    def __init__(self, device: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(["parecord", f"--device={device}", "--raw", "--format=s16le",
                                      "--channels=1", f"--rate={RATE}", "--latency-msec=10"],
                                     stdout=subprocess.PIPE, env=env)
        self.blocks: list[tuple[float, np.ndarray]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while data := self.proc.stdout.read(320):
            self.blocks.append((time.monotonic(), np.frombuffer(data, np.int16)))

    def loud_times(self, after: float, threshold: int) -> list[float]:
        return [t for t, b in list(self.blocks) if t > after and len(b) and np.abs(b).max() > threshold]

    def close(self) -> None:
        self.proc.terminate()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--engine", help="the coach's --engine (default: its own choice)")
    parser.add_argument("--json", type=Path, default=RESULTS / "latency.json", help="result file (.md beside it)")
    args = parser.parse_args()

    runtime = subprocess.run(["bash", str(ROOT / ".ci" / "pulse.sh")], check=True, capture_output=True,
                             text=True).stdout.strip()
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime, PULSE_SERVER=f"unix:{runtime}/pulse/native")
    os.environ.update(XDG_RUNTIME_DIR=runtime, PULSE_SERVER=env["PULSE_SERVER"])

    from assistant.speech_in.wav import write_wav
    from assistant.testing.speechgen import VOICES, synthesize

    tmp = Path(tempfile.mkdtemp(prefix="cramp-bench-"))
    rng = np.random.default_rng(0)
    wavs = {}
    for name, text in (("foot", "my foot is cramping"), ("stop", "stop")):
        speech = synthesize(text, VOICES["joe"]).astype(np.float64)
        speech = np.concatenate([speech, np.zeros(int(0.3 * RATE))]) + rng.normal(0, 2, len(speech) + int(0.3 * RATE))
        wavs[name] = tmp / f"{name}.wav"
        write_wav(wavs[name], np.clip(speech, -32768, 32767).astype(np.int16))

    coach_env = env | {"CRAMP_COACH_DIARY_PATH": str(tmp / "diary.sqlite3"),
                       "CRAMP_COACH_CONFIG": str(tmp / "none.toml")}
    coach = subprocess.Popen([sys.executable, "-m", "assistant.commands.cli", "--input", "pulse", "--output", "pulse",
                              "--log-events", str(tmp / "events.jsonl")]
                             + (["--engine", args.engine] if args.engine else []),
                             env=coach_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert coach.stdout is not None
    coach.stdout.readline()
    mic, spk = Capture("micfeed.monitor", env), Capture("speaker.monitor", env)
    time.sleep(0.5)
    latencies: list[float] = []
    failures = early = 0
    try:
        for i in range(args.runs):
            start = time.monotonic()
            subprocess.run(["paplay", "--device=micfeed", str(wavs["foot"])], env=env, check=True)
            time.sleep(0.1)
            end_of_speech = max(mic.loud_times(start, 1500))
            deadline = time.monotonic() + 5
            reply: list[float] = []
            while time.monotonic() < deadline and not (reply := spk.loud_times(end_of_speech, 800)):
                time.sleep(0.02)
            if reply and reply[0] - end_of_speech < EARLIEST_REPLY_S:
                # sound on the speaker before the endpointer could even have closed the utterance: the
                # coach was still talking (or answering something else), not a reply to this command
                early += 1
                print(f"run {i + 1}: speaker not quiet ({1000 * (reply[0] - end_of_speech):.0f} ms), not counted",
                      flush=True)
            elif reply:
                latencies.append(reply[0] - end_of_speech)
                print(f"run {i + 1}: {1000 * latencies[-1]:.0f} ms", flush=True)
            else:
                failures += 1
                print(f"run {i + 1}: no reply", flush=True)
            time.sleep(1.0)
            subprocess.run(["paplay", "--device=micfeed", str(wavs["stop"])], env=env, check=True)
            # wait for the coach to fall quiet (idle again) for a second
            quiet_since = time.monotonic()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if spk.loud_times(time.monotonic() - 1.0, 800):
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 1.0:
                    break
                time.sleep(0.05)
    finally:
        coach.terminate()
        coach.wait(timeout=10)
        mic.close()
        spk.close()

    cut = measure_stop(env)
    result = {
        "runs": args.runs,
        "replies": len(latencies),
        "failures": failures,
        "not_counted_speaker_busy": early,
        "reply_latency_ms": {"median": round(1000 * statistics.median(latencies)),
                             "p95": round(1000 * percentile(latencies, 95)),
                             "min": round(1000 * min(latencies)), "max": round(1000 * max(latencies))}
        if latencies else None,
        "stop_cutoff_ms": {"median": round(1000 * statistics.median(cut)), "max": round(1000 * max(cut))},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "path": f"PulseAudio null sinks via ALSA 'pulse' device; engine {args.engine or 'auto'}; pyttsx3/espeak-ng",
        "engine": args.engine,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    lat = result["reply_latency_ms"] or {}
    args.json.with_suffix(".md").write_text(
        "# Reply latency through the PulseAudio path\n\n"
        f"{result['machine']}; {result['path']}.\n\n"
        "| measure | median | p95 / max |\n|---|---|---|\n"
        f"| end of user speech → first reply sample ({len(latencies)}/{args.runs} runs) | "
        f"{lat.get('median')} ms | {lat.get('p95')} ms |\n"
        f"| `stop()` → speaker silent ({len(cut)} runs) | {result['stop_cutoff_ms']['median']} ms | "
        f"{result['stop_cutoff_ms']['max']} ms |\n\n"
        "Reply latency = VAD end-of-speech hangover (0.4 s) + decoding + dialog + rendering + "
        "output buffering. Produced by `python bench/latency.py`.\n")
    print(json.dumps(result, indent=2))
    return 0 if latencies else 1


def measure_stop(env: dict[str, str], runs: int = 5) -> list[float]:
    """DeviceSpeaker.stop() → last loud sample on the speaker."""
    from assistant.speech_out.render import VoiceSettings
    from assistant.speech_out.speakers import DeviceSpeaker
    from assistant.speech_out.tts import EspeakRenderer

    renderer = EspeakRenderer(VoiceSettings())
    line = renderer.render("Sit down, and gently pull your toes back toward your shin. Keep the knee straight.")
    speaker = DeviceSpeaker(renderer, "pulse")
    spk = Capture("speaker.monitor", env)
    time.sleep(0.5)
    cuts = []
    try:
        for _ in range(runs):
            speaker.play(line)
            time.sleep(1.5)
            t_stop = time.monotonic()
            speaker.stop()
            time.sleep(0.6)
            loud = spk.loud_times(t_stop - 1.0, 500)
            if loud:
                cuts.append(max(loud) - t_stop)
    finally:
        speaker.close()
        spk.close()
    return cuts


if __name__ == "__main__":
    sys.exit(main())
