"""Intent templates as a word graph: one small automaton instead of millions of sentences.

A realistic template file (the coffee-order grammar: 80 templates, 8 slot lists) stands
for millions of sentences, so nothing here spells sentences out. The templates of a
listening context become one deterministic, minimal, acyclic word automaton
(:class:`WordGraph`); everything the engines need is derived from it:

* the Vosk phrase list (:meth:`WordGraph.phrases`): every sentence when there are few,
  else a set of real sentences that covers every word pair the grammar allows (Vosk
  turns its phrase list into a bigram model anyway; the text is parsed afterwards);
* the PocketSphinx search graph (:meth:`WordGraph.transitions`, a finite-state grammar
  with shared states, so nothing is inlined or duplicated);
* alignment of a free transcript to the grammar (:func:`align`): the closest sentence
  the grammar allows, with phonetic word costs from the CMU dictionary that ships with
  pocketsphinx, for engines that decode without the grammar (Whisper).

It is built in two steps so it stays small: templates are first compiled with each slot
list as a single symbol (80 templates × 9 openings collapse into a few dozen states),
then every slot symbol is replaced by the list's own minimal graph, and the result is
minimized again.

The same construction checks templates at load time (:func:`ambiguity`): hassil's matcher
keeps every way a template can match the same words alive at once, so a template that
reads one sentence hundreds of ways is refused. Sentence count alone is never an error.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hassil import Intents
from hassil.expression import Alternative, Expression, Group, ListReference, Permutation, RuleReference, TextChunk
from hassil.intents import TextSlotList

log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9']+")

MAX_STATES = 200_000
"""Most automaton states one template or context may need (the coffee grammar: ~3,000 words
of automaton before minimizing). Past it the template is pathological, not just large."""

MAX_ORDERS = 5040
"""Most orders a permutation ``(a;b;c…)`` may have (7 parts): hassil tries every one."""

PHRASE_LIMIT = 10_000
"""Up to this many sentences, the Vosk phrase list is the whole language."""


class GraphError(ValueError):
    """A template the graph cannot be built for (too large, or refers to itself)."""


def words_of(text: str) -> list[str]:
    """Lower-case words, as :func:`assistant.conversation.intents.normalize` splits them."""
    return _WORD.findall(text.lower().replace("’", "'"))


# --------------------------------------------------------------------------- NFA construction


class _Nfa:
    """A growing automaton: ``arcs[state]`` is a list of (symbol or None for epsilon, next)."""

    def __init__(self, budget: int = MAX_STATES) -> None:
        self.arcs: list[list[tuple[str | None, int]]] = []
        self.budget = budget

    def state(self) -> int:
        if len(self.arcs) >= self.budget:
            raise GraphError(f"needs more than {self.budget} automaton states")
        self.arcs.append([])
        return len(self.arcs) - 1

    def arc(self, src: int, symbol: str | None, dst: int) -> None:
        self.arcs[src].append((symbol, dst))


class _Builder:
    """hassil expressions → NFA. Slot lists become one ``{name}`` symbol, or their words."""

    def __init__(self, intents: Intents, nfa: _Nfa, expand_lists: bool) -> None:
        self.intents = intents
        self.nfa = nfa
        self.expand_lists = expand_lists
        self._active: list[str] = []

    def build(self, expr: Expression, a: int, b: int) -> None:
        nfa = self.nfa
        if isinstance(expr, TextChunk):
            self._chain(words_of(expr.text), a, b)
        elif isinstance(expr, Alternative):
            for item in expr.items:
                self.build(item, a, b)
            if expr.is_optional:
                nfa.arc(a, None, b)
        elif isinstance(expr, Permutation):
            orders = math.factorial(len(expr.items))
            if orders > MAX_ORDERS:
                raise GraphError(f"a permutation of {len(expr.items)} parts has {orders} orders (at most {MAX_ORDERS})")
            self._permutations(list(expr.items), a, b)
        elif isinstance(expr, Group):  # a sequence
            self._sequence(expr.items, a, b)
        elif isinstance(expr, RuleReference):
            rule = self.intents.expansion_rules.get(expr.rule_name)
            if rule is None:
                raise GraphError(f"unknown rule <{expr.rule_name}>")
            self._inline(f"<{expr.rule_name}>", rule.expression, a, b)
        elif isinstance(expr, ListReference):
            slot_list = self.intents.slot_lists.get(expr.list_name)
            if not self.expand_lists:
                nfa.arc(a, "{" + expr.list_name + "}", b)
            elif isinstance(slot_list, TextSlotList):
                body = Alternative(items=[v.text_in for v in slot_list.values])
                self._inline("{" + expr.list_name + "}", body, a, b)
            else:  # numbers or a wildcard: no words to listen for
                nfa.arc(a, "{" + expr.list_name + "}", b)
        else:
            raise GraphError(f"unsupported template element {type(expr).__name__}")

    def _inline(self, key: str, body: Expression, a: int, b: int) -> None:
        if key in self._active:
            raise GraphError(f"{key} refers to itself ({' -> '.join([*self._active, key])})")
        self._active.append(key)
        try:
            self.build(body, a, b)
        finally:
            self._active.pop()

    def _chain(self, words: Sequence[str], a: int, b: int) -> None:
        if not words:
            self.nfa.arc(a, None, b)
            return
        here = a
        for word in words[:-1]:
            nxt = self.nfa.state()
            self.nfa.arc(here, word, nxt)
            here = nxt
        self.nfa.arc(here, words[-1], b)

    def _sequence(self, items: Sequence[Expression], a: int, b: int) -> None:
        if not items:
            self.nfa.arc(a, None, b)
            return
        here = a
        for item in items[:-1]:
            nxt = self.nfa.state()
            self.build(item, here, nxt)
            here = nxt
        self.build(items[-1], here, b)

    def _permutations(self, items: list[Expression], a: int, b: int) -> None:
        if len(items) == 1:
            self.build(items[0], a, b)
            return
        for i, first in enumerate(items):
            mid = self.nfa.state()
            self.build(first, a, mid)
            self._permutations(items[:i] + items[i + 1:], mid, b)


def _closure(nfa: _Nfa, states: Iterable[int]) -> frozenset[int]:
    seen = set(states)
    stack = list(seen)
    while stack:
        for symbol, nxt in nfa.arcs[stack.pop()]:
            if symbol is None and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return frozenset(seen)


# --------------------------------------------------------------------------- DFA


@dataclass(frozen=True)
class WordGraph:
    """A deterministic, minimal, acyclic word automaton: state 0 is the start."""

    arcs: tuple[tuple[tuple[str, int], ...], ...]
    """``arcs[state]``: (word, next state) pairs, one per word."""
    finals: frozenset[int]
    """States where a sentence may end."""

    @property
    def size(self) -> int:
        return len(self.arcs)

    def vocabulary(self) -> set[str]:
        return {word for arcs in self.arcs for word, _ in arcs}

    def accepts(self, words: Sequence[str]) -> bool:
        state = 0
        for word in words:
            nxt = dict(self.arcs[state]).get(word)
            if nxt is None:
                return False
            state = nxt
        return state in self.finals

    @functools.cached_property
    def order(self) -> tuple[int, ...]:
        """States in topological order (every arc goes forward)."""
        indegree = [0] * self.size
        for arcs in self.arcs:
            for _, nxt in arcs:
                indegree[nxt] += 1
        ready = [s for s in range(self.size) if indegree[s] == 0]
        out: list[int] = []
        while ready:
            state = ready.pop()
            out.append(state)
            for _, nxt in self.arcs[state]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        return tuple(out)

    def sentence_count(self) -> int:
        """How many sentences the graph stands for (exact, however many)."""
        count = [0] * self.size
        for state in reversed(self.order):
            count[state] = (state in self.finals) + sum(count[nxt] for _, nxt in self.arcs[state])
        return count[0] if self.size else 0

    def sentences(self, limit: int) -> list[str] | None:
        """Every sentence, or None when there are more than ``limit``."""
        if self.sentence_count() > limit:
            return None
        out: list[str] = []

        def walk(state: int, prefix: list[str]) -> None:
            if state in self.finals and prefix:
                out.append(" ".join(prefix))
            for word, nxt in self.arcs[state]:
                walk(nxt, [*prefix, word])

        walk(0, [])
        return out

    def _shortest(self) -> tuple[list[list[str]], list[list[str]]]:
        """Shortest word path from the start to each state, and from each state to an end."""
        to: list[list[str] | None] = [None] * self.size
        to[0] = []
        for state in self.order:
            path = to[state]
            if path is None:
                continue
            for word, nxt in self.arcs[state]:
                if to[nxt] is None or len(to[nxt]) > len(path) + 1:  # type: ignore[arg-type]
                    to[nxt] = [*path, word]
        rest: list[list[str] | None] = [None] * self.size
        for state in reversed(self.order):
            best: list[str] | None = [] if state in self.finals else None
            for word, nxt in self.arcs[state]:
                tail = rest[nxt]
                if tail is not None and (best is None or len(tail) + 1 < len(best)):
                    best = [word, *tail]
            rest[state] = best
        return [p or [] for p in to], [p or [] for p in rest]

    def phrases(self, limit: int = PHRASE_LIMIT) -> list[str]:
        """Sentences for a Vosk phrase-list grammar.

        Every sentence when there are at most ``limit``; otherwise, for each word pair the
        grammar allows, one real sentence through it (shortest way in and out), so the
        bigram model Vosk builds from the list allows exactly the grammar's word pairs.
        """
        every = self.sentences(limit)
        if every is not None:
            return every
        to, rest = self._shortest()
        incoming: list[list[tuple[str | None, int]]] = [[] for _ in range(self.size)]
        incoming[0].append((None, 0))
        for src, arcs in enumerate(self.arcs):
            for word, nxt in arcs:
                incoming[nxt].append((word, src))
        out: dict[str, None] = {}
        covered: set[tuple[str | None, str]] = set()
        for state in range(self.size):
            for word_in, src in incoming[state]:
                for word_out, nxt in self.arcs[state]:
                    if (word_in, word_out) in covered:
                        continue
                    covered.add((word_in, word_out))
                    head = [*to[src], word_in] if word_in is not None else []
                    out[" ".join([*head, word_out, *rest[nxt]])] = None
        return list(out)

    def shortest(self, length: Callable[[str], int]) -> int:
        """The shortest sentence, each word counted as ``length(word)`` (e.g. its phones)."""
        best = [math.inf] * self.size
        for state in reversed(self.order):
            here = 0.0 if state in self.finals else math.inf
            for word, nxt in self.arcs[state]:
                here = min(here, length(word) + best[nxt])
            best[state] = here
        return int(best[0]) if self.size and math.isfinite(best[0]) else 0

    def restrict(self, known: Callable[[str], bool]) -> WordGraph:
        """The graph without arcs whose word ``known`` rejects (and what only they led to)."""
        keep = [{w: nxt for w, nxt in arcs if not w.startswith("{") and known(w)} for arcs in self.arcs]
        return _minimize(keep, set(self.finals))

    def transitions(self) -> list[tuple[int, int, float, str | None]]:
        """(from, to, probability, word or None) for a finite-state grammar; the end state is
        :attr:`size` (reached by an empty step from every final state). Choices are uniform."""
        out: list[tuple[int, int, float, str | None]] = []
        for state, arcs in enumerate(self.arcs):
            choices = len(arcs) + (state in self.finals)
            for word, nxt in arcs:
                out.append((state, nxt, 1.0 / choices, word))
            if state in self.finals:
                out.append((state, self.size, 1.0 / choices, None))
        return out


def _determinize(nfa: _Nfa, start: int, final: int) -> WordGraph:
    """Subset construction then minimization (merge states with the same future)."""
    first = _closure(nfa, [start])
    index = {first: 0}
    subsets = [first]
    arcs: list[dict[str, int]] = []
    i = 0
    while i < len(subsets):
        moves: dict[str, set[int]] = {}
        for state in subsets[i]:
            for symbol, nxt in nfa.arcs[state]:
                if symbol is not None:
                    moves.setdefault(symbol, set()).add(nxt)
        out: dict[str, int] = {}
        for symbol, targets in moves.items():
            subset = _closure(nfa, targets)
            if subset not in index:
                if len(subsets) >= nfa.budget:
                    raise GraphError(f"needs more than {nfa.budget} automaton states")
                index[subset] = len(subsets)
                subsets.append(subset)
            out[symbol] = index[subset]
        arcs.append(out)
        i += 1
    finals = {i for i, subset in enumerate(subsets) if final in subset}
    return _minimize(arcs, finals)


def _minimize(arcs: list[dict[str, int]], finals: set[int]) -> WordGraph:
    """Merge states with identical futures (exact for acyclic automata), drop dead ends."""
    n = len(arcs)
    indegree = [0] * n
    for state_arcs in arcs:
        for nxt in state_arcs.values():
            indegree[nxt] += 1
    ready = [s for s in range(n) if indegree[s] == 0]
    order: list[int] = []
    while ready:
        state = ready.pop()
        order.append(state)
        for nxt in arcs[state].values():
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if len(order) != n:
        raise GraphError("the templates loop back on themselves")
    klass: dict[int, int] = {}
    signatures: dict[tuple[bool, tuple[tuple[str, int], ...]], int] = {}
    for state in reversed(order):
        moves = tuple(sorted((w, klass[nxt]) for w, nxt in arcs[state].items() if klass[nxt] >= 0))
        if not moves and state not in finals:
            klass[state] = -1  # dead end
            continue
        signature = (state in finals, moves)
        klass[state] = signatures.setdefault(signature, len(signatures))
    if klass.get(0, -1) < 0:
        return WordGraph(((),), frozenset())
    # Renumber from the start so state 0 is the start.
    new: dict[int, int] = {}
    by_class = {c: sig for sig, c in signatures.items()}
    stack = [klass[0]]
    new[klass[0]] = 0
    while stack:
        c = stack.pop()
        for _, nxt in by_class[c][1]:
            if nxt not in new:
                new[nxt] = len(new)
                stack.append(nxt)
    out: list[tuple[tuple[str, int], ...]] = [()] * len(new)
    final_states = set()
    for c, idx in new.items():
        is_final, moves = by_class[c]
        out[idx] = tuple((w, new[nxt]) for w, nxt in moves)
        if is_final:
            final_states.add(idx)
    return WordGraph(tuple(out), frozenset(final_states))


def _graph_of(intents: Intents, expressions: Iterable[Expression], expand_lists: bool) -> WordGraph:
    nfa = _Nfa()
    start, final = nfa.state(), nfa.state()
    builder = _Builder(intents, nfa, expand_lists)
    for expr in expressions:
        builder.build(expr, start, final)
    return _determinize(nfa, start, final)


def _expand_slots(intents: Intents, graph: WordGraph) -> WordGraph:
    """Replace every ``{list}`` symbol with a copy of that list's own minimal graph."""
    nfa = _Nfa()
    for _ in range(graph.size + 1):
        nfa.state()
    final = graph.size
    lists: dict[str, WordGraph] = {}
    for state, arcs in enumerate(graph.arcs):
        if state in graph.finals:
            nfa.arc(state, None, final)
        for symbol, nxt in arcs:
            if not symbol.startswith("{"):
                nfa.arc(state, symbol, nxt)
                continue
            name = symbol[1:-1]
            if name not in lists:
                slot_list = intents.slot_lists.get(name)
                if not isinstance(slot_list, TextSlotList):
                    nfa.arc(state, symbol, nxt)  # numbers / wildcard: nothing to say
                    continue
                lists[name] = _graph_of(intents, [v.text_in for v in slot_list.values], expand_lists=True)
            sub = lists[name]
            copy = [nfa.state() for _ in range(sub.size)]
            nfa.arc(state, None, copy[0])
            for s, sub_arcs in enumerate(sub.arcs):
                for word, t in sub_arcs:
                    nfa.arc(copy[s], word, copy[t])
                if s in sub.finals:
                    nfa.arc(copy[s], None, nxt)
    return _determinize(nfa, 0, final)


