"""Microphone: resampling, overflow counting and reopening a device that drops out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from assistant.errors import UserFacingError
from assistant.speech_in.audio import Microphone, open_microphone, parse_device, sounddevice_factory
from assistant.testing.fakes import FlakySource


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _tone(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def test_resampled_to_16k_and_overflow_counted() -> None:
    src = FlakySource(48000)
    clock = Clock()
    mic = Microphone(src.factory, clock=clock)
    mic._open()
    tone = _tone(48000, 1.0)
    total = 0
    for i in range(0, len(tone), 960):
        src.deliver(tone[i:i + 960], overflow=(i == 960 * 5))
        chunk = mic.read(0.1)
        assert chunk is not None
        total += len(chunk.samples)
    assert abs(total - 16000) < 500  # soxr HQ holds back ~20 ms
    assert mic.overflows == 1


def test_source_that_drops_out_is_reopened() -> None:
    src = FlakySource(16000)
    clock = Clock()
    mic = Microphone(src.factory, stall_seconds=1.0, retry_seconds=1.0, clock=clock)
    mic._open()
    src.deliver(_tone(16000, 0.02))
    assert mic.read(0.1) is not None and mic.available
    src.plugged = False  # unplugged mid-hold
    clock.t += 0.5
    mic.check()
    assert not mic.available
    clock.t += 1.1
    mic.check()  # still unplugged: a retry fails quietly
    assert not mic.available and src.opened == 1
    src.plugged = True
    clock.t += 1.1
    mic.check()
    assert src.opened == 2 and not mic.available  # open, but back only once audio arrives
    src.deliver(_tone(16000, 0.02))
    mic.check()
    assert mic.available and mic.reopens == 1
    chunk = mic.read(0.1)
    assert chunk is not None and len(chunk.samples) == 320


def test_reopened_stream_that_delivers_nothing_is_not_back() -> None:
    """PulseAudio: a stream on a suspended source opens fine and then stalls."""
    src = FlakySource(16000)
    clock = Clock()
    mic = Microphone(src.factory, stall_seconds=1.0, retry_seconds=1.0, clock=clock)
    mic._open()
    clock.t += 1.5  # stalled: lost
    mic.check()
    assert not mic.available
    for _ in range(6):  # reopened, silent, closed, reopened...: never reported back
        clock.t += 0.6
        mic.check()
        assert not mic.available
    assert src.opened >= 3 and mic.reopens == 0
    opened = src.opened
    while src.opened == opened:  # the next retry
        clock.t += 0.1
        mic.check()
    src.deliver(_tone(16000, 0.02))  # the source resumes
    mic.check()
    assert mic.available and mic.reopens == 1


def test_stalled_stream_counts_as_lost() -> None:
    src = FlakySource(16000)
    clock = Clock()
    mic = Microphone(src.factory, stall_seconds=1.0, clock=clock)
    mic._open()
    clock.t += 1.5  # the stream says it is active but no audio arrives
    mic.check()
    assert not mic.available


def test_parse_device() -> None:
    assert parse_device(None) is None and parse_device("") is None
    assert parse_device("3") == 3 and parse_device(2) == 2
    assert parse_device("USB Audio") == "USB Audio"


def test_no_microphone_points_to_text_mode() -> None:
    with pytest.raises(UserFacingError) as err:
        open_microphone("no such microphone anywhere")
    assert "--text" in str(err.value) and "cramp-coach devices" in str(err.value)


@pytest.mark.audio
def test_real_pulse_microphone_hears_what_is_played(pulse: Any, tmp_path: Any) -> None:
    from conftest import write_wav

    mic = Microphone(sounddevice_factory("pulse"))
    mic.start()
    try:
        wav = write_wav(tmp_path / "tone.wav", _tone(16000, 0.6))
        player = pulse.play(wav)
        loudest = 0
        for _ in range(250):  # up to 5 s of 20 ms blocks: stop as soon as the tone is heard
            chunk = mic.read(0.5)
            if chunk is not None and len(chunk.samples):
                loudest = max(loudest, int(np.abs(chunk.samples).max()))
            if loudest > 3000:
                break
        player.wait(timeout=10)
        assert mic.overflows == 0
        assert loudest > 3000
    finally:
        mic.close()
