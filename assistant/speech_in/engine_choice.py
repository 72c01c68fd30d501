"""``--engine auto``: the most accurate installed engine that still answers in time here.

The person is mid-cramp: the first spoken instruction must start within about a second of
the end of their sentence. So ``auto`` ranks the installed engines by accuracy on real
voices and keeps the best one whose reply (end of speech → first reply sample) stays within
the budget at p95 on this board. The figures come from the benchmark
(``assistant/speech_in/engine_costs.json``, written by ``bench/realspeech_report.py``):
measured on the benchmark machine, estimated for a Pi 4 and a Pi 5 from CPU time
(``bench/pi_estimate.py``). The board is read from the device tree / CPU info.

Only engines installed for the coach count (PocketSphinx always; Vosk and Whisper once
``cramp-coach models install`` put them in the models directory): a Whisper copy that a
test package happens to carry is usable with ``--engine whisper`` but never picked silently.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COSTS_FILE = Path(__file__).with_name("engine_costs.json")
REPLY_BUDGET_S = 1.0
PREFERENCE = ("whisper", "vosk", "pocketsphinx")
"""Most accurate first, used when the benchmark has no figure for an engine."""
FALLBACK = "pocketsphinx"


@dataclass(frozen=True)
class EngineChoice:
    """Which engine ``auto`` picked, and why (said by ``doctor`` and the start-up log)."""

    engine: str
    board: str
    reason: str
    considered: list[str] = field(default_factory=list)
    """One line per engine: installed or not, accuracy, reply time on this board."""


def detect_board() -> str:
    """``pi5``, ``pi4`` (the boards the benchmark estimates) or ``here`` (a desktop-class CPU).

    Another ARM board is treated as a Pi 4: the conservative estimate.
    """
    for source in (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model")):
        try:
            model = source.read_bytes().decode("utf-8", "replace").lower()
        except OSError:
            continue
        if "raspberry pi 5" in model:
            return "pi5"
        if "raspberry pi" in model:
            return "pi4"
    machine = platform.machine().lower()
    if machine.startswith(("arm", "aarch64")):
        return "pi4"
    return "here"


def load_costs(path: Path = COSTS_FILE) -> dict[str, Any]:
    """The benchmark's per-engine figures ({} when missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("engine figures %s unreadable (%s); auto uses the default preference", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def installed_engines(root: Path | None = None) -> dict[str, bool]:
    """Which engines the coach has in the models directory ``root`` (see the module doc)."""
    from assistant.speech_in.models import WHISPER_MODEL, find_model, models_dir, whisper_problem

    root = root or models_dir()
    whisper = whisper_problem(root / WHISPER_MODEL) is None
    if whisper:
        import importlib.util

        # pip install '.[whisper]': faster-whisper brings ctranslate2, tokenizers and onnxruntime.
        whisper = all(importlib.util.find_spec(name) is not None
                      for name in ("ctranslate2", "tokenizers", "onnxruntime", "onnx"))
    return {"whisper": whisper, "vosk": find_model(root) is not None, "pocketsphinx": True}


def _board(figures: dict[str, Any], board: str) -> dict[str, Any]:
    boards = figures.get("boards")
    entry = boards.get(board) if isinstance(boards, dict) else None
    return entry if isinstance(entry, dict) else {}


def _reply_s(entry: dict[str, Any]) -> float | None:
    for key in ("reply_p95_s", "cpu_per_3s_command_s"):
        value = entry.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def choose_engine(
    installed: dict[str, bool] | None = None, board: str | None = None, costs: dict[str, Any] | None = None
) -> EngineChoice:
    """The engine ``auto`` uses (see the module doc)."""
    installed = installed if installed is not None else installed_engines()
    board = board or detect_board()
    costs = costs if costs is not None else load_costs()
    budget = float(costs.get("reply_budget_s", REPLY_BUDGET_S)) if costs else REPLY_BUDGET_S
    engines = costs.get("engines", {}) if isinstance(costs.get("engines"), dict) else {}
    ranked: list[tuple[float, int, str]] = []
    considered: list[str] = []
    for rank, name in enumerate(PREFERENCE):
        figures = engines.get(name, {}) if isinstance(engines.get(name), dict) else {}
        accuracy = figures.get("accuracy_mean")
        entry = _board(figures, board)
        reply = _reply_s(entry)
        has_accuracy = isinstance(accuracy, (int, float))
        acc_text = f"{accuracy:.0%} right on real voices" if has_accuracy else "accuracy not measured"
        reply_text = f"reply ~{reply:.2f} s on {board}" if reply is not None else f"no timing for {board}"
        if not installed.get(name):
            considered.append(f"{name}: not installed")
            continue
        # The benchmark's verdict when it gives one (it knows the measurement's caveats), else the p95.
        verdict = entry.get("fits")
        fits = verdict if isinstance(verdict, bool) else (reply is None or reply <= budget)
        considered.append(f"{name}: {acc_text}, {reply_text}" + ("" if fits else f" (over the {budget:g} s budget)"))
        if fits:
            score = float(accuracy) if isinstance(accuracy, (int, float)) else -1.0
            ranked.append((score, -rank, name))
    if not ranked:
        return EngineChoice(FALLBACK, board, "no installed engine fits the reply budget; using the embedded one",
                            considered)
    # Measured accuracy decides; unmeasured engines keep the default preference order among themselves.
    measured = [r for r in ranked if r[0] >= 0]
    pick = max(measured) if measured else max(ranked, key=lambda r: r[1])
    name = pick[2]
    reason = (f"most accurate installed engine whose reply fits {budget:g} s on {board}"
              if measured else "preferred installed engine (no benchmark figures)")
    return EngineChoice(name, board, reason, considered)
