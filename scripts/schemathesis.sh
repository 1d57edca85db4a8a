#!/usr/bin/env bash
# Fuzzes `paystorm serve` against its contract, openapi/paystorm.yaml, with
# Schemathesis: every response must be a documented status with a JSON body
# that matches the documented schema and headers, never a 5xx (nor a crash),
# and a request that violates the schema must be refused.
#
# It installs Schemathesis from PyPI into .build/venv-schemathesis when
# missing, starts `paystorm psp-sandbox` and `paystorm serve` on free
# loopback ports with a throwaway database, waits for /health, and runs two
# passes: every merchant endpoint with the key `sk_test_m1` (a 403 for
# another merchant_id, and for GET /ledger, is documented and expected), then
# GET /ledger with the admin key. The servers are stopped on exit. Exits 0
# when Schemathesis found nothing, 1 when it found failures, 2 when the
# servers would not start.
#
# Usage: scripts/schemathesis.sh [extra schemathesis run options]
# Environment:
#   PAYSTORM_BIN                the binary (default .build/debug/paystorm;
#                               built with `swift build` when absent)
#   SCHEMATHESIS_VERSION        default 4.32.5
#   SCHEMATHESIS_MAX_EXAMPLES   test cases per operation and phase (default 200)
#   SCHEMATHESIS_SEED           default 1
#   SCHEMATHESIS_REPORT_DIR     JUnit reports, HAR request logs and server logs
#                               (default .build/schemathesis)
set -euo pipefail
cd "$(dirname "$0")/.."

version="${SCHEMATHESIS_VERSION:-4.32.5}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-200}"
seed="${SCHEMATHESIS_SEED:-1}"
report_dir="${SCHEMATHESIS_REPORT_DIR:-.build/schemathesis}"
venv=".build/venv-schemathesis"

# --- the binary ------------------------------------------------------------
if [ -n "${PAYSTORM_BIN:-}" ]; then
    bin="$PAYSTORM_BIN"
else
    bin=".build/debug/paystorm"
    if [ ! -x "$bin" ]; then
        source scripts/bootstrap.sh
        swift build --product paystorm
    fi
fi
if [ ! -x "$bin" ]; then
    echo "error: no paystorm binary at $bin (set PAYSTORM_BIN)" >&2
    exit 2
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

# --- Schemathesis ----------------------------------------------------------
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $version\$"; then
    echo "installing schemathesis $version into $venv ..."
    mkdir -p .build
    # A Debian python3 without python3-venv cannot seed pip into a venv:
    # then make the venv bare and install into it with the system pip.
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        python3 -m venv --without-pip "$venv"
    fi
    if [ -x "$venv/bin/pip" ]; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
    else
        python3 -m pip --python "$venv/bin/python" install --quiet --disable-pip-version-check "schemathesis==$version"
    fi
fi
schemathesis="$venv/bin/schemathesis"

