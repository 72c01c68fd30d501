"""Small helpers shared by the benchmarks: paths, machine description, statistics."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / "bench" / ".cache"
RATE = 16000


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM (from /proc), OS, Python, date and git commit."""
    info = _cpuinfo()
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "cpu_model": info.get("model name", platform.processor() or "unknown"),
        "cpu_family_model": f"family {info.get('cpu family', '?')} model {info.get('model', '?')}",
        "cpu_mhz": float(info.get("cpu MHz", "0") or 0),
        "hypervisor": "flags" in info and "hypervisor" in info["flags"].split(),
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + ("+dirty" if dirty else ""),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def pct(values: list[float] | np.ndarray, q: float) -> float | None:
    """Percentile ``q`` (0..100) or None for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def vosk_english_model() -> Path | None:
    """An installed English Vosk model, if any (the Korean test model does not count)."""
    try:
        from assistant.speech_in.models import find_model

        path = find_model()
    except Exception:  # noqa: BLE001 - a broken models dir just means "none"
        return None
    if path is None or "ko" in Path(path).name.split("-"):
        return None
    return Path(path)


def speech(text: str, voice: str) -> np.ndarray:
    """``text`` spoken by a :data:`assistant.testing.speechgen.VOICES` voice, int16 16 kHz, cached on disk."""
    import hashlib
    import json
    from dataclasses import asdict

    from assistant.speech_in.wav import read_wav, write_wav
    from assistant.testing.speechgen import GENERATOR_VERSION, VOICES, synthesize

    key = hashlib.sha256(json.dumps([GENERATOR_VERSION, text, asdict(VOICES[voice])]).encode()).hexdigest()[:20]
    path = CACHE / "speech" / f"{key}.wav"
    if path.exists():
        return read_wav(path)
    audio = synthesize(text, VOICES[voice])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    write_wav(tmp, audio)
    tmp.replace(path)
    return audio


def seed_of(*parts: object) -> int:
    """A stable 32-bit seed from any values (hash() is salted per process)."""
    import hashlib

    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of a proportion (Wilson score), as fractions."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * ((p * (1 - p) / total + z * z / (4 * total * total)) ** 0.5) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# ------------------------------------------------------------------ decoding as the live coach does

WORKER: dict[str, Any] = {}
"""The intent set and recognizer of this (worker) process, made once by :func:`init_worker`."""


def init_worker(engine: str, model: str | None) -> None:
    """Load the intents and make one recognizer for this process (a pool initializer)."""
    from assistant.conversation.intents import IntentSet
    from assistant.speech_in.recognizers import create_recognizer

    intent_set = IntentSet.load(ROOT / "prompts" / "intents.yaml")
    WORKER["intent_set"] = intent_set
    WORKER["recognizer"] = create_recognizer(intent_set, engine, Path(model) if model else None)


def listen_like_live(recognizer: Any, intent_set: Any, audio: np.ndarray,
                     only: Any = None, vad: Any = None) -> Iterator[tuple[float, Any, bool]]:
    """Feed ``audio`` 20 ms at a time through the live coach's utterance pipeline
    (:mod:`assistant.speech_in.pipeline`: endpointer, recognizer in context ``only``,
    confidence clean-up, understand); yields ``(end time s, Decoded, cut)`` per utterance,
    ``cut`` for one still going when the audio ran out. ``vad``: other
    :class:`~assistant.speech_in.vad.VadSettings` (experiments; default the coach's)."""
    from assistant.speech_in.pipeline import Decoder, listen
    from assistant.speech_in.vad import Endpointer, VadSettings

    yield from listen(Decoder(recognizer, intent_set), Endpointer(RATE, vad or VadSettings()), audio,
                      list(only) if only is not None else None)


def utterances_like_live(recognizer: Any, audio: np.ndarray, vad: Any = None, only: Any = None,
                         intent_set: Any = None) -> Iterator[tuple[float, Any, bool]]:
    """:func:`listen_like_live` as ``(end time s, transcript, cut)``."""
    intents = intent_set if intent_set is not None else recognizer.intent_set
    for at, decoded, cut in listen_like_live(recognizer, intents, audio, only, vad):
        yield at, decoded.transcript, cut


def worker_pool(jobs: int, **kwargs: Any) -> ProcessPoolExecutor:
    """Worker processes started fresh ("spawn"), not forked: a parent that has made a Whisper
    recognizer holds CTranslate2 and ONNX Runtime thread pools, and a forked child deadlocks on
    their locks (seen: workers idle at 0 s CPU for 20 minutes)."""
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), **kwargs)

