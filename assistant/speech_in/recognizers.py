"""Speech to intent: one recognizer interface, two real engines.

* **Vosk** — the main engine on a Pi, when a Vosk model is installed
  (``cramp-coach models install``). Its runtime grammar is a phrase list.
* **PocketSphinx** — the embedded engine whose US-English model ships inside the
  wheel, so the coach works right after ``pip install``. It decodes against the
  context's word graph as a finite-state grammar, with a garbage path while idle and a
  phone-loop rejection gate (see :mod:`assistant.speech_in.grammar`, :mod:`.sphinx_gate`).

Both are constrained per dialog state (:meth:`Recognizer.set_context`), and the text
they return is parsed back with the same templates (:func:`understand`): speech that
does not fully match an active intent, or is heard with low confidence, is "not
understood" — never forced onto the nearest command.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from assistant.conversation.intents import IntentMatch, IntentSet, normalize
from assistant.errors import UserFacingError
from assistant.speech_in.sphinx_gate import MIN_PHONES, GateScore, GateSettings, PhoneLoop, grammar_path, measure
from assistant.speech_in.sphinx_gate import confidence as gate_confidence

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ENGINES = ("auto", "vosk", "pocketsphinx", "whisper")

# Below this confidence a recognized sentence is treated as not understood. Measured on
# the generated test set (bench/accuracy.py): in-grammar commands score ~0.9+, while
# out-of-domain speech that survives the garbage path mostly scores far lower.
DEFAULT_FLOOR = 0.35

# PocketSphinx search beams, narrower than its defaults (1e-48/1e-48/1e-80): decoding
# is ~4x faster (real-time factor ~0.05 instead of ~0.2 here) with the same accuracy
# on the generated set (see docs/speech-in.md).
# bestpath=False: no lattice rescoring when the hypothesis is read. With the garbage loop
# on noisy audio that lattice is huge: hyp() took 15 s for a 2 s utterance at 6 dB SNR,
# holding the GIL (the live loop and its countdown froze). Without it: <1 ms, real-time
# factor 0.044 instead of 0.45, same accuracy (bench/, docs/benchmarks.md); the posterior
# it would give is ~1.0 for every result anyway.
# fillprob/silprob (defaults 1e-8/0.005): let noise and pauses go to the acoustic
# model's noise/silence fillers, which both the command and the garbage path can use;
# clatter 12 dB 35 -> 38 of 74 commands, same clean accuracy (docs/speech-in.md).
DECODER_OPTIONS: dict[str, Any] = {
    "beam": 1e-30, "wbeam": 1e-20, "pbeam": 1e-30, "bestpath": False, "fillprob": 1e-2, "silprob": 0.1,
}

# A context that listens for these is the idle "wake" context: most speech there is not
# meant for the coach, so its grammar rejects strictly. Other contexts (a question, a
# hold) expect a command and use a lenient garbage path (see assistant.speech_in.grammar).
WAKE_INTENTS = frozenset({"cramp_start", "diary_summary"})

# PocketSphinx rejection gate (assistant.speech_in.sphinx_gate), per kind of context. Calibrated
# on real voices (realspeech, even half: orders as commands in the coffee grammar and as kitchen
# talk in the idle context) and the synthesized cramp commands at 24/12 dB: commands heard right
# have fit >= -0.06 and length ratio <= 1.0 (one cramp command of 74 at 1.1); kitchen talk forced
# onto a command mostly has a ratio of 1.2-4 (a long sentence heard as "help me"). Idle keeps its
# garbage loop too; other contexts drop it when every command is long (it cost ~12 points at 12 dB).
STRICT_GATE: GateSettings | None = GateSettings(min_fit=-0.065, max_length_ratio=1.0, scale=0.01)
LENIENT_GATE: GateSettings | None = GateSettings(min_fit=-0.08, max_length_ratio=1.25, scale=0.01)


@dataclass(frozen=True)
class Transcript:
    """What an engine heard in one utterance."""

    text: str
    """Recognized words, lower case; empty when nothing in the grammar was heard."""
    confidence: float
    """Engine confidence in 0..1 (posterior of the best path)."""


class Recognizer(Protocol):
    """A streaming recognizer constrained to the current listening context."""

    name: str
    """``pocketsphinx`` or ``vosk``."""
    sample_rate: int
    """Audio rate :meth:`accept_audio` expects (16000)."""
    intent_set: IntentSet
    """The templates the grammars are compiled from."""

    def set_context(self, intents: Sequence[str] | None) -> None:
        """Narrow the grammar to ``intents`` (None = all); applies from the next utterance."""

    def start_utterance(self) -> None: ...

    def accept_audio(self, pcm: bytes) -> None:
        """Feed int16 mono little-endian audio at :attr:`sample_rate`, any chunk size."""

    def end_utterance(self) -> Transcript: ...


def dither(pcm: bytes, rng: np.random.Generator, level: float = 2.0) -> bytes:
    """Add a faint noise floor (a few LSB): exact digital silence wrecks PocketSphinx."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    samples += rng.normal(0.0, level, samples.shape).astype(np.float32)
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


