"""Whisper tiny.en, steered by the listening context's templates (the noise-robust engine).

Whisper hears through a kettle or a fan far better than the embedded engines, but it
transcribes freely ("medium rose cap a chain"). Per utterance:

1. the audio is trimmed to its speech (plus a margin) and padded with a few seconds of
   silence: the encoder then runs on ~6 s instead of Whisper's 30 s window (the 30 s
   window costs ~4x the CPU; with no padding at all the decoder repeats itself);
2. one encoder pass (CTranslate2, int8) and a greedy free decode: what Whisper heard freely;
3. a beam search keeps Whisper's decoder to the context's word graph, token by token
   (:mod:`assistant.speech_in.constrained`, on the decoder of
   :mod:`assistant.speech_in.whisper_decoder`): the grammar sentences Whisper finds likely;
4. they are ranked by log-probability per token and by how near they are to the free
   transcript (Whisper's scores alone prefer stopping early);
5. a gate rejects the best ("not understood") when keeping to the grammar cost too much
   (what Whisper wanted to write at each step against what the grammar let it), or when the
   utterance is far longer than any sentence of the context.

Imports (ctranslate2, tokenizers, onnxruntime) and the model are loaded when the first recognizer
is made, once per process.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.conversation.intents import IntentSet
from assistant.errors import UserFacingError
from assistant.speech_in.constrained import TokenGraph, search
from assistant.speech_in.grammar import context_graph
from assistant.speech_in.recognizers import SAMPLE_RATE, WAKE_INTENTS, Transcript
from assistant.speech_in.whisper_decoder import Decoder, ModelFileError
from assistant.speech_in.wordgraph import WordGraph, spoken_words

log = logging.getLogger(__name__)

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")

PAD_SECONDS = 3.0
"""Silence appended after the speech. Cutting the mel to the utterance is ~4x cheaper than the
30 s window, but with nothing after the speech the decoder loops ("... with soy milk. I'd like
a ..."): on the even half of the real voices (clean, 60 orders) no padding gave 85% right,
2 s 96.7%, 5 s 98.3%, 10 s 98.3% (docs/speech-in.md)."""

MIN_WINDOW_SECONDS = 6.0
"""Pad short utterances further, to at least this window: a one-word command followed by only
3 s of silence comes back as "Yes. Yes. Yes. Yes." (the cost of 6 s is still ~1/5 of 30 s)."""

TRIM_MARGIN = 0.3
"""Seconds of audio kept around the detected speech when trimming."""

LOST_PER_TOKEN = 1.6
"""Constrained search: reject when keeping to the grammar cost more than this per token (nats;
:attr:`assistant.speech_in.constrained.Found.lost`). Even half of the real voices: right answers
at 12 and 6 dB 0.43 median, 99% under 1.13, all under 1.42; coffee orders forced into the coach's
idle grammar 1.85 and up (clean and 12 dB, 160 utterances)."""

HEARD_WEIGHT = 1.0
"""Constrained search: the finished sentences are ranked by log-probability per token (as
Whisper ranks its beams) minus this times their word edits from the free transcript per heard
word. Whisper's scores alone stop early ("... house coffee" for "... house coffee with cream");
the free transcript heard the end. Even half, 60 each at clean / 12 / 6 dB: 57 / 59 / 54 right
with the scores alone, 60 / 60 / 56 with weights 0.6 to 1.2 (docs/speech-in.md)."""

LENIENT_LOST_PER_TOKEN = 2.0
"""The same outside the idle (wake) context: a missed answer costs more than a rare false one."""

MAX_EXTRA_WORDS = 4
"""Utterance-length sanity: a sentence that has this many more or fewer words than Whisper heard
freely is not what was said ("a 4-second sentence is not 'help me'"; "Give me a 12-ounce triple
shot ice coffin" is not "i'm done"). Even half, right answers: at most 4 more heard words at 6 dB,
2 at 12 dB and clean; at most 4 fewer."""

_MODELS: dict[tuple[str, int], Any] = {}
_LOCK = threading.Lock()


# ------------------------------------------------------------------ features


def _mel_filters(n_fft: int = 400, n_mels: int = 80, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-style mel filterbank, as Whisper was trained with (librosa's defaults)."""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / rate)
    mels = np.linspace(0.0, 45.245640471924965, n_mels + 2)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    fdiff = np.diff(freqs)
    ramps = freqs.reshape(-1, 1) - fftfreqs.reshape(1, -1)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (freqs[2:n_mels + 2] - freqs[:n_mels]))[:, None]
    return weights.astype(np.float32)


