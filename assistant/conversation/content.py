"""Everything the coach says, loaded from ``prompts/`` and checked before it is needed.

A mistake in a prompts file must stop the coach at start-up with ``file:line: what is
wrong`` — never surface mid-cramp as a traceback. So every line the code uses is
declared here (:data:`LINE_FIELDS`, with the placeholders it may use) and checked
against the files, and unknown keys are reported as likely typos.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from assistant.conversation.datafile import DataFileError, LineDict, line_of, load_yaml
from assistant.conversation.intents import IntentSet
from assistant.paths import prompts_dir

PROMPT_FILES = ("intents.yaml", "lines.yaml", "advice.yaml", "routines.yaml", "causes.yaml", "answers.yaml")

# Every line the dialog uses, with the placeholders it may contain.
LINE_FIELDS: dict[str, frozenset[str]] = {
    key: frozenset(fields.split()) for key, fields in {
        "words.foot_unknown": "", "words.foot_side": "side", "words.and": "",
        "relief.start": "", "relief.disclaimer": "", "relief.checkin": "",
        "relief.checkin_short": "", "relief.checkin_shortest": "", "relief.keep_holding": "",
        "relief.next_routine": "name", "relief.eased": "",
        "relief.aftercare": "", "relief.keep_guiding": "", "relief.exhausted": "",
        "relief.previous_routine": "name", "relief.no_previous": "",
        "relief.is_it_cramp": "", "relief.is_it_cramp_short": "", "relief.is_it_cramp_shortest": "",
        "relief.not_a_cramp": "", "relief.no_answer_idle": "", "relief.hold_longer": "", "relief.hold_again": "",
        "relief.ease_off": "", "relief.gentler": "name", "relief.walked_away": "", "help.confirm": "",
        "causes.offer": "", "causes.offer_short": "", "causes.offer_shortest": "", "causes.declined": "",
        "causes.answer_options": "", "causes.skipped": "", "causes.first_question": "",
        "causes.not_an_answer": "", "causes.remembered": "", "causes.forgotten": "", "causes.more": "",
        "causes.more_short": "",
        "causes.carry_on": "", "causes.carry_on_short": "",
        "summary.contributors": "causes", "summary.more_causes": "causes", "summary.none": "",
        "summary.tips_intro": "",
        "closing": "", "session.shutdown": "",
        "device.mic_lost": "", "device.mic_lost_idle": "", "device.mic_back": "", "device.speaker_back": "",
        "advice.see_professional": "", "advice.pattern": "count", "advice.long_cramp": "minutes",
        "commands.stopped": "", "commands.stopped_idle_hint": "", "commands.paused": "",
        "commands.paused_hold": "seconds", "commands.resumed": "", "commands.time_left": "seconds",
        "commands.no_timer": "", "commands.start_over": "", "commands.nothing_to_repeat": "",
        "commands.not_understood": "",
        "help.idle": "", "help.hold": "", "help.checkin": "", "help.question": "", "help.paused": "",
        "diary.count_week_zero": "", "diary.count_week_one": "", "diary.count_week": "count",
        "diary.count_month_zero": "", "diary.count_month_one": "", "diary.count_month": "count",
        "diary.last_none": "", "diary.last_today": "time", "diary.last_yesterday": "time",
        "diary.last_days": "days", "diary.unavailable": "",
        "red_flag": "reason",
    }.items()
}
RED_FLAG_REASONS_USED = ("worse", "too_long", "not_easing")
GRADES = ("now", "soon", "next_visit")
"""advice.yaml grades, most urgent first: seek care now, see a doctor soon, mention it at the next visit."""
RED_FLAG_GRADES = ("now", "soon")
"""The grades a red-flag reason can have (``next_visit`` is for causes.yaml ``see_professional``)."""
ANSWER_KEYS = ("causes", "prevention", "see_doctor", "why", "declined")
"""The sections of answers.yaml (``why`` is by routine id)."""
LOCATIONS = ("default", "toes", "arch", "heel", "foot", "calf")


@dataclass(frozen=True)
class Phrases:
    """One thing the coach can say, in one or more interchangeable phrasings."""

    key: str
    """Where it came from, e.g. ``relief.checkin`` (used in logs and tests)."""
    options: tuple[str, ...]


@dataclass(frozen=True)
class Cue:
    """A countdown cue, spoken when ``left`` seconds of a hold remain."""

    left: int
    say: Phrases


@dataclass(frozen=True)
class Routine:
    """A relief stretch or massage with a timed hold."""

    id: str
    name: Phrases
    instruction: Phrases
    """The first step (key ``routine.<id>.instruction``)."""
    hold_seconds: int
    during: Phrases | None = None
    after: Phrases | None = None
    steps: tuple[Phrases, ...] = ()
    """Further short steps said in turn after the instruction; the hold starts after the last."""
    countdown: tuple[Cue, ...] = ()
    """The cues of this routine's hold (the file's default set unless it has its own or an end cue)."""
    gentler: str | None = None
    """The routine to switch to when the person says it is getting worse during this one."""
    aftercare: bool = False
    """Warmth, cold or walking it off: silence afterwards means they are fine or gone, not "not easing"."""

    @property
    def all_steps(self) -> tuple[Phrases, ...]:
        return (self.instruction, *self.steps)


@dataclass(frozen=True)
class Question:
    """A cause question, with what a yes means."""

    id: str
    ask: Phrases
    short: Phrases
    contributor: str | None = None
    """How the summary names this cause."""
    tip: Phrases | None = None
    red_flag: str | None = None
    """Key of ``red_flag_reasons``: a yes means seek care now."""
    see_professional: bool = False
    ask_if: str | None = None
    """Only ask if this earlier question was answered yes."""
    slot: str | None = None
    more: bool = False
    """Offered after the first few questions ("want a few more?") rather than asked at once."""
    remember_days: int | None = None
    """A yes or no that does not change between episodes: kept on the device this long."""


@dataclass(frozen=True)
class Content:
    """All of ``prompts/``, validated."""

    intents: IntentSet
    lines: Mapping[str, Phrases]
    red_flag_reasons: Mapping[str, Phrases]
    routines: Mapping[str, Routine]
    order: Mapping[str, tuple[str, ...]]
    countdown: tuple[Cue, ...]
    questions: tuple[Question, ...]
    directory: Path
    grades: Mapping[str, str] = field(default_factory=dict)
    """advice.yaml: red-flag reason -> its grade (``now`` or ``soon``)."""
    advice: Mapping[str, tuple[Phrases, ...]] = field(default_factory=dict)
    """advice.yaml: grade -> the short lines said for it, in order."""
    answers: Mapping[str, tuple[Phrases, ...]] = field(default_factory=dict)
    """answers.yaml: causes, prevention, see_doctor, declined -> short lines said in order."""
    why: Mapping[str, tuple[Phrases, ...]] = field(default_factory=dict)
    """answers.yaml ``why``: routine id (or ``default``) -> why that stretch helps."""


class Picker:
    """Chooses a phrasing at random, never the same one twice in a row for a key.

    Each key draws from its own stream (seeded from ``rng`` once), so how often one line is
    said -- a countdown cue merged away under load, say -- does not change the choices for
    the others: a seeded run says the same lines (docs/conversations.md relies on it).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._base = self.rng.getrandbits(64)
        self._streams: dict[str, random.Random] = {}
        self._last: dict[str, str] = {}

    def pick(self, phrases: Phrases, **fields: object) -> str:
        options = phrases.options
        if len(options) > 1:
            options = tuple(o for o in options if o != self._last.get(phrases.key)) or options
        if len(options) == 1:
            choice = options[0]
        else:
            stream = self._streams.get(phrases.key)
            if stream is None:
                stream = self._streams[phrases.key] = random.Random(f"{self._base}:{phrases.key}")
            choice = stream.choice(options)
        self._last[phrases.key] = choice
        return choice.format(**fields) if fields else choice