class PocketSphinxRecognizer:
    """PocketSphinx with one cached finite-state-grammar search per listening context.

    The grammar is the context's word graph (:mod:`assistant.speech_in.wordgraph`). Idle-like
    contexts run a garbage loop beside the commands; every context is checked by the
    phone-loop gate (:mod:`assistant.speech_in.sphinx_gate`), whose verdict is the confidence.
    """

    name = "pocketsphinx"
    sample_rate = SAMPLE_RATE

    def __init__(self, intent_set: IntentSet, garbage: bool = True, garbage_weights: tuple[float, float] | None = None,
                 gate: tuple[GateSettings | None, GateSettings | None] | None = None, **decoder_options: Any) -> None:
        from pocketsphinx import Decoder

        from assistant.speech_in.grammar import GARBAGE_WEIGHT, LENIENT_GARBAGE_WEIGHT

        self.intent_set = intent_set
        self.garbage = garbage
        self.garbage_weights = garbage_weights or (GARBAGE_WEIGHT, LENIENT_GARBAGE_WEIGHT)
        """Garbage-loop weight (strict idle contexts, lenient others) against 1 for the commands."""
        self.gate = gate if gate is not None else (STRICT_GATE, LENIENT_GATE)
        """Phone-loop rejection gate (strict idle contexts, lenient others); None = off."""
        self.last_gate: GateScore | None = None
        """What the gate measured for the last utterance (for calibration and logs)."""
        self._loop = PhoneLoop(**{k: v for k, v in decoder_options.items() if k in ("remove_noise",)}) \
            if any(self.gate) else None
        self._strict = True
        options = {**DECODER_OPTIONS, **decoder_options}
        self._decoder = Decoder(lm=None, samprate=SAMPLE_RATE, loglevel="FATAL", **options)
        self._searches: dict[tuple[str, ...] | None, str] = {}
        self._pending: tuple[str, ...] | None = None
        self._active: str | None = None
        self._in_utterance = False
        self._rng = np.random.default_rng(0)
        self._cmn0 = self._decoder.get_cmn()
        self.set_context(None)

    def _known(self, word: str) -> bool:
        if self._decoder.lookup_word(word) is not None:
            return True
        phones = _compound_pronunciation(word, self._decoder.lookup_word)
        if phones:
            log.info("pronouncing %r as %s (from its parts)", word, phones)
            self._decoder.add_word(word, phones, False)
            return True
        return False

    def _search_for(self, key: tuple[str, ...] | None) -> str:
        from assistant.speech_in.grammar import compile_fsg

        name = self._searches.get(key)
        if name is None:
            name = f"ctx{len(self._searches)}"
            strict = self._is_strict(key)
            weight = self.garbage_weights[0] if strict else self.garbage_weights[1]
            # Outside idle, a grammar whose every command is long drops the garbage loop (it took
            # commands in noise: 12 dB 30% -> 42.5%) and leans on the gate's length check; short
            # commands ("no", "stop") keep it: nothing else stops "no" being forced onto "enough".
            below = None if strict or self.gate[1] is None else (self._phones, MIN_PHONES)
            start, final, transitions = compile_fsg(
                self.intent_set, key, self._known, garbage=self.garbage and weight > 0, garbage_weight=weight,
                garbage_below=below)
            steps = [t[:3] if t[3] is None else t for t in transitions]  # an empty step has no word
            fsg = self._decoder.create_fsg(name, start, final, steps)
            self._decoder.add_fsg(name, fsg)
            self._searches[key] = name
        return name

    def set_context(self, intents: Sequence[str] | None) -> None:
        key = tuple(intents) if intents is not None else None
        self._search_for(key)  # compile now, so switching later costs nothing
        self._pending = key
        if not self._in_utterance:
            self._activate()

    def _phones(self, word: str) -> int:
        pron = self._decoder.lookup_word(word)
        return len(pron.split()) if pron else 0

    def _is_strict(self, key: tuple[str, ...] | None) -> bool:
        """Idle-like contexts (listening for a wake intent) reject strictly; see :data:`WAKE_INTENTS`."""
        return not WAKE_INTENTS.isdisjoint(self.intent_set.names if key is None else key)

    def _activate(self) -> None:
        self._strict = self._is_strict(self._pending)
        name = self._searches[self._pending]
        if name != self._active:
            self._decoder.activate_search(name)
            self._active = name

    def start_utterance(self) -> None:
        self._activate()
        # Same audio, same result, whatever was heard before. The front end otherwise
        # carries its noise estimate (remove_noise) and cepstral mean over from the previous
        # utterance: clatter commands right after a fan-noise utterance 1/25, after a clean
        # one 10/25 (docs/speech-in.md). reinit_feat resets both; each utterance starts from
        # the model's cmninit and adapts within the utterance.
        self._rng = np.random.default_rng(0)
        self._decoder.reinit_feat()
        self._decoder.start_utt()
        self._decoder.set_cmn(self._cmn0)
        if self._loop is not None:
            self._loop.start()
        self._in_utterance = True

    def accept_audio(self, pcm: bytes) -> None:
        if not self._in_utterance:
            self.start_utterance()
        audio = dither(pcm, self._rng)
        self._decoder.process_raw(audio, False, False)
        if self._loop is not None:
            self._loop.feed(audio)

    def end_utterance(self) -> Transcript:
        if not self._in_utterance:
            return Transcript("", 0.0)
        self._decoder.end_utt()
        self._in_utterance = False
        loop = self._loop.finish() if self._loop is not None else None
        settings = self.gate[0] if self._strict else self.gate[1]
        hyp = self._decoder.hyp()
        self.last_gate = None
        if hyp is None or not hyp.hypstr:
            self._activate()
            return Transcript("", 0.0)
        text = normalize(hyp.hypstr)
        if loop is not None:
            self.last_gate = measure(*grammar_path(self._decoder), loop)
        self._activate()
        if settings is None or self.last_gate is None:
            try:
                confidence = self._decoder.get_logmath().exp(hyp.prob)
            except Exception:  # no lattice (e.g. very short input)
                confidence = 0.0
        else:
            confidence = gate_confidence(self.last_gate, settings, DEFAULT_FLOOR)
            log.debug("gate %r: %s -> confidence %.2f", text, self.last_gate, confidence)
        return Transcript(text, float(min(1.0, max(0.0, confidence))))


