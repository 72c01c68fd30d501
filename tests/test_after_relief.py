"""After relief, through the dialog core on a fake clock: graded advice, the decline path, on-demand
answers, a short repeatable summary and the shorter interview (issue 13 items 5-9)."""

from __future__ import annotations

import re

import pytest
from dialog_driver import Driver, content, said_keys

from assistant.conversation.dialog import SUMMARY_LINE_WORDS
from assistant.conversation.events import Say


def to_offer(d: Driver) -> None:
    d.hear("cramp_start", location="calf")
    d.finish_hold()
    d.hear("better")
    assert d.state == "offer" and d.said()[-1].key == "causes.offer"


def to_question(d: Driver, qid: str, answer_before: str = "no") -> None:
    """Answer ``answer_before`` (yes to the medicine question) until ``qid`` is asked."""
    to_offer(d)
    d.hear("yes")
    while d.state in ("question", "offer"):
        if d.state == "offer":
            d.hear("yes")
            continue
        q = content().questions[d.coach.episode.question_index]
        if q.id == qid:
            return
        d.hear("yes" if q.id == "medication" else answer_before)
    raise AssertionError(f"{qid} was never asked")


def words(text: str) -> int:
    return len(text.split())


def spoken_texts(d: Driver, since: int = 0) -> str:
    return " ".join(s.text for s in d.said(since)).lower()


# ------------------------------------------------------------------ item 5: graded, consistent advice


def test_a_red_calf_that_stays_means_seek_care_now_and_the_questions_can_stop() -> None:
    d = Driver()
    to_question(d, "calf_signs")
    m = d.mark()
    d.hear("yes")
    keys = d.keys(m)
    assert keys[:1 + len(content().advice["now"])] == ["red_flag"] + [
        f"advice.now.{i + 1}" for i in range(len(content().advice["now"]))]
    assert "now" in spoken_texts(d, m) and "urgent care" in spoken_texts(d, m)
    assert d.state == "offer" and keys[-1] == "causes.carry_on"
    m = d.mark()
    d.hear("no")  # stop the questions: the advice was the last thing said; goodbye
    keys = d.keys(m)
    assert d.state == "idle" and keys[-1] == "closing"
    assert not any(k.startswith(("cause.", "summary.")) for k in keys)
    again = said_keys(d.hear("repeat"))  # "what?" -- the advice again
    assert again[0] == "red_flag" and again[-1].startswith("advice.now.")


@pytest.mark.parametrize(("qid", "reason"), [("nerve", "numbness"), ("new_medication", "new_medication")])
def test_numbness_or_a_new_medicine_means_see_a_doctor_soon_not_urgent_care(qid: str, reason: str) -> None:
    d = Driver()
    to_question(d, qid)
    m = d.mark()
    d.hear("yes")
    keys = d.keys(m)
    assert keys[0] == "red_flag" and content().grades[reason] == "soon"
    assert any(k.startswith("advice.soon.") for k in keys) and not any(k.startswith("advice.now.") for k in keys)
    assert "soon" in spoken_texts(d, m) and "urgent care" not in spoken_texts(d, m)


def test_carrying_on_after_a_red_flag_continues_with_the_next_question() -> None:
    d = Driver()
    to_question(d, "calf_signs")
    d.hear("yes")
    d.hear("yes")  # carry on
    assert d.state == "question"
    assert content().questions[d.coach.episode.question_index].id == "dehydration"


def test_silence_after_a_red_flag_offer_gives_the_summary_not_more_questions() -> None:
    d = Driver()
    to_question(d, "calf_signs")
    d.hear("yes")
    assert said_keys(d.silence()) == ["causes.carry_on_short"]
    assert said_keys(d.silence()) == ["causes.offer_shortest"]
    keys = said_keys(d.silence())
    assert keys[-1] == "closing" and d.state == "idle"
    assert said_keys(d.hear("repeat"))[0] == "red_flag"


