"""A free transcript aligned to a word graph: the nearest sentences the templates allow.

Whisper transcribes freely ("medium rose cap a chain"); the coach needs a sentence its
templates accept ("medium roast cappuccino"). :func:`align` searches the context's word
graph (:mod:`assistant.speech_in.wordgraph`) with word edit costs: a heard word standing
for a grammar word costs their distance, so "rose"→"roast" and "cap a chain"→"cappuccino"
(several heard words merged into one) are cheap while inventing or dropping words is not.

Two word distances: spelling (:func:`word_distance`, the Whisper engine's :class:`Costs`)
and phones from the CMU dictionary that ships with pocketsphinx (:class:`Phonetics`,
:data:`PHONETIC_COSTS`). The search is O(arcs × words × :data:`MAX_MERGE`); the graph is
minimal, so a context of millions of sentences is a few thousand arcs.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from assistant.speech_in.wordgraph import WordGraph

MAX_MERGE = 3
"""Most heard words one grammar word may absorb ("cap a chain" → "cappuccino")."""


def _levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@functools.lru_cache(maxsize=65536)
def word_distance(heard: str, word: str) -> float:
    """Spelling distance in 0..1, spaces ignored: Levenshtein over the longer length for one
    heard word, over the grammar word's length (capped at 1) for several merged ones, so that
    swallowing a neighbour ("rose cappuccino" → "cappuccino") is not cheap."""
    letters = heard.replace(" ", "")
    if letters == word:
        return 0.0
    edits = _levenshtein(letters, word)
    if " " in heard:
        return min(1.0, edits / max(len(word), 1))
    return edits / max(len(letters), len(word), 1)


class Phonetics:
    """Phone-level word distances from the CMU dictionary shipped with pocketsphinx."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            import pocketsphinx

            path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
        self.path = path
        self._dict: dict[str, tuple[str, ...]] | None = None

    def phones(self, word: str) -> tuple[str, ...]:
        if self._dict is None:
            entries: dict[str, tuple[str, ...]] = {}
            with open(self.path, encoding="utf-8") as lines:
                for line in lines:
                    head, _, rest = line.partition(" ")
                    if "(" not in head:  # first pronunciation only
                        entries[head] = tuple(rest.split())
            self._dict = entries
        found = self._dict.get(word)
        if found is not None:
            return found
        return tuple(word)  # unknown: compare letters

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one shared instance per process
    def distance(self, word: str, heard: tuple[str, ...]) -> float:
        """0..1: how far ``heard`` (one or more transcript words) sounds from ``word``.

        Phone edit distance per phone of ``word`` (capped at 1), so extra words glued on
        cost what they add: "cap a chain" is 0.25 from cappuccino, "milk please" 1.0 from milk.
        """
        if heard == (word,):
            return 0.0
        a = self.phones(word)
        b = tuple(p for w in heard for p in self.phones(w))
        return min(1.0, _levenshtein(a, b) / max(len(a), 1))


@functools.lru_cache(maxsize=1)
def default_phonetics() -> Phonetics:
    return Phonetics()


def phonetic_distance(heard: str, word: str) -> float:
    """:meth:`Phonetics.distance` with the pocketsphinx dictionary, as a :class:`Costs` distance."""
    return default_phonetics().distance(word, tuple(heard.split()))


@dataclass(frozen=True)
class Costs:
    """Word edit costs for :func:`align` (a heard word dropped, a grammar word added...)."""

    extra: float = 1.0
    """A heard word the sentence does not have."""
    missing: float = 1.0
    """A sentence word that was not heard (short words cost ``missing_short``)."""
    missing_short: float = 0.6
    substitute: float = 1.6
    """Scale of :attr:`distance` when heard words stand for a grammar word."""
    merge: float = 0.3
    """Extra cost per additional heard word merged into one grammar word."""
    distance: Callable[[str, str], float] = word_distance
    """0..1 between heard words (space-separated) and a grammar word."""


PHONETIC_COSTS = Costs(missing_short=1.0, substitute=1.0, distance=phonetic_distance)
"""Phone distances, 1 per word inserted or left out."""