def _compound_pronunciation(word: str, lookup: Any) -> str | None:
    """Phones for a word made of dictionary words ("antipsychotic" = anti + psychotic)."""
    for i in range(2, len(word) - 1):
        head, tail = word[:i], word[i:]
        head_phones = lookup(head)
        if head_phones is None or len(head) < 2:
            continue
        tail_phones = lookup(tail) or _compound_pronunciation(tail, lookup)
        if tail_phones:
            return f"{head_phones} {tail_phones}"
    return None


class VoskRecognizer:
    """Vosk with a runtime phrase-list grammar per listening context."""

    name = "vosk"
    sample_rate = SAMPLE_RATE

    def __init__(self, intent_set: IntentSet, model_path: Path, model: Any | None = None) -> None:
        self.intent_set = intent_set
        self.model_path = Path(model_path)
        self.model = model if model is not None else load_vosk_model(self.model_path)
        self._grammars: dict[tuple[str, ...] | None, str] = {}
        self._pending: tuple[str, ...] | None = None
        self._active: str | None = None
        self._recognizer: Any = None
        self._in_utterance = False
        self._parts: list[dict[str, Any]] = []
        self.set_context(None)

    def grammar_json(self, key: tuple[str, ...] | None) -> str:
        from assistant.speech_in.grammar import phrases

        text = self._grammars.get(key)
        if text is None:
            text = json.dumps([*phrases(self.intent_set, key), "[unk]"])
            self._grammars[key] = text
        return text

    def set_context(self, intents: Sequence[str] | None) -> None:
        key = tuple(intents) if intents is not None else None
        self.grammar_json(key)
        self._pending = key
        if not self._in_utterance:
            self._apply()

    def _apply(self) -> None:
        from vosk import KaldiRecognizer

        grammar = self._grammars[self._pending]
        if self._recognizer is None:
            self._recognizer = KaldiRecognizer(self.model, self.sample_rate, grammar)
            self._recognizer.SetWords(True)
        elif grammar != self._active:
            if hasattr(self._recognizer, "SetGrammar"):
                self._recognizer.SetGrammar(grammar)
            else:  # older vosk: a fresh recognizer per grammar
                self._recognizer = KaldiRecognizer(self.model, self.sample_rate, grammar)
                self._recognizer.SetWords(True)
        self._active = grammar

    def start_utterance(self) -> None:
        self._apply()
        self._parts = []
        self._in_utterance = True

    def accept_audio(self, pcm: bytes) -> None:
        if not self._in_utterance:
            self.start_utterance()
        # Vosk endpointing may finalize mid-stream; keep the finished parts.
        if self._recognizer.AcceptWaveform(pcm):
            self._parts.append(json.loads(self._recognizer.Result()))

    def end_utterance(self) -> Transcript:
        if not self._in_utterance:
            return Transcript("", 0.0)
        self._in_utterance = False
        parts = [*self._parts, json.loads(self._recognizer.FinalResult())]
        self._parts = []
        self._apply()
        return parse_vosk_results(parts)


