#!/usr/bin/env bash
# Installs the Debian packages dps-station needs. Idempotent: does nothing when all are present.
#   installer/deps.sh          what building and running the station needs
#   installer/deps.sh --test   that, plus what the test suite cross-checks with (openssl, sqlite3, pkcs11-tool, node)
set -euo pipefail

packages=(
  pkg-config libudev-dev gcc   # serialport's port discovery links libudev
  softhsm2                     # the PKCS#11 token the demo and the tests use
  opensc                       # pkcs11-tool, and the OpenSC module for Nitrokey/SmartCard-HSM
  ca-certificates
  libsecret-tools              # secret-tool: DPS connection strings from the OS keyring
)
# The operator's desk (gui): software OpenGL for the glow renderer on PCs without a GPU, Noto Sans
# CJK for Hangul, aplay for the pass/fail sounds (silent without it).
packages+=(libgl1 libgl1-mesa-dri libegl1 fonts-noto-cjk alsa-utils)
if [[ "${1:-}" == "--test" ]]; then
  # The desk's kittest snapshots render with wgpu on Mesa's lavapipe (Vulkan on the CPU);
  # scripts/screenshots.sh runs the real window under Xvfb and drives it with xdotool.
  packages+=(mesa-vulkan-drivers xvfb xauth xdotool imagemagick)
fi
if [[ "${1:-}" == "--test" ]]; then
  packages+=(openssl sqlite3 python3 python3-venv tmux)
  packages+=(dbus gnome-keyring)   # a real Secret Service for the keyring test
  packages+=(swtpm tpm2-tools libtss2-tcti-swtpm0)   # the EK conversion is checked against a software TPM
  packages+=(curl)   # bench (issue 17): the docs/bench.md walkthrough test checks DPS with curl
  # Node may come from a non-Debian nodejs package that bundles npm (and conflicts with Debian's
  # npm): ask for Debian's only when the commands are missing.
  command -v node >/dev/null || packages+=(nodejs)
  command -v npm >/dev/null || packages+=(npm)
  # The Debian package (installer/build-deb.sh --lintian; scripts/test.sh builds and checks it).
  packages+=(dpkg-dev fakeroot lintian desktop-file-utils appstream man-db)
  # central ledger (issue 18): the tests make a throwaway cluster per test with initdb/pg_ctl.
  packages+=(postgresql)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "installer/deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installer/deps.sh: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
