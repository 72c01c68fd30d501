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
* the sentences Whisper's decoder is kept to (:mod:`assistant.speech_in.constrained`):
  built with ``spoken=True``, so number ranges are words too ("twelve ounce"), and Whisper's
  free transcript is split the same way (:func:`spoken_words`).

The templates become an automaton with empty steps, which is made deterministic and then
minimal in one pass (acyclic: states with the same future merge). The coffee grammar is
~20,000 automaton states before, a few dozen after.

The same construction checks templates at load time (:func:`ambiguity`): hassil's matcher
keeps every way a template can match the same words alive at once, so a template that
reads one sentence hundreds of ways is refused. Sentence count alone is never an error.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from hassil import Intents
from hassil.expression import Alternative, Expression, Group, ListReference, Permutation, RuleReference, TextChunk
from hassil.intents import RangeSlotList, TextSlotList

log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9']+")

MAX_STATES = 200_000
"""Most automaton states one template may need, and one context after determinizing (the coffee
grammar: ~3,600). Past it the template is pathological, not just large."""

MAX_ORDERS = 5040
"""Most orders a permutation ``(a;b;c…)`` may have (7 parts): hassil tries every one."""

PHRASE_LIMIT = 10_000
"""Up to this many sentences, the Vosk phrase list is the whole language."""


class GraphError(ValueError):
    """A template the graph cannot be built for (too large, or refers to itself)."""


# --------------------------------------------------------------------------- words


def words_of(text: str) -> list[str]:
    """Lower-case words, as :func:`assistant.conversation.intents.normalize` splits them."""
    return _WORD.findall(text.lower().replace("’", "'"))


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_DIGITS = re.compile(r"\d+")


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


def spoken_words(text: str) -> list[str]:
    """A free transcript as grammar words: lower case, digits spelled out, hyphens split
    ("a 12-ounce latte" → a twelve ounce latte), as in a graph built with ``spoken=True``."""
    text = text.lower().replace("-", " ")
    return words_of(_DIGITS.sub(lambda m: " " + number_words(int(m.group())) + " " if len(m.group()) <= 6 else " ",
                                text))


# --------------------------------------------------------------------------- NFA construction


class _Nfa:
    """A growing automaton: ``arcs[state]`` (word, next) pairs, ``eps[state]`` empty steps."""

    def __init__(self, budget: int | None = MAX_STATES) -> None:
        self.arcs: list[list[tuple[str, int]]] = []
        self.eps: list[list[int]] = []
        self.budget = budget

    def state(self) -> int:
        if self.budget is not None and len(self.arcs) >= self.budget:
            raise GraphError(f"needs more than {self.budget} automaton states")
        self.arcs.append([])
        self.eps.append([])
        return len(self.arcs) - 1

    def words(self, start: int, words: Sequence[str]) -> int:
        """A chain of ``words`` after ``start``; its last state."""
        for word in words:
            nxt = self.state()
            self.arcs[start].append((word, nxt))
            start = nxt
        return start