def load_content(directory: Path | None = None) -> Content:
    """Load and validate every prompts file; raises :class:`DataFileError` on any problem."""
    directory = directory or prompts_dir()
    if not directory.is_dir():
        raise DataFileError(directory, None, "prompts directory not found (set CRAMP_COACH_PROMPTS_DIR)")
    intents = IntentSet.load(directory / "intents.yaml")
    lines_path, advice_path = directory / "lines.yaml", directory / "advice.yaml"
    lines = _flatten(_mapping(load_yaml(lines_path), lines_path), lines_path, "")
    advice = _mapping(load_yaml(advice_path), advice_path)
    reasons_raw = _mapping(advice.get("red_flag_reasons"), advice_path, line_of(advice))
    reasons = {str(k): _phrases(v, f"red_flag_reasons.{k}", advice_path, line_of(reasons_raw, k), frozenset())
               for k, v in reasons_raw.items()}
    if "red_flag" not in advice:
        raise DataFileError(advice_path, line_of(advice), "missing 'red_flag:'")
    lines["red_flag"] = _phrases(advice["red_flag"], "red_flag", advice_path, line_of(advice, "red_flag"),
                                 LINE_FIELDS["red_flag"])
    _check_lines(lines, lines_path)
    routines, order, countdown = _load_routines(directory / "routines.yaml")
    questions = _load_questions(directory / "causes.yaml", reasons, intents)
    for reason in RED_FLAG_REASONS_USED:
        if reason not in reasons:
            raise DataFileError(advice_path, line_of(reasons_raw), f"red_flag_reasons needs {reason!r}")
    grades, advice_lines = _load_grades(advice, advice_path, reasons)
    answers, why = _load_answers(directory / "answers.yaml", routines)
    return Content(intents, lines, reasons, routines, order, countdown, questions, directory,
                   grades=grades, advice=advice_lines, answers=answers, why=why)