def build_graph(intents: Intents, names: Sequence[str], known: Callable[[str], bool] | None = None) -> WordGraph:
    """The word graph of the templates of intents ``names`` (a listening context).

    ``known`` says whether an engine can pronounce a word; arcs with other words are
    dropped (with whatever only they led to).
    """
    expressions = [s.expression for name in names for data in intents.intents[name].data for s in data.sentences]
    graph = _expand_slots(intents, _graph_of(intents, expressions, expand_lists=False))
    return graph if known is None else graph.restrict(known)


# --------------------------------------------------------------------------- ambiguity check


@dataclass(frozen=True)
class Ambiguity:
    """The most ways a template was found to match one word sequence."""

    ways: int
    words: tuple[str, ...]
    """The words (a prefix of a sentence) read that many ways."""


def ambiguity(intents: Intents, expr: Expression, most: int) -> Ambiguity:
    """How many ways the template ``expr`` can match the same words, up to ``most`` + 1.

    A subset construction that counts paths: after each prefix, how many ways lead to
    each automaton state. Once some state is reached more than ``most`` ways, some whole
    sentence is (every state leads to an end), so the search stops there.
    Raises :class:`GraphError` for templates too large to check or that refer to themselves.
    """
    nfa = _Nfa()
    start, final = nfa.state(), nfa.state()
    _Builder(intents, nfa, expand_lists=True).build(expr, start, final)

    cap = most + 1

    def step(counts: dict[int, int]) -> dict[int, int]:
        """Epsilon closure that counts ways: push counts along empty arcs in topological order."""
        closure = _closure(nfa, counts)
        indegree = dict.fromkeys(closure, 0)
        for state in closure:
            for symbol, nxt in nfa.arcs[state]:
                if symbol is None:
                    indegree[nxt] += 1
        out = {state: counts.get(state, 0) for state in closure}
        ready = [state for state, d in indegree.items() if d == 0]
        while ready:
            state = ready.pop()
            for symbol, nxt in nfa.arcs[state]:
                if symbol is None:
                    out[nxt] = min(cap, out[nxt] + out[state])
                    indegree[nxt] -= 1
                    if indegree[nxt] == 0:
                        ready.append(nxt)
        return {state: ways for state, ways in out.items() if ways}

    worst = Ambiguity(1, ())
    frontier: list[tuple[tuple[str, ...], dict[int, int]]] = [((), step({start: 1}))]
    seen: set[frozenset[tuple[int, int]]] = set()
    while frontier:
        prefix, counts = frontier.pop()
        key = frozenset(counts.items())
        if key in seen:
            continue
        seen.add(key)
        if len(seen) > MAX_STATES:
            raise GraphError(f"needs more than {MAX_STATES} automaton states to check")
        top = max(counts.values())
        if top > worst.ways:
            worst = Ambiguity(top, prefix)
            if top > most:
                return worst
        moves: dict[str, dict[int, int]] = {}
        for state, ways in counts.items():
            for symbol, nxt in nfa.arcs[state]:
                if symbol is not None:
                    target = moves.setdefault(symbol, {})
                    target[nxt] = min(cap, target.get(nxt, 0) + ways)
        for symbol, targets in moves.items():
            frontier.append(((*prefix, symbol), step(targets)))
    return worst


