"""Intent templates → recognizer constraints (a finite-state grammar for PocketSphinx, phrase lists for Vosk).

Both come from the context's word graph (:mod:`assistant.speech_in.wordgraph`): nothing is
spelled out, so any realistic grammar works. :func:`compile_jsgf` (the older factored JSGF)
is kept for tools that want JSGF text; the recognizer uses :func:`compile_fsg`.

A dialog state only expects a few intents, so each listening context compiles just
those templates. The JSGF is *factored*: a template's optional words and slot lists
stay optional positions on one path instead of being expanded into every sentence,
because PocketSphinx inlines every rule reference and a fully expanded grammar makes
a search graph that decodes many times slower than real time.

Out-of-domain speech needs somewhere to go, or the decoder forces it onto the nearest
command. The JSGF therefore has a *garbage* path: a loop over the most frequent English
words that are not commands. Speech that lands on it parses to no intent and is rejected.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from hassil.expression import (
    Alternative,
    Expression,
    Group,
    ListReference,
    Permutation,
    RuleReference,
    TextChunk,
)
from hassil.expression import Sequence as SeqExpr
from hassil.intents import TextSlotList
from hassil.sample import sample_expression

from assistant.conversation.intents import IntentSet, normalize
from assistant.speech_in.wordgraph import WordGraph, build_graph

log = logging.getLogger(__name__)

# The 100 most frequent words of general spoken English: the unigrams of the en-us
# language model that ships in the pocketsphinx wheel, ranked by probability (what the
# garbage loop needs is generic phonetic coverage, not kitchen or test-set words).
# Words that appear in the active templates are removed from the loop automatically.
GARBAGE_WORDS = (
    "the to i and a of you that in it is for but know was have they on like be not it's so with are "
    "one this yeah he just my we as what if do at or don't about i'm all think there would from two "
    "me people can your get out no that's said up more when an had right well hundred really has "
    "thousand will oh because how time them she been by some who their his were now then go good mean "
    "than going her see could much other you're five got three even too only"
).split()

# How strongly the garbage path competes with commands (JSGF weight; commands = 1).
# Strict while idle (the coach must not wake on kitchen talk). Lenient while it waits for
# an answer or a hold command: speech then is almost always meant for it, and a missed
# "stop" costs more than a rare false one. Between ~1e-15 and 1e-20 the garbage path
# falls out of the search beam entirely; see docs/speech-in.md for the measured trade-off.
GARBAGE_WEIGHT = 0.5
LENIENT_GARBAGE_WEIGHT = 1e-10

_MAX_PHRASES = 10000
_RULE_NAME = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class CompiledGrammar:
    """One listening context compiled for the engines."""

    jsgf: str
    """JSGF text for PocketSphinx (public rule ``<utterance>``)."""
    words: frozenset[str]
    """Every command word the grammar can produce (garbage words excluded)."""
    dropped: tuple[str, ...] = ()
    """Words left out because the engine's dictionary does not know them."""


def _rule(prefix: str, name: str) -> str:
    return f"{prefix}_{_RULE_NAME.sub('_', name)}"