# ------------------------------------------------------------------ helpers


def _known_keys(raw: LineDict, path: Path, allowed: tuple[str, ...], what: str) -> None:
    """An unknown key is most likely a typo that would silently drop a setting: say so."""
    for key in raw:
        if key not in allowed:
            raise DataFileError(path, line_of(raw, key),
                                f"{what}: unknown key {key!r} (a typo?); allowed: {', '.join(allowed)}")


ROUTINE_KEYS = ("name", "instruction", "steps", "hold_seconds", "during", "after", "countdown", "end_cue",
                "gentler", "aftercare")
QUESTION_KEYS = ("id", "ask", "short", "contributor", "tip", "red_flag", "see_professional", "ask_if", "slot",
                 "more", "remember_days")


def _mapping(raw: Any, path: Path, line: int | None = 1) -> LineDict:
    if not isinstance(raw, LineDict):
        raise DataFileError(path, getattr(raw, "line", None) or line, "expected a mapping of keys to values")
    return raw


def _phrases(raw: Any, key: str, path: Path, line: int | None, fields: frozenset[str]) -> Phrases:
    """Check one line (a string or a list of strings) and its placeholders."""
    options = [raw] if isinstance(raw, str) else raw
    if not isinstance(options, list) or not options:
        raise DataFileError(path, line, f"{key}: expected text or a list of phrasings")
    for i, option in enumerate(options):
        where = line_of(options, i) if options is raw else line
        if not isinstance(option, str) or not option.strip():
            raise DataFileError(path, where, f"{key}: phrasing must be non-empty text")
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(option) if name is not None}
        except ValueError as exc:
            raise DataFileError(path, where, f"{key}: bad {{placeholder}} in {option!r} ({exc})") from None
        unknown = used - fields
        if unknown:
            allowed = ", ".join(sorted("{" + f + "}" for f in fields)) or "none"
            raise DataFileError(
                path, where, f"{key}: unknown placeholder {{{sorted(unknown)[0]}}}; allowed here: {allowed}"
            )
    return Phrases(key, tuple(options))


def _flatten(raw: LineDict, path: Path, prefix: str) -> dict[str, Phrases]:
    out: dict[str, Phrases] = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if isinstance(value, LineDict):
            out.update(_flatten(value, path, full + "."))
            continue
        if full not in LINE_FIELDS:
            raise DataFileError(path, line_of(raw, key), f"unknown line {full!r} (a typo? the coach never says it)")
        out[full] = _phrases(value, full, path, line_of(raw, key), LINE_FIELDS[full])
    return out


def _check_lines(lines: Mapping[str, Phrases], path: Path) -> None:
    missing = [k for k in LINE_FIELDS if k not in lines]
    if missing:
        raise DataFileError(path, None, f"missing line(s): {', '.join(missing)}")