# --- the servers -----------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/paystorm-schemathesis.XXXXXX")"
mkdir -p "$report_dir"
report_dir="$(cd "$report_dir" && pwd)"
sandbox_pid=""
server_pid=""
# SIGTERM, then up to 5 s to exit 0: a process that crashes or hangs while
# it stops fails the run (its log is kept with the reports).
stop() {  # pid name
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then
        echo "error: $2 did not stop within 5 s of SIGTERM; its log: $report_dir/$2.log" >&2
        kill -KILL "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
        return 1
    fi
    local code=0
    wait "$1" 2>/dev/null || code=$?
    if [ "$code" -ne 0 ]; then
        echo "error: $2 exited with status $code after SIGTERM; its log: $report_dir/$2.log" >&2
        return 1
    fi
}
cleanup() {
    local status=$?
    stop "$server_pid" serve || status=1
    stop "$sandbox_pid" psp-sandbox || status=1
    cp "$work"/*.log "$report_dir"/ 2>/dev/null || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two free loopback ports (the sandbox needs the server's webhook URL and the
# server the sandbox's, so both are chosen up front).
read -r sandbox_port server_port < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))
for s in sockets: s.close()
')
sandbox_url="http://127.0.0.1:$sandbox_port"
server_url="http://127.0.0.1:$server_port"

"$bin" psp-sandbox --host 127.0.0.1 --port "$sandbox_port" --seed 1 \
    --webhook-url "$server_url/webhook" >"$work/psp-sandbox.log" 2>&1 &
sandbox_pid=$!
"$bin" serve --host 127.0.0.1 --port "$server_port" --database "$work/paystorm.sqlite" \
    --psp-url "$sandbox_url" --notify-url "$sandbox_url/notifications" >"$work/serve.log" 2>&1 &
server_pid=$!

wait_for() {  # url pid name
    for _ in $(seq 300); do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "error: $3 exited before answering $1; its log:" >&2
            cat "$work/$3.log" >&2
            exit 2
        fi
        if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "error: $3 did not answer $1 within 30 s; its log:" >&2
    cat "$work/$3.log" >&2
    exit 2
}
wait_for "$sandbox_url/health" "$sandbox_pid" psp-sandbox
wait_for "$server_url/health" "$server_pid" serve
echo "paystorm serve on $server_url, psp-sandbox on $sandbox_url"

# --- the runs --------------------------------------------------------------
# POST /webhook needs a valid HMAC to get past the signature check. A hook
# signs each schema-valid webhook case (a 64-hex signature, an integer
# timestamp) with the PSP's secret, `whsec_<psp>`, moving a plausible
# timestamp (|t| < 10^10) to now; schema-violating cases and extreme
# timestamps (the int64 bounds) are sent as generated.
cat >"$work/hooks.py" <<'PY'
import hashlib
import hmac
import re
import time

import schemathesis
from requests.compat import json as requests_json
from schemathesis.core import NOT_SET


@schemathesis.hook
def before_call(context, case, **kwargs):
    if case.operation.path != "/webhook" or not case.headers:
        return
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return  # schema-violating cases go out as generated
    psp = case.headers.get("X-Paystorm-PSP")
    signature = case.headers.get("X-Paystorm-Signature")
    timestamp = case.headers.get("X-Paystorm-Timestamp")
    if psp is None or signature is None or timestamp is None:
        return
    if not re.fullmatch(r"[0-9a-fA-F]{64}", str(signature)) or not re.fullmatch(r"-?[0-9]+", str(timestamp)):
        return
    if abs(int(timestamp)) < 10**10:
        timestamp = str(int(time.time()))
    if isinstance(case.body, bytes):
        body = case.body
    elif case.body is NOT_SET:
        body = b""
    else:
        try:  # the bytes requests will send for `json=`
            body = requests_json.dumps(case.body, allow_nan=False).encode()
        except (TypeError, ValueError):
            return
    message = str(timestamp).encode() + b"." + body
    case.headers["X-Paystorm-Timestamp"] = str(timestamp)
    case.headers["X-Paystorm-Signature"] = hmac.new(f"whsec_{psp}".encode(), message, hashlib.sha256).hexdigest()
PY
export SCHEMATHESIS_HOOKS="$work/hooks.py"

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection
common=(
    --url "$server_url"
    --checks "$checks"
    --max-examples "$max_examples"
    --seed "$seed"
    --workers 1
    --generation-database none
    --request-timeout 10
    --no-color
)

failed=0
echo "== schemathesis: merchant endpoints, Authorization: Bearer sk_test_m1 =="
"$schemathesis" run openapi/paystorm.yaml "${common[@]}" \
    --header "Authorization: Bearer sk_test_m1" \
    --exclude-path /ledger \
    --report junit,har --report-junit-path "$report_dir/merchant.junit.xml" --report-har-path "$report_dir/merchant.har.json" \
    "$@" || failed=1

if kill -0 "$server_pid" 2>/dev/null; then
    echo "== schemathesis: GET /ledger, Authorization: Bearer sk_admin_dev =="
    "$schemathesis" run openapi/paystorm.yaml "${common[@]}" \
        --header "Authorization: Bearer sk_admin_dev" \
        --include-path /ledger \
        --phases examples,coverage,fuzzing \
        --report junit,har --report-junit-path "$report_dir/admin.junit.xml" --report-har-path "$report_dir/admin.har.json" \
        "$@" || failed=1
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: paystorm serve died during the run (a crash is a failure in itself); its log: $report_dir/serve.log" >&2
    failed=1
fi
if [ "$failed" -ne 0 ]; then
    echo "schemathesis found failures; reports and server logs in $report_dir" >&2
else
    echo "schemathesis: no failures; reports in $report_dir"
fi
exit "$failed"
