#!/usr/bin/env bash
# The whole test suite, as CI runs it: system packages, formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."

installer/deps.sh --test
tests/clients/setup.sh   # the official Node and Python DPS service and device SDKs the emulator tests run
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
# The Debian package from the binary the tests just built (no second, release build), through lintian.
installer/build-deb.sh --binary target/debug/dps-station --lintian
