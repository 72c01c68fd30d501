"""Real human voices: the realspeech coffee orders, clean and in kitchen noise, per engine.

Why: synthesized voices flatter a recognizer; these 310 recordings of 50+ real speakers
(``/work/shared/realspeech``, Picovoice's speech-to-intent benchmark, Apache-2.0) are what
people sound like. Each recording is

* mixed with synthesized kitchen noise (:func:`assistant.testing.speechgen.kitchen_noise`,
  water / fan / clatter, rotating by recording) at an SNR by the benchmark's rule
  (:func:`mix_at_snr`: loudest 2048-sample frame energy of speech over that of noise);
* fed 20 ms at a time through the live coach's endpointer into the recognizer
  (:func:`bench.common.utterances_like_live`), the coffee grammar active, and the first
  understood intent of the stream is scored against ``labels.json``: **right** (intent and
  every slot), **not understood**, or **wrong**;
* fed the same way to a second recognizer on the coach's own templates in the **idle**
  context (``prompts/intents.yaml``, ``CONTEXTS["idle"]``): for the coach these orders are
  ordinary kitchen talk, so any intent accepted there is a **false accept**.

CPU is the process time spent inside the recognizer (start/accept/end), per utterance;
``tail`` is the part spent in ``end_utterance`` (work left after the end of speech, which
adds to the reply latency). Engines should run one thread (the whisper engine does).

Quick loops while tuning (the calibration half is ``even``; report both halves)::

    python -m bench.realspeech --engine pocketsphinx --snr 12 --half even --limit 40
    python -m bench.realspeech --engine whisper --snr clean,12 --half odd --show wrong

``python -m bench.realspeech --full`` measures every installed engine at every SNR and
writes ``bench/results/realspeech.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RATE, ROOT, pct, seed_of, utterances_like_live, wilson, worker_pool

log = logging.getLogger(__name__)

REALSPEECH = Path(os.environ.get("CRAMP_REALSPEECH", "/work/shared/realspeech"))
"""The recordings, labels and grammar (override with CRAMP_REALSPEECH)."""
FRAME = 2048
"""Frame length of the SNR rule (samples)."""
SNRS: tuple[float | None, ...] = (None, 24.0, 18.0, 12.0, 6.0)
"""None = clean (no noise added)."""
IDLE_SNRS: tuple[float | None, ...] = (None, 12.0)
NOISES = ("water", "fan", "clatter")

EngineFactory = Callable[[Any], Any]
"""Makes a recognizer for an :class:`~assistant.conversation.intents.IntentSet` (picklable for jobs > 1)."""


# ------------------------------------------------------------------ the set


@dataclass(frozen=True)
class Recording:
    """One labelled coffee order."""

    id: str
    audio: np.ndarray = field(repr=False)
    """int16 mono 16 kHz, with the recording's own 1-4 s of room around the command."""
    intent: str
    slots: dict[str, str]
    index: int
    """Position among all sorted ids (fixes the noise kind whatever subset is run)."""


def all_ids(root: Path = REALSPEECH) -> list[str]:
    return sorted(json.loads((root / "labels.json").read_text(encoding="utf-8")))


def select_ids(half: str | None = None, limit: int | None = None, root: Path = REALSPEECH) -> list[str]:
    """Sorted ids; ``half`` ``even``/``odd`` = even/odd positions (calibrate on even); first ``limit``."""
    ids = all_ids(root)
    if half == "even":
        ids = ids[0::2]
    elif half == "odd":
        ids = ids[1::2]
    elif half not in (None, "all"):
        raise ValueError(f"half must be even, odd or all, not {half!r}")
    return ids[:limit] if limit else ids


