"""Grammar-constrained decoding: Whisper's decoder may only write sentences of the word graph.

Free decoding followed by alignment can only find grammar sentences near what Whisper wrote;
at 12 dB Whisper often writes something far off ("medium rose cap a chain") while the right
sentence is still among the ones its decoder finds likely. Here a beam search runs the decoder
(:mod:`assistant.speech_in.whisper_decoder`) token by token, offering it only the tokens that
continue a sentence of the graph: each word as Whisper writes it (" latte", " Latte"), optional
punctuation between words, end of text where a sentence may end.

Scores are log-probabilities normalised over a shortlist of the vocabulary (the decoder's
:data:`~assistant.speech_in.whisper_decoder.SHORTLIST` most frequent tokens plus those offered)
rather than all 51 864: the full output layer would cost more than the rest of a step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from assistant.speech_in.whisper_decoder import Decoder, DecoderState
from assistant.speech_in.wordgraph import WordGraph

PUNCTUATION = (",", ".", "?", "!")

BEAM = 4
MAX_TOKENS = 60


@dataclass(frozen=True)
class _Position:
    state: int
    """Graph state the current word leaves from (or, between words, the state reached)."""
    prefix: tuple[int, ...] = ()
    """Tokens of the current word written so far (empty between words)."""
    punctuated: bool = False
    """A punctuation mark was just written (one between two words is enough)."""


@dataclass
class _Hyp:
    score: float
    positions: frozenset[_Position]
    words: tuple[str, ...]
    row: int
    lost: float = 0.0


@dataclass
class Found:
    """A grammar sentence the search finished, with its (shortlist-normalised) log-probability."""

    words: tuple[str, ...]
    logp: float
    lost: float
    """Sum over tokens of (log-probability of the decoder's own favourite next token - that of
    the token written): what keeping to the grammar cost, step by step."""
    tokens: int
    """Tokens written, end of text included."""


@dataclass
class TokenGraph:
    """The word graph spelled in Whisper tokens (built lazily, per state)."""

    graph: WordGraph
    encode: Callable[[str], list[int]]
    eot: int
    punctuation: frozenset[int] = field(init=False)
    """The tokens of :data:`PUNCTUATION`."""
    _spellings: dict[int, list[tuple[tuple[int, ...], str, int]]] = field(default_factory=dict)
    _options: dict[frozenset[_Position], dict[int, list[tuple[str | None, frozenset[_Position]]]]] = field(
        default_factory=dict)

    def __post_init__(self) -> None:
        self.punctuation = frozenset(self.encode(mark)[0] for mark in PUNCTUATION)

    def spellings(self, state: int) -> list[tuple[tuple[int, ...], str, int]]:
        """(tokens, word, next state) for each way Whisper may write each word leaving ``state``."""
        found = self._spellings.get(state)
        if found is None:
            found = []
            for word, nxt in self.graph.arcs[state]:
                forms = {word, word[:1].upper() + word[1:]}
                if word == "i" or word.startswith("i'"):
                    forms = {"I" + word[1:]}
                for form in sorted(forms):
                    found.append((tuple(self.encode(" " + form)), word, nxt))
            self._spellings[state] = found
        return found

    def options(self, positions: frozenset[_Position]) -> dict[int, list[tuple[str | None, frozenset[_Position]]]]:
        """Next token -> the ways it continues: the word it completes (None if it completes none)
        and the positions it leads to. End of text leads nowhere (an empty set)."""
        found = self._options.get(positions)
        if found is None:
            found = self._options[positions] = self._next(positions)
        return found

    def _next(self, positions: frozenset[_Position]) -> dict[int, list[tuple[str | None, frozenset[_Position]]]]:
        out: dict[int, dict[str | None, set[_Position]]] = {}
        for pos in positions:
            depth = len(pos.prefix)
            if depth == 0:
                if pos.state in self.graph.finals:
                    out.setdefault(self.eot, {}).setdefault(None, set())
                if not pos.punctuated and pos.state != 0:
                    for mark in self.punctuation:
                        out.setdefault(mark, {}).setdefault(None, set()).add(_Position(pos.state, (), True))
            for tokens, word, nxt in self.spellings(pos.state):
                if len(tokens) <= depth or tokens[:depth] != pos.prefix:
                    continue
                ways = out.setdefault(tokens[depth], {})
                if len(tokens) == depth + 1:
                    ways.setdefault(word, set()).add(_Position(nxt))
                else:
                    ways.setdefault(None, set()).add(_Position(pos.state, tokens[:depth + 1]))
        return {token: [(word, frozenset(reached)) for word, reached in ways.items()] for token, ways in out.items()}


def search(decoder: Decoder, start: DecoderState, tokens: TokenGraph, beam: int = BEAM,
           best: int = 4) -> list[Found]:
    """Up to ``best`` sentences of the graph the decoder finds likely, best first.

    A beam search over tokens (as Whisper's own): the ``beam`` best continuations go on at each
    step, end-of-text among them finishes a sentence, and the search stops when ``beam`` have
    finished. They are ranked by log-probability per token (Whisper's length normalisation).
    """
    shortlist = decoder.shortlist
    hyps = [_Hyp(0.0, frozenset({_Position(0)}), (), 0)]
    state = start
    finished: list[Found] = []
    for step in range(MAX_TOKENS):
        options = [tokens.options(h.positions) for h in hyps]
        offered = sorted({t for o in options for t in o})
        extra = [t for t in offered if t >= shortlist]
        column = {t: t for t in offered if t < shortlist} | {t: shortlist + i for i, t in enumerate(extra)}
        logits = np.concatenate([state.scores, decoder.logits(state.hidden, np.array(extra, dtype=np.int64))], axis=1)
        top = logits.max(axis=1, keepdims=True)
        logp = logits - (np.log(np.exp(logits - top).sum(axis=1, keepdims=True)) + top)
        favourite = logp.max(axis=1)
        expansions: list[tuple[float, float, int, int, str | None, frozenset[_Position]]] = []
        for h, opts in zip(hyps, options, strict=True):
            for token, ways in opts.items():
                here = float(logp[h.row, column[token]])
                score, lost = h.score + here, h.lost + float(favourite[h.row]) - here
                for word, reached in ways:
                    expansions.append((score, lost, h.row, token, word, reached))
        expansions.sort(key=lambda e: -e[0])
        words_of = {h.row: h.words for h in hyps}
        nxt: list[_Hyp] = []
        tokens_out: list[int] = []
        for score, lost, row, token, word, positions in expansions:
            if token == tokens.eot:
                if all(f.words != words_of[row] for f in finished):
                    finished.append(Found(words_of[row], score, lost, step + 1))
            else:
                words = words_of[row] + ((word,) if word is not None else ())
                nxt.append(_Hyp(score, positions, words, row, lost))
                tokens_out.append(token)
                if len(nxt) == beam:
                    break
        if not nxt or len(finished) >= beam:
            break
        state = state.step(np.array(tokens_out), np.array([h.row for h in nxt]))
        for i, h in enumerate(nxt):
            h.row = i
        hyps = nxt
    finished.sort(key=lambda f: -f.logp / f.tokens)
    return finished[:best]