class _JsgfBuilder:
    """Turns hassil expressions into JSGF, sharing one rule per slot list and expansion rule."""

    def __init__(self, intent_set: IntentSet, known: Callable[[str], bool]) -> None:
        self.intents = intent_set.intents
        self.known = known
        self.rules: dict[str, str] = {}
        self.words: set[str] = set()
        self.dropped: set[str] = set()
        self._building: set[str] = set()

    # Each render returns JSGF text, "" for "matches nothing said" (an empty chunk) or
    # None when the branch cannot be spoken (a word the dictionary lacks).
    def render(self, expr: Expression) -> str | None:
        if isinstance(expr, TextChunk):
            return self._text(expr.text)
        if isinstance(expr, Alternative):
            parts = [self.render(item) for item in expr.items]
            spoken = list(dict.fromkeys(p for p in parts if p))
            optional = expr.is_optional or any(p == "" for p in parts)
            if not spoken:
                return "" if optional else None
            body = " | ".join(spoken)
            return f"[{body}]" if optional else f"({body})"
        if isinstance(expr, Permutation):
            return self._expanded(expr)
        if isinstance(expr, (SeqExpr, Group)):
            parts = [self.render(item) for item in expr.items]
            if any(p is None for p in parts):
                return None
            return " ".join(p for p in parts if p)
        if isinstance(expr, ListReference):
            return self._list(expr.list_name)
        if isinstance(expr, RuleReference):
            return self._expansion(expr.rule_name)
        raise ValueError(f"unsupported template element {expr!r}")

    def _text(self, text: str) -> str | None:
        words = normalize(text).split()
        for word in words:
            if not self.known(word):
                self.dropped.add(word)
                return None
        self.words.update(words)
        return " ".join(words)

    def _expanded(self, expr: Expression) -> str | None:
        """Fallback for constructs JSGF has no short form for: list the sentences."""
        texts = []
        for text in sample_expression(expr, self.intents.slot_lists, self.intents.expansion_rules):
            rendered = self._text(text)
            if rendered:
                texts.append(rendered)
        texts = list(dict.fromkeys(texts))
        return f"({' | '.join(texts)})" if texts else None

    def _list(self, name: str) -> str | None:
        rule = _rule("list", name)
        if rule not in self.rules:
            slot_list = self.intents.slot_lists.get(name)
            if not isinstance(slot_list, TextSlotList):
                raise ValueError(f"slot list {{{name}}} is not a text list; grammars need spoken values")
            values = [self.render(v.text_in) for v in slot_list.values]
            spoken = list(dict.fromkeys(v for v in values if v))
            self.rules[rule] = f"({' | '.join(spoken)})" if spoken else ""
        return f"<{rule}>" if self.rules[rule] else None

    def _expansion(self, name: str) -> str | None:
        rule = _rule("rule", name)
        if rule in self._building:
            raise ValueError(f"expansion rule <{name}> refers to itself")
        if rule not in self.rules:
            self._building.add(rule)
            body = self.render(self.intents.expansion_rules[name].expression)
            self._building.discard(rule)
            # JSGF has names for "cannot be said" and "says nothing".
            self.rules[rule] = "<VOID>" if body is None else (body or "<NULL>")
        return f"<{rule}>"


def compile_jsgf(
    intent_set: IntentSet,
    only: Sequence[str] | None,
    known: Callable[[str], bool] = lambda w: True,
    garbage: bool = True,
    garbage_weight: float = GARBAGE_WEIGHT,
) -> CompiledGrammar:
    """JSGF for the intents ``only`` (all when None), with a garbage path for rejection.

    ``known`` says whether the engine can pronounce a word; template branches with
    unknown words are left out (logged once) rather than breaking the grammar.
    """
    names = intent_set.check_names(only) if only is not None else intent_set.names
    builder = _JsgfBuilder(intent_set, known)
    intent_rules: list[str] = []
    for name in names:
        bodies = [builder.render(s.expression) for s in intent_set.sentences(name)]
        spoken = list(dict.fromkeys(b for b in bodies if b))
        if not spoken:
            log.warning("intent %s has no sentence the recognizer can say; it will not be heard", name)
            continue
        rule = _rule("intent", name)
        builder.rules[rule] = " | ".join(f"({b})" for b in spoken)
        intent_rules.append(f"<{rule}>")
    if builder.dropped:
        log.warning(
            "words missing from the recognizer's dictionary (sentences using them are skipped): %s",
            ", ".join(sorted(builder.dropped)),
        )
    if not intent_rules:
        raise ValueError(f"none of the intents {', '.join(names)} can be recognized")
    top = ["<commands>"]
    lines = ["#JSGF V1.0;", "grammar coach;"]
    rules = dict(builder.rules)
    rules["commands"] = " | ".join(intent_rules)
    if garbage:
        fillers = [w for w in GARBAGE_WORDS if w not in builder.words and known(w)]
        if fillers:
            rules["garbage"] = f"({' | '.join(dict.fromkeys(fillers))})+"
            top = ["/1/ <commands>", f"/{garbage_weight:g}/ <garbage>"]
    lines.append(f"public <utterance> = {' | '.join(top)};")
    for rule, body in rules.items():
        lines.append(f"<{rule}> = {body};")
    return CompiledGrammar("\n".join(lines) + "\n", frozenset(builder.words), tuple(sorted(builder.dropped)))


