"""Every prompts file loads, and a broken one fails with one line naming file and line."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.conversation.content import LINE_FIELDS, PROMPT_FILES, Phrases, Picker, load_content
from assistant.conversation.datafile import DataFileError
from assistant.conversation.dialog import PUBLIC_INTENTS
from assistant.paths import prompts_dir

PROMPTS = prompts_dir()


@pytest.mark.parametrize("name", PROMPT_FILES)
def test_every_prompts_file_loads(name: str) -> None:
    assert (PROMPTS / name).is_file()
    content = load_content(PROMPTS)  # validates all files together (cross references)
    assert content.lines and content.routines and content.questions


def test_content_covers_the_brief() -> None:
    content = load_content()
    assert set(PUBLIC_INTENTS) <= set(content.intents.names)
    assert len(content.routines) >= 5
    assert {"toe_pull", "calf_stretch", "arch_massage", "toe_spread", "warm_walk"} <= set(content.routines)
    causes = {q.id for q in content.questions}
    for cause in ("dehydration", "overuse", "footwear", "minerals", "muscle_imbalance", "nerve", "warm_up",
                  "cold", "medication", "pregnancy", "neurological", "aging"):
        assert cause in causes
    assert set(LINE_FIELDS) <= set(content.lines)
    assert {c.left for c in content.countdown} >= {20, 10, 5, 4, 3, 2, 1, 0}
    # The lines heard most have several phrasings.
    for key in ("relief.start", "relief.checkin", "relief.next_routine", "commands.not_understood", "closing"):
        assert len(content.lines[key].options) >= 2, key


def test_picker_never_repeats_a_phrasing_twice_in_a_row() -> None:
    picker = Picker(random.Random(3))
    phrases = Phrases("k", ("a", "b", "c"))
    picks = [picker.pick(phrases) for _ in range(300)]
    assert all(x != y for x, y in zip(picks, picks[1:], strict=False))
    assert set(picks) == {"a", "b", "c"}


def _broken(tmp_path: Path, name: str, old: str, new: str) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROMPTS, target)
    path = target / name
    text = path.read_text()
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1))
    return target


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


BREAKAGES = [
    # file, old, new, text on the offending line, words in the message
    ("lines.yaml", 'time_left: "About {seconds} seconds left."', 'time_left: "About {secs} seconds left."',
     "About {secs}", "unknown placeholder {secs}"),
    ("lines.yaml", '  eased:\n', '  easd:\n', "easd:", "unknown line 'relief.easd'"),
    ("routines.yaml", "  calf: [calf_stretch,", "  calf: [calf_strech,", "calf: [calf_strech", "no routine named"),
    ("routines.yaml", "    hold_seconds: 40", "    hold_seconds: forty", "hold_seconds: forty", "hold_seconds"),
    ("causes.yaml", "    red_flag: numbness", "    red_flag: numbnes", "red_flag: numbnes", "red_flag_reasons"),
    ("intents.yaml", '          - "pass"', '          - "pass (it"', '"pass (it"', "cannot parse template"),
    ("intents.yaml", '          - "[i\'m] ready"', '          - "[i\'m] {readiness}"', "{readiness}", "unknown list"),
    ("advice.yaml", "  worse:", "  worse: [unclosed", "worse: [unclosed", "YAML syntax error"),
]


@pytest.mark.parametrize(("name", "old", "new", "needle", "words"), BREAKAGES)
def test_broken_file_names_file_and_line(tmp_path: Path, name, old, new, needle, words) -> None:
    directory = _broken(tmp_path, name, old, new)
    with pytest.raises(DataFileError) as info:
        load_content(directory)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{directory / name}:")
    assert words in message
    line = info.value.line
    expected = _line_of(directory / name, needle)
    # YAML syntax errors are reported where the parser noticed them: at or just after the mistake.
    assert line is not None and expected <= line <= expected + 1, message


def test_cli_reports_broken_prompts_in_one_line(tmp_path: Path) -> None:
    directory = _broken(tmp_path, "lines.yaml", 'no_timer: "', 'no_timer: "{minutes} ')
    env = dict(os.environ, CRAMP_COACH_PROMPTS_DIR=str(directory), CRAMP_COACH_DATA=str(tmp_path / "data"),
               CRAMP_COACH_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.run([sys.executable, "-m", "assistant.commands.cli", "--text"], input="", capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = _line_of(directory / "lines.yaml", 'no_timer: "{minutes}')
    assert f"{directory / 'lines.yaml'}:{line}:" in lines[0]
    assert "Traceback" not in proc.stderr
