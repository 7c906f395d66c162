#!/usr/bin/env bash
# Takes the README's screenshots from the real window (glow on Mesa's software GL) under Xvfb:
# the line screen mid-batch, with a failure, and in Korean. Needs xvfb, xdotool, imagemagick.
# Usage: scripts/screenshots.sh [path/to/dps-station]   (default: target/release/dps-station)
set -euo pipefail
bin=${1:-target/release/dps-station}
out=docs/screenshots
mkdir -p "$out"
display=:97
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true' EXIT
sleep 1
export DISPLAY=$display

shot() { # name lang extra-args...
  local name=$1 lang=$2; shift 2
  LANG=$lang "$bin" demo --devices 40 "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep 8
  xdotool windowfocus "$(xdotool search --name dps-station | head -1)"
  sleep 0.5
  # A work-order scan, as a USB scanner types it, then F2 starts the batch it names.
  xdotool type --delay 5 "WO:demo-x509-csr"
  xdotool key Return
  sleep 1
  xdotool key F2
  sleep "${SHOT_AFTER:-3}"
  import -window root "$out/$name.png"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

shot line-mid-batch en_US.UTF-8
SHOT_AFTER=1 shot line-failure en_US.UTF-8 --faulty-first
SHOT_AFTER=1 shot line-korean ko_KR.UTF-8 --faulty-first