class _Builder:
    """hassil expressions → NFA. Text slot lists are inlined at each reference.

    Lists without words (numbers, wildcards) become one ``{name}`` placeholder, which the
    engines drop with their unknown words; with ``spoken``, number ranges become their
    words ("twelve") and a template with a wildcard cannot be said (it is left out).
    """

    def __init__(self, intents: Intents, nfa: _Nfa, spoken: bool) -> None:
        self.intents = intents
        self.nfa = nfa
        self.spoken = spoken
        self._active: list[str] = []

    def build(self, expr: Expression, start: int) -> int | None:
        """Add ``expr`` after ``start``; the end state, or None when it cannot be said."""
        nfa = self.nfa
        if isinstance(expr, TextChunk):
            return nfa.words(start, words_of(expr.text))
        if isinstance(expr, Alternative):
            return self._choice(start, expr.items, expr.is_optional)
        if isinstance(expr, Permutation):
            orders = math.factorial(len(expr.items))
            if orders > MAX_ORDERS:
                raise GraphError(f"a permutation of {len(expr.items)} parts has {orders} orders (at most {MAX_ORDERS})")
            return self._permutation(list(expr.items), start)
        if isinstance(expr, Group):  # a sequence
            state: int | None = start
            for item in expr.items:
                if state is None:
                    return None
                state = self.build(item, state)
            return state
        if isinstance(expr, ListReference):
            return self._list(expr, start)
        if isinstance(expr, RuleReference):
            rule = self.intents.expansion_rules.get(expr.rule_name)
            if rule is None:
                raise GraphError(f"unknown rule <{expr.rule_name}>")
            with self._inside(f"<{expr.rule_name}>"):
                return self.build(rule.expression, start)
        raise GraphError(f"unsupported template element {type(expr).__name__}")

    @contextlib.contextmanager
    def _inside(self, key: str) -> Iterator[None]:
        """Building rule or list ``key``: refused when it is already being built (a loop)."""
        if key in self._active:
            raise GraphError(f"{key} refers to itself ({' -> '.join([*self._active, key])})")
        self._active.append(key)
        try:
            yield
        finally:
            self._active.pop()

    def _choice(self, start: int, items: Iterable[Expression | list[str]], optional: bool = False) -> int | None:
        """One branch per item (an expression, or words) from ``start`` to one end state."""
        nfa = self.nfa
        end = nfa.state()
        sayable = optional
        if optional:
            nfa.eps[start].append(end)
        for item in items:
            branch = nfa.state()
            nfa.eps[start].append(branch)
            stop = nfa.words(branch, item) if isinstance(item, list) else self.build(item, branch)
            if stop is not None:
                nfa.eps[stop].append(end)
                sayable = True
        return end if sayable else None

    def _permutation(self, items: list[Expression], start: int) -> int | None:
        if not items:
            return start
        end = self.nfa.state()
        sayable = False
        for i, item in enumerate(items):
            branch = self.nfa.state()
            self.nfa.eps[start].append(branch)
            mid = self.build(item, branch)
            if mid is None:
                continue
            stop = self._permutation(items[:i] + items[i + 1:], mid)
            if stop is not None:
                self.nfa.eps[stop].append(end)
                sayable = True
        return end if sayable else None

    def _list(self, ref: ListReference, start: int) -> int | None:
        slot_list = self.intents.slot_lists.get(ref.list_name)
        values: list[Expression | list[str]]
        if self.spoken and ref.is_inline_range:
            low, high, step = ref.get_inline_range() or (0, -1, 1)
            values = [number_words(n).split() for n in range(low, high + 1, step)]
        elif isinstance(slot_list, TextSlotList):
            values = [v.text_in for v in slot_list.values]
        elif not self.spoken:  # numbers or a wildcard: no words to listen for
            return self.nfa.words(start, ["{" + ref.list_name + "}"])
        elif isinstance(slot_list, RangeSlotList):
            values = [number_words(n).split() for n in range(slot_list.start, slot_list.stop + 1, slot_list.step)
                      if 0 <= n < 10**6]
        else:
            log.warning("slot list {%s} has no spoken values (wildcard or unknown); skipped", ref.list_name)
            return None
        with self._inside("{" + ref.list_name + "}"):
            return self._choice(start, values)


