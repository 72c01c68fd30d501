"""A listening context's templates as one small word graph, and free text aligned to it.

Whisper transcribes freely ("medium rose cap a chain"); the coach needs a sentence its
templates accept ("medium roast cappuccino"). The templates become a deterministic,
minimized acyclic word automaton (the coffee grammar: millions of sentences, a few hundred
states), and a free transcript is aligned to it with word edit costs: substituting a word
costs its spelling distance, so "rose"→"roast" and "cap a chain"→"cappuccino" (several heard
words merged into one) are cheap while inventing or dropping words is not. The result is
the nearest sentences of the grammar, which the Whisper engine then rescores acoustically.

Nothing here spells sentences out, so grammar size is bounded by the automaton, not by the
number of sentences.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from hassil.expression import Alternative, Expression, Group, ListReference, Permutation, RuleReference, TextChunk
from hassil.intents import RangeSlotList, TextSlotList

from assistant.conversation.intents import IntentSet, normalize

log = logging.getLogger(__name__)

MAX_MERGE = 3
"""Most heard words one grammar word may absorb ("cap a chain" → "cappuccino")."""

MAX_STATES = 200_000
"""Refuse to determinize beyond this many automaton states (pathological templates)."""

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0..999999 in words, as people say them ("twelve", "one hundred twenty")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


_DIGITS = re.compile(r"\d+")


def spoken_words(text: str) -> list[str]:
    """A free transcript as grammar words: lower case, digits spelled out, hyphens split."""
    text = text.lower().replace("-", " ").replace("’", "'")
    text = _DIGITS.sub(lambda m: " " + number_words(int(m.group())) + " " if len(m.group()) <= 6 else " ", text)
    return normalize(text).split()


# ------------------------------------------------------------------ automaton


@dataclass(frozen=True)
class WordGraph:
    """A minimized acyclic word automaton: state 0 is the start."""

    arcs: tuple[tuple[tuple[str, int], ...], ...]
    """``arcs[state]`` = ((word, next state), ...)."""
    final: frozenset[int]
    order: tuple[int, ...]
    """States in topological order (every arc goes forward in it)."""
    words: frozenset[str]

    @property
    def size(self) -> int:
        return len(self.arcs)


class _Nfa:
    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.arcs: list[list[tuple[str, int]]] = []

    def state(self) -> int:
        self.eps.append([])
        self.arcs.append([])
        return len(self.eps) - 1

    def words(self, start: int, words: Sequence[str]) -> int:
        for word in words:
            nxt = self.state()
            self.arcs[start].append((word, nxt))
            start = nxt
        return start


class _Builder:
    def __init__(self, intent_set: IntentSet) -> None:
        self.intents = intent_set.intents
        self.nfa = _Nfa()
        self._building: set[str] = set()

    def build(self, expr: Expression, start: int) -> int | None:
        """Add ``expr`` after ``start``; the end state, or None when it cannot be spoken."""
        nfa = self.nfa
        if isinstance(expr, TextChunk):
            return nfa.words(start, normalize(expr.text).split())
        if isinstance(expr, Alternative):
            end = nfa.state()
            spoken = False
            if expr.is_optional:
                nfa.eps[start].append(end)
                spoken = True
            for item in expr.items:
                branch = nfa.state()
                nfa.eps[start].append(branch)
                stop = self.build(item, branch)
                if stop is not None:
                    nfa.eps[stop].append(end)
                    spoken = True
            return end if spoken else None
        if isinstance(expr, Permutation):
            return self._permutation(list(expr.items), start)
        if isinstance(expr, Group):  # Sequence
            state: int | None = start
            for item in expr.items:
                if state is None:
                    return None
                state = self.build(item, state)
            return state
        if isinstance(expr, ListReference):
            return self._list(expr, start)
        if isinstance(expr, RuleReference):
            name = expr.rule_name
            if name in self._building:
                raise ValueError(f"expansion rule <{name}> refers to itself")
            rule = self.intents.expansion_rules.get(name)
            if rule is None:
                raise ValueError(f"unknown expansion rule <{name}>")
            self._building.add(name)
            try:
                return self.build(rule.expression, start)
            finally:
                self._building.discard(name)
        raise ValueError(f"unsupported template element {expr!r}")

    def _permutation(self, items: list[Expression], start: int) -> int | None:
        if not items:
            return start
        end = self.nfa.state()
        spoken = False
        for i, item in enumerate(items):
            branch = self.nfa.state()
            self.nfa.eps[start].append(branch)
            mid = self.build(item, branch)
            if mid is None:
                continue
            stop = self._permutation(items[:i] + items[i + 1:], mid)
            if stop is not None:
                self.nfa.eps[stop].append(end)
                spoken = True
        return end if spoken else None

    def _list(self, ref: ListReference, start: int) -> int | None:
        values: list[Expression | list[str]] = []
        if ref.is_inline_range:
            low, high, step = ref.get_inline_range() or (0, -1, 1)
            values = [number_words(n).split() for n in range(low, high + 1, step)]
        else:
            slot_list = self.intents.slot_lists.get(ref.list_name)
            if isinstance(slot_list, TextSlotList):
                values = [v.text_in for v in slot_list.values]
            elif isinstance(slot_list, RangeSlotList):
                values = [number_words(n).split() for n in range(slot_list.start, slot_list.stop + 1, slot_list.step)
                          if 0 <= n < 10**6]
            else:
                log.warning("slot list {%s} has no spoken values (wildcard or unknown); skipped", ref.list_name)
                return None
        end = self.nfa.state()
        spoken = False
        for value in values:
            branch = self.nfa.state()
            self.nfa.eps[start].append(branch)
            stop = self.nfa.words(branch, value) if isinstance(value, list) else self.build(value, branch)
            if stop is not None:
                self.nfa.eps[stop].append(end)
                spoken = True
        return end if spoken else None


def build_graph(intent_set: IntentSet, only: Sequence[str] | None) -> WordGraph:
    """The word automaton of the intents ``only`` (all when None)."""
    names = intent_set.check_names(only) if only is not None else intent_set.names
    builder = _Builder(intent_set)
    nfa = builder.nfa
    start = nfa.state()
    finals: set[int] = set()
    for name in names:
        for sentence in intent_set.sentences(name):
            branch = nfa.state()
            nfa.eps[start].append(branch)
            end = builder.build(sentence.expression, branch)
            if end is not None:
                finals.add(end)
    return _minimize(*_determinize(nfa, start, finals))


def _closure(nfa: _Nfa, states: Iterable[int]) -> frozenset[int]:
    seen = set(states)
    stack = list(seen)
    while stack:
        for nxt in nfa.eps[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return frozenset(seen)


def _determinize(nfa: _Nfa, start: int, finals: set[int]) -> tuple[list[dict[str, int]], list[bool]]:
    first = _closure(nfa, [start])
    index = {first: 0}
    todo = [first]
    arcs: list[dict[str, int]] = [{}]
    final = [bool(first & finals)]
    while todo:
        current = todo.pop()
        by_word: dict[str, list[int]] = {}
        for state in current:
            for word, nxt in nfa.arcs[state]:
                by_word.setdefault(word, []).append(nxt)
        here = index[current]
        for word, targets in by_word.items():
            target = _closure(nfa, targets)
            number = index.get(target)
            if number is None:
                if len(index) >= MAX_STATES:
                    raise ValueError(f"the templates make a word graph of more than {MAX_STATES} states")
                number = index[target] = len(arcs)
                arcs.append({})
                final.append(bool(target & finals))
                todo.append(target)
            arcs[here][word] = number
    return arcs, final


def _minimize(arcs: list[dict[str, int]], final: list[bool]) -> WordGraph:
    """Merge states with the same future (acyclic: one pass in reverse topological order)."""
    order = _topological(arcs)
    cls: dict[int, int] = {}
    signatures: dict[tuple[object, ...], int] = {}
    for state in reversed(order):
        sig = (final[state], tuple(sorted((w, cls[t]) for w, t in arcs[state].items())))
        cls[state] = signatures.setdefault(sig, len(signatures))
    # Renumber: the start state is 0; then a topological order of the merged states.
    merged: dict[int, dict[str, int]] = {}
    merged_final: set[int] = set()
    for state in order:
        merged.setdefault(cls[state], {c: cls[t] for c, t in arcs[state].items()})
        if final[state]:
            merged_final.add(cls[state])
    numbers = sorted(merged)
    index = {c: i for i, c in enumerate(numbers)}
    start = index[cls[order[0]]] if order else 0
    as_list = [{w: index[t] for w, t in merged[c].items()} for c in numbers]
    topo = _topological(as_list)
    renumber = {old: new for new, old in enumerate(topo)}
    assert renumber.get(start, 0) == 0, "the start state must come first"
    out: list[tuple[tuple[str, int], ...]] = [()] * len(topo)
    words: set[str] = set()
    for old_number, out_arcs in enumerate(as_list):
        out[renumber[old_number]] = tuple(sorted((w, renumber[t]) for w, t in out_arcs.items()))
        words.update(out_arcs)
    finals = {renumber[index[c]] for c in merged_final}
    return WordGraph(tuple(out), frozenset(finals), tuple(range(len(out))), frozenset(words))


def _topological(arcs: list[dict[str, int]]) -> list[int]:
    indegree = [0] * len(arcs)
    for out in arcs:
        for t in out.values():
            indegree[t] += 1
    ready = [s for s in range(len(arcs)) if indegree[s] == 0]
    order: list[int] = []
    while ready:
        state = ready.pop()
        order.append(state)
        for t in arcs[state].values():
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    if len(order) != len(arcs):
        raise ValueError("the templates' word graph has a cycle")
    return order


# ------------------------------------------------------------------ alignment


@lru_cache(maxsize=65536)
def word_distance(heard: str, word: str) -> float:
    """Spelling distance in 0..1, spaces ignored: Levenshtein over the longer length for one
    heard word, over the grammar word's length (capped at 1) for several merged ones, so that
    swallowing a neighbour ("rose cappuccino" → "cappuccino") is not cheap."""
    a, b = heard.replace(" ", ""), word
    if a == b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    if " " in heard:
        return min(1.0, previous[-1] / max(len(b), 1))
    return previous[-1] / max(len(a), len(b), 1)


@dataclass(frozen=True)
class Costs:
    """Word edit costs for :func:`align` (a heard word dropped, a grammar word added...)."""

    extra: float = 1.0
    """A heard word the sentence does not have."""
    missing: float = 1.0
    """A sentence word that was not heard (short words cost ``missing_short``)."""
    missing_short: float = 0.6
    substitute: float = 1.6
    """Scale of the spelling distance when a heard word stands for another."""
    merge: float = 0.3
    """Extra cost per additional heard word merged into one grammar word."""


@dataclass(frozen=True)
class Alignment:
    words: tuple[str, ...]
    """The grammar sentence."""
    cost: float
    """Total edit cost (0 = the transcript is a grammar sentence)."""


def align(
    graph: WordGraph, heard: Sequence[str], costs: Costs = Costs(), best: int = 1, beam: float = 3.5
) -> list[Alignment]:
    """The grammar sentences nearest to the heard words (up to ``best`` distinct, cheapest first).

    A k-best edit-distance alignment over the automaton: each cell keeps the ``best`` cheapest
    partial paths with distinct word sequences (identified by a running hash).
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
        cell.append((cost, key, back))
        cell.sort(key=lambda e: e[0])
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
            arcs = graph.arcs[state]
            for rank, (here, key, _) in enumerate(entries):
                if here > bound:
                    break
                if i < n:  # an extra heard word
                    push(cells[i + 1][state], here + costs.extra, key, (i, state, rank, None))
                for word, nxt in arcs:
                    wkey = hash((key, word))
                    # a grammar word that was not heard
                    push(row[nxt], here + (costs.missing_short if len(word) <= 2 else costs.missing), wkey,
                         (i, state, rank, word))
                    # heard word(s) standing for a grammar word
                    for k in range(1, min(MAX_MERGE, n - i) + 1):
                        c = here + costs.substitute * word_distance(spans[i][k - 1], word) + costs.merge * (k - 1)
                        push(cells[i + k][nxt], c, wkey, (i, state, rank, word))
    ends = sorted((e[0], s, r) for s in graph.final for r, e in enumerate(cells[n][s]))
    out: list[Alignment] = []
    seen: set[tuple[str, ...]] = set()
    for total, state, rank in ends:
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
            out.append(Alignment(sentence, total))
        if len(out) == best:
            break
    return out