_FILTERS: np.ndarray | None = None


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features (80 x frames) of float audio at 16 kHz."""
    global _FILTERS
    if _FILTERS is None:
        _FILTERS = _mel_filters()
    n_fft, hop = 400, 160
    audio = np.pad(audio.astype(np.float32), (0, hop))
    padded = np.pad(audio, (n_fft // 2, n_fft // 2), mode="reflect")
    frames = 1 + (len(padded) - n_fft) // hop
    windows = np.lib.stride_tricks.as_strided(
        padded, (frames, n_fft), (hop * padded.strides[0], padded.strides[0])
    ) * np.hanning(n_fft + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(windows, axis=-1)).astype(np.float32) ** 2
    mel = _FILTERS @ power[:-1].T
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def speech_span(audio: np.ndarray, margin: float = TRIM_MARGIN, rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """Sample range of the speech in ``audio``: frames well above the noise floor, plus a margin.

    Conservative: in steady noise the floor is the noise, so nothing that stands out from it
    is cut; when nothing stands out the whole audio is kept.
    """
    frame = rate // 50
    count = len(audio) // frame
    if count < 10:
        return 0, len(audio)
    energy = 10 * np.log10((audio[:count * frame].reshape(count, frame) ** 2).mean(axis=1) + 1e-10)
    floor = float(np.percentile(energy, 10))
    top = float(energy.max())
    if top - floor < 10:
        return 0, len(audio)
    active = np.flatnonzero(energy > max(floor + 0.25 * (top - floor), top - 45))
    keep = int(margin * rate)
    return max(0, int(active[0]) * frame - keep), min(len(audio), (int(active[-1]) + 1) * frame + keep)


# ------------------------------------------------------------------ model


@dataclass
class WhisperModel:
    """The CTranslate2 model and its tokenizer (shared by every recognizer in the process)."""

    path: Path
    model: Any
    tokenizer: Any
    sot: list[int]
    eot: int
    threads: int = 1
    _decoder: Decoder | None = None

    @property
    def decoder(self) -> Decoder:
        """The decoder, step by step, for the grammar-constrained search (built from model.bin on first use)."""
        if self._decoder is None:
            try:
                self._decoder = Decoder(self.path / "model.bin", self.threads)
            except ModelFileError as exc:
                raise UserFacingError(
                    f"{self.path}/model.bin could not be read ({exc}). "
                    "Reinstall it: cramp-coach models install whisper-tiny-en --force"
                ) from None
        return self._decoder

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)


def model_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable CTranslate2 Whisper model directory, or None."""
    path = Path(path)
    if not path.is_dir():
        return "directory not found"
    for name in MODEL_FILES:
        if not (path / name).is_file():
            return f"{name} is missing"
        if (path / name).stat().st_size == 0:
            return f"{name} is empty"
    return None