def _closure(nfa: _Nfa, states: Iterable[int]) -> frozenset[int]:
    seen = set(states)
    stack = list(seen)
    while stack:
        for nxt in nfa.eps[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return frozenset(seen)


# --------------------------------------------------------------------------- DFA


@dataclass(frozen=True)
class WordGraph:
    """A deterministic, minimal, acyclic word automaton: state 0 is the start.

    States are numbered from the start, depth first in word order, so the same language
    always gives the same graph, however its templates were written.
    """

    arcs: tuple[tuple[tuple[str, int], ...], ...]
    """``arcs[state]``: (word, next state) pairs, one per word, in word order."""
    finals: frozenset[int]
    """States where a sentence may end."""
    order: tuple[int, ...]
    """Every state, each before the states its arcs lead to, in the order the templates built
    them, so anything that walks the graph in this order sees the same states first."""

    @property
    def size(self) -> int:
        return len(self.arcs)

    @functools.cached_property
    def words(self) -> frozenset[str]:
        """Every word of the graph (with ``{list}`` placeholders, unless built ``spoken``)."""
        return frozenset(word for arcs in self.arcs for word, _ in arcs)

    def accepts(self, words: Sequence[str]) -> bool:
        state = 0
        for word in words:
            nxt = dict(self.arcs[state]).get(word)
            if nxt is None:
                return False
            state = nxt
        return state in self.finals

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
        """Shortest word path from the start to each state, and from each state to an end.

        Ties go by word order, not by :attr:`order`, so the phrase list depends on the
        language alone."""
        order = _topological([[nxt for _, nxt in arcs] for arcs in self.arcs])
        to: list[list[str] | None] = [None] * self.size
        to[0] = []
        for state in order:
            path = to[state]
            if path is None:
                continue
            for word, nxt in self.arcs[state]:
                if to[nxt] is None or len(to[nxt]) > len(path) + 1:  # type: ignore[arg-type]
                    to[nxt] = [*path, word]
        rest: list[list[str] | None] = [None] * self.size
        for state in reversed(order):
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


def _topological(successors: Sequence[Iterable[int]]) -> list[int]:
    """States in topological order: a stack of the states whose predecessors are all placed,
    successors taken in the order given. Raises :class:`GraphError` on a cycle."""
    successors = [list(nexts) for nexts in successors]
    indegree = [0] * len(successors)
    for nexts in successors:
        for nxt in nexts:
            indegree[nxt] += 1
    ready = [s for s in range(len(successors)) if indegree[s] == 0]
    order: list[int] = []
    while ready:
        state = ready.pop()
        order.append(state)
        for nxt in successors[state]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(successors):
        raise GraphError("the templates loop back on themselves")
    return order


def _determinize(nfa: _Nfa, start: int, finals: set[int]) -> WordGraph:
    """Subset construction (depth first), then :func:`_minimize`."""
    first = _closure(nfa, [start])
    index = {first: 0}
    todo = [first]
    arcs: list[dict[str, int]] = [{}]
    final = {0} if first & finals else set()
    while todo:
        current = todo.pop()
        by_word: dict[str, list[int]] = {}
        for state in current:
            for word, nxt in nfa.arcs[state]:
                by_word.setdefault(word, []).append(nxt)
        here = index[current]
        for word, targets in by_word.items():
            subset = _closure(nfa, targets)
            number = index.get(subset)
            if number is None:
                if len(index) >= MAX_STATES:
                    raise GraphError(f"needs more than {MAX_STATES} automaton states")
                number = index[subset] = len(arcs)
                arcs.append({})
                if subset & finals:
                    final.add(number)
                todo.append(subset)
            arcs[here][word] = number
    return _minimize(arcs, final)


def _minimize(arcs: list[dict[str, int]], finals: set[int]) -> WordGraph:
    """Merge states with identical futures (exact for acyclic automata), drop dead ends.

    :attr:`WordGraph.order` follows the order the arcs were added in (each merged state
    as its first state built), so walks in order do not depend on the numbering.
    """
    built = _topological([state_arcs.values() for state_arcs in arcs])
    klass: dict[int, int] = {}
    signatures: dict[tuple[bool, tuple[tuple[str, int], ...]], int] = {}
    first: dict[int, dict[str, int]] = {}
    for state in reversed(built):
        moves = tuple(sorted((w, klass[nxt]) for w, nxt in arcs[state].items() if klass[nxt] >= 0))
        if not moves and state not in finals:
            klass[state] = -1  # dead end
            continue
        klass[state] = signatures.setdefault((state in finals, moves), len(signatures))
    if klass.get(0, -1) < 0:
        return WordGraph(((),), frozenset(), (0,))
    for state in built:
        if klass[state] >= 0:
            first.setdefault(klass[state], arcs[state])
    # Renumber from the start, depth first in word order, so state 0 is the start.
    by_class = {c: sig for sig, c in signatures.items()}
    new = {klass[0]: 0}
    stack = [klass[0]]
    while stack:
        for _, nxt in by_class[stack.pop()][1]:
            if nxt not in new:
                new[nxt] = len(new)
                stack.append(nxt)
    out: list[tuple[tuple[str, int], ...]] = [()] * len(new)
    as_built: list[list[int]] = [[] for _ in new]
    for c, idx in new.items():
        out[idx] = tuple((w, new[nxt]) for w, nxt in by_class[c][1])
        as_built[idx] = [new[klass[nxt]] for nxt in first[c].values() if klass[nxt] >= 0]
    final_states = frozenset(idx for c, idx in new.items() if by_class[c][0])
    return WordGraph(tuple(out), final_states, tuple(_topological(as_built)))


def build_graph(intents: Intents, names: Sequence[str], known: Callable[[str], bool] | None = None,
                spoken: bool = False) -> WordGraph:
    """The word graph of the templates of intents ``names`` (a listening context).

    ``known`` says whether an engine can pronounce a word; arcs with other words are
    dropped (with whatever only they led to). ``spoken``: number ranges as their words,
    templates with wildcards left out (what Whisper can be kept to); else
    such lists are ``{name}`` placeholders.
    """
    nfa = _Nfa(budget=None)  # the sum of the templates, each held to MAX_STATES by IntentSet.load
    builder = _Builder(intents, nfa, spoken)
    start = nfa.state()
    finals: set[int] = set()
    for name in names:
        for data in intents.intents[name].data:
            for sentence in data.sentences:
                branch = nfa.state()
                nfa.eps[start].append(branch)
                end = builder.build(sentence.expression, branch)
                if end is not None:
                    finals.add(end)
    graph = _determinize(nfa, start, finals)
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
    start = nfa.state()
    _Builder(intents, nfa, spoken=False).build(expr, start)

    cap = most + 1

    def step(counts: dict[int, int]) -> dict[int, int]:
        """Epsilon closure that counts ways: push counts along empty arcs in topological order."""
        closure = _closure(nfa, counts)
        indegree = dict.fromkeys(closure, 0)
        for state in closure:
            for nxt in nfa.eps[state]:
                indegree[nxt] += 1
        out = {state: counts.get(state, 0) for state in closure}
        ready = [state for state, d in indegree.items() if d == 0]
        while ready:
            state = ready.pop()
            for nxt in nfa.eps[state]:
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
            for word, nxt in nfa.arcs[state]:
                target = moves.setdefault(word, {})
                target[nxt] = min(cap, target.get(nxt, 0) + ways)
        for symbol, targets in moves.items():
            frontier.append(((*prefix, symbol), step(targets)))
    return worst