def load_set(ids: Sequence[str] | None = None, root: Path = REALSPEECH) -> list[Recording]:
    """The recordings (all, or ``ids``) with their labels."""
    import soundfile

    labels = json.loads((root / "labels.json").read_text(encoding="utf-8"))
    position = {k: i for i, k in enumerate(sorted(labels))}
    out = []
    for rid in ids if ids is not None else sorted(labels):
        audio, rate = soundfile.read(root / "clean" / f"{rid}.flac", dtype="int16")
        if rate != RATE or audio.ndim != 1:
            raise ValueError(f"{rid}: expected 16 kHz mono, got {rate} Hz {audio.shape}")
        label = labels[rid]
        out.append(Recording(rid, audio, label["intent"], dict(label.get("slots", {})), position[rid]))
    return out


def coffee_intents(root: Path = REALSPEECH) -> Any:
    from assistant.conversation.intents import IntentSet

    return IntentSet.load(root / "coffee_intents.yaml")


def coach_intents() -> Any:
    from assistant.conversation.intents import IntentSet

    return IntentSet.load(ROOT / "prompts" / "intents.yaml")


# ------------------------------------------------------------------ noise


def max_frame_energy(x: np.ndarray, frame: int = FRAME) -> float:
    """Energy (sum of squares) of the loudest whole ``frame``-sample frame (the whole signal if shorter)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x) // frame
    if n == 0:
        return float(np.sum(x**2))
    return float(np.max(np.sum(x[: n * frame].reshape(n, frame) ** 2, axis=1)))


def scale_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` (float) scaled so loudest-frame energy of speech / of noise = ``snr_db``."""
    e_speech, e_noise = max_frame_energy(speech), max_frame_energy(noise)
    if e_noise <= 0:
        raise ValueError("noise is silent")
    return np.asarray(noise, dtype=np.float64) * np.sqrt(e_speech / (e_noise * 10 ** (snr_db / 10)))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Speech plus noise (same length, noise looped or cut) at ``snr_db`` by the loudest-frame rule,
    int16; a mixture that would clip is scaled down as a whole (the ratio stays)."""
    noise = np.resize(np.asarray(noise, dtype=np.float64), len(speech))
    out = speech.astype(np.float64) + scale_noise(speech, noise, snr_db)
    peak = float(np.abs(out).max()) if len(out) else 0.0
    if peak > 32767:
        out *= 32767 / peak
    return np.rint(out).astype(np.int16)


def noise_kind(rec: Recording) -> str:
    return NOISES[rec.index % len(NOISES)]


def condition_audio(rec: Recording, snr_db: float | None, kind: str | None = None) -> np.ndarray:
    """The recording clean (``snr_db`` None) or in its kitchen noise (deterministic per id/SNR/kind)."""
    if snr_db is None:
        return rec.audio
    from assistant.testing.speechgen import kitchen_noise

    kind = kind or noise_kind(rec)
    rng = np.random.default_rng(seed_of("realspeech", rec.id, snr_db, kind))
    return mix_at_snr(rec.audio, kitchen_noise(kind, len(rec.audio), rng), snr_db)


def cond_name(snr_db: float | None) -> str:
    return "clean" if snr_db is None else f"{snr_db:g} dB"


def parse_snr(text: str) -> float | None:
    return None if text.strip().lower() in ("clean", "none", "quiet") else float(text)


# ------------------------------------------------------------------ decoding


class _Timed:
    """A recognizer wrapper that adds up the process time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cpu = 0.0
        self.tail = 0.0
        self.fed = 0

    def set_context(self, intents: Any) -> None:
        self.inner.set_context(intents)

    def start_utterance(self) -> None:
        t = time.process_time()
        self.inner.start_utterance()
        self.cpu += time.process_time() - t

    def accept_audio(self, pcm: bytes) -> None:
        t = time.process_time()
        self.inner.accept_audio(pcm)
        self.cpu += time.process_time() - t
        self.fed += len(pcm) // 2

    def end_utterance(self) -> Any:
        t = time.process_time()
        out = self.inner.end_utterance()
        spent = time.process_time() - t
        self.cpu += spent
        self.tail = max(self.tail, spent)
        return out


@dataclass
class Heard:
    """What one pass of a recording through endpointer + recognizer gave."""

    texts: list[str]
    confidences: list[float]
    intent: str | None
    slots: dict[str, str]
    cpu_s: float
    tail_s: float
    fed_s: float


