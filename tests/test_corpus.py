"""How people actually talk to the coach (tests/corpus/*.yaml), run through the coach's own matcher.

Every utterance is matched the way the running coach matches it: the templates of
prompts/intents.yaml narrowed to the listening context of the state it is said in
(``dialog.CONTEXTS``), first intent of the context winning a tie. So "yes it's better" is
checked at the check-in, where it must mean ``better``, and "statins" in an ordinary cause
question, where it must mean nothing. Each state's misses are reported together, with the
corpus file and line, so one run shows everything the grammar gets wrong.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_textmode import TextSession

from assistant.conversation.content import load_content
from assistant.conversation.datafile import LineDict, line_of, load_yaml
from assistant.conversation.dialog import CONTEXTS, PUBLIC_INTENTS
from assistant.conversation.intents import IntentSet

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.yaml"))


@dataclass(frozen=True)
class Utterance:
    """One corpus entry: what is said in a state, and what it must mean there."""

    where: str
    """``file:line`` of the entry, for the report."""
    state: str
    text: str
    intent: str | None
    """Expected intent; None = must not be understood."""
    slots: dict[str, str] | None
    """Expected slots exactly; None = not checked."""


def _load(path: Path) -> list[Utterance]:
    doc = load_yaml(path)
    assert isinstance(doc, LineDict) and set(doc) == {"state", "utterances"}, \
        f"{path.name}: needs exactly 'state:' and 'utterances:'"
    state, entries = doc["state"], doc["utterances"]
    assert isinstance(entries, LineDict), f"{path.name}: 'utterances:' must map utterance to meaning"
    out = []
    for text, expected in entries.items():
        where = f"{path.name}:{line_of(entries, text)}"
        assert isinstance(text, str), f"{where}: quote the utterance {text!r} (YAML read it as {type(text).__name__})"
        if isinstance(expected, LineDict):
            assert set(expected) == {"intent", "slots"}, f"{where}: give 'intent:' and 'slots:'"
            slots = {str(k): str(v) for k, v in expected["slots"].items()}
            out.append(Utterance(where, state, text, expected["intent"], slots))
        else:
            assert expected is None or isinstance(expected, str), f"{where}: expected an intent name or ~"
            out.append(Utterance(where, state, text, expected, None))
    return out


CASES: dict[str, list[Utterance]] = {path.stem: _load(path) for path in FILES}


@pytest.fixture(scope="module")
def intents() -> IntentSet:
    return load_content().intents  # the coach's own, validated at start-up


def test_corpus_is_large_and_well_formed(intents: IntentSet) -> None:
    everything = [u for cases in CASES.values() for u in cases]
    assert len(everything) >= 300, len(everything)
    for u in everything:
        assert u.state in CONTEXTS, f"{u.where}: no listening state {u.state!r}; states: {', '.join(CONTEXTS)}"
        assert u.intent is None or u.intent in intents.names, f"{u.where}: no intent {u.intent!r} in intents.yaml"
    # Ordinary talk is most of what the idle coach hears: it must be a large part of its corpus.
    idle = [u for u in everything if u.state == "idle"]
    assert sum(u.intent is None for u in idle) >= 80
    # Every intent the coach acts on is exercised somewhere.
    missing = set(PUBLIC_INTENTS) - {u.intent for u in everything}
    assert not missing, f"no corpus utterance for {sorted(missing)}"
    dupes = [k for k, n in Counter((u.state, " ".join(u.text.lower().split())) for u in everything).items() if n > 1]
    assert not dupes, dupes


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_state_understands_what_people_say(name: str, intents: IntentSet) -> None:
    misses = []
    for u in CASES[name]:
        got = intents.match(u.text, CONTEXTS[u.state])
        got_intent = got.intent if got else None
        ok = got_intent == u.intent and (u.slots is None or got is None or got.slots == u.slots)
        if not ok:
            heard = f"{got_intent} {got.slots}" if got else "nothing"
            want = f"{u.intent} {u.slots}" if u.slots is not None else str(u.intent or "nothing")
            misses.append(f"{u.where}: {u.text!r} in {u.state}: want {want}, got {heard}")
    assert not misses, f"{len(misses)} of {len(CASES[name])} misheard:\n" + "\n".join(misses)


def test_no_filler_wakes_the_idle_coach(intents: IntentSet) -> None:
    """Idle hears a kitchen all day: no common word, nor any two of them, is a command there.

    The words are the recognizer's garbage loop (the most frequent words of spoken English),
    so this also keeps them free for rejecting chatter."""
    from assistant.speech_in.grammar import GARBAGE_WORDS

    words = GARBAGE_WORDS[:40]
    said = [*words, *(f"{a} {b}" for a in words for b in words)]
    woke = [(text, m.intent) for text in said if (m := intents.match(text, CONTEXTS["idle"]))]
    assert not woke, woke


# ------------------------------------------------------------------ end to end through ``cramp-coach --text``


def _heard(session: TextSession) -> list[dict]:
    events = [json.loads(line) for line in session.log_path.read_text().splitlines()]
    return [e for e in events if e["type"] == "heard"]


def test_text_a_contracted_report_starts_relief_at_once(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("my foot's cramping again")
    s.expect("toes")                  # the first instruction, no question first
    s.type("stop")
    s.expect("stop")
    assert s.close() == 0
    heard = _heard(s)
    assert heard[0]["intent"] == "cramp_start" and heard[0]["slots"] == {"location": "foot"}


def test_text_check_in_in_natural_words(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("I've got a cramp in my left toes")
    s.expect("toes of your left foot")
    s.expect("still cramping")        # the check-in after the countdown
    s.type("no it still hurts")       # not a bare "no": still cramping, on to the next stretch
    s.expect("let's try")
    s.expect("still cramping")
    s.type("yeah it's a bit better now")
    s.expect("caused it")             # relief is over: the causes are offered
    s.type("no thanks")
    assert s.close() == 0
    intents = [e["intent"] for e in _heard(s)]
    assert intents[:4] == ["cramp_start", "still_cramping", "better", "no"], intents


def test_text_kitchen_talk_wakes_nothing(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    for line in ("can you pass the salt", "the kettle's boiling", "I need to get milk",
                 "can I get a large double shot latte with soy milk"):
        s.type(line)
    s.type("cramp!")
    s.expect("toes")                  # the first thing the coach says is the stretch
    s.type("stop")
    assert s.close() == 0
    events = [json.loads(line) for line in s.log_path.read_text().splitlines()]
    heard = [e for e in events if e["type"] == "heard"]
    assert [e["intent"] for e in heard][:5] == [None, None, None, None, "cramp_start"]
    woke = events.index(heard[4])
    assert not [e for e in events[:woke] if e["type"] == "say"]  # not a word to the kitchen talk


def test_text_a_bare_pain_word_gets_a_short_question(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("ow ow ow")
    s.expect("Is it a cramp?")        # not silence, not a whole routine
    s.type("yes it is")
    s.expect("toes")                  # then relief at once
    s.type("stop")
    assert s.close() == 0
    assert [e["intent"] for e in _heard(s)][:2] == ["pain", "yes"]


def test_text_on_demand_questions_in_idle(tmp_path: Path) -> None:
    s = TextSession(tmp_path)
    s.expect("Ctrl-D")
    s.type("what causes foot cramps?")
    s.expect("tired muscles")         # the article's answer, in short lines
    s.type("how can I prevent them")
    s.expect("Drink water")
    s.type("when should I see a doctor")
    s.expect("swollen")
    s.type("what's this for")         # kitchen talk: no answer about stretches
    s.type("cramp")
    s.expect("toes")
    s.type("stop")
    assert s.close() == 0
    assert [e["intent"] for e in _heard(s)][:5] == ["ask_causes", "ask_prevention", "ask_see_doctor", None,
                                                     "cramp_start"]
