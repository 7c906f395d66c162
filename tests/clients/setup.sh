#!/usr/bin/env bash
# Installs the official DPS service clients the emulator tests run against:
#   tests/clients/node_modules   npm azure-iot-provisioning-service and the device SDK's MQTT transports
#                                (azure-iot-provisioning-device-mqtt, azure-iot-device-mqtt; pinned by package-lock.json)
#   tests/clients/.venv          PyPI azure-iot-deviceprovisioning 1.0.0b1 (a pre-release: --pre) and the
#                                device SDK azure-iot-device 2.14.0 (DPS over MQTT + IoT hub, tests/dps_emulator/mqtt_*)
# Idempotent and quick when both are present. Needs node/npm and python3-venv (installer/deps.sh --test).
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -f node_modules/azure-iot-provisioning-service/package.json ]] \
  || [[ ! -f node_modules/azure-iot-provisioning-device-mqtt/package.json ]] \
  || [[ ! -f node_modules/azure-iot-device-mqtt/package.json ]]; then
  if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
fi

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import azure.iot.deviceprovisioning, azure.iot.device' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check --pre -r requirements.txt
fi

# The device vendors' host tools (nrfcredstore), in a venv of their own.
./devices-setup.sh