def test_a_summary_after_a_red_flag_ends_with_that_advice() -> None:
    d = Driver()
    to_question(d, "dehydration")
    d.hear("yes")  # a cause first ...
    while content().questions[d.coach.episode.question_index].id != "nerve":
        d.hear("no")
    d.hear("yes")  # ... then numbness
    m = d.mark()
    d.hear("no")  # stop the questions
    keys = d.keys(m)
    assert keys[0] == "summary.contributors" and keys[-1] == "closing"
    flag = keys.index("red_flag")
    assert all(k.startswith("advice.soon.") for k in keys[flag + 1:-1])


def test_the_advice_does_not_contradict_itself() -> None:
    c = content()
    safety = next(q for q in c.questions if q.id == "calf_signs")
    # The coach has just suggested warmth on the muscle, and any calf is sore after a calf cramp.
    for text in (*safety.ask.options, *safety.short.options):
        assert "warm" not in text.lower() and "pain" not in text.lower()
        assert "swelling" in text.lower() and re.search(r"stays|gone away|still", text.lower())
    every = [o for p in c.lines.values() for o in p.options]
    every += [o for lines in (*c.advice.values(), *c.answers.values(), *c.why.values()) for p in lines
              for o in p.options]
    every += [o for q in c.questions for p in (q.ask, q.short, q.tip) if p for o in p.options]
    every += [o for p in c.red_flag_reasons.values() for o in p.options]
    text = " ".join(every).lower()
    assert "calf is painful" not in text and "or painful" not in text
    # Heat and cold both reach the person (aftercare or tips).
    assert "warm" in text and "cold pack" in text


def test_never_stop_a_medicine_no_doses_no_diagnosis() -> None:
    c = content()
    every = [o for p in c.lines.values() for o in p.options]
    every += [o for lines in (*c.advice.values(), *c.answers.values()) for p in lines for o in p.options]
    every += [o for q in c.questions for p in (q.tip,) if p for o in p.options]
    for text in every:
        low = text.lower()
        if "stop" in low and "medicine" in low:
            assert "don't stop" in low or "don't" in low, text
        assert not re.search(r"\b\d+\s*(mg|milligram|g|ml|tablets? a day)\b", low), text
        for word in ("you have ", "diagnos", "it is a ", "thrombosis", "dvt"):
            assert word not in low or word == "diagnos" and "not a diagnosis" in low, text


def test_red_flag_and_advice_lines_are_short() -> None:
    c = content()
    for q in c.questions:  # the questions and tips too
        for phrases in (q.ask, q.short, q.tip):
            for text in phrases.options if phrases else ():
                assert words(text) <= SUMMARY_LINE_WORDS, text
    for lines in (*c.advice.values(), *c.answers.values(), *c.why.values()):
        for phrases in lines:
            for text in phrases.options:
                assert words(text) <= SUMMARY_LINE_WORDS, text
    for reason in c.red_flag_reasons.values():
        for text in reason.options:
            assert words(c.lines["red_flag"].options[0].format(reason=text)) <= SUMMARY_LINE_WORDS, text
    for key in ("advice.see_professional", "advice.pattern", "advice.long_cramp", "causes.more", "causes.carry_on"):
        for text in c.lines[key].options:
            assert words(text) <= SUMMARY_LINE_WORDS, text


# ------------------------------------------------------------------ item 6: the decline path


@pytest.mark.parametrize("intent", ["no", "skip", "unsure"])
def test_declining_the_causes_still_gives_tips_and_when_to_see_a_professional(intent: str) -> None:
    d = Driver()
    to_offer(d)
    m = d.mark()
    d.hear(intent)
    keys = d.keys(m)
    assert keys[0] == "causes.declined" and keys[-1] == "closing"
    tips = [k for k in keys if k.startswith("answer.declined.")]
    assert 1 <= len(tips) <= 2
    assert "advice.see_professional" in keys
    said = spoken_texts(d, m)
    for topic in ("drink water", "stretch your feet and calves", "shoes", "cold pack"):
        assert topic in said, topic
    assert d.state == "idle" and d.ended()


def test_repeat_after_declining_says_the_tips_again() -> None:
    d = Driver()
    to_offer(d)
    m = d.mark()
    d.hear("no")
    tips = [s.text for s in d.said(m) if s.key.startswith("answer.declined.")]
    again = [s.text for s in d.hear("repeat") if isinstance(s, Say)]
    assert tips and all(t in again for t in tips)


