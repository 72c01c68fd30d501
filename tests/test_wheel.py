"""The coach as a user installs it: ``python -m build``, then the wheel in a clean venv.

Only editable installs used to work (the prompts were looked up beside the package, and a
wheel did not carry them). This builds the sdist and, from it, the wheel (what
``python -m build`` does), installs the wheel into a new venv and runs the installed
``cramp-coach`` from a folder outside the checkout, with no PYTHONPATH and no prompts
override: ``doctor`` must find the shipped prompts and intents, and ``--text`` must coach.

The venv is made without the system's site-packages; its third-party dependencies come
from this interpreter's site-packages by a plain path file (no download, so it runs
offline and in seconds). Path files added that way do not run other ``.pth`` hooks, so an
editable install of the checkout in those folders stays invisible: the test asserts the
package really comes from the wheel.
"""

from __future__ import annotations

import os
import queue
import site
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMPT_FILES = {"advice.yaml", "causes.yaml", "intents.yaml", "lines.yaml", "routines.yaml"}


def _dependency_dirs() -> list[str]:
    """This interpreter's site-packages folders (where hassil, numpy, vosk... are)."""
    dirs = [*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["purelib"]]
    dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    seen: list[str] = []
    for d in dirs:
        if d and Path(d).is_dir() and d not in seen and not Path(d).resolve().is_relative_to(ROOT.resolve()):
            seen.append(d)
    return seen


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """sdist and wheel built by ``python -m build`` (wheel from the sdist)."""
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, env=env, cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"sdist": next(out.glob("*.tar.gz")), "wheel": next(out.glob("*.whl"))}


@dataclass(frozen=True)
class Installed:
    """A clean venv with the wheel in it, and how to run its commands like a user."""

    bin: Path
    env: dict[str, str]
    cwd: Path
    purelib: Path


@pytest.fixture(scope="module")
def installed(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A clean venv with the wheel installed."""
    home = tmp_path_factory.mktemp("user")
    env_dir = home / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    vpy = env_dir / "bin" / "python"
    purelib = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_cramp_coach_test_deps.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "CRAMP_COACH_PROMPTS_DIR", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(CRAMP_COACH_DATA=str(home / "data"), CRAMP_COACH_CONFIG_DIR=str(home / "cfg"),
               PYTHONUNBUFFERED="1")
    proc = subprocess.run([str(vpy), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(built["wheel"])],
                          capture_output=True, text=True, env=env, cwd=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Installed(env_dir / "bin", env, home, Path(purelib))


def test_sdist_carries_the_prompts(built: dict[str, Path]) -> None:
    with tarfile.open(built["sdist"]) as tar:
        names = {Path(n).name for n in tar.getnames() if "/prompts/" in n}
    assert PROMPT_FILES <= names


def test_wheel_carries_the_prompts_inside_the_package(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as whl:
        names = set(whl.namelist())
    assert {f"assistant/prompts/{f}" for f in PROMPT_FILES} <= names
    assert "assistant/py.typed" in names


def test_installed_package_comes_from_the_wheel(installed: Installed) -> None:
    vpy = installed.bin / "python"
    out = subprocess.run([str(vpy), "-c", "import assistant, assistant.paths as p; "
                          "print(assistant.__file__); print(p.prompts_dir())"],
                         capture_output=True, text=True, env=installed.env, cwd=installed.cwd, check=True)
    package_file, prompts = out.stdout.split()
    purelib = installed.purelib
    assert Path(package_file).is_relative_to(purelib), package_file
    assert Path(prompts) == purelib / "assistant" / "prompts"


def test_doctor_finds_prompts_and_intents(installed: Installed) -> None:
    coach = installed.bin / "cramp-coach"
    proc = subprocess.run([str(coach), "doctor"], capture_output=True, text=True,
                          env=installed.env, cwd=installed.cwd, timeout=120)
    lines = proc.stdout.splitlines()
    assert any(line.startswith("[ok] intents:") for line in lines), proc.stdout + proc.stderr
    assert any(line.startswith("[ok] prompts:") for line in lines), proc.stdout + proc.stderr
    # Without a sound card the microphone and speaker checks may fail; nothing else may.
    failures = [line for line in lines if line.startswith("[FAIL]")
                and not any(word in line for word in ("microphone", "speaker"))]
    assert failures == [], proc.stdout


def test_text_coach_runs_from_the_wheel(installed: Installed) -> None:
    coach = installed.bin / "cramp-coach"
    proc = subprocess.Popen([str(coach), "--text", "--time-scale", "20", "--seed", "4"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=installed.env, cwd=installed.cwd)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []

    def expect(fragment: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if fragment.lower() in line.lower():
                return
        proc.kill()
        errors = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"never saw {fragment!r}:\n" + "\n".join(seen) + "\n" + errors)

    assert proc.stdin is not None
    try:
        expect("Ctrl-D")
        proc.stdin.write("ow my left calf is cramping\n")
        proc.stdin.flush()
        expect("counter")  # the standing calf stretch comes first for a calf cramp
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0, "\n".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
