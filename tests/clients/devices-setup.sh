#!/usr/bin/env bash
# Installs the device vendors' own host tools the device tests run against, pinned, in their own
# venv (tests/clients/.venv-devices) so that they do not share pins with the DPS clients:
#   nrfcredstore 2.1.0   Nordic's credential tool for nRF91 modems (AT%CMNG, AT%KEYGEN)
#   smpclient 7.3.0, smpmgr 0.19.1   MCUmgr SMP client and CLI (Zephyr devices)
#   esp-secure-cert-tool 2.6.1   Espressif's esp_secure_cert partition generator and parser (ESP32)
#   esptool 5.6.0   Espressif's ROM bootloader client, run --no-stub against the simulated ESP32
#   jwcrypto 1.6.1   a JOSE library: cross-checks the JWS of Trust&GO manifest entries (issue 16)
# Idempotent and quick when present. Needs python3-venv (installer/deps.sh --test). Called by setup.sh.
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -x .venv-devices/bin/python ]] || ! .venv-devices/bin/python -c 'import nrfcredstore, smpclient, smpmgr, esp_secure_cert, esptool, jwcrypto' 2>/dev/null; then
  python3 -m venv .venv-devices
  .venv-devices/bin/pip install --quiet --disable-pip-version-check -r devices-requirements.txt
fi
