"""WAV input of any common format becomes int16 mono 16 kHz; bad files get a clear error."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import UserFacingError
from assistant.speech_in.wav import read_wav, read_wav_native, resample, write_wav


def sine(rate: int, freq: float = 440.0, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


def write_raw(path: Path, frames: bytes, rate: int, width: int, channels: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def dominant_freq(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(("rate", "width", "channels"), [
    (16000, 2, 1), (44100, 2, 2), (48000, 3, 1), (8000, 1, 1), (22050, 4, 2),
])
def test_common_formats_become_16k_mono_int16(tmp_path, rate, width, channels):
    x = sine(rate)
    if width == 1:
        raw = np.rint(x * 127 + 128).astype(np.uint8)
    elif width == 3:
        v = np.rint(x * (2**23 - 1)).astype(np.int32)
        raw = np.stack([(v >> s) & 0xFF for s in (0, 8, 16)], axis=1).astype(np.uint8)
    else:
        raw = np.rint(x * (2 ** (8 * width - 1) - 1)).astype(f"<i{width}")
    if channels == 2:
        stereo = np.stack([raw, raw], axis=1) if raw.ndim == 1 else np.concatenate([raw, raw], axis=1)
        raw = stereo
    path = write_raw(tmp_path / "in.wav", raw.tobytes(), rate, width, channels)
    out = read_wav(path)
    assert out.dtype == np.int16
    assert abs(len(out) - 8000) <= 2
    assert abs(dominant_freq(out) - 440) < 5
    assert 0.4 < np.abs(out).max() / 32767 < 0.6


def test_round_trip(tmp_path):
    samples = (sine(16000) * 32767).astype(np.int16)
    write_wav(tmp_path / "a.wav", samples)
    assert np.array_equal(read_wav(tmp_path / "a.wav"), samples)


def test_not_a_wav_names_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is text, not audio")
    with pytest.raises(UserFacingError, match=r"notes\.wav: not a readable WAV.*sox"):
        read_wav(bad)
    with pytest.raises(UserFacingError, match=r"missing\.wav: file not found"):
        read_wav(tmp_path / "missing.wav")
    truncated = tmp_path / "cut.wav"
    write_wav(truncated, np.zeros(100, np.int16))
    truncated.write_bytes(truncated.read_bytes()[:20])
    with pytest.raises(UserFacingError, match=r"cut\.wav"):
        read_wav(truncated)


def test_native_rate_read_and_resample_for_speech_out(tmp_path):
    """The voice's 22.05 kHz WAV is read at its own rate and resampled for a 48 kHz speaker."""
    tone = (sine(22050, 1000.0) * 32767).astype(np.int16)
    samples, rate = read_wav_native(write_wav(tmp_path / "voice.wav", tone, 22050))
    assert rate == 22050 and np.array_equal(samples, tone)
    up = resample(samples, 22050, 48000)
    assert up.dtype == np.int16 and abs(len(up) - 24000) <= 2
    assert abs(dominant_freq(up, 48000) - 1000) < 5
    assert resample(samples, 22050, 22050) is samples  # same rate: nothing to do