# --------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class Alignment:
    """The grammar's closest sentence to a free transcript."""

    words: tuple[str, ...]
    """The sentence (parse it with the templates for intent and slots)."""
    cost: float
    """Total edit cost: 1 per word inserted or left out, 0..1 per substitution (phonetic)."""
    heard: int
    """How many words the transcript had."""

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def per_word(self) -> float:
        """Cost per word of the longer of transcript and sentence: 0 = exact, ~1 = unrelated."""
        return self.cost / max(1, self.heard, len(self.words))


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


def _levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@functools.lru_cache(maxsize=1)
def default_phonetics() -> Phonetics:
    return Phonetics()


MAX_SPAN = 3
"""A grammar word may be heard as up to this many transcript words ("cap a chain" = cappuccino)."""

SPLIT_COST = 0.3
"""Added per extra transcript word when one grammar word is heard as several."""


def align(graph: WordGraph, heard: Sequence[str], phonetics: Phonetics | None = None,
          insert_cost: float = 1.0, delete_cost: float = 1.0) -> Alignment | None:
    """The sentence of ``graph`` closest to the transcript words ``heard``.

    A dynamic programme over (graph state, words consumed): a grammar word can match one to
    :data:`MAX_SPAN` transcript words at their phonetic distance, be left out
    (``delete_cost``), and transcript words can be skipped (``insert_cost``). Cost is
    O(arcs × words); the graph is minimal, so a context of millions of sentences is a few
    thousand arcs. None when the graph is empty.
    """
    if not graph.finals:
        return None
    phon = phonetics or default_phonetics()
    heard = [w for w in heard if w]
    n = len(heard)
    spans = {(i, k): tuple(heard[i:i + k]) for k in range(1, MAX_SPAN + 1) for i in range(n - k + 1)}
    positions = np.arange(n + 1)
    inf = math.inf
    best = np.full((graph.size, n + 1), inf)
    back_state = np.full((graph.size, n + 1), -1, dtype=np.int64)
    back_word = np.full((graph.size, n + 1), -1, dtype=np.int64)
    back_from = np.full((graph.size, n + 1), -1, dtype=np.int64)
    vocab = sorted(graph.vocabulary())
    word_id = {w: i for i, w in enumerate(vocab)}
    # cost[k][word] = vector over start position i of matching word to heard[i:i+k]
    cost: dict[int, dict[str, np.ndarray]] = {k: {} for k in range(MAX_SPAN + 1)}
    for w in vocab:
        cost[0][w] = np.full(n + 1, delete_cost)
        for k in range(1, MAX_SPAN + 1):
            vec = np.full(n + 1, inf)
            for i in range(n - k + 1):
                vec[i] = phon.distance(w, spans[(i, k)]) + SPLIT_COST * (k - 1)
            cost[k][w] = vec
    best[0, 0] = 0.0
    for state in graph.order:
        row = best[state]
        # skip transcript words (insertions) here: row[i] = min_j<=i row[j] + (i-j)*insert_cost
        if n:
            shifted = row - positions * insert_cost
            running = np.minimum.accumulate(shifted)
            improved = running + positions * insert_cost
            better = improved < row - 1e-12
            if better.any():
                src_pos = np.maximum.accumulate(np.where(shifted <= running + 1e-12, positions, 0))
                for hit in np.nonzero(better)[0]:
                    back_state[state, hit] = state
                    back_word[state, hit] = -2  # insertion
                    back_from[state, hit] = src_pos[hit]
                row[:] = np.minimum(row, improved)
        if not np.isfinite(row).any():
            continue
        for word, nxt in graph.arcs[state]:
            target = best[nxt]
            for k in range(MAX_SPAN + 1):
                if k > n:
                    break
                moved = np.full(n + 1, inf)
                moved[k:] = row[:n + 1 - k] + cost[k][word][:n + 1 - k]
                better = moved < target - 1e-12
                if better.any():
                    idx = np.nonzero(better)[0]
                    target[idx] = moved[idx]
                    back_state[nxt, idx] = state
                    back_word[nxt, idx] = word_id[word]
                    back_from[nxt, idx] = idx - k
    finals = sorted(graph.finals)
    end = min(finals, key=lambda s: best[s, n])
    total = float(best[end, n])
    if not math.isfinite(total):
        return None
    words: list[str] = []
    at, i = end, n
    while not (at == 0 and i == 0 and back_state[at, i] < 0):
        prev, word_index, j = int(back_state[at, i]), int(back_word[at, i]), int(back_from[at, i])
        if prev < 0:
            break
        if word_index >= 0:
            words.append(vocab[word_index])
        at, i = prev, j
    words.reverse()
    return Alignment(tuple(words), total, n)