def load_model(path: Path, threads: int = 1) -> WhisperModel:
    """Load (once per process) the Whisper model in ``path``: int8 on the CPU, ``threads`` threads."""
    path = Path(path)
    key = (str(path.resolve()), threads)
    with _LOCK:
        cached = _MODELS.get(key)
        if cached is not None:
            return cached
        problem = model_problem(path)
        if problem:
            raise UserFacingError(
                f"{path} is not a usable Whisper model ({problem}). "
                "Install it with: cramp-coach models install whisper-tiny-en"
            )
        import ctranslate2
        from tokenizers import Tokenizer

        try:
            model = ctranslate2.models.Whisper(
                str(path), device="cpu", compute_type="int8", intra_threads=threads, inter_threads=1
            )
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        except (RuntimeError, ValueError, OSError) as exc:
            raise UserFacingError(
                f"the Whisper model in {path} could not be loaded ({exc}); it is damaged or incomplete. "
                "Reinstall it: cramp-coach models install whisper-tiny-en --force"
            ) from None
        specials = ("<|startoftranscript|>", "<|notimestamps|>", "<|endoftext|>")
        ids = [int(tokenizer.token_to_id(t) or -1) for t in specials]
        if -1 in ids:
            raise UserFacingError(f"{path}/tokenizer.json is not an English Whisper tokenizer")
        loaded = WhisperModel(path, model, tokenizer, ids[:2], ids[2], threads)
        _MODELS[key] = loaded
        log.info("loaded Whisper model %s (int8, %d thread%s)", path, threads, "" if threads == 1 else "s")
        return loaded


# ------------------------------------------------------------------ recognizer


@dataclass
class Decision:
    """How the last utterance was decided (for logs, benchmarks and tests)."""

    heard: str = ""
    """Whisper's free transcript."""
    sentence: str = ""
    """The best grammar sentence ("" when none)."""
    logp: float = -math.inf
    """log P(sentence) under the decoder (shortlist-normalised, nats)."""
    lost: float = math.inf
    """What keeping to the grammar cost, summed over tokens (nats;
    :attr:`assistant.speech_in.constrained.Found.lost`)."""
    tokens: int = 0
    """Tokens of the sentence as Whisper wrote it, end of text included."""
    accepted: bool = False
    reason: str = ""
    candidates: list[tuple[str, float]] = field(default_factory=list)
    """The finished sentences of the search, with their cost per token."""

    @property
    def lost_per_token(self) -> float:
        return self.lost / self.tokens if self.tokens else math.inf


