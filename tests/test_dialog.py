"""The conversation, driven by events on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dialog_driver import Driver, MemoryDiary, content, said_keys

from assistant.conversation.dialog import (
    BARGE_IN_INTENTS,
    CONTEXTS,
    GLOBAL_INTENTS,
    IDLE_AFTER_ANSWER,
    PUBLIC_INTENTS,
    RELIEF_LIMIT_S,
    State,
)
from assistant.conversation.events import (
    DeviceBack,
    DeviceLost,
    Listen,
    Record,
    Say,
    Shutdown,
    SpeechTiming,
    StateChanged,
    StopSpeaking,
)


def start_cramp(d: Driver, **slots: str) -> None:
    d.hear("cramp_start", **slots)
    assert d.state == "hold"


def to_checkin(d: Driver) -> None:
    d.finish_hold()
    assert d.state == "checkin"


def to_offer(d: Driver) -> None:
    start_cramp(d)
    to_checkin(d)
    d.hear("better")
    assert d.state == "offer"


def to_question(d: Driver) -> None:
    to_offer(d)
    d.hear("yes")
    assert d.state == "question"


def test_relief_comes_first_no_question_before_the_first_instruction() -> None:
    d = Driver()
    m = d.mark()
    d.hear("cramp_start", side="left", location="toes")
    keys = d.keys(m)
    assert keys[0] == "relief.start" and keys[1] == "routine.toe_spread.instruction"
    assert "your left foot" in d.said(m)[1].text
    assert not any(k.startswith("causes") for k in keys)


def test_whole_conversation_two_routines_then_all_questions_then_summary() -> None:
    diary = MemoryDiary()
    d = Driver(diary=diary)
    start_cramp(d, location="calf")
    assert d.records("routine")[0].data == {"name": "calf_stretch"}
    to_checkin(d)
    d.hear("still_cramping")
    assert d.state == "hold" and d.records("routine")[1].data == {"name": "toe_pull"}
    to_checkin(d)
    m = d.mark()
    d.hear("better")
    assert d.keys(m) == ["relief.eased", "relief.aftercare", "causes.offer"]
    d.hear("yes")
    answers = {
        "calf_signs": ("no", {}), "dehydration": ("yes", {}), "overuse": ("no", {}),
        "footwear": ("yes", {}), "minerals": ("unsure", {}), "muscle_imbalance": ("skip", {}),
        "nerve": ("no", {}), "warm_up": ("yes", {}), "cold": ("no", {}),
        "medication": ("yes", {"medication": "diuretic"}), "new_medication": ("no", {}),
        "pregnancy": ("no", {}), "neurological": ("unsure", {}), "aging": ("skip", {}),
    }
    asked = []
    offers = []
    while d.state in ("question", "offer"):
        if d.state == "offer":  # after the first few: "want a few more questions?" -- yes
            offers.append(d.said()[-1].key)
            d.hear("yes")
            continue
        q = content().questions[d.coach.episode.question_index]
        asked.append(q.id)
        intent, slots = answers[q.id]
        m = d.mark()
        d.hear(intent, **slots)
    assert asked == [q.id for q in content().questions]  # every cause, in order, one at a time
    assert offers == ["causes.more"]
    summary = d.said(m)
    keys = [s.key for s in summary]
    contributors = " ".join(s.text for s in summary if s.key in ("summary.contributors", "summary.more_causes"))
    for word in ("not drinking enough", "your shoes", "exercise without a warm-up", "a medicine you take"):
        assert word in contributors
    assert "getting older" not in contributors and "pregnancy" not in contributors
    tips = [k for k in keys if k.endswith(".tip")]
    assert tips == ["cause.dehydration.tip", "cause.footwear.tip", "cause.medication.tip", "cause.warm_up.tip"]
    medication_tip = next(s.text for s in summary if s.key == "cause.medication.tip")
    assert "don't stop" in medication_tip
    assert "red_flag" not in keys
    assert keys[-1] == "closing" and d.state == "idle" and d.ended()
    recorded = {r.data["cause"]: r.data["answer"] for r in d.records("answer")}
    assert recorded["minerals"] == "unsure" and recorded["muscle_imbalance"] == "skip"
    assert next(r for r in d.records("answer") if r.data["cause"] == "medication").data["slots"] == {
        "medication": "diuretic"}
    assert d.records("episode_end")[0].data["duration_s"] > 60


def test_no_obvious_cause_gives_see_a_professional() -> None:
    d = Driver()
    to_question(d)
    while d.state in ("question", "offer"):  # "no" to every question, and to "a few more?"
        m = d.mark()
        d.hear("no")
    assert "summary.none" in d.keys(m) and "advice.see_professional" in d.keys(m)


def test_new_medication_question_only_after_a_yes_to_medication() -> None:
    d = Driver()
    to_question(d)
    asked = []
    while d.state == "question":
        asked.append(content().questions[d.coach.episode.question_index].id)
        d.hear("no")
    assert "new_medication" not in asked


@pytest.mark.parametrize(("question", "reason"), [("calf_signs", "calf_signs"), ("nerve", "numbness"),
                                                  ("new_medication", "new_medication")])
def test_red_flag_answer_leads_to_seek_care_advice(question: str, reason: str) -> None:
    d = Driver()
    to_question(d)
    while content().questions[d.coach.episode.question_index].id != question:
        q = content().questions[d.coach.episode.question_index]
        d.hear("yes" if q.id == "medication" else "no")
    m = d.mark()
    d.hear("yes")
    said = d.said(m)
    assert said[0].key == "red_flag"
    assert content().red_flag_reasons[reason].options[0] in said[0].text
    grade = content().grades[reason]  # then what to do, in short lines
    assert [s.key for s in said[1:]][:len(content().advice[grade])] == [
        f"advice.{grade}.{i + 1}" for i in range(len(content().advice[grade]))]
    assert "medical" in " ".join(s.text for s in said)
    assert d.state == "offer" and said[-1].key == "causes.carry_on"  # they may rather stop here
    d.hear("yes")
    while d.state in ("question", "offer"):
        m = d.mark()
        d.hear("skip" if d.state == "question" else "no")
    # ... and it is repeated as the last advice before the goodbye.
    keys = d.keys(m)
    assert keys[-1] == "closing"
    last = len(keys) - 1 - keys[::-1].index("red_flag")
    assert all(k.startswith(f"advice.{grade}.") for k in keys[last + 1:-1]) and len(keys) - last > 2


def test_worse_twice_during_relief_gives_red_flag_and_ends() -> None:
    d = Driver()
    start_cramp(d)
    d.hear("worse")  # the first "worse" eases off into something gentler (test_worse_eases_off_...)
    assert d.state == "hold" and "red_flag" not in d.keys()
    m = d.mark()
    d.hear("worse")
    said = d.said(m)
    assert said[0].key == "red_flag" and "getting worse" in said[0].text
    assert d.state == "idle" and d.records("outcome")[-1].data == {"result": "worse"}


def test_cramp_still_going_after_ten_minutes_gives_red_flag() -> None:
    d = Driver()
    start_cramp(d)
    while d.clock.now() < RELIEF_LIMIT_S - 1:
        d.finish_hold()
        if d.state == "checkin":
            d.hear("still_cramping")
        if d.state == "idle":
            break
    # All routines tried before ten minutes: "not easing" red flag. Either way it ends in a red flag.
    assert "red_flag" in d.keys()


def test_ten_minute_limit_fires_from_the_clock() -> None:
    d = Driver()
    start_cramp(d)
    to_checkin(d)
    d.silence()
    d.silence()  # nobody answers; the coach waits in the check-in
    m = d.mark()
    d.tick_until(RELIEF_LIMIT_S + 0.5)
    said = d.said(m)
    assert said and said[0].key == "red_flag" and "ten minutes" in said[0].text
    assert d.records("outcome")[-1].data == {"result": "gave_up"}


def test_all_routines_tried_without_relief_gives_red_flag() -> None:
    d = Driver()
    start_cramp(d)
    for _ in range(len(content().order["default"])):
        to_checkin(d)
        m = d.mark()
        d.hear("still_cramping")
    assert d.keys(m)[:2] == ["relief.exhausted", "red_flag"]


# ---------------------------------------------------------------- silence ladder


def test_silence_ladder_in_checkin_keeps_guiding() -> None:
    d = Driver()
    start_cramp(d)
    to_checkin(d)
    assert d.coach.listening.silence_timeout == pytest.approx(8.0)
    assert said_keys(d.silence()) == ["relief.checkin_short"]
    assert said_keys(d.silence()) == ["relief.checkin_shortest"]
    third = said_keys(d.silence())
    assert third[0] == "relief.keep_guiding" and "routine.calf_stretch.instruction" in third
    assert third[-1] == content().routines["calf_stretch"].all_steps[-1].key  # all its steps, then the hold
    assert d.state == "hold"  # keeps guiding the next stretch, not a dead end


def test_silence_ladder_on_a_question_skips_it() -> None:
    d = Driver()
    to_question(d)
    first = d.coach.episode.question_index
    assert said_keys(d.silence()) == [f"cause.{content().questions[first].id}.short"]
    assert said_keys(d.silence()) == ["causes.answer_options"]
    keys = said_keys(d.silence())
    assert keys[0] == "causes.skipped" and d.coach.episode.question_index == first + 1
    assert d.records("answer")[-1].data["answer"] == "skip"
    # The ladder starts again for the next question rather than looping forever.
    assert said_keys(d.silence()) == [f"cause.{content().questions[first + 1].id}.short"]


def test_silence_ladder_on_the_offer_winds_down() -> None:
    d = Driver()
    to_offer(d)
    assert said_keys(d.silence()) == ["causes.offer_short"]
    assert said_keys(d.silence()) == ["causes.offer_shortest"]
    assert said_keys(d.silence())[-1] == "closing"
    assert d.state == "idle"


def test_not_understood_counts_toward_the_ladder() -> None:
    d = Driver()
    to_question(d)
    assert said_keys(d.hear(None, "blah"))[0] == "commands.not_understood"
    d.hear(None, "blah")
    keys = said_keys(d.hear(None, "blah"))
    assert "causes.skipped" in keys


def test_silence_is_ignored_while_holding_and_idle() -> None:
    d = Driver()
    assert d.silence() == []
    start_cramp(d)
    assert d.silence() == []


# ---------------------------------------------------------------- timing


def test_pause_resume_and_time_left_arithmetic() -> None:
    d = Driver()
    start_cramp(d)
    hold = d.coach.hold
    d.tick_until(hold.started_at + 7.0)
    assert said_keys(d.hear("time_left")) == ["commands.time_left"]
    assert "23 seconds" in d.said()[-1].text
    paused = d.hear("pause")
    assert isinstance(paused[0], StopSpeaking)
    assert "23 seconds" in d.said()[-1].text and d.state == "paused"
    d.clock.advance(100.0)
    assert d.coach.next_deadline() is None  # nothing fires while paused
    d.hear("time_left")
    assert "23 seconds" in d.said()[-1].text  # frozen
    d.hear("resume")
    assert d.state == "hold"
    d.clock.advance(3.0)
    d.hear("time_left")
    assert "20 seconds" in d.said()[-1].text
    m = d.mark()
    d.finish_hold()
    cue_times = [t for t, a in d.log[m:] if isinstance(a, Say) and a.kind == "cue"]
    # The release comes exactly 30 s of un-paused hold after the start: start + 30 + 100 paused.
    assert cue_times[-1] == pytest.approx(hold.started_at + 30 + 100)


def test_cues_keep_their_schedule_when_a_spoken_line_runs_long() -> None:
    d = Driver()
    start_cramp(d)
    hold = d.coach.hold
    s = hold.started_at
    # The runner is busy with a long line until 12 s into the hold: the 20-left cue (due at 10 s)
    # is 2 s late and is dropped rather than said late.
    d.clock.set(s + 12.0)
    late = said_keys(d.tick_until(s + 12.0))
    assert "countdown.20" not in late
    d.tick_until(s + 30.0)
    cues = [(t - s, a.key) for t, a in d.log if isinstance(a, Say) and a.kind == "cue"]
    assert cues == [(20.0, "countdown.10"), (25.0, "countdown.5"), (26.0, "countdown.4"), (27.0, "countdown.3"),
                    (28.0, "countdown.2"), (29.0, "countdown.1"), (30.0, "countdown.0")]


def test_overdue_cues_merge_into_the_latest_and_the_release_is_never_dropped() -> None:
    d = Driver()
    start_cramp(d)
    s = d.coach.hold.started_at
    d.tick_until(s + 20.0)
    d.clock.set(s + 27.4)  # five, four and three all came due during a long line
    keys = said_keys(d.tick_until(s + 27.4))
    assert keys == ["countdown.3"]
    d.clock.set(s + 45.0)  # way past the end: the release still comes, once
    keys = said_keys(d.tick_until(s + 45.0))
    assert keys[0] == "countdown.0" and keys.count("countdown.0") == 1
    assert d.state == "checkin"


def test_cue_deadlines_let_runners_drop_stale_cues() -> None:
    d = Driver()
    start_cramp(d)
    s = d.coach.hold.started_at
    cues = [a for a in d.tick_until(s + 30.0) if isinstance(a, Say) and a.kind == "cue"]
    assert all(c.deadline is not None for c in cues[:-1]) and cues[-1].deadline is None


def test_hold_starts_after_the_instruction_has_been_said() -> None:
    d = Driver()
    m = d.mark()
    start_cramp(d)
    words = sum(len(s.text.split()) for s in d.said(m))
    assert d.coach.hold.started_at == pytest.approx(words / (165 / 60) + 1.5)


# ---------------------------------------------------------------- global commands in every state

STATES = ("idle", "hold", "checkin", "offer", "question", "paused", "confirm")


def reach(state: str) -> Driver:
    d = Driver()
    if state == "hold":
        start_cramp(d)
    elif state == "checkin":
        start_cramp(d)
        to_checkin(d)
    elif state == "offer":
        to_offer(d)
    elif state == "question":
        to_question(d)
        d.hear("no")  # now on the second question, so "back" has somewhere to go
    elif state == "paused":
        start_cramp(d)
        d.hear("pause")
    elif state == "confirm":
        d.hear("pain")
    assert d.state == state
    return d


# (state, command) -> (state afterwards, a key that must be said or None for silence)
EXPECTED = {
    ("idle", "stop"): ("idle", None), ("idle", "pause"): ("idle", None),
    ("idle", "resume"): ("idle", "help.idle"), ("idle", "repeat"): ("idle", "help.idle"),
    ("idle", "next"): ("idle", "help.idle"), ("idle", "back"): ("idle", "help.idle"),
    ("idle", "help"): ("idle", "help.idle"), ("idle", "time_left"): ("idle", "commands.no_timer"),
    ("idle", "start_over"): ("hold", "commands.start_over"),
    ("hold", "stop"): ("idle", "commands.stopped"), ("hold", "pause"): ("paused", "commands.paused_hold"),
    ("hold", "resume"): ("hold", "routine.toe_pull.instruction"),
    ("hold", "repeat"): ("hold", "routine.toe_pull.instruction"),
    ("hold", "next"): ("hold", "routine.calf_stretch.instruction"),
    ("hold", "back"): ("hold", "relief.no_previous"), ("hold", "help"): ("hold", "help.hold"),
    ("hold", "time_left"): ("hold", "commands.time_left"),
    ("hold", "start_over"): ("hold", "routine.toe_pull.instruction"),
    ("checkin", "stop"): ("idle", "commands.stopped"), ("checkin", "pause"): ("paused", "commands.paused"),
    ("checkin", "resume"): ("checkin", "relief.checkin"), ("checkin", "repeat"): ("checkin", "relief.checkin"),
    ("checkin", "next"): ("hold", "routine.calf_stretch.instruction"),
    ("checkin", "back"): ("checkin", "relief.no_previous"), ("checkin", "help"): ("checkin", "help.checkin"),
    ("checkin", "time_left"): ("checkin", "commands.no_timer"),
    ("checkin", "start_over"): ("hold", "routine.toe_pull.instruction"),
    ("offer", "stop"): ("idle", "commands.stopped"), ("offer", "pause"): ("paused", "commands.paused"),
    ("offer", "resume"): ("offer", "causes.offer"), ("offer", "repeat"): ("offer", "causes.offer"),
    ("offer", "next"): ("idle", "closing"), ("offer", "back"): ("offer", "causes.offer"),
    ("offer", "help"): ("offer", "help.question"), ("offer", "time_left"): ("offer", "commands.no_timer"),
    ("offer", "start_over"): ("question", "cause.calf_signs.ask"),
    ("question", "stop"): ("idle", "commands.stopped"), ("question", "pause"): ("paused", "commands.paused"),
    ("question", "resume"): ("question", "cause.dehydration.ask"),
    ("question", "repeat"): ("question", "cause.dehydration.ask"),
    ("question", "next"): ("question", "cause.overuse.ask"),
    ("question", "back"): ("question", "cause.calf_signs.ask"),
    ("question", "help"): ("question", "help.question"),
    ("question", "time_left"): ("question", "commands.no_timer"),
    ("question", "start_over"): ("question", "cause.calf_signs.ask"),
    ("paused", "stop"): ("idle", "commands.stopped"), ("paused", "pause"): ("paused", None),
    ("paused", "resume"): ("hold", "commands.resumed"),
    ("paused", "repeat"): ("paused", "routine.toe_pull.instruction"),
    # next and back carry on from the pause (issue 13: they used to be ignored while paused)
    ("paused", "next"): ("hold", "routine.calf_stretch.instruction"),
    ("paused", "back"): ("hold", "relief.no_previous"),
    ("paused", "help"): ("paused", "help.paused"), ("paused", "time_left"): ("paused", "commands.time_left"),
    ("paused", "start_over"): ("hold", "routine.toe_pull.instruction"),
    ("confirm", "stop"): ("idle", "commands.stopped"), ("confirm", "pause"): ("paused", "commands.paused"),
    ("confirm", "resume"): ("confirm", "relief.is_it_cramp"), ("confirm", "repeat"): ("confirm", "relief.is_it_cramp"),
    ("confirm", "next"): ("confirm", "help.confirm"), ("confirm", "back"): ("confirm", "help.confirm"),
    ("confirm", "help"): ("confirm", "help.confirm"), ("confirm", "time_left"): ("confirm", "commands.no_timer"),
    ("confirm", "start_over"): ("hold", "commands.start_over"),
}


def test_expectations_cover_every_global_command_in_every_state() -> None:
    assert set(EXPECTED) == {(s, c) for s in STATES for c in GLOBAL_INTENTS}


@pytest.mark.parametrize(("state", "command"), sorted(EXPECTED))
def test_global_command(state: str, command: str) -> None:
    d = reach(state)
    m = d.mark()
    actions = d.hear(command)
    after, key = EXPECTED[(state, command)]
    assert d.state == after
    if key is None:
        assert said_keys(actions) == []
    else:
        assert key in d.keys(m), d.keys(m)
    if command in ("stop", "pause"):
        assert isinstance(actions[0], StopSpeaking)  # barge-in cuts speech first
    listens = [a for a in actions if isinstance(a, Listen)]
    fresh_answer = after == "idle" and d.coach._prompt  # "repeat" is heard just after an answer
    assert d.coach.listening.intents == CONTEXTS[after] + (IDLE_AFTER_ANSWER if fresh_answer else ())
    if after != state:
        assert listens and listens[-1].context == after


def test_stop_mid_relief_records_outcome_and_episode_end() -> None:
    d = Driver()
    start_cramp(d)
    d.hear("stop")
    assert d.records("outcome")[-1].data == {"result": "stopped"}
    assert d.records("episode_end") and d.coach.hold is None and d.coach.next_deadline() is None


def test_shutdown_mid_hold_says_goodbye_and_closes_the_episode_as_interrupted() -> None:
    d = Driver()
    start_cramp(d)
    d.tick_until(12.0)
    out = d.coach.handle(Shutdown("SIGTERM"))
    assert isinstance(out[0], StopSpeaking) and said_keys(out) == ["session.shutdown"]
    records = [a for a in out if isinstance(a, Record)]
    assert [(r.kind, r.data.get("result") or r.data.get("interrupted_by")) for r in records] == [
        ("outcome", "interrupted"), ("episode_end", "SIGTERM")]
    assert d.coach.state == "idle" and d.coach.next_deadline() is None


def test_shutdown_during_questions_keeps_the_relief_outcome() -> None:
    d = Driver()
    to_question(d)
    out = d.coach.handle(Shutdown("SIGINT"))
    assert [a.kind for a in out if isinstance(a, Record)] == ["episode_end"]
    assert d.records("outcome")[-1].data == {"result": "better"}


def test_shutdown_in_idle_is_silent() -> None:
    d = Driver()
    assert not [a for a in d.coach.handle(Shutdown("SIGTERM")) if isinstance(a, Say)]


def test_a_new_cramp_during_questions_restarts_relief() -> None:
    d = Driver()
    to_question(d)
    d.hear("cramp_start", location="toes")
    assert d.state == "hold" and d.records("routine")[-1].data == {"name": "toe_spread"}
    assert len(d.records("episode_start")) == 2 and len(d.records("episode_end")) == 1


# ---------------------------------------------------------------- contexts and diary


def test_each_state_exposes_its_listening_context() -> None:
    for state in STATES:
        d = reach(state)
        assert d.coach.listening.context == state
        assert d.coach.listening.intents == CONTEXTS[state]
    # Idle hears kitchen talk all day: no bare answer words there (they would be false triggers).
    assert not {"yes", "no", "unsure", "skip", "better", "worse", "still_cramping"} & set(CONTEXTS["idle"])
    for state in STATES[1:]:  # the README's promise: the global commands work in every state
        assert set(GLOBAL_INTENTS) <= set(CONTEXTS[state]), state
    # ... and in idle those that mean something there (repeat: test_repeat_is_heard_in_idle_...)
    assert {"stop", "pause", "start_over", "help"} <= set(CONTEXTS["idle"])


def test_every_context_intent_exists_in_the_intents_file() -> None:
    known = set(content().intents.names)
    for state, names in CONTEXTS.items():
        assert not set(names) - known, (state, set(names) - known)
    assert not set(BARGE_IN_INTENTS) - known


def test_public_intents_are_derived_from_the_contexts_and_keep_the_agreed_names() -> None:
    assert set(PUBLIC_INTENTS) == {n for names in CONTEXTS.values() for n in names} | set(BARGE_IN_INTENTS)
    agreed = ("cramp_start yes no unsure skip stop pause resume repeat next back help time_left better worse "
              "start_over diary_summary still_cramping").split()
    assert set(agreed) <= set(PUBLIC_INTENTS)


def test_states_keep_their_wire_names() -> None:
    assert [s.value for s in State] == ["idle", "hold", "checkin", "offer", "question", "paused", "confirm"]
    assert set(CONTEXTS) == set(State)
    d = reach("offer")
    changed = [a for _, a in d.log if isinstance(a, StateChanged)]
    assert [type(c.state) for c in changed] == [str] * len(changed)  # plain strings on the wire
    assert [c.state for c in changed][-3:] == ["hold", "checkin", "offer"]
    assert type(d.coach.listening.context) is str


def test_help_in_idle_starts_relief_because_cramp_start_wins() -> None:
    match = content().intents.match("help", only=CONTEXTS["idle"])
    assert match is not None and match.intent == "cramp_start"
    match = content().intents.match("help", only=CONTEXTS["question"])
    assert match is not None and match.intent == "help"


def test_diary_summary_by_voice_and_pattern_advice() -> None:
    now = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    diary = MemoryDiary([now - timedelta(days=d) for d in (0.5, 2, 3, 20)])
    d = Driver(diary=diary, now=lambda: now)
    d.hear("diary_summary", period="week")
    assert d.said()[-1].text.startswith("3 cramps")
    d.hear("diary_summary", period="month")
    assert d.said()[-1].text.startswith("4 cramps")
    d.hear("diary_summary", period="last")
    assert d.said()[-1].key == "diary.last_today"
    m = d.mark()
    to_offer(d)
    d.hear("no")
    assert "advice.pattern" in d.keys(m)
    assert "3 cramps" in next(s.text for s in d.said(m) if s.key == "advice.pattern")


def test_disclaimer_said_once_during_the_first_hold_of_a_first_use() -> None:
    d = Driver(diary=MemoryDiary())
    start_cramp(d)
    keys = said_keys(d.finish_hold())
    assert "relief.disclaimer" in keys
    d2 = Driver(diary=MemoryDiary([datetime.now(UTC)]))
    start_cramp(d2)
    assert "relief.disclaimer" not in said_keys(d2.finish_hold())


def test_hold_starts_when_the_runner_says_the_instruction_really_ended() -> None:
    d = Driver()
    start_cramp(d)
    estimated = d.coach.hold.started_at
    instruction = d.said()[-1]
    # The acknowledgement took a while; the instruction started at 2.0 s and ends at 14.0 s.
    d.clock.set(2.0)
    d._apply(d.coach.handle(SpeechTiming("relief.start", 2.0)))
    assert d.coach.hold.started_at == estimated  # other lines do not move it
    d._apply(d.coach.handle(SpeechTiming(instruction.key, 14.0)))
    assert d.coach.hold.started_at == pytest.approx(14.0 + 1.5)
    d.finish_hold()
    release = [t for t, a in d.log if isinstance(a, Say) and a.key == "countdown.0"]
    assert release == [pytest.approx(15.5 + 30)]


def test_speech_timing_never_moves_a_hold_that_has_begun() -> None:
    d = Driver()
    start_cramp(d)
    s = d.coach.hold.started_at
    key = d.said()[-1].key
    d.tick_until(s + 10.0)  # the 20-seconds-left cue has fired
    d._apply(d.coach.handle(SpeechTiming(key, s + 20.0)))
    assert d.coach.hold.started_at == s


def test_a_long_cramp_adds_see_a_professional_once() -> None:
    d = Driver()
    start_cramp(d)
    for _ in range(4):  # four routines before it eases: well over five minutes
        to_checkin(d)
        d.hear("still_cramping")
    d.finish_hold()
    d.clock.advance(90.0)  # a while before they answer the last check-in
    d.hear("better")
    assert d.coach.episode.relief_seconds >= 300
    m = d.mark()
    d.hear("no")  # no questions
    keys = d.keys(m)
    assert "advice.long_cramp" in keys and keys[-1] == "closing"
    assert "minutes" in next(s.text for s in d.said(m) if s.key == "advice.long_cramp")


def test_a_quick_cramp_gets_no_long_cramp_advice() -> None:
    d = Driver()
    to_offer(d)
    m = d.mark()
    d.hear("no")
    assert "advice.long_cramp" not in d.keys(m)


# ---------------------------------------------------------------- devices lost and back


def test_microphone_lost_mid_hold_is_said_and_the_countdown_carries_on() -> None:
    d = Driver()
    start_cramp(d)
    hold = d.coach.hold
    due = {e.payload.say.key: hold.started_at + e.offset for e in hold.entries if hasattr(e.payload, "left")}
    d.tick_until(hold.started_at + 2.0)
    m = d.mark()
    d._apply(d.coach.handle(DeviceLost("microphone")))
    d._apply(d.coach.handle(DeviceLost("microphone")))  # repeated report: said once
    assert d.keys(m) == ["device.mic_lost"] and d.state == "hold"
    m = d.mark()
    d.finish_hold()
    cues = [(t, a.key) for t, a in d.log[m:] if isinstance(a, Say) and a.kind == "cue"]
    assert [k for _, k in cues] == list(due) and all(t == due[k] for t, k in cues)
    assert d.state == "checkin"
    m = d.mark()
    d._apply(d.coach.handle(DeviceBack("microphone")))
    assert d.keys(m) == ["device.mic_back", "relief.checkin"]  # asked again: the answer can be heard now


def test_without_a_microphone_silence_goes_straight_to_the_safe_default() -> None:
    d = Driver()
    start_cramp(d)
    to_checkin(d)
    d._apply(d.coach.handle(DeviceLost("microphone")))
    m = d.mark()
    d.silence()  # no "Better, or still cramping?" it cannot hear: keep guiding instead
    assert d.keys(m)[0] == "relief.keep_guiding" and d.state == "hold"


def test_microphone_lost_in_idle_or_paused_says_it_cannot_hear() -> None:
    d = Driver()
    m = d.mark()
    d._apply(d.coach.handle(DeviceLost("microphone")))
    assert d.keys(m) == ["device.mic_lost_idle"]
    d._apply(d.coach.handle(DeviceBack("microphone")))
    assert d.keys(m)[-1] == "device.mic_back" and d.state == "idle"


def test_speaker_lost_says_nothing_and_back_apologises_and_asks_again() -> None:
    d = Driver()
    to_question(d)
    m = d.mark()
    d._apply(d.coach.handle(DeviceLost("speaker")))
    assert d.keys(m) == []  # it cannot speak: the runner prints and logs
    d._apply(d.coach.handle(DeviceBack("speaker")))
    keys = d.keys(m)
    assert keys[0] == "device.speaker_back" and keys[1].startswith("cause") and d.state == "question"
    idle = Driver()
    m = idle.mark()
    idle._apply(idle.coach.handle(DeviceLost("speaker")))
    idle._apply(idle.coach.handle(DeviceBack("speaker")))
    assert idle.keys(m) == []  # nothing was missed in idle


# ---------------------------------------------------------------- relief as first aid (issue 13)


def relief_keys(d: Driver, since: int = 0) -> list[str]:
    return [k for k in d.keys(since) if k.startswith(("relief.", "routine.", "countdown."))]


def test_a_bare_pain_word_gets_is_it_a_cramp_and_yes_starts_relief_at_once() -> None:
    d = Driver()
    m = d.mark()
    d.hear("pain", "ow ow ow")
    assert d.keys(m) == ["relief.is_it_cramp"] and d.state == "confirm"
    assert not d.records("episode_start")  # nothing started yet: it may not be a cramp
    assert d.coach.listening.silence_timeout == pytest.approx(8.0)
    m = d.mark()
    d.hear("yes")
    assert d.keys(m)[:2] == ["relief.start", "routine.toe_pull.instruction"] and d.state == "hold"
    assert len(d.records("episode_start")) == 1


def test_pain_with_a_place_keeps_it_for_the_relief() -> None:
    d = Driver()
    d.hear("pain", "ouch my toes", location="toes")
    d.hear("pain", "ow")  # another "ow" is a yes
    assert d.state == "hold" and d.records("routine")[-1].data == {"name": "toe_spread"}
    assert d.records("episode_start")[-1].data == {"side": None, "location": "toes"}


@pytest.mark.parametrize("answer", ["no", "better"])
def test_not_a_cramp_goes_back_to_idle_quietly(answer: str) -> None:
    d = Driver()
    d.hear("pain")
    m = d.mark()
    d.hear(answer)
    assert d.keys(m) == ["relief.not_a_cramp"] and d.state == "idle"
    assert not d.records() and d.coach.next_deadline() is None


def test_silence_after_is_it_a_cramp_never_starts_a_routine_nor_loops() -> None:
    d = Driver()
    d.hear("pain")
    assert said_keys(d.silence()) == ["relief.is_it_cramp_short"]
    assert said_keys(d.silence()) == ["relief.is_it_cramp_shortest"]
    assert said_keys(d.silence()) == ["relief.no_answer_idle"]
    assert d.state == "idle" and not d.records()
    assert d.silence() == []


def test_a_clear_cramp_report_skips_the_question() -> None:
    for text in ("it's cramping again", "my foot's cramping", "another cramp"):
        match = content().intents.match(text, CONTEXTS["idle"])
        assert match is not None and match.intent == "cramp_start", text
    for text in ("ow ow ow", "ouch", "my foot"):
        match = content().intents.match(text, CONTEXTS["idle"])
        assert match is not None and match.intent == "pain", text
    d = Driver()
    m = d.mark()
    d.hear("cramp_start", "it's cramping again")
    assert "relief.is_it_cramp" not in d.keys(m) and d.state == "hold"


def test_every_global_command_is_heard_in_idle_and_paused_hears_better_worse_next_back() -> None:
    for name in ("stop", "start_over", "pause", "help"):
        assert name in CONTEXTS["idle"]
    for name in ("better", "worse", "next", "back"):
        assert name in CONTEXTS["paused"]
    assert "worse" in BARGE_IN_INTENTS  # heard over the coach's voice too
    for state in ("hold", "checkin", "offer", "question", "paused", "confirm"):
        assert "worse" in CONTEXTS[state], state


def test_better_while_paused_ends_relief() -> None:
    d = reach("paused")
    m = d.mark()
    d.hear("better")
    assert d.keys(m)[0] == "relief.eased" and d.records("outcome")[-1].data == {"result": "better"}


def test_worse_eases_off_into_a_gentler_routine_without_urgent_care() -> None:
    d = Driver()
    start_cramp(d)  # the toe pull
    d.tick_until(d.coach.hold.started_at + 12.0)
    m = d.mark()
    out = d.hear("worse", "it's getting worse")
    assert isinstance(out[0], StopSpeaking)  # it cuts the countdown or instruction at once
    keys = d.keys(m)
    assert keys[:2] == ["relief.ease_off", "relief.gentler"], keys
    assert "red_flag" not in keys and not any(k.startswith("advice") for k in keys)
    gentler = content().routines["toe_pull"].gentler
    assert gentler == "arch_massage" and d.records("routine")[-1].data == {"name": gentler}
    assert "massage" in d.said(m)[1].text and d.state == "hold" and not d.records("outcome")
    # Still not easing afterwards: the usual order carries on (the gentler one is not repeated).
    to_checkin(d)
    d.hear("still_cramping")
    assert d.records("routine")[-1].data == {"name": "calf_stretch"}


def test_severe_pain_during_relief_gets_the_seek_care_advice_at_once() -> None:
    match = content().intents.match("it's unbearable", CONTEXTS["hold"])
    assert match is not None and match.intent == "worse" and match.slots == {"severity": "severe"}
    d = Driver()
    start_cramp(d)
    m = d.mark()
    d.hear("worse", "it's unbearable", severity="severe")
    assert d.keys(m)[0] == "red_flag" and d.records("outcome")[-1].data == {"result": "worse"}


def test_worse_while_paused_eases_off_too() -> None:
    d = reach("paused")
    m = d.mark()
    d.hear("worse")
    assert d.keys(m)[:2] == ["relief.ease_off", "relief.gentler"] and d.state == "hold"
    assert d.coach.hold is not None and not d.coach.hold.paused


def test_worse_after_relief_starts_relief_again() -> None:
    d = Driver()
    to_question(d)
    d.hear("worse", "it's getting worse again")
    assert d.state == "hold" and len(d.records("episode_start")) == 2
    assert "red_flag" not in d.keys()


def test_worse_in_idle_over_the_closing_line_starts_relief() -> None:
    d = Driver()
    out = d.hear("worse", "it's worse")  # heard through the barge-in grammar while the coach spoke
    assert isinstance(out[0], StopSpeaking) and d.state == "hold"


def test_relief_that_fails_for_ten_minutes_still_escalates() -> None:
    d = Driver()
    start_cramp(d)
    d.hear("worse")  # once: eased off, no escalation yet
    d.finish_hold()
    d.hear("still_cramping")
    m = d.mark()
    d.tick_until(RELIEF_LIMIT_S + 0.5)
    red = [s for s in d.said(m) if s.key == "red_flag"]
    assert red and "ten minutes" in red[0].text and d.records("outcome")[-1].data == {"result": "gave_up"}


def test_hold_longer_during_a_hold_adds_time_and_counts_down_again() -> None:
    d = Driver()
    start_cramp(d)
    s = d.coach.hold.started_at
    d.tick_until(s + 26.5)  # "five, four" said
    m = d.mark()
    d.hear("hold_longer", "can I hold it longer")
    assert d.keys(m) == ["relief.hold_longer"] and d.state == "hold"
    assert d.coach.time_left() == pytest.approx(3.5 + 15.0)
    d.finish_hold()
    cues = [(t, a.key) for t, a in d.log[m:] if isinstance(a, Say) and a.kind == "cue"]
    assert cues[-1] == (pytest.approx(s + 26.5 + 18.5), "countdown.0")  # one release, at the new end
    assert [k for _, k in cues].count("countdown.0") == 1 and d.state == "checkin"


def test_hold_longer_at_the_check_in_repeats_the_hold() -> None:
    d = Driver()
    start_cramp(d)
    to_checkin(d)
    m = d.mark()
    d.hear("hold_longer", "a bit longer")
    assert d.keys(m) == ["relief.hold_again"] and d.state == "hold"
    assert d.records("routine")[-1].data == {"name": "toe_pull"} and len(d.records("routine")) == 1
    assert d.coach.time_left() == pytest.approx(30.0)
    d.finish_hold()
    assert d.state == "checkin" and d.keys()[-2:] == ["countdown.0", "relief.checkin"]
    assert said_keys(d.hear("repeat")) == ["relief.checkin"]


def test_the_check_in_offers_to_hold_longer() -> None:
    assert all("longer" in o for o in content().lines["relief.checkin"].options)


def test_someone_who_walks_away_gets_a_short_quiet_close_not_urgent_care() -> None:
    d = Driver(diary=MemoryDiary())
    start_cramp(d)
    to_checkin(d)
    for _ in range(3):
        d.silence()
    assert d.state == "hold"  # the first unanswered check-in: keep guiding
    to_checkin(d)
    m = d.mark()
    for _ in range(3):
        d.silence()
    keys = d.keys(m)
    assert keys[-1] == "relief.walked_away" and d.state == "idle" and d.ended()
    assert "red_flag" not in d.keys() and "closing" not in keys
    assert len(d.said(m)[-1].text.split()) <= 12
    assert d.records("outcome")[-1].data == {"result": "no_answer"}  # not gave_up
    assert d.coach.next_deadline() is None


def test_an_answer_in_between_resets_the_walked_away_count() -> None:
    d = Driver()
    start_cramp(d)
    to_checkin(d)
    for _ in range(3):
        d.silence()
    d.hear("time_left")  # someone is there
    to_checkin(d)
    for _ in range(3):
        d.silence()
    assert d.state == "hold" and "relief.walked_away" not in d.keys()


def aftercare_checkin(d: Driver) -> None:
    order = content().order["default"]
    assert content().routines[order[-1]].aftercare
    start_cramp(d)
    for _ in order[:-1]:
        to_checkin(d)
        d.hear("still_cramping")
    assert d.records("routine")[-1].data == {"name": order[-1]}
    to_checkin(d)


def test_silence_after_warmth_or_walking_it_off_closes_quietly() -> None:
    d = Driver()
    aftercare_checkin(d)
    m = d.mark()
    for _ in range(3):
        d.silence()
    keys = d.keys(m)
    assert keys[-1] == "relief.walked_away" and "red_flag" not in d.keys() and "relief.exhausted" not in keys
    assert d.records("outcome")[-1].data == {"result": "no_answer"}


def test_no_ten_minute_red_flag_while_walking_it_off() -> None:
    d = Driver()
    start_cramp(d)
    order = content().order["default"]
    for _ in order[:-1]:
        to_checkin(d)
        d.hear("still_cramping")
    assert d.coach.next_deadline() is not None
    m = d.mark()
    d.tick_until(RELIEF_LIMIT_S + 60)  # long past ten minutes, during the aftercare
    assert "red_flag" not in d.keys(m)


def test_aftercare_ends_without_and_release() -> None:
    d = Driver()
    aftercare_checkin(d)
    cues = [a for _, a in d.log if isinstance(a, Say) and a.kind == "cue"]
    last = cues[-1]
    assert last.key == "routine.warm_walk.countdown.0" and "release" not in last.text.lower()
    for routine in content().routines.values():
        if routine.aftercare:
            assert not any("release" in o.lower() for c in routine.countdown for o in c.say.options)


def test_heat_or_cold_is_offered() -> None:
    text = " ".join(o for p in (content().lines["relief.aftercare"], *content().routines["warm_walk"].all_steps)
                    for o in p.options).lower()
    assert "warm" in text and "cold" in text


def test_the_hold_starts_after_the_last_step() -> None:
    d = Driver()
    m = d.mark()
    start_cramp(d)
    steps = [s for s in d.said(m) if s.key.startswith("routine.toe_pull.")]
    assert [s.key for s in steps] == [p.key for p in content().routines["toe_pull"].all_steps]
    assert len(steps) >= 2
    d._apply(d.coach.handle(SpeechTiming(steps[0].key, 9.0)))  # the first step's end does not start it
    assert d.coach.hold.started_at != pytest.approx(9.0 + 1.5)
    d._apply(d.coach.handle(SpeechTiming(steps[-1].key, 12.0)))
    assert d.coach.hold.started_at == pytest.approx(12.0 + 1.5)
    assert said_keys(d.hear("repeat"))[-1] == steps[-1].key  # repeat says every step again


RELIEF_WORD_LIMIT = 20


def relief_lines() -> list[tuple[str, str]]:
    """Every phrasing said during relief, placeholders filled with their longest values."""
    c = content()
    name = max((o for r in c.routines.values() for o in r.name.options), key=len)
    fill = {"foot": "your right foot", "name": name, "seconds": "25", "side": "right"}
    phrases = [p for k, p in c.lines.items()
               if k.startswith(("relief.", "commands.")) or k in ("help.hold", "help.checkin", "help.confirm",
                                                                 "help.paused", "device.mic_lost")]
    for r in c.routines.values():
        phrases += [*r.all_steps, *(p for p in (r.during, r.after) if p), *(cue.say for cue in r.countdown)]
    phrases += [cue.say for cue in c.countdown]
    return [(p.key, o.format(**fill)) for p in phrases for o in p.options]


def test_every_line_during_relief_is_short() -> None:
    lines = relief_lines()
    assert len(lines) > 60
    long = [(k, len(t.split()), t) for k, t in lines if len(t.split()) > RELIEF_WORD_LIMIT]
    assert not long, long


def test_repeat_is_heard_in_idle_just_after_an_answer() -> None:
    now = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    d = Driver(diary=MemoryDiary([now - timedelta(days=1)]), now=lambda: now)
    assert "repeat" not in d.coach.listening.intents  # nothing to repeat: idle stays small
    d.hear("diary_summary", period="week")
    assert d.coach.listening.context == "idle" and "repeat" in d.coach.listening.intents
    assert isinstance(d.log[-1][1], Listen)
    d.clock.advance(10.0)
    assert said_keys(d.hear("repeat", "say that again")) == ["diary.count_week_one"]
    d.tick_until(d.clock.now() + 25.0)  # the window runs from the answer, not from the repeat
    assert "repeat" not in d.coach.listening.intents and d.coach.listening.intents == CONTEXTS["idle"]
    assert d.coach.next_deadline() is None
    d.hear("diary_summary", period="week")  # a new answer opens it again
    assert "repeat" in d.coach.listening.intents
    d.hear("pain")
    d.hear("no")  # back to idle with nothing new to repeat
    assert d.coach.listening.intents == CONTEXTS["idle"]
