"""Fuzzing the data-file parsers and the text-to-intent matcher (issue 7, part 4).

Everything a person can edit (``prompts/``, an ``--intents`` file) and everything a
recognizer can return must end in a result or one clear :class:`DataFileError` line
naming the file — never another exception, never a hang. Inputs are adversarial but
near-valid: template strings built from hassil's own syntax, and the real files in
``prompts/`` mutated one change at a time (keys dropped or duplicated, types changed,
placeholders injected, bytes truncated or garbled).

"No hang" is enforced twice: hypothesis' ``deadline`` (generous, a loaded 2-core CI
machine must not flake) and a hard per-example watchdog (SIGALRM interrupts a Python
loop; ``faulthandler`` dumps the stacks and exits if a C extension never returns).

Profiles: ``HYPOTHESIS_PROFILE=ci`` (default, derandomized, ~150 examples per test) or
``long`` (a deep random run; figures in docs/reliability.md).
"""

from __future__ import annotations

import faulthandler
import math
import os
import shutil
import signal
import string
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from assistant.conversation.content import PROMPT_FILES, Content, load_content
from assistant.conversation.datafile import DataFileError
from assistant.conversation.intents import IntentSet, normalize
from assistant.paths import prompts_dir
from assistant.speech_in.recognizers import DEFAULT_FLOOR, Transcript, understand

PROFILES = {
    "ci": settings(max_examples=150, deadline=2000, derandomize=True, database=None, print_blob=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]),
    "long": settings(max_examples=5000, deadline=2000, database=None, print_blob=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]),
}
FUZZ = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "ci")] if os.environ.get("HYPOTHESIS_PROFILE") in PROFILES \
    else PROFILES["ci"]

HARD_LIMIT = 10.0
"""Seconds one example may take before the watchdog calls it a hang (operations take ms)."""

PROMPTS = prompts_dir()
REAL_INTENTS = IntentSet.load(PROMPTS / "intents.yaml")


_HANG_LOG = open(Path(tempfile.gettempdir()) / "cramp-coach-fuzz-hang.txt", "w")  # open for the whole run
"""Where the C-level watchdog writes stacks before it ends the run."""


class _Hang(BaseException):
    """Raised by the watchdog; a BaseException so no ``except Exception`` in product code hides it."""


