"""Rejection for PocketSphinx: the grammar's best path against an unconstrained phone loop.

A grammar decoder always finds *some* command in any speech; what tells a real command
from kitchen talk forced onto one is how much worse the forced path fits the audio than
the best fit with no grammar at all. The pocketsphinx wheel ships a phone language model
(``en-us-phone.lm.bin``); an allphone search over the same audio (context-independent
phones: ~0.05 s CPU per second of audio here) gives that unconstrained fit. Both decoders
are fed as the audio streams in, so the gate adds almost nothing after the end of speech.

Two checks, calibrated on real voices (docs/speech-in.md, "PocketSphinx: word graph,
rejection gate and noise"):

* **fit**: (grammar path acoustic score − phone loop acoustic score) per frame;
* **length**: phones the loop heard in speech against phones of the recognized words
  (a 4-second sentence is not "help me").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Silence and filler units of the en-us model: not speech.
_NOT_SPEECH = {"SIL", "<sil>", "<s>", "</s>", "[NOISE]", "+SPN+", "+NSN+", "+BREATH+", "+COUGH+", "+SMACK+", "+UH+",
               "+UM+", "+NOISE+"}


@dataclass(frozen=True)
class GateScore:
    """What the gate measured for one utterance."""

    fit: float
    """(grammar − phone loop) acoustic score per frame, in the decoder's log units (≤ ~0; lower = worse fit)."""
    length_ratio: float
    """Speech phones the loop heard per phone of the recognized words (at least :data:`MIN_PHONES`)."""
    frames: int
    heard: int = 0
    """Speech phones the phone loop heard."""
    phones: int = 0
    """Phones of the recognized command words."""


@dataclass(frozen=True)
class GateSettings:
    """Thresholds: an utterance passes when fit ≥ ``min_fit`` and length ratio ≤ ``max_length_ratio``."""

    min_fit: float
    max_length_ratio: float
    scale: float = 1.0
    """Spread of the fit → confidence mapping (the fit margin that moves confidence by ~e)."""


def phone_model_path() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us-phone.lm.bin"


class PhoneLoop:
    """An allphone decoder fed the same audio as the grammar decoder."""

    def __init__(self, **options: Any) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(allphone=str(phone_model_path()), lm=None, allphone_ci=True, samprate=16000,
                                loglevel="FATAL", **options)
        self._cmn0 = self._decoder.get_cmn()
        self._active = False

    def start(self) -> None:
        self._decoder.reinit_feat()
        self._decoder.start_utt()
        self._decoder.set_cmn(self._cmn0)
        self._active = True

    def feed(self, pcm: bytes) -> None:
        if self._active:
            self._decoder.process_raw(pcm, False, False)

    def finish(self) -> tuple[float, int, int]:
        """(acoustic score, frames, speech phones) of the best phone sequence."""
        if not self._active:
            return 0.0, 0, 0
        self._active = False
        self._decoder.end_utt()
        score, phones = 0.0, 0
        for seg in self._decoder.seg():
            score += seg.ascore
            phones += seg.word not in _NOT_SPEECH
        return score, self._decoder.n_frames(), phones


def grammar_path(decoder: Any) -> tuple[float, int]:
    """(acoustic score, phones of the command words) of a grammar decoder's best path."""
    score, phones = 0.0, 0
    for seg in decoder.seg():
        score += seg.ascore
        word = seg.word
        if word.startswith(("<", "[", "+")):
            continue
        pron = decoder.lookup_word(word.split("(")[0])
        phones += len(pron.split()) if pron else 0
    return score, phones


MIN_PHONES = 8
"""Length ratios are taken against at least this many phones: the loop hears a one-syllable
"pass" or "wait" (3 phones) as 4-6, which says nothing about the length of what was said."""


def measure(grammar_score: float, command_phones: int, loop: tuple[float, int, int]) -> GateScore:
    loop_score, frames, heard = loop
    fit = (grammar_score - loop_score) / max(frames, 1)
    return GateScore(fit, heard / max(command_phones, MIN_PHONES), frames, heard, command_phones)


def confidence(score: GateScore, settings: GateSettings, floor: float) -> float:
    """0..1, equal to ``floor`` exactly at the thresholds, so ``understand()``'s floor is the gate."""
    if score.length_ratio > settings.max_length_ratio:
        return min(floor * 0.5, floor - 1e-3)
    margin = (score.fit - settings.min_fit) / settings.scale
    base = math.log(floor / (1 - floor))
    return 1.0 / (1.0 + math.exp(-(base + margin)))
