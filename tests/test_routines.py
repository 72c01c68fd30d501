"""routines.yaml: steps, per-routine cues, gentler and aftercare load, and a mistake in them is one
line naming the file and line (the coach must not find it mid-cramp)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_prompts import _broken

from assistant.conversation.content import load_content
from assistant.conversation.datafile import DataFileError


def test_routines_have_steps_cues_gentler_and_aftercare() -> None:
    content = load_content()
    toe_pull, walk = content.routines["toe_pull"], content.routines["warm_walk"]
    assert toe_pull.all_steps[0].key == "routine.toe_pull.instruction"
    assert [p.key for p in toe_pull.all_steps[1:]] == [f"routine.toe_pull.step{i}" for i in
                                                      range(2, len(toe_pull.all_steps) + 1)]
    assert toe_pull.countdown == content.countdown  # the file's cues unless it has its own
    massage = content.routines["arch_massage"]
    assert massage.countdown[:-1] == content.countdown[:-1]  # an end cue changes only the release
    assert massage.countdown[-1].left == 0 and massage.countdown[-1].say.key == "routine.arch_massage.end_cue"
    assert walk.aftercare and walk.countdown[-1].say.key == "routine.warm_walk.countdown.0"
    assert not toe_pull.aftercare
    for routine in content.routines.values():
        assert routine.gentler in content.routines and routine.gentler != routine.id


BREAKAGES = [
    # old, new, text that starts on the offending line (unique in the file), words in the message
    ("    gentler: warm_walk", "    gentler: warm_wlak", "gentler: warm_wlak", "gentler must name another routine"),
    ("    gentler: warm_walk", "    gentler: arch_massage", "    gentler: arch_massage\n    during:\n      - \"Work",
     "not 'arch_massage'"),
    ("    aftercare: true", "    aftercare: yes please", "aftercare: yes please", "aftercare must be true or false"),
    ('    end_cue: "And relax your toes."', '    end_cue: "And relax {foot}."', "And relax {foot}",
     "unknown placeholder {foot}"),
    ("      - left: 0\n        say:\n          - \"That's enough for now.\"",
     "      - left: 1\n        say:\n          - \"That's enough for now.\"", "    countdown:\n      - left: 15",
     "routine.warm_walk.countdown: needs a release cue"),
    ('    steps:\n      - "Then slowly curl', '    steps: "Then slowly curl', 'steps: "Then slowly curl',
     "steps must be a list"),
    ('    gentler: arch_massage\n    during:\n      - "Spread', '    gentler: arch_massage\n    colour: red\n'
     '    during:\n      - "Spread', "colour: red", "unknown key 'colour'"),
]


@pytest.mark.parametrize(("old", "new", "needle", "words"), BREAKAGES)
def test_broken_routine_names_file_and_line(tmp_path: Path, old: str, new: str, needle: str, words: str) -> None:
    directory = _broken(tmp_path, "routines.yaml", old, new)
    with pytest.raises(DataFileError) as info:
        load_content(directory)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{directory / 'routines.yaml'}:")
    assert words in message, message
    text = (directory / "routines.yaml").read_text()
    assert text.count(needle) == 1, needle
    expected = text[:text.index(needle)].count("\n") + 1
    assert info.value.line is not None and expected - 1 <= info.value.line <= expected, message
