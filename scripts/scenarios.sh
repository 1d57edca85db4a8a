#!/usr/bin/env bash
# Runs every shipped scenario (except the million-payment reference) in a
# release build and checks each ends the way it documents: `expect: pass`
# scenarios must pass, `expect: fail` ones must exit with their expect_exit.
# Usage: scripts/scenarios.sh [OUT_DIR]   (reports go to OUT_DIR, default Reports/)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
swift build -c release --product paystorm
out="${1:-Reports}"
failed=0
for file in Scenarios/*.yaml; do
    [[ "$(basename "$file")" == reference-1m.yaml ]] && continue
    if ./.build/release/paystorm run "$file" --out "$out" --quiet --check-expectation; then
        echo "ok    $file"
    else
        echo "FAIL  $file (exit $?)"
        failed=1
    fi
done
exit "$failed"