def parse_vosk_results(results: Sequence[dict[str, Any]]) -> Transcript:
    """Join Vosk result dicts into one transcript; confidence = mean word confidence.

    ``[unk]`` (speech outside the grammar) is kept in the text so it can never parse
    as a command.
    """
    words: list[str] = []
    confs: list[float] = []
    for result in results:
        for item in result.get("result", []):
            words.append(str(item.get("word", "")))
            confs.append(float(item.get("conf", 0.0)))
        if not result.get("result") and result.get("text"):
            words.extend(str(result["text"]).split())
            confs.append(1.0)
    text = " ".join(w for w in words if w)
    if not text:
        return Transcript("", 0.0)
    confidence = sum(confs) / len(confs) if confs else 0.0
    return Transcript(text.replace("[unk]", "<unk>"), confidence)


def load_vosk_model(path: Path) -> Any:
    """Load a Vosk model directory, with a message that says what to do when it fails."""
    from assistant.speech_in.models import load_vosk

    return load_vosk(path)


def create_recognizer(
    intent_set: IntentSet, engine: str = "auto", model_path: Path | None = None
) -> Recognizer:
    """The engine asked for. ``auto`` = the most accurate installed engine whose reply fits the
    time budget on this board (:mod:`assistant.speech_in.engine_choice`), logged with the reason."""
    if engine not in ENGINES:
        raise UserFacingError(f"unknown speech engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto" and model_path is None:
        from assistant.speech_in.engine_choice import choose_engine

        choice = choose_engine()
        log.info("speech engine: %s (%s)", choice.engine, choice.reason)
        engine = choice.engine
    if engine == "pocketsphinx":
        return PocketSphinxRecognizer(intent_set)
    if engine == "whisper":
        from assistant.speech_in.models import WHISPER_INSTALL_HINT, find_whisper
        from assistant.speech_in.whisper import WhisperRecognizer

        path = Path(model_path) if model_path is not None else find_whisper()
        if path is None:
            raise UserFacingError(f"no Whisper model is installed. Install it with: {WHISPER_INSTALL_HINT}")
        return WhisperRecognizer(intent_set, path)
    from assistant.speech_in.models import find_model

    path = Path(model_path) if model_path is not None else find_model()
    if path is None:
        if engine == "vosk":
            raise UserFacingError(
                "no Vosk model is installed. Install one with: cramp-coach models install "
                "(or --from a downloaded zip), or pass --model DIR, or use --engine pocketsphinx"
            )
        log.info("no Vosk model installed; using PocketSphinx")
        return PocketSphinxRecognizer(intent_set)
    return VoskRecognizer(intent_set, path)


def understand(
    intent_set: IntentSet,
    transcript: Transcript,
    only: Sequence[str] | None,
    floor: float = DEFAULT_FLOOR,
) -> IntentMatch | None:
    """The intent the transcript fully matches, or None when it is not understood."""
    if not transcript.text or "<unk>" in transcript.text:
        return None
    if transcript.confidence < floor or math.isnan(transcript.confidence):
        log.debug("rejected %r: confidence %.2f < %.2f", transcript.text, transcript.confidence, floor)
        return None
    return intent_set.match(transcript.text, only)


def recognize_pcm(
    recognizer: Recognizer,
    pcm: bytes,
    only: Sequence[str] | None = None,
    intent_set: IntentSet | None = None,
    floor: float = DEFAULT_FLOOR,
    chunk: int = 4096,
) -> tuple[Transcript, IntentMatch | None]:
    """Recognize one whole utterance (e.g. a WAV file) in context ``only``, through the
    same decoding as the live coach (:mod:`assistant.speech_in.pipeline`)."""
    from assistant.speech_in.pipeline import Decoder, UtteranceContext, decode_whole

    intents = intent_set if intent_set is not None else recognizer.intent_set
    ctx = UtteranceContext(tuple(only) if only is not None else None)
    decoded = decode_whole(Decoder(recognizer, intents, floor=floor), pcm, ctx, chunk)
    return decoded.transcript, decoded.match