def listen(recognizer: Any, intent_set: Any, audio: np.ndarray, only: Sequence[str] | None,
           vad: Any = None) -> Heard:
    """``audio`` through the live endpointer into ``recognizer`` in context ``only``; the first
    understood intent of the stream counts (as in the live coach)."""
    from assistant.speech_in.recognizers import understand

    recognizer.set_context(list(only) if only is not None else None)
    timed = _Timed(recognizer)
    texts, confs, first = [], [], None
    for _, transcript, _ in utterances_like_live(timed, audio, vad, only, intent_set):
        texts.append(transcript.text)
        confs.append(round(float(transcript.confidence), 3))
        match = understand(intent_set, transcript, list(only) if only is not None else None)
        first = first if first is not None else match
    return Heard(texts, confs, first.intent if first else None, dict(first.slots) if first else {},
                 timed.cpu, timed.tail, timed.fed / RATE)


@dataclass
class Result:
    """One recording in one condition."""

    id: str
    snr: float | None
    noise: str | None
    verdict: str
    """``right``, ``not_understood`` or ``wrong``."""
    heard: str
    confidence: list[float]
    got: str | None
    got_slots: dict[str, str]
    want_slots: dict[str, str]
    cpu_s: float
    tail_s: float
    fed_s: float
    segments: int = 0
    """Utterances the endpointer cut from the recording (0: it never heard speech start)."""
    idle_heard: str | None = None
    idle_accept: str | None = None
    """The coach intent accepted in the idle context (a false accept), if any."""
    idle_cpu_s: float | None = None
    idle_fed_s: float | None = None


def make_engine(name: str, intent_set: Any, model: str | None = None) -> Any:
    """Module-level (picklable) factory: :func:`create_recognizer` for ``name``."""
    from assistant.speech_in.recognizers import create_recognizer

    return create_recognizer(intent_set, name, Path(model) if model else None)


def engine_factory(name: str, model: str | None = None) -> EngineFactory:
    return functools.partial(make_engine, name, model=model)


_WORKER: dict[str, Any] = {}


def _recognizers(factory: EngineFactory, idle: bool) -> tuple[Any, Any, Any, Any]:
    """This process's recognizers for ``factory`` (made once: grammars compile, models load)."""
    if _WORKER.get("key") != repr(factory):
        _WORKER.clear()
        coffee = coffee_intents()
        _WORKER.update(key=repr(factory), coffee=coffee, rec=factory(coffee), coach=None, idle_rec=None)
    if idle and _WORKER["idle_rec"] is None:
        _WORKER["coach"] = coach_intents()
        _WORKER["idle_rec"] = factory(_WORKER["coach"])
    return _WORKER["coffee"], _WORKER["rec"], _WORKER["coach"], _WORKER["idle_rec"]


def _run(factory: EngineFactory, snr: float | None, ids: Sequence[str], idle: bool, commands: bool,
         kind: str | None, vad: Any = None) -> list[Result]:
    from assistant.conversation.dialog import CONTEXTS

    coffee, rec, coach, idle_rec = _recognizers(factory, idle)
    out = []
    for r in load_set(ids):
        audio = condition_audio(r, snr, kind)
        noise = None if snr is None else (kind or noise_kind(r))
        if commands:
            h = listen(rec, coffee, audio, None, vad)
            ok = h.intent == r.intent and h.slots == r.slots
            verdict = "right" if ok else ("not_understood" if h.intent is None else "wrong")
        else:
            h, verdict = Heard([], [], None, {}, 0.0, 0.0, 0.0), "skipped"
        res = Result(r.id, snr, noise, verdict, " | ".join(h.texts), h.confidences, h.intent, h.slots, r.slots,
                     round(h.cpu_s, 4), round(h.tail_s, 4), round(h.fed_s, 3), len(h.texts))
        if idle:
            hi = listen(idle_rec, coach, audio, CONTEXTS["idle"], vad)
            res.idle_heard, res.idle_accept = " | ".join(hi.texts), hi.intent
            res.idle_cpu_s, res.idle_fed_s = round(hi.cpu_s, 4), round(hi.fed_s, 3)
        out.append(res)
    return out