def _load_routines(path: Path) -> tuple[dict[str, Routine], dict[str, tuple[str, ...]], tuple[Cue, ...]]:
    raw = _mapping(load_yaml(path), path)
    for section in ("order", "countdown", "routines"):
        if section not in raw:
            raise DataFileError(path, raw.line, f"missing '{section}:'")
    routines_raw = _mapping(raw["routines"], path, line_of(raw, "routines"))
    routines: dict[str, Routine] = {}
    raw_cues: dict[str, LineDict] = {}
    foot = frozenset({"foot"})
    for rid, body in routines_raw.items():
        body = _mapping(body, path, line_of(routines_raw, rid))
        _known_keys(body, path, ROUTINE_KEYS, f"routine {rid!r}")
        for need in ("name", "instruction", "hold_seconds"):
            if need not in body:
                raise DataFileError(path, body.line, f"routine {rid!r} needs '{need}:'")
        hold = body["hold_seconds"]
        if not isinstance(hold, int) or isinstance(hold, bool) or not 5 <= hold <= 300:
            raise DataFileError(path, line_of(body, "hold_seconds"),
                                f"routine {rid!r}: hold_seconds must be a whole number from 5 to 300")
        def opt(name: str, rid: str = rid, body: LineDict = body) -> Phrases | None:
            if name not in body:
                return None
            return _phrases(body[name], f"routine.{rid}.{name}", path, line_of(body, name), foot)
        steps_raw = body.get("steps", [])
        if not isinstance(steps_raw, list):
            raise DataFileError(path, line_of(body, "steps"), f"routine {rid!r}: steps must be a list of lines")
        steps = tuple(_phrases(step, f"routine.{rid}.step{i + 2}", path, line_of(steps_raw, i), foot)
                      for i, step in enumerate(steps_raw))
        aftercare = body.get("aftercare", False)
        if not isinstance(aftercare, bool):
            raise DataFileError(path, line_of(body, "aftercare"), f"routine {rid!r}: aftercare must be true or false")
        instruction = opt("instruction")
        assert instruction is not None  # checked above
        raw_cues[str(rid)] = body
        routines[str(rid)] = Routine(
            id=str(rid),
            name=_phrases(body["name"], f"routine.{rid}.name", path, line_of(body, "name"), frozenset()),
            instruction=instruction,
            hold_seconds=hold, during=opt("during"), after=opt("after"), steps=steps, aftercare=aftercare,
        )
    order_raw = _mapping(raw["order"], path, line_of(raw, "order"))
    order: dict[str, tuple[str, ...]] = {}
    for loc, seq in order_raw.items():
        if loc not in LOCATIONS:
            raise DataFileError(path, line_of(order_raw, loc), f"order: unknown location {loc!r}; use {LOCATIONS}")
        if not isinstance(seq, list) or not seq:
            raise DataFileError(path, line_of(order_raw, loc), f"order.{loc}: expected a list of routine names")
        for i, rid in enumerate(seq):
            if not isinstance(rid, str) or rid not in routines:
                raise DataFileError(path, line_of(seq, i), f"order.{loc}: no routine named {rid!r}")
        order[str(loc)] = tuple(seq)
    if "default" not in order:
        raise DataFileError(path, order_raw.line, "order needs a 'default:' list")
    cues = _load_cues(raw["countdown"], path, line_of(raw, "countdown"), "countdown")
    for rid, body in raw_cues.items():
        own = cues
        if "countdown" in body:
            own = _load_cues(body["countdown"], path, line_of(body, "countdown"), f"routine.{rid}.countdown")
        if "end_cue" in body:  # the same cues, with a release that fits (no "and release" after a walk)
            end = _phrases(body["end_cue"], f"routine.{rid}.end_cue", path, line_of(body, "end_cue"), frozenset())
            own = (*own[:-1], Cue(0, end))
        gentler = body.get("gentler")
        if gentler is not None and (not isinstance(gentler, str) or gentler not in routines or gentler == rid):
            raise DataFileError(path, line_of(body, "gentler"),
                                f"routine {rid!r}: gentler must name another routine, not {gentler!r}")
        routines[rid] = replace(routines[rid], countdown=own, gentler=gentler)
    return routines, order, cues