def compile_fsg(
    intent_set: IntentSet,
    only: Sequence[str] | None,
    known: Callable[[str], bool] = lambda w: True,
    garbage: bool = True,
    garbage_weight: float = GARBAGE_WEIGHT,
    garbage_below: tuple[Callable[[str], int], int] | None = None,
) -> tuple[int, int, list[tuple[int, int, float, str | None]]]:
    """A finite-state grammar for PocketSphinx: (start, final, transitions) from the word graph.

    The graph's states are shared, so a context of millions of sentences is a few hundred
    transitions (JSGF rule references would be inlined by PocketSphinx, copy after copy).
    Alongside the commands runs the garbage loop (see :data:`GARBAGE_WORDS`), entered with
    ``garbage_weight`` against 1 for the commands. Words ``known`` rejects are left out.
    ``garbage_below`` = (phones of a word, n): keep the garbage loop only when some command
    is shorter than n phones (long commands are guarded by the length gate instead).
    """
    names = intent_set.check_names(only) if only is not None else intent_set.names
    full = build_graph(intent_set.intents, names)
    dropped = sorted(w for w in full.words if not known(w))
    if dropped:
        log.warning("words missing from the recognizer's dictionary (sentences using them are skipped): %s",
                    ", ".join(dropped))
    graph = full.restrict(known) if dropped else full
    if not graph.finals:
        raise ValueError(f"none of the intents {', '.join(names)} can be recognized")
    end = graph.size
    transitions = graph.transitions()
    if garbage and garbage_below is not None and graph.shortest(garbage_below[0]) >= garbage_below[1]:
        garbage = False
    fillers = [w for w in GARBAGE_WORDS if w not in graph.words and known(w)] if garbage else []
    if not fillers:
        return 0, end, transitions
    start, loop, word_end = end + 1, end + 2, end + 3
    share = garbage_weight / (1.0 + garbage_weight)
    transitions += [(start, 0, 1.0 - share, None), (start, loop, share, None)]
    transitions += [(loop, word_end, 1.0 / len(fillers), w) for w in fillers]
    transitions += [(word_end, loop, 0.5, None), (word_end, end, 0.5, None)]
    return start, end, transitions


def phrases(intent_set: IntentSet, only: Sequence[str] | None, limit: int = _MAX_PHRASES) -> list[str]:
    """A Vosk runtime grammar for the intents ``only``, from their word graph.

    Every sentence when there are at most ``limit``; else real sentences that together use
    every word pair the templates allow (Vosk makes a bigram model of the list anyway, and
    the text is parsed against the templates afterwards). Nothing is spelled out.
    """
    return context_graph(intent_set, only).phrases(limit)


def context_graph(intent_set: IntentSet, only: Sequence[str] | None, spoken: bool = False) -> WordGraph:
    """The word graph of a listening context (all intents when ``only`` is None); ``spoken``:
    as Whisper writes it (:func:`~assistant.speech_in.wordgraph.build_graph`)."""
    names = intent_set.check_names(only) if only is not None else intent_set.names
    return build_graph(intent_set.intents, names, spoken=spoken)


def vocabulary(intent_set: IntentSet, only: Iterable[str] | None = None) -> set[str]:
    """All words the intents can use."""
    return set(context_graph(intent_set, list(only) if only is not None else None).words)