def evaluate(factory: EngineFactory, snr: float | None, ids: Sequence[str] | None = None, *,
             idle: bool = True, commands: bool = True, jobs: int = 1, kind: str | None = None,
             vad: Any = None) -> dict[str, Any]:
    """Score ``ids`` (default all) at ``snr`` (None = clean): commands with the coffee grammar and,
    with ``idle``, false accepts in the coach's idle context; ``vad``: other endpointer settings
    (experiments). Returns a summary with per-utterance rows."""
    ids = list(ids) if ids is not None else all_ids()
    started = time.monotonic()
    if jobs <= 1 or len(ids) < 2 * jobs:
        results = _run(factory, snr, ids, idle, commands, kind, vad)
    else:
        chunks = [ids[i::jobs] for i in range(jobs)]
        with worker_pool(jobs) as ex:
            futures = [ex.submit(_run, factory, snr, c, idle, commands, kind, vad) for c in chunks]
            results = [res for f in futures for res in f.result()]
    summary = summarize(results, idle, commands)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    return summary


def summarize(results: list[Result], idle: bool = True, commands: bool = True) -> dict[str, Any]:
    """Counts, rates with a 95% interval, CPU per utterance, idle false accepts; the rows themselves."""
    n = len(results)
    out: dict[str, Any] = {"n": n, "condition": cond_name(results[0].snr) if results else None}
    if commands and n:
        right = sum(r.verdict == "right" for r in results)
        cpu = [r.cpu_s for r in results]
        lo, hi = wilson(right, n)
        fed = sum(r.fed_s for r in results)
        out.update({
            "right": right, "not_understood": sum(r.verdict == "not_understood" for r in results),
            "wrong": sum(r.verdict == "wrong" for r in results), "right_rate": round(right / n, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "cpu_mean_s": round(float(np.mean(cpu)), 4), "cpu_p50_s": round(pct(cpu, 50) or 0, 4),
            "cpu_p95_s": round(pct(cpu, 95) or 0, 4),
            "cpu_per_audio_s": round(sum(cpu) / fed, 4) if fed else None,
            "audio_fed_mean_s": round(fed / n, 3),
            "cpu_per_3s_command_s": round(3.0 * sum(cpu) / fed, 4) if fed else None,
            "tail_p95_s": round(pct([r.tail_s for r in results], 95) or 0, 4),
            "endpointer_missed": sum(r.segments == 0 for r in results),
            "split": sum(r.segments > 1 for r in results),
        })
    if idle and n:
        fa = [r for r in results if r.idle_accept]
        lo, hi = wilson(len(fa), n)
        idle_cpu, idle_fed = sum(r.idle_cpu_s or 0 for r in results), sum(r.idle_fed_s or 0 for r in results)
        out["idle"] = {"n": n, "false_accepts": len(fa), "rate": round(len(fa) / n, 4),
                       "ci95": [round(lo, 4), round(hi, 4)], "cpu_mean_s": round(idle_cpu / n, 4),
                       "cpu_per_3s_command_s": round(3.0 * idle_cpu / idle_fed, 4) if idle_fed else None,
                       "examples": [{"id": r.id, "heard": r.idle_heard, "as": r.idle_accept} for r in fa[:10]]}
    out["rows"] = [asdict(r) for r in results]
    return out


def line(summary: dict[str, Any]) -> str:
    """One human line per condition."""
    parts = [f"{summary['condition']:>7}  n={summary['n']}"]
    if "right" in summary:
        per3 = summary["cpu_per_3s_command_s"]
        parts.append(f"right {summary['right_rate']:.1%} ({summary['right']})  not understood "
                     f"{summary['not_understood']} (no speech start {summary['endpointer_missed']}, split "
                     f"{summary['split']})  wrong {summary['wrong']}  CPU/utt mean "
                     f"{summary['cpu_mean_s']:.3f} s p95 {summary['cpu_p95_s']:.3f} s  per 3 s "
                     + ("–" if per3 is None else f"{per3:.3f} s") + f"  tail p95 {summary['tail_p95_s']:.3f} s")
    if "idle" in summary:
        parts.append(f"idle false accepts {summary['idle']['false_accepts']}/{summary['idle']['n']}")
    return "  ".join(parts)


# ------------------------------------------------------------------ CLI


def vad_settings(text: str) -> Any:
    """``start_db=6,hangover=0.6`` → :class:`~assistant.speech_in.vad.VadSettings` with those fields."""
    from dataclasses import replace

    from assistant.speech_in.vad import VadSettings

    base = VadSettings()
    fields: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        key = key.strip()
        fields[key] = int(value) if isinstance(getattr(base, key), int) else float(value)
    return replace(base, **fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Real voices (realspeech) through one engine.")
    parser.add_argument("--engine", default="pocketsphinx", help="a create_recognizer() engine name")
    parser.add_argument("--model", help="model path for the engine")
    parser.add_argument("--snr", default="clean,12", help="comma list of SNRs in dB or 'clean' (default clean,12)")
    parser.add_argument("--half", choices=("even", "odd", "all"), default="all", help="even = calibration half")
    parser.add_argument("--limit", type=int, help="first N recordings of the half (with --full: of each half)")
    parser.add_argument("--noise", choices=NOISES, help="one noise kind instead of rotating")
    parser.add_argument("--vad", help="endpointer experiment, e.g. start_db=6,hangover=0.6 (VadSettings fields); "
                        "with --full: recorded as an experiment at --snr")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (2 cores shared: keep 1)")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle false-accept pass")
    parser.add_argument("--idle-only", action="store_true", help="only the idle false-accept pass")
    parser.add_argument("--show", choices=("none", "wrong", "misses", "all", "idle"), default="none",
                        help="print rows: wrong, misses (wrong + not understood), all, idle false accepts")
    parser.add_argument("--json", type=Path, help="write the summaries (with rows) here")
    parser.add_argument("--full", action="store_true", help="every installed engine, every SNR; commit results")
    parser.add_argument("--engines", help="with --full: comma list instead of every installed engine")
    parser.add_argument("--latency-runs", type=int, default=12, help="with --full: live reply latency runs (0: skip)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("assistant").setLevel(logging.WARNING)
    if args.full:
        from bench.realspeech_report import measure_all

        snrs = tuple(parse_snr(x) for x in args.snr.split(",")) if args.vad else SNRS
        measure_all(args.engines.split(",") if args.engines else None, args.limit, args.jobs, args.latency_runs,
                    snrs=snrs, vad=args.vad)
        return 0
    ids = select_ids(None if args.half == "all" else args.half, args.limit)
    factory = engine_factory(args.engine, args.model)
    vad = vad_settings(args.vad) if args.vad else None
    summaries = []
    for snr in [parse_snr(s) for s in args.snr.split(",")]:
        s = evaluate(factory, snr, ids, idle=not args.no_idle, commands=not args.idle_only, jobs=args.jobs,
                     kind=args.noise, vad=vad)
        s["engine"], s["half"], s["limit"], s["vad"] = args.engine, args.half, args.limit, args.vad
        summaries.append(s)
        print(f"{args.engine} {args.half}: {line(s)}  ({s['wall_s']} s)", flush=True)
        for r in s["rows"]:
            show = {"all": True, "wrong": r["verdict"] == "wrong", "idle": bool(r["idle_accept"]),
                    "misses": r["verdict"] in ("wrong", "not_understood"), "none": False}[args.show]
            if show:
                print(f"  {r['id'][:8]} {r['verdict']:<14} {r['noise'] or '':<7} heard {r['heard']!r} "
                      f"conf {r['confidence']} got {r['got']} {r['got_slots']} want {r['want_slots']}"
                      + (f" | idle {r['idle_heard']!r} -> {r['idle_accept']}" if r["idle_accept"] else ""))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