def _load_cues(cues_raw: Any, path: Path, line: int | None, key: str) -> tuple[Cue, ...]:
    """A countdown: cues by seconds left, most first, ending with the release cue at 0."""
    if not isinstance(cues_raw, list) or not cues_raw:
        raise DataFileError(path, line, f"{key}: expected a list of cues")
    cues = []
    for i, cue in enumerate(cues_raw):
        cue = _mapping(cue, path, line_of(cues_raw, i))
        left = cue.get("left")
        if not isinstance(left, int) or isinstance(left, bool) or left < 0 or "say" not in cue:
            raise DataFileError(path, cue.line, f"{key}: a cue needs 'left:' (seconds, 0 or more) and 'say:'")
        cues.append(Cue(left, _phrases(cue["say"], f"{key}.{left}", path, line_of(cue, "say"), frozenset())))
    lefts = [c.left for c in cues]
    if lefts != sorted(lefts, reverse=True) or len(set(lefts)) != len(lefts):
        raise DataFileError(path, line, f"{key}: cues must go from most to least seconds left")
    if lefts[-1] != 0:
        raise DataFileError(path, line, f"{key}: needs a release cue at 'left: 0'")
    return tuple(cues)


def _load_questions(path: Path, reasons: Mapping[str, Phrases], intents: IntentSet) -> tuple[Question, ...]:
    raw = _mapping(load_yaml(path), path)
    items = raw.get("questions")
    if not isinstance(items, list) or not items:
        raise DataFileError(path, line_of(raw, "questions"), "'questions:' must be a list")
    questions: list[Question] = []
    none: frozenset[str] = frozenset()
    for i, item in enumerate(items):
        q = _mapping(item, path, line_of(items, i))
        _known_keys(q, path, QUESTION_KEYS, f"question {q.get('id', i + 1)!r}")
        qid = q.get("id")
        if not isinstance(qid, str) or "ask" not in q or "short" not in q:
            raise DataFileError(path, q.line, "each question needs 'id:', 'ask:' and 'short:'")
        if any(prev.id == qid for prev in questions):
            raise DataFileError(path, line_of(q, "id"), f"question id {qid!r} is used twice")
        red_flag = q.get("red_flag")
        if red_flag is not None and (not isinstance(red_flag, str) or red_flag not in reasons):
            raise DataFileError(path, line_of(q, "red_flag"),
                                f"red_flag {red_flag!r} is not in advice.yaml red_flag_reasons")
        ask_if = q.get("ask_if")
        if ask_if is not None and not any(prev.id == ask_if for prev in questions):
            raise DataFileError(path, line_of(q, "ask_if"), f"ask_if {ask_if!r} must name an earlier question")
        slot = q.get("slot")
        if slot is not None and (not isinstance(slot, str) or slot not in intents.intents.slot_lists):
            raise DataFileError(path, line_of(q, "slot"), f"slot {slot!r} is not a list in intents.yaml")
        if "tip" in q and not isinstance(q.get("contributor"), str):
            raise DataFileError(path, line_of(q, "tip"), f"question {qid!r}: a tip needs a 'contributor:' name")
        more = q.get("more", False)
        if not isinstance(more, bool):
            raise DataFileError(path, line_of(q, "more"), f"question {qid!r}: more must be true or false")
        if not more and any(prev.more for prev in questions):
            raise DataFileError(path, line_of(q, "id"), f"question {qid!r}: the first questions (without "
                                "'more: true') must all come before the ones offered after them")
        remember = q.get("remember_days")
        if remember is not None:
            if not isinstance(remember, int) or isinstance(remember, bool) or not 1 <= remember <= 3650:
                raise DataFileError(path, line_of(q, "remember_days"),
                                    f"question {qid!r}: remember_days must be a whole number of days from 1 to 3650")
            if red_flag is not None or ask_if is not None:  # a warning sign is asked about every time
                raise DataFileError(path, line_of(q, "remember_days"), f"question {qid!r}: a question with "
                                    "red_flag or ask_if is asked every episode; remove remember_days")
        questions.append(Question(
            id=qid,
            ask=_phrases(q["ask"], f"cause.{qid}.ask", path, line_of(q, "ask"), none),
            short=_phrases(q["short"], f"cause.{qid}.short", path, line_of(q, "short"), none),
            contributor=q.get("contributor"),
            tip=_phrases(q["tip"], f"cause.{qid}.tip", path, line_of(q, "tip"), none) if "tip" in q else None,
            red_flag=red_flag, see_professional=bool(q.get("see_professional", False)),
            ask_if=ask_if, slot=slot, more=more, remember_days=remember,
        ))
    if all(q.more for q in questions):
        raise DataFileError(path, line_of(raw, "questions"), "at least the first question must not be 'more: true'")
    return tuple(questions)


