"""User turns as real speech (the bundled Piper voice), cached per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assistant.speech_in.wav import write_wav
from assistant.testing.speechgen import VOICES, synthesize

PHRASES = {
    "foot": "my foot is cramping",
    "left_foot": "my left foot is cramping",
    "still": "still cramping",
    "better": "better",
    "no": "no",
    "stop": "stop",
}


def make_turns(directory: Path, lead: float = 0.0, tail: float = 0.3) -> dict[str, Path]:
    """WAV files of the phrases with a little room noise before and after."""
    rng = np.random.default_rng(7)
    out = {}
    for name, text in PHRASES.items():
        speech = synthesize(text, VOICES["joe"]).astype(np.float64)
        audio = np.concatenate([np.zeros(int(16000 * lead)), speech, np.zeros(int(16000 * tail))])
        audio += rng.normal(0, 2, len(audio))
        path = directory / f"{name}.wav"
        write_wav(path, np.clip(audio, -32768, 32767).astype(np.int16))
        out[name] = path
    return out
