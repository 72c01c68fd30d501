"""False acceptance: ordinary kitchen talk, in kitchen noise, must not wake the idle coach.

Everyday sentences (``bench/data/everyday.yaml``: fixed ones plus templates expanded at
random) are spoken by the benchmark voices into continuous "conversations" of about a
half a minute, with natural pauses, over one kitchen noise at one SNR (rotating through water /
fan / clatter and 24 / 18 / 12 / 6 dB). Each conversation streams through the live
pipeline's endpointer (:class:`assistant.speech_in.vad.Endpointer`) 20 ms at a time; every
utterance it cuts out is recognized in the **idle** context
(``assistant.conversation.dialog.CONTEXTS['idle']``) and anything understood as an intent is a false
trigger. Reported per hour of talk.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RATE, ROOT, WORKER, init_worker, listen_like_live, seed_of, speech, worker_pool

log = logging.getLogger(__name__)

SEED = 777
DATA = ROOT / "bench" / "data" / "everyday.yaml"
VOICES = ("joe", "joe-slow", "espeak-us-m3", "espeak-gb-f3-fast", "espeak-us-m7-slow")
SNRS = (24.0, 18.0, 12.0, 6.0)
TARGET_PER_HOUR = 1.0


def everyday_sentences(count: int, seed: int = SEED) -> list[str]:
    """``count`` distinct everyday sentences: the fixed ones first, then template expansions."""
    import yaml

    data = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    out = dict.fromkeys(data["sentences"])
    tries = 0
    while len(out) < count and tries < count * 50:
        tries += 1
        template = rng.choice(data["templates"])
        text = template.format(**{k: rng.choice(v) for k, v in data["slots"].items()})
        out[" ".join(text.split())] = None
    sentences = list(out)
    rng.shuffle(sentences)
    return sentences[:count]


@dataclass
class Conversation:
    """Eight sentences of talk (20-30 s) in one noise condition."""

    index: int
    sentences: list[tuple[str, str]]
    """(text, voice) in order."""
    noise: str
    snr_db: float


def plan(minutes: float, seed: int = SEED) -> list[Conversation]:
    """Enough conversations for ``minutes`` of speech (not counting the pauses)."""
    from assistant.testing.speechgen import NOISES

    sentences = everyday_sentences(int(minutes * 60 / 2.0) + 50, seed)
    rng = random.Random(seed)
    convs: list[Conversation] = []
    i = 0
    for k in range(10_000):
        lines = []
        for _ in range(8):
            if i >= len(sentences):
                break
            lines.append((sentences[i], VOICES[(i + k) % len(VOICES)]))
            i += 1
        if not lines:
            break
        convs.append(Conversation(k, lines, NOISES[k % len(NOISES)], SNRS[(k // len(NOISES)) % len(SNRS)]))
    # trim to the minutes asked for, by rendered length (speech is cached)
    total = 0.0
    keep: list[Conversation] = []
    for conv in convs:
        keep.append(conv)
        total += sum(len(speech(t, v)) for t, v in conv.sentences) / RATE
        if total >= minutes * 60:
            break
    rng.shuffle(keep)
    return keep


def render(conv: Conversation) -> tuple[np.ndarray, float]:
    """The conversation's audio (int16) and its seconds of speech."""
    from assistant.testing.speechgen import mix

    rng = np.random.default_rng(seed_of("conv", conv.index))
    parts = [np.zeros(int(RATE * 1.5), np.int16)]  # the room before anyone talks
    spoken = 0.0
    for text, voice in conv.sentences:
        audio = speech(text, voice)
        spoken += len(audio) / RATE
        parts.append(audio)
        parts.append(np.zeros(int(RATE * rng.uniform(0.3, 1.5)), np.int16))
    return mix(np.concatenate(parts), conv.noise, conv.snr_db, rng), spoken


def _listen(conv: Conversation) -> dict[str, Any]:
    """Stream one conversation through endpointer + idle-context recognizer."""
    from assistant.conversation.dialog import CONTEXTS

    recognizer, intent_set = WORKER["recognizer"], WORKER["intent_set"]
    audio, spoken = render(conv)
    idle = list(CONTEXTS["idle"])
    utterances = 0
    triggers = []
    t0 = time.process_time()
    for at, decoded, cut in listen_like_live(recognizer, intent_set, audio, idle):
        if cut:
            continue
        utterances += 1
        transcript, match = decoded.transcript, decoded.match
        if match is not None:
            triggers.append({"at_s": round(at, 2), "heard": transcript.text, "intent": match.intent,
                             "confidence": round(transcript.confidence, 3), "noise": conv.noise,
                             "snr_db": conv.snr_db, "said_around": _said_near(conv, at)})
    decode = time.process_time() - t0
    return {"seconds": len(audio) / RATE, "speech_seconds": spoken, "utterances": utterances,
            "triggers": triggers, "decode_cpu_s": decode, "noise": conv.noise, "snr_db": conv.snr_db}


def _said_near(conv: Conversation, t: float) -> str:
    """Roughly which sentence was being spoken at ``t`` (for the report)."""
    rng = np.random.default_rng(seed_of("conv", conv.index))
    pos = 1.5
    for text, voice in conv.sentences:
        length = len(speech(text, voice)) / RATE
        if pos <= t <= pos + length + 1.0:
            return text
        pos += length + rng.uniform(0.3, 1.5)
    return ""


def run(engine: str, model: Path | None, smoke: bool, jobs: int, minutes: float | None = None) -> dict[str, Any]:
    minutes = minutes if minutes is not None else (1.0 if smoke else 30.0)
    started = time.monotonic()
    convs = plan(minutes)
    init = (engine, str(model) if model else None)
    if jobs <= 1:
        init_worker(*init)
        parts = [_listen(c) for c in convs]
    else:
        with worker_pool(jobs, initializer=init_worker, initargs=init) as ex:
            parts = list(ex.map(_listen, convs))
    hours = sum(p["seconds"] for p in parts) / 3600
    speech_hours = sum(p["speech_seconds"] for p in parts) / 3600
    triggers = [t for p in parts for t in p["triggers"]]
    per_hour = len(triggers) / hours if hours else None
    by_snr = {}
    for snr in SNRS:
        group = [p for p in parts if p["snr_db"] == snr]
        if group:
            by_snr[f"{snr:g} dB"] = {"minutes": round(sum(p["seconds"] for p in group) / 60, 1),
                                     "triggers": sum(len(p["triggers"]) for p in group)}
    audio_s = sum(p["seconds"] for p in parts)
    return {
        "minutes_of_audio": round(hours * 60, 1),
        "minutes_of_speech": round(speech_hours * 60, 1),
        "sentences": sum(len(c.sentences) for c in convs),
        "conversations": len(convs),
        "utterances_decoded": sum(p["utterances"] for p in parts),
        "false_triggers": len(triggers),
        "per_hour": round(per_hour, 2) if per_hour is not None else None,
        "by_snr": by_snr,
        "triggers": triggers[:50],
        "decode_cpu_rtf": round(sum(p["decode_cpu_s"] for p in parts) / audio_s, 4) if audio_s else None,
        "wall_seconds": round(time.monotonic() - started, 1),
        "targets": [{"name": "false triggers per hour of talk (idle, kitchen noise)",
                     "target": f"<= {TARGET_PER_HOUR:g}/h", "value": round(per_hour, 2) if per_hour is not None
                     else None, "unit": "per hour", "met": per_hour is not None and per_hour <= TARGET_PER_HOUR,
                     "gap": None if per_hour is None else round(per_hour - TARGET_PER_HOUR, 2)}],
    }
