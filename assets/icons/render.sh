#!/usr/bin/env bash
# Renders the application icon's PNG sizes (the hicolor theme's standard sizes) from
# dps-station.svg. The PNGs are committed, so building the package needs no SVG renderer; run this
# again after changing the SVG (needs rsvg-convert: apt-get install librsvg2-bin).
set -euo pipefail
cd "$(dirname "$0")"
for size in 16 24 32 48 64 128 256 512; do
  mkdir -p "${size}x${size}"
  rsvg-convert --width "$size" --height "$size" --output "${size}x${size}/dps-station.png" dps-station.svg
done
