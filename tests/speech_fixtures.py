"""Fixtures for the speech-in tests: the generated test speech and the shared intent set.

Audio is rendered once by :mod:`assistant.testing.speechgen` into ``tests/.audio-cache`` (git
ignored) and reused across runs; only missing files are synthesized.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.conversation.intents import IntentSet
from assistant.testing.speechgen import Case, generate

ROOT = Path(__file__).resolve().parents[1]
AUDIO_CACHE = ROOT / "tests" / ".audio-cache"


@pytest.fixture(scope="session")
def intent_set() -> IntentSet:
    return IntentSet.load(ROOT / "prompts" / "intents.yaml")


@pytest.fixture(scope="session")
def speech_cases(intent_set: IntentSet) -> list[Case]:
    """The 'test' set: every public intent (all slot values) in a clean neural voice, plus
    out-of-domain kitchen talk. Files live in :data:`AUDIO_CACHE`."""
    _, cases = generate(AUDIO_CACHE, "test", intent_set)
    return cases