# ------------------------------------------------------------------ item 7: on-demand answers


@pytest.mark.parametrize(("intent", "topic", "needle"), [
    ("ask_causes", "causes", "tired muscles"), ("ask_prevention", "prevention", "drink water"),
    ("ask_see_doctor", "see_doctor", "swollen or red")])
def test_questions_about_cramps_are_answered_in_idle(intent: str, topic: str, needle: str) -> None:
    d = Driver()
    m = d.mark()
    d.hear(intent)
    keys = d.keys(m)
    assert keys == [f"answer.{topic}.{i + 1}" for i in range(len(content().answers[topic]))]
    assert needle in spoken_texts(d, m)
    assert d.state == "idle"
    assert said_keys(d.hear("repeat")) == keys  # and can be heard again


def test_a_question_asked_mid_interview_is_answered_then_the_question_comes_back() -> None:
    d = Driver()
    to_question(d, "footwear")
    m = d.mark()
    d.hear("ask_see_doctor")
    keys = d.keys(m)
    assert keys[0] == "answer.see_doctor.1" and keys[-1] == "cause.footwear.ask"
    assert d.state == "question"


def test_why_this_stretch_during_a_hold_names_that_stretch_and_the_countdown_carries_on() -> None:
    d = Driver()
    d.hear("cramp_start", location="calf")
    assert d.coach.episode.order[0] == "calf_stretch"
    m = d.mark()
    d.hear("ask_why")
    assert d.keys(m) == [f"answer.why.calf_stretch.{i + 1}" for i in range(len(content().why["calf_stretch"]))]
    assert d.state == "hold"
    d.finish_hold()
    assert "countdown.0" in d.keys(m) and d.state == "checkin"


def test_why_after_the_episode_is_about_the_stretch_that_was_done_and_before_any_is_general() -> None:
    d = Driver()
    assert said_keys(d.hear("ask_why"))[0] == "answer.why.default.1"
    to_offer(d)
    assert said_keys(d.hear("ask_why"))[0] == "answer.why.calf_stretch.1"
    assert d.state == "offer" and d.said()[-1].key == "causes.offer"  # the offer is asked again
    d.hear("no")
    assert said_keys(d.hear("ask_why"))[0] == "answer.why.calf_stretch.1"


# ------------------------------------------------------------------ item 8: the summary


def all_yes_summary(d: Driver) -> list[Say]:
    to_offer(d)
    d.hear("yes")
    m = d.mark()
    while d.state in ("question", "offer"):
        if d.state == "offer":
            d.hear("yes")
            continue
        q = content().questions[d.coach.episode.question_index]
        m = d.mark()
        d.hear("no" if q.red_flag else "yes")
    return d.said(m)


def test_the_summary_comes_in_short_lines() -> None:
    d = Driver()
    said = all_yes_summary(d)
    summary = [s for s in said if s.key.startswith(("summary.", "cause.", "advice."))]
    assert len(summary) > 8  # every cause said yes: a long summary...
    for s in said:
        assert words(s.text) <= SUMMARY_LINE_WORDS, s  # ... in short lines
    keys = [s.key for s in said]  # when to get help, whatever the causes (a known condition: at the next visit)
    assert "advice.next_visit.1" in keys and "advice.see_professional" not in keys
    contributors = [s for s in said if s.key in ("summary.contributors", "summary.more_causes")]
    assert len(contributors) >= 2
    joined = " ".join(s.text for s in contributors)
    for q in content().questions:
        if q.contributor and not q.red_flag:
            assert q.contributor in joined


def test_a_summary_with_causes_still_says_when_to_see_a_professional() -> None:
    d = Driver()
    to_question(d, "dehydration")
    d.hear("yes")
    while d.state == "question":
        d.hear("no")
    m = d.mark()
    d.hear("no")  # no more questions
    keys = d.keys(m)
    assert keys[0] == "summary.contributors" and keys[-2:] == ["advice.see_professional", "closing"]


