"""Command accuracy: a held-out set of the public vocabulary, clean and in kitchen noise.

Sentences are sampled from the intent templates with a seed of their own (not the tests'
1234) and, where an intent has enough phrasings, avoid the sentences of the test set.
Every sentence is spoken by every voice of :data:`VOICES`, then mixed with one of the
synthesized kitchen noises (water, fan, clatter — rotating) at each SNR. Each utterance
is recognized in a dialog context that accepts its intent (``assistant.conversation.dialog.CONTEXTS``,
rotating through them), and counts as right only if intent AND slots are right. The audio
reaches the recognizer as in the live loop: 1.5 s of the background, the sentence, 1 s of
background, fed 20 ms at a time through :class:`assistant.speech_in.vad.Endpointer` (so the
recognizer sees the pre-roll the endpointer hands on, not a hand-cut clip); the first
intent understood in the stream counts.

Reuses :mod:`assistant.testing.speechgen` (voices, noise, mixing, sentence expansion) and
:func:`assistant.speech_in.recognizers.understand`; decoding runs in ``jobs`` worker processes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RATE, ROOT, WORKER, init_worker, seed_of, speech, wilson, worker_pool
from bench.common import listen_like_live as common_listen

log = logging.getLogger(__name__)

HELD_OUT_SEED = 20261125
"""Not the tests' seed (speechgen.SETS['test'].seed = 1234)."""
SNRS = (24.0, 18.0, 12.0, 6.0)
VOICES = ("joe", "joe-slow", "espeak-us-m3", "espeak-gb-f3-fast", "espeak-us-m7-slow")
TARGETS = {"clean": 0.99, "12": 0.97, "6": 0.93}


@dataclass
class Utterance:
    """One sentence in one voice and one acoustic condition, and what it must mean."""

    text: str
    intent: str
    slots: dict[str, str]
    context: str
    voice: str
    noise: str | None = None
    snr_db: float | None = None


@dataclass
class Outcome:
    """What the recognizer made of an :class:`Utterance`."""

    utt: Utterance
    heard: str
    intent: str | None
    slots: dict[str, str] = field(default_factory=dict)
    confidence: float = 0.0
    decode_s: float = 0.0
    audio_s: float = 0.0

    @property
    def correct(self) -> bool:
        return self.intent == self.utt.intent and self.slots == self.utt.slots


def intents_under_test(intent_set: Any) -> list[str]:
    from assistant.conversation.dialog import PUBLIC_INTENTS

    names = [n for n in PUBLIC_INTENTS if n in intent_set.intents.intents]
    return names + [n for n in ("still_cramping",) if n in intent_set.intents.intents and n not in names]


def contexts_for(intent: str) -> list[str]:
    from assistant.conversation.dialog import CONTEXTS

    return [name for name, allowed in CONTEXTS.items() if intent in allowed]


def choose_sentences(intent_set: Any, intent: str, count: int, rng: random.Random,
                     avoid: set[str], cover_slots: bool = True) -> list[tuple[str, dict[str, str], str]]:
    """(text, slots, context): every slot value at least once, then more, held-out first."""
    from assistant.conversation.dialog import CONTEXTS
    from assistant.testing.speechgen import sentences_for

    contexts = contexts_for(intent)
    candidates: list[Any] = []
    for text in sentences_for(intent_set, intent):
        for k in range(len(contexts)):
            ctx = contexts[(len(candidates) + k) % len(contexts)]
            match = intent_set.match(text, CONTEXTS[ctx])
            if match and match.intent == intent:
                candidates.append((text, dict(match.slots), ctx))
                break
    rng.shuffle(candidates)
    candidates.sort(key=lambda c: c[0] in avoid)  # stable: held-out sentences first
    chosen: list[tuple[str, dict[str, str], str]] = []
    seen: set[tuple[str, str]] = set()
    for cand in candidates if cover_slots else []:
        new = set(cand[1].items()) - seen
        if new:
            chosen.append(cand)
            seen |= new
    rest = [c for c in candidates if c not in chosen]
    return chosen + rest[: max(0, count - len(chosen))]


