"""The benchmark suite's planning and reporting (no audio, no timing: the figures come from `python -m bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def test_a_second_engine_gets_its_own_named_target_rows_and_a_merge_keeps_the_rest() -> None:
    from bench.report import all_targets
    from bench.run import gaps, merged_into

    def engine(value: float) -> dict:
        return {"targets": [{"name": "command accuracy, 12 dB", "target": ">= 97%", "value": value,
                             "unit": "fraction", "met": value >= 0.97, "gap": 0.97 - value}]}

    committed = {"machine": {"date": "2026-11-25 11:36 UTC", "commit": "old"}, "engine": "pocketsphinx",
                 "engines": ["pocketsphinx"], "accuracy": {"pocketsphinx": engine(0.29)},
                 "false_accept": {}, "compute": {"targets": []}}
    now = {"machine": {"date": "2026-12-03 17:00 UTC", "commit": "new"}}
    results = merged_into(committed, now, ["accuracy"], ["whisper"])
    results["accuracy"]["whisper"] = engine(0.98)
    assert results["compute"] == {"targets": []} and results["engines"] == ["pocketsphinx", "whisper"]
    assert results["machine"]["date"] == ("2026-11-25 11:36 UTC (accuracy of whisper re-measured "
                                          "2026-12-03 17:00 UTC at new)")
    names = [(t["name"], t["met"]) for t in all_targets(results)]
    assert names == [("command accuracy, 12 dB", False), ("whisper: command accuracy, 12 dB", True)]
    missed = gaps(results)
    assert len(missed) == 1 and missed[0].startswith("command accuracy, 12 dB: measured 0.29")


def test_noise_is_mixed_by_the_loudest_frame_rule() -> None:
    """The realspeech SNR rule: loudest 2048-sample frame energy of speech / of noise = SNR."""
    from bench.realspeech import FRAME, max_frame_energy, mix_at_snr, scale_noise

    rng = np.random.default_rng(7)
    # a short loud word in a long quiet recording: an average-power rule would give a very different noise level
    speech = np.zeros(16000 * 3, np.int16)
    speech[20000:20000 + 3 * FRAME] = (8000 * np.sin(np.arange(3 * FRAME) * 0.05)).astype(np.int16)
    noise = rng.normal(size=len(speech))
    for snr in (24.0, 12.0, 6.0, 0.0):
        mixed = mix_at_snr(speech, noise, snr)
        heard_noise = mixed.astype(np.float64) - speech
        got = 10 * np.log10(max_frame_energy(speech) / max_frame_energy(heard_noise))
        assert abs(got - snr) < 0.05, (snr, got)
    mean_power_snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(heard_noise**2))
    assert mean_power_snr < -5  # the same mix by average power: the rule is not average power

    loud = (32000 * np.sign(np.sin(np.arange(len(speech)) * 0.01))).astype(np.int16)  # would clip at 6 dB
    mixed = mix_at_snr(loud, noise, 6.0)
    scaled = loud + scale_noise(loud, noise, 6.0)
    expected = scaled * 32767 / np.abs(scaled).max()  # scaled down as a whole: the ratio stays
    assert np.abs(mixed.astype(np.float64) - expected).max() <= 1.0
    assert len(mix_at_snr(speech, noise[:100], 12.0)) == len(speech)  # short noise is looped


def test_realspeech_halves_split_the_set_and_noise_is_reproducible() -> None:
    from bench.realspeech import REALSPEECH, condition_audio, load_set, select_ids

    if not (REALSPEECH / "labels.json").exists():
        pytest.skip("realspeech set not present")
    even, odd = select_ids("even"), select_ids("odd")
    assert not set(even) & set(odd) and len(even) + len(odd) == len(select_ids())
    rec = load_set(even[:1])[0]
    assert rec.intent and rec.slots
    a, b = condition_audio(rec, 12.0), condition_audio(rec, 12.0)
    assert np.array_equal(a, b) and not np.array_equal(a, rec.audio)


def test_pi_estimates_scale_the_compute_but_not_the_endpointer_wait() -> None:
    from bench.pi_estimate import HANGOVER_S, engine_estimate

    est = engine_estimate("pocketsphinx", cpu_3s=0.3, reply_p95_s=HANGOVER_S + 0.2)
    assert est["here"]["reply_p95_s"] == pytest.approx(0.6) and est["here"]["fits"]
    assert est["pi5"]["reply_p95_s"] == pytest.approx(HANGOVER_S + 0.2 * 2.5) and est["pi5"]["fits"]
    assert est["pi4"]["reply_p95_s"] == pytest.approx(HANGOVER_S + 0.2 * 6) and not est["pi4"]["fits"]
    assert est["pi4"]["cpu_per_3s_command_s"] == pytest.approx(1.8)
    neural = engine_estimate("whisper", cpu_3s=0.3, reply_p95_s=0.6)
    assert neural["pi4"]["cpu_per_3s_command_range_s"][1] > est["pi4"]["cpu_per_3s_command_range_s"][1]


def test_shipped_engine_costs_say_for_each_board_whether_an_engine_fits() -> None:
    """`--engine auto` reads this file (written by bench/realspeech_report.py)."""
    costs = json.loads((ROOT / "assistant" / "speech_in" / "engine_costs.json").read_text())
    assert costs["schema"] == 1 and costs["reply_budget_s"] == 1.0 and costs["engines"]
    for engine in costs["engines"].values():
        assert set(engine["boards"]) == {"here", "pi5", "pi4"}
        assert 0.0 <= engine["accuracy_mean"] <= 1.0
        for board in engine["boards"].values():
            if "reply_p95_s" in board:
                assert board["fits"] == (board["reply_p95_s"] <= costs["reply_budget_s"])


def test_a_real_voice_goes_through_the_live_endpointer_and_is_scored_on_every_slot() -> None:
    """bench/realspeech end to end on one real recording with the embedded engine (no fakes)."""
    from bench.realspeech import REALSPEECH, engine_factory, evaluate, select_ids

    if not (REALSPEECH / "labels.json").exists():
        pytest.skip("realspeech set not present")
    rid = select_ids("even")[0]  # "can I have a light roast twelve ounce coffee", clearly spoken
    s = evaluate(engine_factory("pocketsphinx"), None, [rid], idle=True)
    row = s["rows"][0]
    assert row["segments"] == 1 and row["fed_s"] > 1.0 and row["cpu_s"] > 0
    assert (s["right"], s["not_understood"], s["wrong"]) == (1, 0, 0), row
    assert row["got_slots"] == row["want_slots"] == {"coffeeDrink": "coffee", "roast": "light roast",
                                                     "size": "twelve ounce"}
    assert s["idle"]["false_accepts"] == 0 and row["idle_accept"] is None  # a coffee order is not a cramp
