"""Raspberry Pi 4 and Pi 5 estimates: how the compute measured here scales to their cores.

This is an estimate, not a measurement. The assumption and its sources:

* Raspberry Pi 5 (Cortex-A76 @ 2.4 GHz): Geekbench 6 single-core 748
  (Jeff Geerling's board review, github.com/geerlingguy/sbc-reviews issue #21).
* Pi 5 vs Pi 4 (Cortex-A72 @ 1.5-1.8 GHz) single-thread: 2-3x (Raspberry Pi's launch
  claim; sysbench single-thread +128% at 1.8 GHz in zbotic.in's Pi 5 vs Pi 4 numbers)
  -> a Pi 4 core scores about 250-370 in Geekbench 6 single-core.
* This machine: a KVM guest on an AMD EPYC, family 25 model 17 (Zen 4 "Genoa"). Zen 4
  server cores score roughly 1500-2000 in Geekbench 6 single-core (our assumption from
  the public Geekbench browser; not measured here — Geekbench cannot be installed offline).
* Hence a Pi 4 core is taken as **6x slower** (range 4-8x) for the recognizer's
  float- and memory-bound work. sysbench's prime test is also run here for reference,
  against the published Pi 4 figure (1477.83 events/s single-thread, sysbench 1.0.20,
  leoncode.co.uk/articles/raspberry-pi-benchmarks); it suggests only ~1.5x, but that
  integer-division loop flatters AArch64 and is not representative of decoding.

* Hence a Pi 5 core is taken as **2.5x slower** than one core here (range 1.5-4x):
  748 vs ~1500-2000 in Geekbench 6 single-core.
* Int8 neural inference (the Whisper engine, CTranslate2) leans on the dot-product
  instructions: this machine has AVX-512 VNNI, the Pi 5's Cortex-A76 has the Armv8.2 dot
  product, the Pi 4's Cortex-A72 has neither — so for that engine the Pi 4's range is
  widened to 6-12x (our assumption, not measured: no Pi here).

Compute-bound figures (RTF, idle CPU, the compute part of the reply latency) are scaled
by the factor; fixed waits (the endpointer's hangover, audio buffering) are not; memory
is taken as equal (same code, 64-bit on both); accuracy is unchanged as long as the
decoder keeps up in real time (RTF < 1), since the arithmetic is the same.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

FACTOR = 6.0
FACTOR_RANGE = (4.0, 8.0)
PI5_FACTOR = 2.5
PI5_FACTOR_RANGE = (1.5, 4.0)
NEURAL_PI4_RANGE = (6.0, 12.0)
NEURAL_ENGINES = frozenset({"whisper"})
REPLY_BUDGET_S = 1.0
"""Issue 12: `auto` picks the most accurate engine whose reply p95 stays within this."""
PI4_SYSBENCH_SINGLE = 1477.83
HANGOVER_S = 0.4
SOURCES = [
    "Pi 5 Geekbench 6 single-core 748: https://github.com/geerlingguy/sbc-reviews/issues/21",
    "Pi 5 = 2-3x Pi 4 single-thread: Raspberry Pi 5 launch; sysbench +128% in "
    "https://zbotic.in/raspberry-pi-5-benchmarks-real-performance-numbers-vs-pi-4/",
    "Pi 4 sysbench 1.0.20 cpu single-thread 1477.83 events/s: https://leoncode.co.uk/articles/raspberry-pi-benchmarks",
    "Zen 4 server core Geekbench 6 single-core ~1500-2000: assumption (Geekbench browser), not measured here",
]


def sysbench_here(seconds: int = 5) -> float | None:
    """sysbench cpu single-thread events/s on this machine (None if sysbench is missing)."""
    if shutil.which("sysbench") is None:
        return None
    out = subprocess.run(["sysbench", "cpu", "--threads=1", f"--time={seconds}", "run"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    for line in out.splitlines():
        if "events per second" in line:
            return float(line.split(":")[1])
    return None


def estimate(results: dict[str, Any], measure_sysbench: bool = True) -> dict[str, Any]:
    """Pi 4 projections of the compute figures in ``results`` and whether targets would hold."""
    lo, hi = FACTOR_RANGE
    compute = results.get("compute", {})
    rtf = compute.get("rtf", {}).get("rtf_cpu")
    idle = compute.get("idle", {}).get("cpu_fraction")
    startup = compute.get("startup_live", {}).get("median_s") or compute.get("startup_text", {}).get("median_s")
    peak = max([v for v in (compute.get("rtf", {}).get("peak_rss_mb"),
                            compute.get("startup_live", {}).get("peak_rss_mb")) if v] or [0]) or None
    lat = (results.get("latency") or {}).get("reply_latency_ms") or {}
    rows: list[dict[str, Any]] = []

    def row(name: str, here: float | None, scale: bool, limit: float, unit: str, fixed: float = 0.0) -> None:
        if here is None:
            rows.append({"name": name, "here": None, "pi4": None, "pi4_range": None, "target": limit,
                         "holds": None, "unit": unit})
            return
        if scale:
            var = max(0.0, here - fixed)
            pi, rng = fixed + var * FACTOR, (fixed + var * lo, fixed + var * hi)
        else:
            pi, rng = here, (here, here)
        rows.append({"name": name, "here": round(here, 4), "pi4": round(pi, 4),
                     "pi4_range": [round(rng[0], 4), round(rng[1], 4)], "target": limit,
                     "holds": pi <= limit, "holds_worst_case": rng[1] <= limit, "unit": unit})

    row("recognizer RTF (one core)", rtf, True, 0.1, "x")
    row("idle-listening CPU (fraction of one core)", idle, True, 0.1, "fraction")
    row("start-up to listening", startup, True, 2.0, "s")
    row("peak memory", peak, False, 200.0, "MB")
    med, p95 = lat.get("median"), lat.get("p95")
    row("reply latency median (hangover fixed, rest scaled)", med / 1000 if med else None, True, 0.5, "s",
        fixed=HANGOVER_S)
    row("reply latency p95 (hangover fixed, rest scaled)", p95 / 1000 if p95 else None, True, 0.8, "s",
        fixed=HANGOVER_S)
    sysbench = sysbench_here() if measure_sysbench else None
    return {
        "factor": FACTOR, "factor_range": list(FACTOR_RANGE),
        "assumption": "one Pi 4 Cortex-A72 core (1.5-1.8 GHz) is ~6x (4-8x) slower than one core of this "
                      "machine on the recognizer's work; memory equal; fixed waits unchanged",
        "sources": SOURCES,
        "sysbench_here_events_per_s": sysbench,
        "sysbench_ratio_vs_pi4": round(sysbench / PI4_SYSBENCH_SINGLE, 2) if sysbench else None,
        "rows": rows,
        "accuracy": "unchanged if RTF on the Pi stays below 1 (same arithmetic); otherwise utterances queue up",
        "cue_timing": "the countdown runs on the loop thread while decoding runs in the recognizer thread; "
                      "on 4 Pi cores that separation holds, so cue error should stay within a few ms",
    }


def hardware(engine: str) -> dict[str, dict[str, Any]]:
    """CPU slow-down factor (and range) vs one core here, per target board, for ``engine``."""
    pi4_range = NEURAL_PI4_RANGE if engine in NEURAL_ENGINES else FACTOR_RANGE
    return {
        "here": {"factor": 1.0, "range": [1.0, 1.0]},
        "pi5": {"factor": PI5_FACTOR, "range": list(PI5_FACTOR_RANGE)},
        "pi4": {"factor": max(FACTOR, pi4_range[0]), "range": list(pi4_range)},
    }


def engine_estimate(engine: str, cpu_3s: float | None, reply_p95_s: float | None,
                    hangover_s: float = HANGOVER_S, reply_compute_s: float | None = None,
                    oversubscribed: bool = False) -> dict[str, Any]:
    """Per board: CPU for a 3 s command on one core and the reply p95 (the hangover is a fixed
    wait, everything else in the measured reply is taken as compute and scaled), nominal and worst
    case; ``fits`` = the nominal reply p95 is within :data:`REPLY_BUDGET_S`.

    ``reply_compute_s`` (optional): the reply's compute from CPU time alone (decode tail + dialog and
    voice), free of the wall-clock inflation of a shared machine; gives ``reply_p95_cpu_model_s``.
    With ``oversubscribed`` (the live measurement ran with more runnable processes than cores) that
    model becomes ``reply_p95_s`` and decides ``fits``: a wall-clock time inflated by other people's
    work says nothing about the board; the measured figure stays as ``reply_p95_wall_s``."""
    out: dict[str, Any] = {}
    for board, hw in hardware(engine).items():
        f, (lo, hi) = hw["factor"], hw["range"]
        row: dict[str, Any] = {"factor": f, "factor_range": [lo, hi]}
        if cpu_3s is not None:
            row["cpu_per_3s_command_s"] = round(cpu_3s * f, 3)
            row["cpu_per_3s_command_range_s"] = [round(cpu_3s * lo, 3), round(cpu_3s * hi, 3)]
        if reply_p95_s is not None:
            var = max(0.0, reply_p95_s - hangover_s)
            row["reply_p95_s"] = round(hangover_s + var * f, 3)
            row["reply_p95_range_s"] = [round(hangover_s + var * lo, 3), round(hangover_s + var * hi, 3)]
            row["fits"] = row["reply_p95_s"] <= REPLY_BUDGET_S
            row["fits_worst_case"] = row["reply_p95_range_s"][1] <= REPLY_BUDGET_S
            row["reply_p95_basis"] = "measured live here" + ("" if board == "here" else ", scaled")
        if reply_compute_s is not None:
            row["reply_p95_cpu_model_s"] = round(hangover_s + reply_compute_s * f, 3)
            row["fits_cpu_model"] = row["reply_p95_cpu_model_s"] <= REPLY_BUDGET_S
            if oversubscribed or reply_p95_s is None:
                if "reply_p95_s" in row:
                    row["reply_p95_wall_s"] = row["reply_p95_s"]
                row["reply_p95_s"] = row["reply_p95_cpu_model_s"]
                row["reply_p95_range_s"] = [round(hangover_s + reply_compute_s * lo, 3),
                                            round(hangover_s + reply_compute_s * hi, 3)]
                row["fits"] = row["fits_cpu_model"]
                row["fits_worst_case"] = row["reply_p95_range_s"][1] <= REPLY_BUDGET_S
                row["reply_p95_basis"] = ("CPU-time model (the live measurement ran on an oversubscribed "
                                          "machine)" if oversubscribed else "CPU-time model (not measured live)")
        out[board] = row
    return out
