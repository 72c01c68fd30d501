"""Text to intent with Home Assistant's hassil sentence templates.

The same template file drives typed input, the recognizers' grammars and the
``recognize`` command, so what the coach can hear and what it can understand never
drift apart. Any file in hassil's YAML format can be loaded (``--intents FILE``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hassil import Intents, parse_sentence, recognize_all
from hassil.expression import ListReference, RuleReference, Sentence
from hassil.intents import TextSlotList

from assistant.conversation.datafile import DataFileError, LineDict, line_of, load_yaml

log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9']+")

MAX_NESTING = 32
"""Deepest nesting of groups a template may have, through rules and lists (real ones use ~5)."""

MAX_WAYS = 256
"""Most ways one template may match the same words (every real one: 1). hassil's matcher keeps every
way alive at once, so ``[a] [a] … [a] b`` heard as "a a … a b" costs time and memory exponential in
the number of optionals: 17 of them took a second, 300 filled gigabytes."""



@dataclass(frozen=True)
class IntentMatch:
    """What a sentence meant."""

    intent: str
    """Intent name, e.g. ``cramp_start``."""
    slots: dict[str, str] = field(default_factory=dict)
    """Slot values by name, e.g. ``{"side": "left"}``."""
    text: str = ""
    """The text that was matched."""


def normalize(text: str) -> str:
    """Lower-case words only: how recognizers and typed input are compared."""
    return " ".join(_WORD.findall(text.lower().replace("’", "'")))


class IntentSet:
    """A loaded, validated template file."""

    def __init__(self, intents: Intents, path: Path) -> None:
        self.intents = intents
        self.path = path

    @property
    def names(self) -> list[str]:
        return list(self.intents.intents)

    @classmethod
    def load(cls, path: Path) -> IntentSet:
        """Load and check a template file; errors name the file and line."""
        raw = load_yaml(path)
        _validate(raw, path)
        try:
            intents = Intents.from_dict(raw)
        except Exception as exc:  # hassil raises assorted errors on bad input
            raise DataFileError(path, None, f"invalid intent file: {exc}") from None
        _check_nesting(intents, raw, path)
        _check_ways(intents, raw, path)
        return cls(intents, path)

    def check_names(self, names: Iterable[str]) -> list[str]:
        """Return ``names`` as a list, or raise ``ValueError`` naming unknown ones."""
        names = list(names)
        unknown = [n for n in names if n not in self.intents.intents]
        if unknown:
            raise ValueError(
                f"unknown intent(s) {', '.join(unknown)} in {self.path}; "
                f"known: {', '.join(self.names)}"
            )
        return names

    def subset(self, only: Sequence[str] | None) -> Intents:
        """The templates narrowed to ``only`` (in that order), as a dialog state does."""
        if only is None:
            return self.intents
        keep = self.check_names(only)
        return Intents(
            language=self.intents.language,
            intents={n: self.intents.intents[n] for n in keep},
            slot_lists=self.intents.slot_lists,
            expansion_rules=self.intents.expansion_rules,
            skip_words=self.intents.skip_words,
            settings=self.intents.settings,
        )

    def match(self, text: str, only: Sequence[str] | None = None) -> IntentMatch | None:
        """The intent the whole of ``text`` matches, or None.

        When several intents match (bare "help" is both a cramp report and a request
        for help), the one listed first in ``only`` wins, so the dialog state decides.
        """
        clean = normalize(text)
        if not clean:
            return None
        order = {name: i for i, name in enumerate(only or self.names)}
        best: tuple[tuple[int, int], IntentMatch] | None = None
        for result in recognize_all(clean, self.subset(only)):
            if result.unmatched_entities:
                continue
            slots = {
                name: str(entity.value)
                for name, entity in result.entities.items()
            }
            rank = (order.get(result.intent.name, len(order)), -len(slots))
            if best is None or rank < best[0]:
                best = (rank, IntentMatch(result.intent.name, slots, clean))
        return best[1] if best else None

    def slot_values(self, list_name: str) -> list[str]:
        """The distinct output values of a text slot list."""
        slot_list = self.intents.slot_lists.get(list_name)
        if not isinstance(slot_list, TextSlotList):
            return []
        return list(dict.fromkeys(str(v.value_out) for v in slot_list.values))

    def sentences(self, name: str) -> list[Sentence]:
        """Parsed templates of one intent (for grammar compilers)."""
        return [s for data in self.intents.intents[name].data for s in data.sentences]


def _validate(raw: object, path: Path) -> None:
    """Structural checks hassil itself does not report with a line number."""
    if not isinstance(raw, LineDict):
        raise DataFileError(path, 1, "expected a mapping with 'language' and 'intents'")
    if "language" not in raw:
        raise DataFileError(path, raw.line, "missing 'language:' (e.g. language: en)")
    intents = raw.get("intents")
    if not isinstance(intents, LineDict) or not intents:
        raise DataFileError(path, line_of(raw, "intents"), "'intents:' must map intent names to data")
    lists = raw.get("lists") or {}
    rules = raw.get("expansion_rules") or {}
    if not isinstance(lists, dict):
        raise DataFileError(path, line_of(raw, "lists"), "'lists:' must be a mapping")
    for name, body in rules.items():
        _check_template(str(body), path, line_of(rules, name), lists, rules)
    for name, body in lists.items():  # list values are templates too: {location} may say "(toe|toes)"
        values = body.get("values") if isinstance(body, dict) else None
        for i, value in enumerate(values if isinstance(values, list) else []):
            text = value.get("in") if isinstance(value, dict) else value
            if isinstance(text, str):
                _check_template(text, path, line_of(values, i), lists, rules, list_name=str(name))
    for name, intent in intents.items():
        if not isinstance(name, str):
            raise DataFileError(
                path, line_of(intents, name),
                f"intent name {name!r} is not text (quote yes/no/on/off: \"yes\":)",
            )
        data = intent.get("data") if isinstance(intent, dict) else None
        if not isinstance(data, list) or not data:
            raise DataFileError(path, line_of(intents, name), f"intent {name!r} needs a 'data:' list")
        for block in data:
            sentences = block.get("sentences") if isinstance(block, dict) else None
            if not isinstance(sentences, list) or not sentences:
                raise DataFileError(
                    path, line_of(block) or line_of(intents, name),
                    f"intent {name!r}: each data block needs a non-empty 'sentences:' list",
                )
            for i, sentence in enumerate(sentences):
                if not isinstance(sentence, str):
                    raise DataFileError(path, line_of(sentences, i), f"intent {name!r}: sentence must be text")
                _check_template(sentence, path, line_of(sentences, i), lists, rules, name)


def _check_template(
    text: str, path: Path, line: int | None, lists: dict[str, Any], rules: dict[str, Any], intent: str | None = None,
    list_name: str | None = None,
) -> None:
    where = f"intent {intent!r}: " if intent else f"list {list_name!r}: " if list_name else ""
    shown = repr(_clip(text))
    depth = _bracket_depth(text)
    if depth > MAX_NESTING:  # hassil's parser would recurse that deep (slowly, then fail)
        raise DataFileError(path, line, f"{where}groups nest {depth} deep (at most {MAX_NESTING}) in {shown}")
    try:
        parsed = parse_sentence(text, keep_text=True)
    except RecursionError:
        raise DataFileError(path, line, f"{where}groups nest too deep in template {shown}") from None
    except Exception as exc:
        problem = _clip(" ".join(str(exc).split()), 160)  # hassil quotes the template back, newlines and all
        raise DataFileError(path, line, f"{where}cannot parse template {shown}: {problem}") from None
    for ref in _references(parsed.expression):
        if isinstance(ref, ListReference) and ref.list_name not in lists:
            raise DataFileError(path, line, f"{where}unknown list {_clip('{' + ref.list_name + '}')} in {shown}")
        if isinstance(ref, RuleReference) and ref.rule_name not in rules:
            raise DataFileError(path, line, f"{where}unknown rule {_clip('<' + ref.rule_name + '>')} in {shown}")


def _clip(text: str, most: int = 80) -> str:
    """Long template text shortened for a one-line error."""
    return text if len(text) <= most else text[:most - 3] + "..."


def _bracket_depth(text: str) -> int:
    """Deepest nesting of ``(...)`` and ``[...]`` in a template (escapes aside)."""
    depth = deepest = 0
    for char in text:
        if char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    return deepest


def _check_nesting(intents: Intents, raw: LineDict, path: Path) -> None:
    """Reject what hassil would match by endless or too deep recursion (a RecursionError mid-session).

    hassil expands ``<rule>`` and ``{list}`` references inline while matching (and so do the
    grammar compilers), so a rule that reaches itself never ends, and groups nested a few
    hundred deep exhaust Python's stack. Depth counts through rules and lists.
    """
    rules = intents.expansion_rules
    active: list[str] = []
    depths: dict[str, int] = {}  # nesting inside each rule or list, once known

    def too_deep(where: str, line: int | None) -> DataFileError:
        return DataFileError(path, line, f"{where}groups nest more than {MAX_NESTING} deep (through rules and "
                                         "lists); flatten the template")

    def walk(expr: object, level: int, where: str, line: int | None) -> int:
        """Nesting below ``expr`` (which sits ``level`` groups deep); raises past the limit."""
        if level > MAX_NESTING:
            raise too_deep(where, line)
        if isinstance(expr, RuleReference):
            key, bodies = f"<{expr.rule_name}>", [rules[expr.rule_name].expression] if expr.rule_name in rules else []
        elif isinstance(expr, ListReference):
            slot_list = intents.slot_lists.get(expr.list_name)
            key = f"{{{expr.list_name}}}"
            bodies = [v.text_in for v in slot_list.values] if isinstance(slot_list, TextSlotList) else []
        else:
            items = getattr(expr, "items", None)
            if items is None:
                return 0
            return 1 + max((walk(item, level + 1, where, line) for item in items), default=0)
        if key in active:
            chain = " -> ".join([*active[active.index(key):], key])
            section = raw.get("expansion_rules" if key.startswith("<") else "lists")
            raise DataFileError(path, line_of(section, key[1:-1]) or line,
                                f"{key} refers to itself ({chain}); a rule or list must not use itself")
        if key not in depths:
            active.append(key)
            depths[key] = max((walk(body, level, where, line) for body in bodies), default=0)
            active.pop()
        if level + depths[key] > MAX_NESTING:
            raise too_deep(where, line)
        return depths[key]

    intent_lines = raw.get("intents")
    for name, intent in intents.intents.items():
        for data in intent.data:
            for sentence in data.sentences:
                walk(sentence.expression, 0, f"intent {name!r}: ", line_of(intent_lines, name))


def _references(expr: object) -> Iterable[object]:
    if isinstance(expr, (ListReference, RuleReference)):
        yield expr
    for item in getattr(expr, "items", ()):
        yield from _references(item)


def _check_ways(intents: Intents, raw: LineDict, path: Path) -> None:
    """Reject templates that match the same words too many ways (exponential matching in hassil).

    Each template becomes a word automaton (:mod:`assistant.speech_in.wordgraph`) and a
    path-counting subset construction finds the words it reads the most ways, stopping as
    soon as some prefix passes :data:`MAX_WAYS`. How many sentences a template stands for
    does not matter: the coffee-order grammar's 120 million take ~0.1 s to check.
    Runs after :func:`_check_nesting` (no cycles, bounded depth).
    """
    from assistant.speech_in.wordgraph import GraphError, ambiguity

    intent_lines = raw.get("intents")
    for name, intent in intents.intents.items():
        for block, data in enumerate(intent.data):
            for i, sentence in enumerate(data.sentences):
                line = _sentence_line(intent_lines, name, block, i)
                shown = repr(_clip(getattr(sentence, "text", None) or ""))
                try:
                    worst = ambiguity(intents, sentence.expression, MAX_WAYS)
                except GraphError as exc:
                    raise DataFileError(
                        path, line, f"intent {name!r}: template {shown} is too complex to match: {exc}; "
                        "split it into several shorter templates") from None
                if worst.ways > MAX_WAYS:
                    heard = repr(_clip(" ".join(worst.words), 40))
                    raise DataFileError(
                        path, line, f"intent {name!r}: template {shown} matches {heard} {worst.ways}+ ways "
                        f"(at most {MAX_WAYS}); drop repeated optional or alternative words") from None


def _sentence_line(intent_lines: Any, name: str, block: int, index: int) -> int | None:
    """Line of sentence ``index`` in data block ``block`` of intent ``name`` (else the intent's line)."""
    try:
        sentences = intent_lines[name]["data"][block]["sentences"]
    except (KeyError, IndexError, TypeError):
        return line_of(intent_lines, name)
    return line_of(sentences, index) or line_of(intent_lines, name)
