"""The diary through the dialog engine: episodes recorded as they are coached, the
weekly count asked for by voice, and the rising-pattern advice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from assistant.conversation.content import load_content
from assistant.conversation.dialog import PATTERN_WEEKLY_COUNT, Coach
from assistant.conversation.events import Action, Event, Heard, Record, Say
from assistant.conversation.intents import IntentSet
from assistant.conversation.timers import FakeClock
from assistant.diary.store import Diary
from assistant.paths import prompts_dir

MONDAY = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)


class Kitchen:
    """A coach wired to a real diary the way the runners wire it: every Record action
    is written as soon as it comes out. Wall time and monotonic time are both in hand."""

    def __init__(self, path: Path) -> None:
        self.wall = MONDAY
        self.clock = FakeClock()
        self.diary = Diary(path, now=lambda: self.wall)
        import random

        self.coach = Coach(load_content(), self.clock, rng=random.Random(7), diary=self.diary,
                           wall_clock=lambda: self.wall)
        self.coach.start()

    def feed(self, event: Event) -> list[Action]:
        actions = self.coach.handle(event)
        for action in actions:
            if isinstance(action, Record):
                self.diary.record(action)
        return actions

    def later(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.clock.advance(seconds)

    def cramp(self, at: datetime, side: str = "left", location: str = "calf") -> list[Say]:
        """A whole short episode: report, one stretch, better, no questions. Returns what was said."""
        self.wall = at
        said: list[Action] = []
        said += self.feed(Heard("cramp_start", {"side": side, "location": location}))
        self.later(40)
        said += self.feed(Heard("better"))
        self.later(3)
        said += self.feed(Heard("no"))
        assert self.coach.state == "idle", "the episode should be over"
        return [a for a in said if isinstance(a, Say)]


def _keys(says: list[Say]) -> list[str]:
    return [s.key for s in says]


def test_episodes_through_the_coach_land_in_the_diary(tmp_path: Path) -> None:
    kitchen = Kitchen(tmp_path / "diary.sqlite3")
    kitchen.cramp(MONDAY, side="right", location="toes")
    (episode,) = kitchen.diary.episodes()
    assert (episode.side, episode.location) == ("right", "toes")
    assert episode.started_at == MONDAY and episode.closed and episode.outcome == "better"
    assert episode.duration_s == pytest.approx(43, abs=0.5)
    assert len(episode.routines) == 1 and episode.helped == episode.routines[0]


def test_pattern_advice_when_cramps_rise(tmp_path: Path) -> None:
    kitchen = Kitchen(tmp_path / "diary.sqlite3")
    assert "advice.pattern" not in _keys(kitchen.cramp(MONDAY))
    for n in range(1, PATTERN_WEEKLY_COUNT):
        said = kitchen.cramp(MONDAY + timedelta(days=n))
        if n < PATTERN_WEEKLY_COUNT - 1:
            assert "advice.pattern" not in _keys(said), f"advice after only {n + 1} cramps"
    # The third in seven days ends with the see-a-professional advice, with the count.
    assert "advice.pattern" in _keys(said)
    advice = next(s for s in said if s.key == "advice.pattern")
    assert str(PATTERN_WEEKLY_COUNT) in advice.text and "healthcare professional" in advice.text
    # A fortnight later, a single cramp gets no such advice.
    quiet = kitchen.cramp(MONDAY + timedelta(days=20))
    assert "advice.pattern" not in _keys(quiet)


def test_pattern_counts_survive_a_restart(tmp_path: Path) -> None:
    """The count comes from the diary file, not the coach's memory."""
    path = tmp_path / "diary.sqlite3"
    for n in range(PATTERN_WEEKLY_COUNT - 1):
        kitchen = Kitchen(path)  # a fresh process each time
        kitchen.cramp(MONDAY + timedelta(days=n))
        kitchen.diary.close()
    kitchen = Kitchen(path)
    said = kitchen.cramp(MONDAY + timedelta(days=PATTERN_WEEKLY_COUNT))
    assert "advice.pattern" in _keys(said)


@pytest.fixture(scope="module")
def recognizer():  # type: ignore[no-untyped-def]
    from assistant.speech_in.recognizers import PocketSphinxRecognizer

    intent_set = IntentSet.load(prompts_dir() / "intents.yaml")
    return intent_set, PocketSphinxRecognizer(intent_set)


def _spoken(text: str, seed: int) -> bytes:
    """The neural test voice saying ``text``, padded as a VAD would cut it, with a noise floor.

    (Recognition accuracy in kitchen noise is measured by the recognizer's own tests and
    benchmark; here the point is the diary answer, end to end.)"""
    from assistant.speech_in.recognizers import dither
    from assistant.testing.speechgen import VOICES, pad, synthesize

    rng = np.random.default_rng(seed)
    return dither(pad(synthesize(text, VOICES["joe"]), rng).tobytes(), rng)


