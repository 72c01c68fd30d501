#!/usr/bin/env bash
# Set up Cramp Coach on Debian / Raspberry Pi OS: system packages, then the coach in the
# project venv .venv (never a system-wide pip). Safe to run again: it reuses the venv and
# only installs what changed. On an interactive terminal it then offers the speech models
# (it carries on with the built-in engine when offline or declined) and starts the coach:
# by voice when a microphone is found, otherwise on the keyboard (--text).
#
#   bash scripts/setup.sh            set up, offer the models, start the coach (interactive terminals)
#   bash scripts/setup.sh --no-run   set up only, never asks anything (CI, scripts)
#
# PYTHON=python3.12 picks the interpreter the venv is made from (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
run=1
[ "${1:-}" = "--no-run" ] && run=0
interactive=0
if [ "$run" = 1 ] && [ -t 0 ] && [ -t 1 ] && [ -z "${CI:-}" ]; then
  interactive=1
fi

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $sudo apt-get update -q
  # shellcheck disable=SC2046
  $sudo apt-get install -y -q --no-install-recommends $(grep -v '^#' scripts/apt-packages.txt)
else
  echo "setup: no apt-get here; install these yourself: $(tr '\n' ' ' < scripts/apt-packages.txt)" >&2
fi

# The project venv. --system-site-packages lets it use what the system already has
# (Debian's python3-numpy on a Pi, a preinstalled toolchain) instead of building it again;
# everything else goes into .venv, so no pip ever writes outside the checkout.
py="${PYTHON:-python3}"
venv="$root/.venv"
if ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' 2>/dev/null; then
  rm -rf "$venv"
  "$py" -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install -q -e .
coach="$venv/bin/cramp-coach"
"$coach" --help >/dev/null
echo "setup: the coach is installed in $venv"
echo "setup: start it with: $coach   (keyboard: $coach --text)"
echo "setup: or put it on your PATH for this shell: source $venv/bin/activate"

[ "$interactive" = 1 ] || exit 0

# ------------------------------------------------------------------ speech models (asked, never forced)

ask() {  # ask "question" → 0 for yes (the default), 1 for no
  local answer
  read -r -p "$1 [Y/n] " answer || return 1
  case "$answer" in [nN]*) return 1 ;; *) return 0 ;; esac
}

# Online = the official model download answers within a few seconds (its address is in the code).
online() {
  "$venv/bin/python" - <<'EOF' 2>/dev/null
import socket, sys
from urllib.parse import urlsplit
from assistant.speech_in.models import DEFAULT_MODEL, KNOWN_MODELS
url = urlsplit(KNOWN_MODELS[DEFAULT_MODEL].url)
try:
    socket.create_connection((url.hostname, url.port or 443), timeout=4).close()
except OSError:
    sys.exit(1)
EOF
}

# Whisper needs a 64-bit CPU with 4+ cores and 2+ GB of memory (a Pi 4 or 5, any laptop).
whisper_fits() {
  case "$(uname -m)" in x86_64|aarch64|arm64) ;; *) return 1 ;; esac
  local cores mem_kb
  cores="$(nproc 2>/dev/null || echo 1)"
  mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)"
  [ "$cores" -ge 4 ] && [ "$mem_kb" -ge 1900000 ]
}

models="$("$coach" models list 2>/dev/null || true)"
want_vosk=0; want_whisper=0
echo "$models" | grep -q "available: vosk-model-small-en-us" && want_vosk=1
if whisper_fits && ! echo "$models" | grep -Eq '^[* ] whisper-tiny-en'; then want_whisper=1; fi
if [ "$want_vosk" = 1 ] || [ "$want_whisper" = 1 ]; then
  if ! online; then
    echo "setup: offline; the coach uses its built-in speech engine (install models later with: $coach models install)"
  else
    if [ "$want_vosk" = 1 ] && ask "Install the Vosk English speech model (40 MB, better recognition)?"; then
      "$coach" models install || echo "setup: the Vosk model did not install; carrying on with the built-in engine"
    fi
    if [ "$want_whisper" = 1 ] && ask "Install the Whisper tiny.en model (about 75 MB; hears you best over kitchen noise)?"; then
      { "$venv/bin/python" -m pip install -q -e ".[whisper]" && "$coach" models install whisper-tiny-en; } \
        || echo "setup: the Whisper engine did not install; carrying on with the engines already there"
    fi
  fi
fi

# ------------------------------------------------------------------ start the coach

if "$venv/bin/python" -c 'import sys, sounddevice as sd; sys.exit(0 if any(d["max_input_channels"] > 0 for d in sd.query_devices()) else 1)' 2>/dev/null; then
  exec "$coach"
fi
echo "setup: no microphone found, starting the keyboard version"
exec "$coach" --text