@contextmanager
def watchdog(seconds: float = HARD_LIMIT) -> Iterator[None]:
    """Fail (not freeze) when the body runs longer than ``seconds``."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # Repeats each second: a _Hang raised where Python ignores exceptions (a generator finalized by the
    # garbage collector mid-match) would otherwise leave only the 30 s exit below.
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    # Stuck in C (a signal handler cannot run): dump the stacks where pytest's capture cannot hide them, exit.
    faulthandler.dump_traceback_later(seconds * 3, exit=True, file=_HANG_LOG)
    hung = False
    try:
        yield
    except _Hang:
        hung = True  # raised below, outside this block: the _Hang's traceback (and the frames holding the
        # hung matcher's state, possibly gigabytes) is dropped before hypothesis keeps the failure and shrinks
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
    if hung:
        raise AssertionError(f"no result within {seconds} s: a hang")


def test_watchdog_turns_a_hang_into_a_failure() -> None:
    """The guard itself: an endless loop inside ``except Exception`` code still fails fast."""
    with pytest.raises(AssertionError, match="hang"), watchdog(0.2):
        try:
            while True:
                pass
        except Exception:  # what product code catching "everything" looks like
            pass


def _check_error(exc: DataFileError, files: list[Path]) -> None:
    """A clear one-line error naming one of the files (or their directory)."""
    message = str(exc)
    assert "\n" not in message, f"error is not one line: {message!r}"
    assert "Traceback" not in message
    assert any(message.startswith(str(f)) for f in files), f"error names no file: {message!r}"


# ------------------------------------------------------------------ templates and intent files

TEMPLATE_WORDS = ["my", "foot", "cramp", "left", "ow", "a", "it's", "123", "é", "straße", "日本", "🦶",
                  "{side}", "{location}", "{medication}", "{nope}", "{side:where}", "{}", "{{side}}",
                  "<my>", "<nope>", "<>", "<<my>>", "\\", "\\(", "|", ";", ":", "'", '"', "#", "&", "*", "%"]
SPECIALS = "()[]{}<>|\\;:,'\"#&*%!@`-~ \t\u00a0\u200b"


def _templates() -> st.SearchStrategy[str]:
    """Template-like strings: balanced hassil syntax from odd words, then maybe damaged."""
    leaf = st.one_of(st.sampled_from(TEMPLATE_WORDS),
                     st.text(alphabet=SPECIALS + "ab", max_size=4),
                     st.text(max_size=6))
    tree = st.recursive(leaf, lambda kids: st.one_of(
        st.lists(kids, min_size=1, max_size=4).map(" ".join),
        st.lists(kids, min_size=1, max_size=4).map(lambda xs: "(" + "|".join(xs) + ")"),
        st.lists(kids, min_size=1, max_size=3).map(lambda xs: "[" + "|".join(xs) + "]"),
        st.lists(kids, min_size=2, max_size=3).map(lambda xs: "(" + ";".join(xs) + ")"),  # permutation
    ), max_leaves=25)
    damaged = st.tuples(tree, st.integers(0, 200), st.sampled_from(SPECIALS), st.booleans()).map(
        lambda t: t[0][:t[1]] + ("" if t[3] else t[2]) + t[0][t[1] + t[3]:])
    deep = st.tuples(st.integers(1, 3000), st.sampled_from(["()", "[]", "{}", "<>"])).map(
        lambda t: t[1][0] * t[0] + "a" + t[1][1] * t[0])
    # Wide: hundreds of alternatives, optionals or references in a row. Found: `[a] [a] … b` heard as "a … a b"
    # (directly or through <my>) matched exponentially many ways; now rejected at load (MAX_WAYS).
    wide = st.tuples(st.integers(1, 300), st.sampled_from(["a|", "[a] ", "(a|b) ", "{side} ", "<my> "])).map(
        lambda t: "(" + t[1] * t[0] + "b)")
    return st.one_of(tree, damaged, deep, wide)


def _intent_doc(sentences: list[str], rule: str, list_in: str) -> dict[str, Any]:
    return {
        "language": "en",
        "intents": {"fuzzed": {"data": [{"sentences": sentences}]},
                    "cramp_start": {"data": [{"sentences": ["[<my>] {location} [is] cramping"]}]}},
        "expansion_rules": {"my": rule},
        "lists": {"side": {"values": ["left", "right"]},
                  "location": {"values": [{"in": list_in, "out": "foot"}, "calf"]},
                  "medication": {"values": ["statin"]}},
    }


def _load_and_match(path: Path, texts: list[str]) -> None:
    with watchdog():
        try:
            loaded = IntentSet.load(path)
        except DataFileError as exc:
            _check_error(exc, [path])
            return
        for text in texts:
            result = loaded.match(text)
            assert result is None or result.intent in loaded.names


@FUZZ
@given(sentences=st.lists(_templates(), min_size=1, max_size=3), rule=_templates(), list_in=_templates(),
       texts=st.lists(st.text(max_size=40), max_size=3))
@example(sentences=["(" * 2000 + "a" + ")" * 2000], rule="(my|the)", list_in="foot", texts=[])
@example(sentences=["[" * 500 + "a" + "]" * 500], rule="(my|the)", list_in="foot", texts=[])
@example(sentences=["<my> b"], rule="a <my>", list_in="foot", texts=["a a b"])  # a rule that uses itself
@example(sentences=["()", "{}", "<>", "[]"], rule="", list_in="", texts=[""])
@example(sentences=["(a)"], rule="my", list_in="{a}", texts=[])  # a list value naming an unknown list
@example(sentences=["(" * 1810 + "a" + ")" * 1810], rule="my", list_in="foot", texts=[])  # slow RecursionError
@example(sentences=["(" + "<my> " * 300 + "b)"], rule="(" + "[a] " * 300 + "b)", list_in="foot",
         texts=["a " * 40 + "b b"])  # ambiguous: matched exponentially many ways (GBs of RAM, minutes)
@example(sentences=["(" + "[a] " * 17 + "b)"], rule="my", list_in="foot", texts=["a " * 8 + "b"])  # 24310 ways, 1 s
@example(sentences=["[a];[a];[a];[a];[a]"], rule="my", list_in="(" + "[a] " * 12 + "a)",
         texts=["a a a a a", "a a a a a a a cramping"])  # ...through a permutation, a list value
@example(sentences=["(a;b;c;d;e;f;g;h;i;j)"], rule="my", list_in="foot", texts=["j i h g f e d c b a"])  # 10! orders
def test_intent_templates_load_or_fail_cleanly(tmp_path_factory: pytest.TempPathFactory, sentences: list[str],
                                               rule: str, list_in: str, texts: list[str]) -> None:
    path = tmp_path_factory.mktemp("intents") / "intents.yaml"
    path.write_text(yaml.safe_dump(_intent_doc(sentences, rule, list_in), allow_unicode=True), encoding="utf-8")
    _load_and_match(path, texts + ["my foot is cramping", " ".join(sentences)[:200]])


# ------------------------------------------------------------------ mutating the real prompts files

REAL_TEXT = {name: (PROMPTS / name).read_bytes() for name in PROMPT_FILES}
REAL_DATA = {name: yaml.safe_load(text) for name, text in REAL_TEXT.items()}

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["{side}", "{count}", "{", "}", "{0}", "{!r}", "{a.b}",
                                                           "{seconds:>5}", "yes", "no", "~", "", " "]))
VALUES = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), kids, max_size=3)),
                      max_leaves=8)


def _paths(node: Any, here: tuple = ()) -> Iterator[tuple]:
    """Every place in a parsed YAML tree (dict keys and list indexes)."""
    yield here
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*here, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*here, i))


def _mutate_tree(data: Any, where: tuple, op: str, value: Any, placeholder: str) -> Any:
    """One structural change at ``where``: delete it, replace it, or inject a placeholder."""
    if not where:
        return value
    parent = data
    for step in where[:-1]:
        parent = parent[step]
    last = where[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = value
    elif op == "placeholder" and isinstance(parent[last], str):
        parent[last] = parent[last] + " " + placeholder
    elif op == "rename" and isinstance(parent, dict):
        parent[f"{last}_x" if isinstance(last, str) else str(last)] = parent.pop(last)
    return data


@st.composite
def mutated_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """(file name, new bytes): one prompts file changed once, structurally or byte-wise."""
    name = draw(st.sampled_from(PROMPT_FILES))
    raw = REAL_TEXT[name]
    kind = draw(st.sampled_from(["tree", "tree", "truncate", "bytes", "latin1", "duplicate_line", "garbage"]))
    if kind == "tree":
        data = yaml.safe_load(raw)
        where = draw(st.sampled_from(list(_paths(data))))
        op = draw(st.sampled_from(["delete", "replace", "placeholder", "rename"]))
        data = _mutate_tree(data, where, op, draw(VALUES),
                            draw(st.sampled_from(["{side}", "{name}", "{bogus}", "{", "}", "{0}", "{x!z}", "{{}}"])))
        return name, yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()
    if kind == "truncate":
        return name, raw[:draw(st.integers(0, len(raw)))]
    if kind == "bytes":
        at = draw(st.integers(0, len(raw)))
        junk = draw(st.binary(min_size=1, max_size=8))
        cut = draw(st.integers(0, 8))
        return name, raw[:at] + junk + raw[at + cut:]
    if kind == "latin1":  # an editor saved it in the wrong encoding
        return name, raw.decode().replace("'", "’").encode("utf-8") + "é\n".encode("latin-1")
    if kind == "duplicate_line":
        lines = raw.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        return name, b"".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])
    return name, draw(st.binary(max_size=200))


def _copy_prompts(tmp: Path) -> Path:
    target = tmp / "prompts"
    shutil.copytree(PROMPTS, target)
    return target


@FUZZ
@given(change=mutated_file())
@example(change=("lines.yaml", b"words: [" * 3000))  # nesting deeper than the YAML parser's recursion
@example(change=("intents.yaml", b"language: en\nintents: {x: \x00}"))  # a character YAML forbids
@example(change=("routines.yaml", b"? [a, b]\n: c\n"))  # a list as a mapping key
@example(change=("causes.yaml", b"{? {a: 1} : 2}"))  # a mapping as a mapping key
@example(change=("advice.yaml", b"\xff\xfe r"))
@example(change=("routines.yaml", REAL_TEXT["routines.yaml"].replace(b"default: [toe_pull,", b"default: [[],")))
@example(change=("causes.yaml", REAL_TEXT["causes.yaml"].replace(b"red_flag: calf_signs", b"red_flag: [calf_signs]")))
@example(change=("causes.yaml", REAL_TEXT["causes.yaml"].replace(b"slot: medication", b"slot: {medication: 1}")))
def test_prompts_loader_loads_or_names_the_file(tmp_path_factory: pytest.TempPathFactory,
                                                change: tuple[str, bytes]) -> None:
    directory = _copy_prompts(tmp_path_factory.mktemp("fuzz"))
    name, data = change
    (directory / name).write_bytes(data)
    with watchdog():
        try:
            content = load_content(directory)
        except DataFileError as exc:
            _check_error(exc, [directory / f for f in PROMPT_FILES] + [directory])
            return
    assert isinstance(content, Content)
    # Whatever loaded must be usable: every phrasing formats with its declared fields.
    for phrases in content.lines.values():
        for option in phrases.options:
            option.format(**{f: "x" for f in string.ascii_letters}, **{
                k: "x" for k in ("side", "name", "causes", "count", "minutes", "seconds", "time", "days",
                                 "reason", "foot")})


def test_unmodified_prompts_load(tmp_path: Path) -> None:
    """The control: the files as shipped load (so a failure above is the mutation's doing)."""
    assert isinstance(load_content(_copy_prompts(tmp_path)), Content)


# ------------------------------------------------------------------ text to intent

VOCAB = sorted({w for name in REAL_INTENTS.names for s in REAL_INTENTS.sentences(name)
                for w in normalize(getattr(s, "text", "") or "").split()}
               | {"my", "left", "right", "foot", "toes", "calf", "arch", "heel", "statin", "week", "cramp"})
REAL_SLOTS = {name: set(REAL_INTENTS.slot_values(name)) for name in REAL_INTENTS.intents.slot_lists}


def _utterances() -> st.SearchStrategy[str]:
    """What a recognizer or a keyboard could hand the matcher."""
    words = st.lists(st.one_of(st.sampled_from(VOCAB), st.from_regex(r"[0-9]{1,6}", fullmatch=True),
                               st.sampled_from(["<unk>", "[noise]", "ÄÖÜ", "it’s", "'", "--", "!", "?", "…"])),
                     max_size=30)
    repeated = st.tuples(st.sampled_from(VOCAB), st.integers(1, 5000)).map(lambda t: " ".join([t[0]] * t[1]))
    return st.one_of(words.map(" ".join), st.text(max_size=200), repeated,
                     st.text(alphabet=string.punctuation + " \t\n", max_size=50))


ONLY = st.one_of(st.none(), st.lists(st.sampled_from(REAL_INTENTS.names), min_size=1, unique=True))


def _check_match(result: Any, only: list[str] | None) -> None:
    if result is None:
        return
    assert result.intent in (only or REAL_INTENTS.names)
    for slot, value in result.slots.items():
        assert value in REAL_SLOTS.get(slot, ()), f"slot {slot}={value!r} is not from a declared list"


@FUZZ
@given(text=_utterances(), only=ONLY)
@example(text="my left foot is cramping", only=None)
@example(text="cramp " * 5000, only=None)
@example(text="how many cramps have i had this week", only=["diary_summary"])
@example(text="\x00\ud7ff\U0010ffff", only=["stop"])
def test_match_returns_an_allowed_intent_or_none(text: str, only: list[str] | None) -> None:
    with watchdog():
        result = REAL_INTENTS.match(text, only)
    _check_match(result, only)


@FUZZ
@given(text=_utterances(), only=ONLY,
       confidence=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1)))
@example(text="stop", only=["stop"], confidence=math.nan)
@example(text="stop <unk>", only=["stop"], confidence=1.0)
def test_understand_respects_floor_and_context(text: str, only: list[str] | None, confidence: float) -> None:
    with watchdog():
        result = understand(REAL_INTENTS, Transcript(text, confidence), only)
    _check_match(result, only)
    if result is not None:
        assert confidence >= DEFAULT_FLOOR and "<unk>" not in text
        assert result == REAL_INTENTS.match(text, only)
