"""After relief through ``cramp-coach --text``: answers kept between runs, a medicine name only
answering its question, the summary replayed, questions about cramps answered (issue 13 items 6-9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_textmode import TextSession

SLOW = ("--time-scale", "5")  # silence re-prompts after 1.6 s of real time: room for a loaded CI machine


def _cramp_then_questions(s: TextSession) -> None:
    s.expect("Ctrl-D")
    s.type("my left calf is cramping")
    s.expect("still cramping")
    s.type("it's a bit better now")
    s.expect("caused it")
    s.type("yes please")
    s.expect("swelling or redness")


def test_stable_answers_are_remembered_between_runs_and_can_be_forgotten(tmp_path: Path) -> None:
    s = TextSession(tmp_path, *SLOW)
    _cramp_then_questions(s)
    s.type("no")
    s.expect("less to drink")
    s.type("statins")  # a medicine's name is not an answer to this question ...
    s.expect("just say yes, no, not sure, or skip")
    s.type("yes")
    for fragment in ("on your feet", "shoes", "numbness"):
        s.expect(fragment)
        s.type("no")
    s.expect("regular medicines")
    s.type("i take statins")  # ... only to this one
    s.expect("new medicine")
    s.type("no")
    s.expect("a few more")
    s.type("yes")
    for _ in range(8):  # the rest, each answered no (pregnancy, age... are remembered)
        s.type("no")
    s.expect("may play a part")
    s.expect("comes back")
    s.type("repeat")  # the summary again, line by line
    s.expect("may play a part")
    s.expect("Drink water regularly")
    assert s.close() == 0

    s = TextSession(tmp_path, *SLOW)  # the next cramp, another run
    _cramp_then_questions(s)
    for _ in range(4):  # calf, drinking, feet, shoes, numbness -- and no medicine question
        s.type("no")
        line = s.expect("?")
        assert "regular medicines" not in line
    s.type("no")
    s.expect("skip what you told me last time")
    s.expect("new medicine")  # asked every time someone takes a medicine
    s.type("no")
    s.expect("a few more")
    s.type("yes")
    seen = []
    for _ in range(4):  # cold, warm-up, diet, tight muscles -- not pregnancy, age or a known condition
        seen.append(s.expect("?"))
        s.type("no")
    assert not any(w in q for q in seen for w in ("pregnant", "sixty-five", "neurological")), seen
    assert "a medicine you take" in s.expect("may play a part")  # the remembered answer still counts
    assert s.close() == 0

    env = dict(os.environ, CRAMP_COACH_DATA=str(tmp_path / "data"), CRAMP_COACH_CONFIG_DIR=str(tmp_path / "cfg"))
    listed = subprocess.run([sys.executable, "-m", "assistant.commands.cli", "diary"], env=env, text=True,
                            capture_output=True, timeout=60)
    assert "medication=yes medication=statin" in listed.stdout and "pregnancy=no" in listed.stdout
    forgot = subprocess.run([sys.executable, "-m", "assistant.commands.cli", "diary", "--forget-answers"], env=env,
                            text=True, capture_output=True, timeout=60)
    assert forgot.returncode == 0 and "ask them again" in forgot.stdout

    s = TextSession(tmp_path, *SLOW)
    _cramp_then_questions(s)
    for _ in range(5):
        s.type("no")
    s.expect("regular medicines")  # forgotten: asked again
    assert s.close() == 0


def test_questions_about_cramps_and_the_decline_path(tmp_path: Path) -> None:
    s = TextSession(tmp_path, *SLOW)
    s.expect("Ctrl-D")
    s.type("how can i prevent foot cramps")
    s.expect("Drink water regularly")
    s.expect("Stretch your feet and calves")
    s.type("when should i see a doctor")
    s.expect("swollen or red")
    s.type("ow my foot is cramping")
    s.expect("still cramping")
    s.type("why this stretch")
    s.expect("stretch")
    s.type("better")
    s.expect("caused it")
    s.type("no thanks")
    s.expect("drink water through the day")
    s.expect("cold pack")
    s.expect("healthcare professional")
    s.expect("comes back")
    assert s.close() == 0