def plan(intent_set: Any, per_intent: int, voices: Sequence[str], snrs: Sequence[float],
         seed: int = HELD_OUT_SEED, all_voices: bool = True,
         voices_per_sentence: int | None = None) -> tuple[list[Utterance], dict[str, Any]]:
    """The held-out utterances. Each sentence is said by ``voices_per_sentence`` voices
    (rotating, so every voice is used; None = all); with ``all_voices`` False by one voice
    and without the every-slot-value pass (smoke)."""
    from assistant.testing.speechgen import NOISES, SETS
    from assistant.testing.speechgen import plan as test_plan

    rng = random.Random(seed)
    avoid = {c.text for c in test_plan(intent_set, SETS["test"])}
    utts: list[Utterance] = []
    sentences = 0
    overlap = 0
    for intent in intents_under_test(intent_set):
        for text, slots, ctx in choose_sentences(intent_set, intent, per_intent, rng, avoid, all_voices):
            sentences += 1
            overlap += text in avoid
            per = (voices_per_sentence or len(voices)) if all_voices else 1
            said_by = [voices[(sentences + k) % len(voices)] for k in range(min(per, len(voices)))]
            for v_i, voice in enumerate(said_by):
                utts.append(Utterance(text, intent, slots, ctx, voice))
                for s_i, snr in enumerate(snrs):
                    noise = NOISES[(sentences + v_i + s_i) % len(NOISES)]
                    utts.append(Utterance(text, intent, slots, ctx, voice, noise, snr))
    info = {"sentences": sentences, "also_in_test_set": overlap, "seed": seed, "voices": list(voices)}
    return utts, info


def audio_for(utt: Utterance) -> np.ndarray:
    """The utterance's audio: cached speech, padded, mixed with noise (deterministic)."""
    from assistant.testing.speechgen import mix, pad

    rng = np.random.default_rng(seed_of(utt.text, utt.voice, utt.noise, utt.snr_db))
    audio = pad(speech(utt.text, utt.voice), rng)
    if utt.noise is not None:
        audio = mix(audio, utt.noise, float(utt.snr_db or 0.0), rng)
    return audio


def scene_for(utt: Utterance, before: float = 1.5, after: float = 1.0) -> np.ndarray:
    """The utterance inside a stretch of its background (``before``/``after`` seconds),
    for the endpointer to find, as a microphone would hear it (deterministic)."""
    from assistant.testing.speechgen import mix

    rng = np.random.default_rng(seed_of(utt.text, utt.voice, utt.noise, utt.snr_db, "scene"))
    s = speech(utt.text, utt.voice)
    audio = np.concatenate([np.zeros(int(RATE * before), np.int16), s, np.zeros(int(RATE * after), np.int16)])
    if utt.noise is not None:
        return mix(audio, utt.noise, float(utt.snr_db or 0.0), rng)
    hiss = audio.astype(np.float64) + rng.normal(0.0, 2.0, len(audio))  # a quiet room, as in simulate
    return np.clip(np.rint(hiss), -32768, 32767).astype(np.int16)


def listen_like_live(recognizer: Any, intent_set: Any, audio: np.ndarray, only: Sequence[str]) -> tuple[str, Any]:
    """The heard texts of ``audio`` as the live coach cuts and decodes it (" | " between
    utterances) and the first match among ``only``."""
    heard: list[str] = []
    first = None
    for _, decoded, _ in common_listen(recognizer, intent_set, audio, only):
        heard.append(decoded.transcript.text)
        first = first if first is not None else decoded.match
    return " | ".join(heard), first


# ------------------------------------------------------------------ decoding (worker processes)

def _decode(batch: list[Utterance]) -> list[Outcome]:
    from assistant.conversation.dialog import CONTEXTS

    recognizer, intent_set = WORKER["recognizer"], WORKER["intent_set"]
    out = []
    for utt in batch:
        audio = scene_for(utt)
        start = time.process_time()
        heard, match = listen_like_live(recognizer, intent_set, audio, CONTEXTS[utt.context])
        out.append(Outcome(utt, heard, match.intent if match else None,
                           dict(match.slots) if match else {}, 1.0 if match else 0.0,
                           time.process_time() - start, len(audio) / RATE))
    return out


