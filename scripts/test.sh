#!/usr/bin/env bash
# The whole test suite (swift-testing, debug build with exclusivity checks on).
# Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

swift build --build-tests
swift test --skip-build --disable-xctest
