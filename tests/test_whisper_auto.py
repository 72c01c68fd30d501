"""``--engine auto``: the most accurate installed engine whose reply fits the budget on this board."""

from __future__ import annotations

from assistant.speech_in.engine_choice import choose_engine

COSTS = {
    "reply_budget_s": 1.0,
    "engines": {
        "pocketsphinx": {"accuracy_mean": 0.55, "boards": {b: {"reply_p95_s": r} for b, r in
                                                            (("here", 0.2), ("pi5", 0.4), ("pi4", 0.8))}},
        "vosk": {"accuracy_mean": 0.80, "boards": {b: {"reply_p95_s": r} for b, r in
                                                    (("here", 0.25), ("pi5", 0.5), ("pi4", 0.9))}},
        "whisper": {"accuracy_mean": 0.93, "boards": {b: {"reply_p95_s": r} for b, r in
                                                       (("here", 0.35), ("pi5", 0.8), ("pi4", 2.1))}},
    },
}
ALL = {"whisper": True, "vosk": True, "pocketsphinx": True}


def test_the_most_accurate_engine_that_answers_in_time_wins():
    here = choose_engine(ALL, "here", COSTS)
    assert here.engine == "whisper" and "fits 1 s" in here.reason
    assert choose_engine(ALL, "pi5", COSTS).engine == "whisper"
    pi4 = choose_engine(ALL, "pi4", COSTS)
    assert pi4.engine == "vosk"  # Whisper would answer after ~2 s on a Pi 4
    assert any("whisper" in line and "over the 1 s budget" in line for line in pi4.considered)


def test_only_installed_engines_count():
    only_sphinx = {"whisper": False, "vosk": False, "pocketsphinx": True}
    choice = choose_engine(only_sphinx, "here", COSTS)
    assert choice.engine == "pocketsphinx"
    assert "whisper: not installed" in choice.considered
    assert choose_engine({**only_sphinx, "whisper": True}, "pi4", COSTS).engine == "pocketsphinx"


def test_without_benchmark_figures_the_default_preference_applies():
    assert choose_engine(ALL, "here", {}).engine == "whisper"
    assert choose_engine({"whisper": False, "vosk": True, "pocketsphinx": True}, "pi4", {}).engine == "vosk"