def decode_all(utts: list[Utterance], engine: str, model: Path | None, jobs: int,
               batch: int = 20) -> list[Outcome]:
    """Recognize every utterance in ``jobs`` processes (each with its own recognizer)."""
    for utt in utts:  # render speech once, here (Piper is loaded once), before forking workers
        speech(utt.text, utt.voice)
    batches = [utts[i:i + batch] for i in range(0, len(utts), batch)]
    if jobs <= 1:
        init_worker(engine, str(model) if model else None)
        return [o for b in batches for o in _decode(b)]
    with worker_pool(jobs, initializer=init_worker, initargs=(engine, str(model) if model else None)) as ex:
        return [o for result in ex.map(_decode, batches) for o in result]


# ------------------------------------------------------------------ summary


def condition_of(utt: Utterance) -> str:
    return "clean" if utt.snr_db is None else f"{utt.snr_db:g} dB"


def summarize(outcomes: list[Outcome], misses_shown: int = 40) -> dict[str, Any]:
    """Accuracy per SNR (with 95% CI), per noise kind, per voice, per context; the misses."""
    def block(group: list[Outcome]) -> dict[str, Any]:
        right = sum(o.correct for o in group)
        lo, hi = wilson(right, len(group))
        return {"n": len(group), "correct": right, "accuracy": round(right / len(group), 4) if group else None,
                "ci95": [round(lo, 4), round(hi, 4)],
                "not_understood": sum(o.intent is None for o in group),
                "wrong": sum(o.intent is not None and not o.correct for o in group)}

    by_cond: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_cond.setdefault(condition_of(o.utt), []).append(o)
    per_condition = {c: block(g) for c, g in by_cond.items()}
    per_noise: dict[str, Any] = {}
    for kind in sorted({o.utt.noise for o in outcomes if o.utt.noise}):
        for cond in by_cond:
            group = [o for o in by_cond[cond] if o.utt.noise == kind]
            if group:
                per_noise.setdefault(kind, {})[cond] = block(group)["accuracy"]
    per_voice = {v: {c: block([o for o in g if o.utt.voice == v])["accuracy"] for c, g in by_cond.items()
                     if any(o.utt.voice == v for o in g)}
                 for v in dict.fromkeys(o.utt.voice for o in outcomes)}
    per_intent = {i: block([o for o in outcomes if o.utt.intent == i])["accuracy"]
                  for i in dict.fromkeys(o.utt.intent for o in outcomes)}
    audio = sum(o.audio_s for o in outcomes)
    misses = [o for o in outcomes if not o.correct]
    return {
        "per_condition": per_condition,
        "per_noise": per_noise,
        "per_voice": per_voice,
        "per_intent": per_intent,
        "utterances": len(outcomes),
        "audio_seconds": round(audio, 1),
        "decode_cpu_rtf": round(sum(o.decode_s for o in outcomes) / audio, 4) if audio else None,
        "misses": [{**asdict(o.utt), "heard": o.heard, "got": o.intent, "got_slots": o.slots,
                    "confidence": round(o.confidence, 3)} for o in misses[:misses_shown]],
        "misses_total": len(misses),
    }


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each accuracy target, the measured figure and the gap."""
    rows = []
    for cond, goal in (("clean", TARGETS["clean"]), ("12 dB", TARGETS["12"]), ("6 dB", TARGETS["6"])):
        got = summary["per_condition"].get(cond, {}).get("accuracy")
        rows.append({"name": f"command accuracy, {cond}", "target": f">= {goal:.0%}", "value": got,
                     "unit": "fraction", "met": got is not None and got >= goal,
                     "gap": None if got is None else round(goal - got, 4)})
    return rows


def run(engine: str, model: Path | None, smoke: bool, jobs: int, per_intent: int | None = None) -> dict[str, Any]:
    from assistant.conversation.intents import IntentSet

    intent_set = IntentSet.load(ROOT / "prompts" / "intents.yaml")
    if smoke:
        utts, info = plan(intent_set, 1, VOICES, (6.0,), all_voices=False)
    else:
        utts, info = plan(intent_set, per_intent or 4, VOICES, SNRS)
    started = time.monotonic()
    outcomes = decode_all(utts, engine, model, jobs)
    summary = summarize(outcomes)
    summary["set"] = info
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    summary["targets"] = targets(summary)
    return summary