def test_weekly_count_by_voice(tmp_path: Path, recognizer) -> None:  # type: ignore[no-untyped-def]
    """'How many cramps have I had this week?' — spoken, recognized, answered from the diary."""
    from assistant.conversation.dialog import CONTEXTS
    from assistant.speech_in.recognizers import recognize_pcm

    intent_set, engine = recognizer
    kitchen = Kitchen(tmp_path / "diary.sqlite3")
    kitchen.cramp(MONDAY - timedelta(days=10))          # too old for "this week"
    for day in (0, 2, 3):
        kitchen.cramp(MONDAY + timedelta(days=day))
    kitchen.wall = MONDAY + timedelta(days=4, hours=2)

    def ask(sentence: str, seed: int) -> Say:
        _, match = recognize_pcm(engine, _spoken(sentence, seed), CONTEXTS["idle"], intent_set)
        assert match is not None and match.intent == "diary_summary", sentence
        (say,) = [a for a in kitchen.feed(Heard(match.intent, match.slots)) if isinstance(a, Say)]
        return say

    week = ask("how many cramps have i had this week", 1)
    assert week.key == "diary.count_week" and week.text.startswith("3 cramps")
    month = ask("how many cramps have i had this month", 2)
    assert month.key == "diary.count_month" and month.text.startswith("4 cramps")
    last = ask("when was my last cramp", 3)
    assert last.key == "diary.last_yesterday"
    local_time = (MONDAY + timedelta(days=3)).astimezone(kitchen.wall.tzinfo).strftime("%H:%M")
    assert local_time in last.text


# ---------------------------------------------------------------------- remembered answers


def _interview(kitchen: Kitchen, at: datetime, answers: dict[str, tuple[str, dict[str, str]]]) -> tuple[
        list[str], list[Say]]:
    """A cramp, better, yes to the questions and to more; returns (questions asked, everything said)."""
    from assistant.conversation.content import load_content

    questions = load_content().questions
    kitchen.wall = at
    said: list[Action] = kitchen.feed(Heard("cramp_start", {"location": "calf"}))
    kitchen.later(40)
    said += kitchen.feed(Heard("better"))
    said += kitchen.feed(Heard("yes"))
    asked: list[str] = []
    while kitchen.coach.state in ("question", "offer"):
        kitchen.later(3)
        if kitchen.coach.state == "offer":
            said += kitchen.feed(Heard("yes"))
            continue
        assert kitchen.coach.episode is not None
        qid = questions[kitchen.coach.episode.question_index].id
        asked.append(qid)
        intent, slots = answers.get(qid, ("no", {}))
        said += kitchen.feed(Heard(intent, slots))
    return asked, [a for a in said if isinstance(a, Say)]


def test_stable_answers_are_asked_once_and_remembered_on_the_device(tmp_path: Path) -> None:
    path = tmp_path / "diary.sqlite3"
    kitchen = Kitchen(path)
    answers = {"medication": ("medication", {"medication": "statin"}), "pregnancy": ("no", {}), "aging": ("yes", {})}
    first, _ = _interview(kitchen, MONDAY, answers)
    assert {"medication", "pregnancy", "aging", "new_medication"} <= set(first)
    kitchen.diary.close()

    kitchen = Kitchen(path)  # another day, another process: the answers come from the diary file
    second, said = _interview(kitchen, MONDAY + timedelta(days=2), {})
    assert not {"medication", "pregnancy", "aging"} & set(second)
    assert "new_medication" in second  # a follow-up about this episode is still asked
    assert _keys(said).count("causes.remembered") == 1
    contributors = " ".join(s.text for s in said if s.key in ("summary.contributors", "summary.more_causes"))
    assert "a medicine you take" in contributors and "getting older" in contributors
    (episode, later) = kitchen.diary.episodes()
    remembered = {a.cause: a.answer for a in later.answers if a.cause in ("medication", "pregnancy", "aging")}
    assert remembered == {"medication": "yes", "pregnancy": "no", "aging": "yes"}  # the episode is complete

    # Medicines change: after remember_days (90) the question comes back; age (365 days) does not.
    third, _ = _interview(kitchen, MONDAY + timedelta(days=100), {"medication": ("no", {})})
    assert "medication" in third and "aging" not in third and "pregnancy" in third  # pregnancy: 60 days

    # Forgotten (cramp-coach diary --forget-answers): everything is asked again.
    kitchen.diary.forget_remembered()
    fourth, _ = _interview(kitchen, MONDAY + timedelta(days=101), {})
    assert {"medication", "pregnancy", "aging"} <= set(fourth)


def test_unsure_or_skipped_stable_answers_are_not_remembered(tmp_path: Path) -> None:
    kitchen = Kitchen(tmp_path / "diary.sqlite3")
    _interview(kitchen, MONDAY, {"medication": ("skip", {}), "pregnancy": ("unsure", {}), "aging": ("no", {}),
                                 "neurological": ("unsure", {})})
    assert set(kitchen.diary.remembered()) == {"aging"}
    again, _ = _interview(kitchen, MONDAY + timedelta(days=1), {})
    assert {"medication", "pregnancy", "neurological"} <= set(again) and "aging" not in again


def test_forget_my_answers_by_voice(tmp_path: Path) -> None:
    kitchen = Kitchen(tmp_path / "diary.sqlite3")
    _interview(kitchen, MONDAY, {"medication": ("no", {})})
    assert "medication" in kitchen.diary.remembered()
    said = [a for a in kitchen.feed(Heard("forget_answers")) if isinstance(a, Say)]
    assert _keys(said) == ["causes.forgotten"]
    assert kitchen.diary.remembered() == {}
    again, _ = _interview(kitchen, MONDAY + timedelta(minutes=30), {})
    assert "medication" in again
    assert load_content().intents.match("forget my answers").intent == "forget_answers"  # type: ignore[union-attr]
