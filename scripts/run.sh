#!/usr/bin/env bash
# Paystorm's main job: build a release binary, run the demo simulation, then
# the kernel benchmark. Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

swift build -c release --product paystorm
echo
echo "== paystorm demo (seed 1) =="
.build/release/paystorm demo --seed 1
echo
echo "== paystorm bench kernel (hold model, 10,000 pending) =="
.build/release/paystorm bench kernel --pending 10000 --events 20000000 --repeats 3
