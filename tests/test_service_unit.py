"""The systemd unit in deploy/ is valid and starts what the Pi guide installs."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "cramp-coach.service"


def _verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify --user`` with a home laid out as docs/raspberry-pi.md says."""
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is needed (apt install systemd)"
    home = tmp_path / "home"
    venv_bin = home / "cramp-coach" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    entry = shutil.which("cramp-coach") or str(Path(sys.executable).with_name("cramp-coach"))
    assert Path(entry).exists(), "install the package first: pip install -e ."
    (venv_bin / "cramp-coach").symlink_to(entry)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(runtime))
    return subprocess.run([exe, "verify", "--user", str(unit)], env=env, capture_output=True, text=True,
                          timeout=60)


def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    result = _verify(UNIT, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # verify only warns for many mistakes


def test_verify_catches_mistakes(tmp_path: Path) -> None:
    """The check above can fail: a typo in the unit is reported."""
    broken = tmp_path / "cramp-coach.service"
    broken.write_text(UNIT.read_text().replace("Type=exec", "Type=exce"))
    result = _verify(broken, tmp_path)
    assert "Type=exce" in result.stderr or "service type" in result.stderr


def test_unit_starts_the_live_coach_on_boot() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT)
    assert unit["Install"]["WantedBy"] == "default.target"  # the user instance started by lingering
    argv = unit["Service"]["ExecStart"].split()
    assert argv[0] == "%h/cramp-coach/.venv/bin/cramp-coach"
    # The arguments are accepted by the real command line (live mode, no subcommand).
    from assistant.commands.cli import build_parser

    args = build_parser(argv[1:]).parse_args(argv[1:])
    assert args.command is None and not args.text
    guide = (ROOT / "docs" / "raspberry-pi.md").read_text()
    for step in ("loginctl enable-linger", "systemctl --user enable --now cramp-coach",
                 "journalctl --user -u cramp-coach", "~/cramp-coach/.venv"):
        assert step in guide, step
