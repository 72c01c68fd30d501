#!/usr/bin/env bash
# Set up Cramp Coach on Debian / Raspberry Pi OS: system packages, then the Python package
# (editable, with test extras). On a terminal it then starts the coach: by voice when a
# microphone is found, otherwise on the keyboard (--text).
#
#   bash scripts/setup.sh            set up, then start the coach (interactive terminals)
#   bash scripts/setup.sh --no-run   set up only (CI, scripts)
set -euo pipefail
cd "$(dirname "$0")/.."
run=1
[ "${1:-}" = "--no-run" ] && run=0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $sudo apt-get update -q
  # shellcheck disable=SC2046
  $sudo apt-get install -y -q --no-install-recommends $(grep -v '^#' scripts/apt-packages.txt)
else
  echo "setup: no apt-get here; install these yourself: $(tr '\n' ' ' < scripts/apt-packages.txt)" >&2
fi

py="${PYTHON:-python3}"
# PEP 668: a distribution's own Python (Raspberry Pi OS, Debian) refuses system-wide pip
# installs, so use a project venv there; a venv or pyenv Python takes the package directly.
if "$py" -c 'import os, sys, sysconfig; sys.exit(0 if sys.prefix != sys.base_prefix or not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  "$py" -m pip install -q -e ".[test]"
  coach="cramp-coach"
else
  "$py" -m venv .venv
  .venv/bin/pip install -q -e ".[test]"
  coach=".venv/bin/cramp-coach"
  echo "setup: installed into .venv (activate it with: source .venv/bin/activate)"
fi
echo "setup: done. Start the coach with: $coach   (keyboard: $coach --text)"

if [ "$run" = 1 ] && [ -t 0 ]; then
  pybin="$(dirname "$(command -v "$coach")")/python"
  [ -x "$pybin" ] || pybin="$py"
  if "$pybin" -c 'import sys, sounddevice as sd; sys.exit(0 if any(d["max_input_channels"] > 0 for d in sd.query_devices()) else 1)' 2>/dev/null; then
    exec "$coach"
  fi
  echo "setup: no microphone found, starting the keyboard version"
  exec "$coach" --text
fi