@dataclass(frozen=True)
class Alignment:
    """One grammar sentence near a free transcript."""

    words: tuple[str, ...]
    """The sentence (parse it with the templates for intent and slots)."""
    cost: float
    """Total edit cost (0 = the transcript is a grammar sentence)."""
    heard: int
    """How many words the transcript had."""

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def per_word(self) -> float:
        """Cost per word of the longer of transcript and sentence: 0 = exact, ~1 = unrelated."""
        return self.cost / max(self.heard, len(self.words), 1)


def _cost(entry: tuple[float, int, object]) -> float:
    return entry[0]


def align(
    graph: WordGraph, heard: Sequence[str], costs: Costs = Costs(), best: int = 1, beam: float = 3.5
) -> list[Alignment]:
    """The grammar sentences nearest to the heard words (up to ``best`` distinct, cheapest first).

    A k-best edit-distance alignment over the automaton: each cell keeps the ``best`` cheapest
    partial paths with distinct word sequences (identified by a running hash). States are
    visited in :attr:`WordGraph.order`, which settles equal costs. Empty when the graph has
    no sentence.
    """
    n = len(heard)
    size = graph.size
    # cells[i][s]: up to ``best`` entries (cost, word-sequence hash, back pointer), cheapest first;
    # back pointer = (prev i, prev state, prev entry index, word or None).
    Entry = tuple[float, int, tuple[int, int, int, str | None] | None]
    cells: list[list[list[Entry]]] = [[[] for _ in range(size)] for _ in range(n + 1)]
    cells[0][0].append((0.0, 0, None))
    spans = [[" ".join(heard[i:i + k]) for k in range(1, MAX_MERGE + 1)] for i in range(n)]

    def push(cell: list[Entry], cost: float, key: int, back: tuple[int, int, int, str | None]) -> None:
        if len(cell) >= best and cost >= cell[-1][0]:
            return
        for j, (c, k, _) in enumerate(cell):
            if k == key:
                if cost < c:
                    del cell[j]
                    break
                return
        bisect.insort_right(cell, (cost, key, back), key=_cost)  # after equal costs, as a stable sort
        del cell[best:]

    row_best = [float("inf")] * (n + 1)
    for i in range(n + 1):
        row = cells[i]
        # Beam pruning: a partial path much worse than the best of the last rows is dropped.
        bound = min(row_best[max(0, i - MAX_MERGE):i], default=0.0) + beam
        for state in graph.order:
            entries = row[state]
            if not entries:
                continue
            if entries[0][0] < row_best[i]:
                row_best[i] = entries[0][0]
            if entries[0][0] > bound:
                continue
            # Per arc, once for every entry: the cost of leaving the word out, and of heard
            # word(s) standing for it.
            moves = [(word, nxt, costs.missing_short if len(word) <= 2 else costs.missing,
                      [(costs.substitute * costs.distance(spans[i][k - 1], word), costs.merge * (k - 1))
                       for k in range(1, min(MAX_MERGE, n - i) + 1)])
                     for word, nxt in graph.arcs[state]]
            for rank, (here, key, _) in enumerate(entries):
                if here > bound:
                    break
                if i < n:  # an extra heard word
                    push(cells[i + 1][state], here + costs.extra, key, (i, state, rank, None))
                for word, nxt, missing, substitutes in moves:
                    wkey = hash((key, word))
                    push(row[nxt], here + missing, wkey, (i, state, rank, word))
                    for k, (distance, merge) in enumerate(substitutes, 1):
                        push(cells[i + k][nxt], here + distance + merge, wkey, (i, state, rank, word))
    visited = {state: place for place, state in enumerate(graph.order)}
    ends = sorted((e[0], visited[s], s, r) for s in graph.finals for r, e in enumerate(cells[n][s]))
    out: list[Alignment] = []
    seen: set[tuple[str, ...]] = set()
    for total, _, state, rank in ends:
        words: list[str] = []
        i = n
        back = cells[i][state][rank][2]
        while back is not None:
            i, state, rank, said = back
            if said is not None:
                words.append(said)
            back = cells[i][state][rank][2]
        sentence = tuple(reversed(words))
        if sentence not in seen:
            seen.add(sentence)
            out.append(Alignment(sentence, total, n))
        if len(out) == best:
            break
    return out
