#!/usr/bin/env bash
# The whole test suite (swift-testing, debug build with exclusivity checks on),
# then server mode for real: the HTTP API fuzzed against its OpenAPI contract,
# and kill -9 under load with an audit afterwards.
# Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

swift build --build-tests
# Every sqlite3_* function must come from the SQLite built in (Sources/CSQLite): one
# this build lacked would bind to the system's libsqlite3, a second SQLite library.
for paystorm_binary in .build/debug/paystorm .build/debug/PaystormPackageTests.xctest; do
    if nm -D --undefined-only "$paystorm_binary" | grep -w 'sqlite3_[a-z0-9_]*'; then
        echo "error: $paystorm_binary takes the sqlite3_* functions above from the system's libsqlite3, not from Sources/CSQLite" >&2
        exit 1
    fi
done
swift test --skip-build --disable-xctest

export PAYSTORM_BIN=.build/debug/paystorm
echo "== server mode: Schemathesis against openapi/paystorm.yaml"
bash scripts/schemathesis.sh
echo "== server mode: kill -9 under load, then the audit"
python3 scripts/crash-test.py --kills 10 --seed 1
