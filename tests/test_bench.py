"""The benchmark suite's planning and reporting (no audio, no timing: the figures come from `python -m bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.conversation.dialog import CONTEXTS, PUBLIC_INTENTS
from assistant.conversation.intents import IntentSet
from assistant.testing import speechgen

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def intent_set() -> IntentSet:
    return IntentSet.load(ROOT / "prompts" / "intents.yaml")


def test_held_out_set_covers_the_public_vocabulary_in_valid_contexts(intent_set: IntentSet) -> None:
    from bench.command_accuracy import SNRS, VOICES, plan

    utts, info = plan(intent_set, 2, VOICES, SNRS, voices_per_sentence=4)
    assert set(PUBLIC_INTENTS) <= {u.intent for u in utts}
    assert len({u.voice for u in utts}) >= 4
    assert {u.snr_db for u in utts} == {None, *SNRS}
    for u in utts:  # every utterance means its intent (and slots) in the context it is heard in
        match = intent_set.match(u.text, CONTEXTS[u.context])
        assert match is not None and match.intent == u.intent and dict(match.slots) == u.slots, u


def test_held_out_set_avoids_the_test_sentences_and_is_reproducible(intent_set: IntentSet) -> None:
    from bench.command_accuracy import VOICES, plan

    tests = {c.text for c in speechgen.plan(intent_set, speechgen.SETS["test"])}
    first, info = plan(intent_set, 2, VOICES, (12.0,))
    again, _ = plan(intent_set, 2, VOICES, (12.0,))
    assert [u.text for u in first] == [u.text for u in again]
    held_out = {u.text for u in first}
    assert info["also_in_test_set"] == len(held_out & tests)
    assert len(held_out & tests) <= len(held_out) // 4


def test_everyday_talk_is_varied_and_never_a_command(intent_set: IntentSet) -> None:
    from bench.false_accept import everyday_sentences

    sentences = everyday_sentences(600)
    assert len(set(sentences)) == 600
    assert not [s for s in sentences if intent_set.match(s, CONTEXTS["idle"])]


def test_report_lists_every_target_and_says_which_were_missed(tmp_path: Path) -> None:
    from bench.report import markdown, write_docs

    results = {
        "machine": {"cpu_model": "Test CPU", "cores": 2, "ram_gb": 4, "date": "today", "commit": "abc"},
        "engine": "pocketsphinx",
        "accuracy": {"pocketsphinx": {"per_condition": {"clean": {"n": 10, "correct": 9, "accuracy": 0.9,
                                                                  "ci95": [0.6, 0.98], "not_understood": 1,
                                                                  "wrong": 0}},
                                      "targets": [{"name": "command accuracy, clean", "target": ">= 99%",
                                                   "value": 0.9, "unit": "fraction", "met": False, "gap": 0.09}]}},
        "compute": {"targets": [{"name": "peak memory", "target": "<= 200 MB", "value": 120.0, "unit": "MB",
                                 "met": True, "gap": -80}]},
        "gaps": ["command accuracy, clean: measured 0.9 vs target >= 99% (missed by 9.0 points). Fix it."],
    }
    text = markdown(results)
    assert "| command accuracy, clean | >= 99% | 90.0% | **no** |" in text
    assert "| peak memory | <= 200 MB | 120 MB | yes |" in text
    assert "missed by 9.0 points" in text
    out = tmp_path / "performance.md"
    write_docs(json.loads(json.dumps(results)), out)
    assert out.read_text().startswith("## Performance")
