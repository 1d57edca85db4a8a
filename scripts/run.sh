#!/usr/bin/env bash
# Paystorm's main job: build a release binary and run a shipped scenario end
# to end — the real engine among PSPs, a broker and clients, with a PSP
# outage — writing its reports to Reports/psp-outage-failover-1/. Installs
# what it needs on a fresh machine. Extra arguments go to `paystorm run`
# (e.g. `--seed 7`, or another scenario with SCENARIO=Scenarios/x.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

swift build -c release --product paystorm
scenario="${SCENARIO:-Scenarios/psp-outage-failover.yaml}"
echo "== paystorm run $scenario =="
.build/release/paystorm run "$scenario" "$@"
