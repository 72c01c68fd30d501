"""docs/conversations.md holds six real ``cramp-coach --text`` runs; the coach must still say them.

Regenerate after changing what the coach says:
``python -m assistant.testing.transcripts --write docs/conversations.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.testing import transcripts

DOC = Path(__file__).resolve().parent.parent / "docs" / "conversations.md"

# What each transcript must show (issue 13), checked on the committed document.
MUST = {
    "report-better": ["you:   it's a bit better now", "caused it", "a few more", "may play a part"],
    "still-hurts-twice": ["you:   no it still hurts", "you:   still hurts", "you:   it stopped",
                          "drink water through the day", "healthcare professional"],
    "worse-mid-stretch": ["you:   it's getting worse", "Ease off", "gentler"],
    "silence-after-aftercare": ["Walk it off", "Yes or no?"],
    "decline-causes": ["you:   no thanks", "drink water through the day", "cold pack", "healthcare professional",
                       "you:   what causes foot cramps", "tired muscles"],
    "red-flag-answer": ["swelling or redness", "Please get medical help now", "carry on with the questions"],
}
NEVER = {
    "silence-after-aftercare": ["urgent care", "medical help"],
    "worse-mid-stretch": ["urgent care"],
    "still-hurts-twice": ["urgent care"],
}


def _blocks() -> dict[str, list[str]]:
    blocks = transcripts.parse(DOC.read_text(encoding="utf-8"))
    assert len(blocks) == len(transcripts.SCENARIOS) == 6
    return {s.name: b for s, b in zip(transcripts.SCENARIOS, blocks, strict=True)}


@pytest.mark.parametrize("name", [s.name for s in transcripts.SCENARIOS])
def test_the_document_shows_what_the_issue_asks(name: str) -> None:
    text = "\n".join(_blocks()[name])
    for fragment in MUST[name]:
        assert fragment.lower() in text.lower(), f"{name}: {fragment!r} missing from docs/conversations.md"
    for fragment in NEVER.get(name, []):
        assert fragment.lower() not in text.lower(), f"{name}: {fragment!r} in docs/conversations.md"
    coach = [line for line in text.splitlines() if line.startswith("coach:") and "    ..." not in line]
    assert coach and all(len(line.split()) - 1 <= 20 for line in coach), "a spoken line over twenty words"


def test_the_document_is_what_the_coach_says_today() -> None:
    """Runs the six conversations again (about a minute of mostly waiting) and compares the lines."""
    assert transcripts.main(["--check", str(DOC)]) == 0