class WhisperRecognizer:
    """Whisper tiny.en constrained to the current listening context (see the module doc)."""

    name = "whisper"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        intent_set: IntentSet,
        model_path: Path,
        threads: int = 1,
        pad_seconds: float = PAD_SECONDS,
        trim: bool = True,
    ) -> None:
        self.intent_set = intent_set
        self.model_path = Path(model_path)
        self.threads = threads
        self.pad_seconds = pad_seconds
        self.trim = trim
        self.last = Decision()
        self._graphs: dict[tuple[str, ...] | None, tuple[WordGraph, int]] = {}
        self._token_graphs: dict[tuple[str, ...] | None, TokenGraph] = {}
        self._pending: tuple[str, ...] | None = None
        self._active: tuple[str, ...] | None = None
        self._chunks: list[bytes] = []
        self._in_utterance = False
        # Loaded now, not at the first utterance: the first reply would wait for it (~1.3 s here,
        # most of it building the decoder step), and a damaged model is reported at start-up.
        self.model = load_model(self.model_path, self.threads)
        _ = self.model.decoder
        self.set_context(None)

    def _graph(self, key: tuple[str, ...] | None) -> tuple[WordGraph, int]:
        found = self._graphs.get(key)
        if found is None:
            graph = context_graph(self.intent_set, key, spoken=True)
            found = (graph, _longest(graph))
            self._graphs[key] = found
        return found

    def _token_graph(self, key: tuple[str, ...] | None) -> TokenGraph:
        found = self._token_graphs.get(key)
        if found is None:
            found = TokenGraph(self._graph(key)[0], self.model.encode, self.model.eot)
            self._token_graphs[key] = found
        return found

    def set_context(self, intents: Sequence[str] | None) -> None:
        key = tuple(intents) if intents is not None else None
        self._graph(key)
        self._pending = key
        if not self._in_utterance:
            self._active = key

    def start_utterance(self) -> None:
        self._active = self._pending
        self._chunks = []
        self._in_utterance = True

    def accept_audio(self, pcm: bytes) -> None:
        if not self._in_utterance:
            self.start_utterance()
        self._chunks.append(bytes(pcm))

    def end_utterance(self) -> Transcript:
        if not self._in_utterance:
            return Transcript("", 0.0)
        self._in_utterance = False
        pcm = b"".join(self._chunks)
        self._chunks = []
        key = self._active
        self._active = self._pending
        audio = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        self.last = self.decide(audio, key)
        if not self.last.accepted:
            log.debug("whisper: not understood (%s): heard %r", self.last.reason, self.last.heard)
            return Transcript("", 0.0)
        # 1 when every token written was the decoder's own favourite, 0.5 at the strict gate.
        confidence = min(1.0, max(0.5, 1.0 - self.last.lost_per_token / (2 * LOST_PER_TOKEN)))
        return Transcript(self.last.sentence, confidence)

    def decide(self, audio: np.ndarray, key: tuple[str, ...] | None) -> Decision:
        """Recognize float audio in the context ``key``."""
        _, longest = self._graph(key)
        if len(audio) < SAMPLE_RATE // 10:
            return Decision(reason="too short")
        if self.trim:
            first, last = speech_span(audio)
            audio = audio[first:last]
        speech_seconds = len(audio) / SAMPLE_RATE
        pad = max(self.pad_seconds, MIN_WINDOW_SECONDS - speech_seconds)
        audio = np.pad(audio, (0, int(pad * SAMPLE_RATE)))
        wm = self.model
        import ctranslate2

        features = np.ascontiguousarray(log_mel(audio)[:, :3000])  # the encoder takes at most 30 s
        encoded = wm.model.encode(ctranslate2.StorageView.from_array(features[None]), to_cpu=True)
        result = wm.model.generate(encoded, [wm.sot], beam_size=1, max_length=min(200, int(speech_seconds * 10) + 8))[0]
        heard_text = wm.tokenizer.decode(result.sequences_ids[0])
        heard = _without_repeat(spoken_words(heard_text))
        decision = Decision(heard=heard_text.strip())
        if not heard:
            decision.reason = "no words"
            return decision
        if len(heard) > longest + MAX_EXTRA_WORDS:
            decision.reason = f"{len(heard)} words; the longest sentence here has {longest}"
            return decision
        decoder = wm.decoder
        found = search(decoder, decoder.start(np.asarray(encoded)[0], wm.sot), self._token_graph(key))
        if not found:
            decision.reason = "no grammar path"
            return decision
        best = max(found, key=lambda f: f.logp / f.tokens - HEARD_WEIGHT * _word_edits(heard, f.words) / len(heard))
        decision.sentence = " ".join(best.words)
        decision.logp, decision.lost, decision.tokens = best.logp, best.lost, best.tokens
        decision.candidates = [(" ".join(f.words), round(f.lost / f.tokens, 2)) for f in found]
        strict = key is None or not WAKE_INTENTS.isdisjoint(key)
        most = LOST_PER_TOKEN if strict else LENIENT_LOST_PER_TOKEN
        if decision.lost_per_token > most:
            decision.reason = f"lost {decision.lost_per_token:.2f} per token > {most:g}"
        elif abs(len(heard) - len(best.words)) > MAX_EXTRA_WORDS:
            decision.reason = f"heard {len(heard)} words, the sentence has {len(best.words)}"
        else:
            decision.accepted = True
        return decision


def _without_repeat(words: list[str], probe: int = 3) -> list[str]:
    """Cut a transcript where it starts over ("give me a mocha give me a ...", "yes yes yes yes"):
    Whisper loops when it is unsure where the speech ended; nobody restarts a command mid-breath."""
    for start in range(1, len(words)):
        size = min(start, probe, len(words) - start)
        if size == min(start, probe) and words[start:start + size] == words[:size]:
            return words[:start]
    return words


def _word_edits(a: Sequence[str], b: Sequence[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (word != other))
    return row[-1]


def _longest(graph: WordGraph) -> int:
    """Words in the longest sentence of the graph."""
    longest = [0] * graph.size
    for state in reversed(graph.order):
        longest[state] = max((1 + longest[t] for _, t in graph.arcs[state]), default=0)
    return longest[0]
