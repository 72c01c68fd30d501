"""WAV files and resampling: the one place the coach reads, writes or resamples audio.

Recordings come from phones, other tools and TTS at any common rate, width and
channel count; ``soxr`` resamples them with a proper anti-aliasing filter (cheap on a
Pi) so the recognizer sees what a microphone at 16 kHz would have given it
(:func:`read_wav`). Speech out uses the same functions: the voice's WAV at its own rate
(:func:`read_wav_native`), int16 to the speaker's rate (:func:`resample`), a
recording of what the coach said (:func:`write_wav`). The live microphone resamples
its stream block by block with soxr's streaming resampler (``speech_in.audio``).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from assistant.errors import UserFacingError

TARGET_RATE = 16000


def to_int16_mono(samples: np.ndarray, rate: int, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Float or int samples (frames × channels, or 1-D) → int16 mono at ``target_rate``."""
    data = np.asarray(samples)
    if data.dtype == np.int16 and rate == target_rate and (data.ndim == 1 or data.shape[1] == 1):
        return data.reshape(-1).astype(np.int16)  # already in the recognizers' format
    if data.dtype.kind in "iu":
        info = np.iinfo(data.dtype)
        unsigned = data.dtype.kind == "u"  # 8-bit WAV: 0..255 around 128
        scale = (info.max + 1) / 2 if unsigned else float(-info.min)
        offset = scale if unsigned else 0.0
        data = (data.astype(np.float64) - offset) / scale
    data = data.astype(np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if rate != target_rate and data.size:
        import soxr

        data = soxr.resample(data, rate, target_rate)
    return np.clip(np.rint(data * 32768.0), -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono int16 at ``from_rate`` → int16 at ``to_rate`` (unchanged when the rates match)."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    return to_int16_mono(np.asarray(samples, np.int16), from_rate, to_rate)


def read_wav(path: Path | str, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Read a PCM WAV file as int16 mono at ``target_rate``.

    Raises :class:`UserFacingError` naming the file when it is not a readable PCM WAV.
    """
    data, rate = _read_frames_and_rate(Path(path))
    return to_int16_mono(data, rate, target_rate)


def read_wav_native(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file as int16 mono at its own rate: ``(samples, rate)``.

    Same checks and errors as :func:`read_wav`.
    """
    data, rate = _read_frames_and_rate(Path(path))
    return to_int16_mono(data, rate, rate), rate


def _read_frames_and_rate(path: Path) -> tuple[np.ndarray, int]:
    """The WAV's samples (frames × channels, integer) and its rate, or a UserFacingError."""
    redo = f"Give a PCM WAV recording, e.g. convert with `sox INPUT -r 16000 -c 1 -b 16 {path.stem}-16k.wav`"
    if path.is_dir():
        raise UserFacingError(f"{path} is a directory, not a WAV file; give the path of a .wav file")
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            declared = wav.getnframes()
            raw = _read_frames(wav, declared)
    except FileNotFoundError:
        raise UserFacingError(f"{path}: file not found") from None
    except PermissionError:
        raise UserFacingError(f"{path}: cannot read the file (permission denied); check its permissions") from None
    except (wave.Error, EOFError, OSError) as exc:
        reason = str(exc) or "the file ends before the WAV header"
        if reason == "unknown format: 3":
            reason = "32-bit float samples are not supported"
        elif reason.startswith("unknown format: 65534"):
            reason = "WAVE_FORMAT_EXTENSIBLE headers are not supported"
        raise UserFacingError(f"{path}: not a readable WAV file ({reason}). {redo}") from None
    if channels < 1 or rate < 1000:
        raise UserFacingError(f"{path}: WAV header is damaged ({channels} channels at {rate} Hz). {redo}")
    frame = channels * width
    got = len(raw) // frame if frame else 0
    if got < declared:
        raise UserFacingError(
            f"{path}: the WAV file is cut short (its header promises {declared / rate:.2f} s of audio, "
            f"it holds {got / rate:.2f} s). Copy or export it again; or rewrite the header: {redo}"
        )
    if got == 0:
        raise UserFacingError(f"{path}: the WAV file holds no audio (0 samples). Record or export it again")
    data: np.ndarray
    if width == 1:
        data = np.frombuffer(raw, dtype=np.uint8)
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2")
    elif width == 3:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
        data = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16))
        data = np.where(data >= 1 << 23, data - (1 << 24), data).astype(np.int32) << 8
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4")
    else:
        raise UserFacingError(f"{path}: unsupported WAV sample width of {width} bytes; use 16-bit PCM")
    data = data[: len(data) // channels * channels].reshape(-1, channels)
    return data, rate


def _read_frames(wav: wave.Wave_read, declared: int) -> bytes:
    """Read up to ``declared`` frames in blocks: a damaged header claiming gigabytes costs nothing."""
    blocks: list[bytes] = []
    left = declared
    while left > 0:
        block = wav.readframes(min(left, 1 << 20))
        if not block:
            break
        blocks.append(block)
        left -= len(block) // (wav.getsampwidth() * wav.getnchannels())
    return b"".join(blocks)


def write_wav(path: Path | str, samples: np.ndarray, rate: int = TARGET_RATE) -> Path:
    """Write int16 mono samples as a WAV file; returns its path."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return Path(path)
