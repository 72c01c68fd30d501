#!/usr/bin/env bash
# Start (or reuse) a PulseAudio daemon with virtual audio devices, for tests and benchmarks
# on machines without a sound card.
#
#   speaker        null sink: the coach's loudspeaker (record it from speaker.monitor)
#   micfeed        null sink: play the user's voice into it (paplay --device=micfeed)
#   mic            source remapped from micfeed.monitor: the coach's microphone
#
# Usage (prints the runtime directory on stdout, nothing else):
#   export XDG_RUNTIME_DIR=$(.ci/pulse.sh)
#   export PULSE_SERVER=unix:$XDG_RUNTIME_DIR/pulse/native
# The directory is $CRAMP_PULSE_DIR if set, else /tmp/cramp-coach-pulse. Running it again
# reuses a live daemon and (re)loads any missing device, so it is idempotent. Sourcing it
# also works (it then exports both variables).
set -u
_cc_dir="${CRAMP_PULSE_DIR:-/tmp/cramp-coach-pulse}"
mkdir -p "$_cc_dir" && chmod 700 "$_cc_dir"
_cc_env=(env "XDG_RUNTIME_DIR=$_cc_dir" "PULSE_SERVER=unix:$_cc_dir/pulse/native")

if ! "${_cc_env[@]}" pactl info >/dev/null 2>&1; then
  # A stale pid file from a killed daemon stops a new one from starting.
  rm -f "$_cc_dir/pulse/pid"
  env -u PULSE_SERVER "XDG_RUNTIME_DIR=$_cc_dir" pulseaudio -n --daemonize=yes --exit-idle-time=-1 \
    --log-target=file:"$_cc_dir/pulseaudio.log" \
    -L module-native-protocol-unix -L module-always-sink >/dev/null 2>&1
  for _ in $(seq 1 50); do
    "${_cc_env[@]}" pactl info >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! "${_cc_env[@]}" pactl info >/dev/null 2>&1; then
    echo "pulse.sh: PulseAudio did not start; see $_cc_dir/pulseaudio.log" >&2
    return 1 2>/dev/null || exit 1
  fi
fi

_cc_sinks=$("${_cc_env[@]}" pactl list short sinks)
_cc_sources=$("${_cc_env[@]}" pactl list short sources)
for _cc_sink in speaker micfeed; do
  if ! grep -q "^[0-9]*[[:space:]]$_cc_sink[[:space:]]" <<<"$_cc_sinks"; then
    "${_cc_env[@]}" pactl load-module module-null-sink "sink_name=$_cc_sink" \
      "sink_properties=device.description=$_cc_sink" >/dev/null
  fi
done
if ! grep -q "^[0-9]*[[:space:]]mic[[:space:]]" <<<"$_cc_sources"; then
  "${_cc_env[@]}" pactl load-module module-remap-source master=micfeed.monitor source_name=mic \
    "source_properties=device.description=mic" >/dev/null
fi
"${_cc_env[@]}" pactl set-default-source mic
"${_cc_env[@]}" pactl set-default-sink speaker

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  export XDG_RUNTIME_DIR="$_cc_dir" PULSE_SERVER="unix:$_cc_dir/pulse/native"
else
  echo "$_cc_dir"
fi