def _sequence(raw: Any, key: str, path: Path, line: int | None) -> tuple[Phrases, ...]:
    """A list of lines said one after another; each line is text or a list of phrasings."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise DataFileError(path, line, f"{key}: expected a list of lines")
    return tuple(_phrases(item, f"{key}.{i + 1}", path, line_of(raw, i) or line, frozenset())
                 for i, item in enumerate(raw))


def _load_grades(advice: LineDict, path: Path, reasons: Mapping[str, Phrases]
                 ) -> tuple[dict[str, str], dict[str, tuple[Phrases, ...]]]:
    """advice.yaml ``grades`` (reason -> grade) and ``say`` (grade -> its lines); every reason graded once."""
    for section in ("grades", "say"):
        if section not in advice:
            raise DataFileError(path, advice.line, f"missing '{section}:'")
    grades_raw = _mapping(advice["grades"], path, line_of(advice, "grades"))
    _known_keys(grades_raw, path, RED_FLAG_GRADES, "grades")
    grades: dict[str, str] = {}
    for grade, members in grades_raw.items():
        if not isinstance(members, list):
            raise DataFileError(path, line_of(grades_raw, grade), f"grades.{grade}: expected a list of reasons")
        for i, reason in enumerate(members):
            if not isinstance(reason, str) or reason not in reasons:
                raise DataFileError(path, line_of(members, i), f"grades.{grade}: {reason!r} is not in red_flag_reasons")
            if reason in grades:
                raise DataFileError(path, line_of(members, i), f"grades: {reason!r} is in two grades")
            grades[reason] = str(grade)
    ungraded = [r for r in reasons if r not in grades]
    if ungraded:
        raise DataFileError(path, line_of(advice, "grades"), f"grades: say how urgent {', '.join(ungraded)} is "
                            f"(put it under one of {', '.join(RED_FLAG_GRADES)})")
    say_raw = _mapping(advice["say"], path, line_of(advice, "say"))
    _known_keys(say_raw, path, GRADES, "say")
    said = {str(g): _sequence(v, f"advice.{g}", path, line_of(say_raw, g)) for g, v in say_raw.items()}
    missing = [g for g in GRADES if g not in said]
    if missing:
        raise DataFileError(path, line_of(advice, "say"), f"say: missing {', '.join(missing)}")
    return grades, said


def _load_answers(path: Path, routines: Mapping[str, Routine]
                  ) -> tuple[dict[str, tuple[Phrases, ...]], dict[str, tuple[Phrases, ...]]]:
    """answers.yaml: the on-demand answers and the decline tips; ``why`` only for known routines."""
    raw = _mapping(load_yaml(path), path)
    _known_keys(raw, path, ANSWER_KEYS, "answers")
    missing = [k for k in ANSWER_KEYS if k not in raw]
    if missing:
        raise DataFileError(path, raw.line, f"missing '{missing[0]}:'")
    answers = {str(k): _sequence(v, f"answer.{k}", path, line_of(raw, k)) for k, v in raw.items() if k != "why"}
    why_raw = _mapping(raw["why"], path, line_of(raw, "why"))
    why: dict[str, tuple[Phrases, ...]] = {}
    for rid, body in why_raw.items():
        if rid != "default" and rid not in routines:
            raise DataFileError(path, line_of(why_raw, rid), f"why: no routine named {rid!r} in routines.yaml")
        why[str(rid)] = _sequence(body, f"answer.why.{rid}", path, line_of(why_raw, rid))
    if "default" not in why:
        raise DataFileError(path, why_raw.line, "why needs a 'default:' answer")
    return answers, why