def test_repeat_replays_the_summary() -> None:
    d = Driver()
    said = all_yes_summary(d)
    assert d.state == "idle"
    summary = [s.text for s in said if s.key != "closing"]
    start = next(i for i, s in enumerate(said) if s.key == "summary.contributors")
    again = [s.text for s in d.hear("repeat") if isinstance(s, Say)]
    assert again == summary[start:]


# ------------------------------------------------------------------ item 9: a shorter interview


def test_the_first_few_questions_then_an_offer_of_more() -> None:
    d = Driver()
    to_offer(d)
    d.hear("yes")
    asked = []
    while d.state == "question":
        asked.append(content().questions[d.coach.episode.question_index].id)
        d.hear("no")
    assert 4 <= len(asked) <= 6
    assert asked[0] == "calf_signs" and {"dehydration", "medication"} <= set(asked)
    assert d.state == "offer" and d.said()[-1].key == "causes.more"
    m = d.mark()
    d.hear("no")  # no more questions: the summary
    assert "summary.none" in d.keys(m) and d.state == "idle"


def test_a_medicine_name_is_a_yes_only_to_the_medicine_question() -> None:
    d = Driver()
    to_question(d, "dehydration")
    m = d.mark()
    d.hear("medication", medication="statin")  # "statins" to "less to drink than usual?"
    assert d.keys(m) == ["causes.not_an_answer"]
    assert content().questions[d.coach.episode.question_index].id == "dehydration"
    d.hear("yes", medication="statin")  # "yes, statins": still not an answer here
    assert content().questions[d.coach.episode.question_index].id == "dehydration"
    assert not d.records("answer")[1:]
    while content().questions[d.coach.episode.question_index].id != "medication":
        d.hear("no")
    d.hear("medication", medication="statin")
    answer = next(r for r in d.records("answer") if r.data["cause"] == "medication")
    assert answer.data == {"cause": "medication", "answer": "yes", "slots": {"medication": "statin"}}
    assert content().questions[d.coach.episode.question_index].id == "new_medication"


def test_stable_answers_are_sent_to_be_remembered_and_others_are_not() -> None:
    d = Driver()
    to_question(d, "medication")
    d.hear("no")
    d.hear("yes")  # more questions
    while d.state == "question":
        d.hear("no")
    remembered = {r.data["cause"]: r.data["answer"] for r in d.records("remember")}
    stable = {q.id for q in content().questions if q.remember_days}
    assert set(remembered) == stable and set(remembered.values()) == {"no"}
    assert {"medication", "pregnancy", "aging"} <= stable


# ------------------------------------------------------------------ the data behind it, checked at start-up


@pytest.mark.parametrize(("name", "old", "new", "words_in_message"), [
    ("answers.yaml", "  calf_stretch:\n", "  calf_strech:\n", "no routine named 'calf_strech'"),
    ("answers.yaml", "\ndeclined:\n", "\ndeclind:\n", "unknown key 'declind'"),
    ("advice.yaml", "  soon: [numbness, new_medication]", "  soon: [numbness]", "say how urgent new_medication"),
    ("advice.yaml", "  now: [worse,", "  now: [worse, numbness,", "'numbness' is in two grades"),
    ("advice.yaml", "  next_visit:\n", "  next_visits:\n", "unknown key 'next_visits'"),
    ("causes.yaml", "    red_flag: numbness\n", "    red_flag: numbness\n    remember_days: 30\n",
     "asked every episode"),
    ("causes.yaml", "  - id: nerve\n", "  - id: nerve\n    more: true\n", "must all come before"),
    ("causes.yaml", "    remember_days: 90\n", "    remember_days: forever\n", "remember_days must be a whole"),
])
def test_a_mistake_in_the_after_relief_data_names_file_and_line(tmp_path, name, old, new, words_in_message) -> None:
    import shutil

    from assistant.conversation.content import load_content
    from assistant.conversation.datafile import DataFileError
    from assistant.paths import prompts_dir

    target = tmp_path / "prompts"
    shutil.copytree(prompts_dir(), target)
    path = target / name
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(DataFileError) as info:
        load_content(target)
    assert str(info.value).startswith(f"{path}:") and info.value.line, str(info.value)
    assert words_in_message in str(info.value)
