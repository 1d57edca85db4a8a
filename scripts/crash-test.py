#!/usr/bin/env python3
"""Crash test of `paystorm serve`: kill -9 under load, restart, then audit.

Starts `paystorm psp-sandbox` (default profile: latency, transient errors,
ambiguous outcomes) and `paystorm serve` on a fresh SQLite database, drives
payments and refunds over keep-alive HTTP connections from several threads,
and kills the server with SIGKILL --kills times at seeded intervals,
restarting it each time on the same database and port. Then it lets every
payment reach a terminal state, stops the server gracefully (it drains) and
checks:

  * every payment the server acknowledged (HTTP 200/201) still exists, with
    the same id for the same idempotency key, and reaches completed/failed;
  * no two idempotency keys were given the same payment or refund id;
  * a fully refunded payment refuses a further refund;
  * `paystorm audit --settled` (safety invariants, ledger hash chain, wallets
    equal the journal, acknowledged ids durable, no double charge), with the
    journal head each kill left as a `--witness`: what was committed before
    a kill is still the start of the journal, unchanged;
  * the sandbox's GET /stats reports no payment charged twice;
  * the PSPs' settlement reports and the database agree: every captured charge
    is a completed payment at that PSP for that amount and vice versa, and
    likewise for refunds (money that moved is money the server knows about).

It also fails when the server misbehaves as a process: a restart that never
gets healthy, a live server that answers nothing for --max-silence seconds
(a stall), payments still open after --settle-timeout, or a graceful stop
(SIGTERM) that takes longer than --stop-timeout.

Connection errors while the server is down are expected and are not failures;
a request cut off by a kill is retried with the same idempotency key (most of
the time) or abandoned. Python 3 standard library only.

    PAYSTORM_BIN=.build/debug/paystorm scripts/crash-test.py --kills 10 --seed 7

Exit status: 0 when every check passes, 1 otherwise, 2 on bad usage.
"""

import argparse
import atexit
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

TERMINAL_PAYMENT = {"completed", "failed"}
TERMINAL_REFUND = {"succeeded", "failed"}
CHILDREN = []  # every subprocess.Popen started, killed on exit


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def kill_children():
    for child in CHILDREN:
        if child.poll() is None:
            try:
                child.kill()
                child.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass


def on_signal(signum, _frame):
    kill_children()
    sys.exit(128 + signum)


class ConnectionFailed(Exception):
    """No HTTP answer: refused, reset, closed or timed out. The outcome is unknown.
    `stale`: the connection was opened before a kill since."""

    def __init__(self, message, stale=False):
        super().__init__(message)
        self.stale = stale


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects after any error."""

    def __init__(self, port, timeout=15.0, generation=lambda: 0):
        self.port = port
        self.timeout = timeout
        self.connection = None
        self.generation = generation  # kills so far, to tell stale connections
        self.opened_in = 0

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def request(self, method, path, body=None, key=None):
        headers = {"Connection": "keep-alive"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.opened_in = self.generation()
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
            raw = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
        except (OSError, http.client.HTTPException) as error:
            stale = self.connection is not None and self.opened_in != self.generation()
            self.close()
            raise ConnectionFailed(f"{type(error).__name__}: {error}", stale) from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = {"unparsed": raw[:200].decode(errors="replace")}
        return response.status, payload


def error_code(payload):
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return payload["error"].get("code")
    return None


def luhn_card(rng, prefix):
    body = prefix + "".join(rng.choice("0123456789") for _ in range(15 - len(prefix)))
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:  # doubled once the check digit is appended
            digit = digit * 2 - 9 if digit * 2 > 9 else digit * 2
        total += digit
    return body + str((10 - total % 10) % 10)


def minor(amount):
    whole, _, cents = amount.partition(".")
    return int(whole) * 100 + int((cents + "00")[:2])


def decimal(minor_units):
    return f"{minor_units // 100}.{minor_units % 100:02d}"


class Run:
    """The state shared by the load threads, the killer and the checks."""

    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.failures = []
        self.notes = []
        self.engine = None  # GET /health's engine figures once idle
        self.counts = {}
        self.payments = {}  # payment id -> {key, merchant, amount}
        self.payment_by_key = {}  # idempotency key -> payment id
        self.refunds = {}  # refund id -> {key, payment, merchant, amount}
        self.refund_by_key = {}
        self.refund_candidates = []  # (acknowledged at, payment id)
        self.generation = 0  # kills so far
        self.up = False  # the server answered /health and has not been killed since
        self.next_slot = time.monotonic()
        self.sequence = 0
        self.acknowledged_file = open(os.path.join(work, "acknowledged.txt"), "w")

    def count(self, name, by=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + by

    def note(self, message):
        with self.lock:
            if len(self.notes) < 20:
                self.notes.append(message)

    def fail(self, message):
        with self.lock:
            self.failures.append(message)
        log(f"FAILURE {message}")

    def wait_for_slot(self):
        """Paces all threads together at --rate; slots missed while blocked are dropped."""
        with self.lock:
            now = time.monotonic()
            slot = max(self.next_slot, now)
            self.next_slot = slot + 1.0 / self.args.rate
            self.sequence += 1
            sequence = self.sequence
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return sequence

    def acknowledge_payment(self, key, merchant, amount, status, payload, retried):
        payment = payload.get("payment_id") if isinstance(payload, dict) else None
        if not payment:
            self.fail(f"POST /payments key {key}: HTTP {status} without a payment_id: {payload}")
            return None
        if payload.get("merchant_id") != merchant or payload.get("amount") != amount or payload.get("currency") != "USD":
            self.fail(f"POST /payments key {key}: answer {payload} does not match the request ({merchant}, {amount} USD)")
        with self.lock:
            earlier = self.payment_by_key.get(key)
            owner = self.payments.get(payment)
            if earlier is None:
                self.payment_by_key[key] = payment
            new = owner is None
            if new:
                self.payments[payment] = {"key": key, "merchant": merchant, "amount": amount}
                self.acknowledged_file.write(payment + "\n")
                self.acknowledged_file.flush()
                self.refund_candidates.append((time.monotonic(), payment))
        if earlier is not None and earlier != payment:
            self.fail(f"idempotency key {key} was answered with {earlier} and later with {payment} (a duplicate payment)")
        if owner is not None and owner["key"] != key:
            self.fail(f"payment id {payment} was given to key {owner['key']} and to key {key} (an id reused after a crash?)")
        if new:
            self.count("payments acknowledged")
            if retried and status == 200:
                self.count("payments found by a retry after a lost answer")
        return payment

    def acknowledge_refund(self, key, payment, merchant, amount, status, payload):
        refund = payload.get("refund_id") if isinstance(payload, dict) else None
        if not refund or payload.get("payment_id") != payment or payload.get("amount") != amount:
            self.fail(f"POST /refunds key {key}: HTTP {status}, answer {payload} does not match payment {payment} amount {amount}")
            return None
        with self.lock:
            earlier = self.refund_by_key.setdefault(key, refund)
            owner = self.refunds.setdefault(refund, {"key": key, "payment": payment, "merchant": merchant, "amount": amount})
        if earlier != refund:
            self.fail(f"refund idempotency key {key} was answered with {earlier} and later with {refund}")
        if owner["key"] != key:
            self.fail(f"refund id {refund} was given to key {owner['key']} and to key {key}")
        return refund


class LoadThread(threading.Thread):
    """Payments (some re-sent with the same key), and refunds of completed ones."""

    MERCHANTS = ["m-north", "m-south", "m-east", "m-west"]

    def __init__(self, run, index):
        super().__init__(name=f"load-{index}", daemon=True)
        self.run_state = run
        self.rng = random.Random(run.args.seed * 1_000 + index)
        self.client = Client(run.args.port, timeout=run.args.max_silence, generation=lambda: run.generation)

    def run(self):
        run = self.run_state
        try:
            while not run.stop.is_set():
                sequence = run.wait_for_slot()
                if run.stop.is_set():
                    break
                if self.rng.random() < run.args.refund_share and self.refund():
                    continue
                self.payment(sequence)
        except Exception as error:  # a bug in this script must not pass as a clean run
            run.fail(f"{self.name} crashed: {type(error).__name__}: {error}")
        finally:
            self.client.close()

    def send(self, method, path, body, key, what):
        """Sends until an HTTP answer: retries connection errors with the same
        body (the same idempotency key) and 429/503 answers. Returns
        (status, payload, retried) or None when given up."""
        run = self.run_state
        retried = False
        deadline = time.monotonic() + 30
        while True:
            generation, up = run.generation, run.up
            try:
                status, payload = self.client.request(method, path, body, key)
            except ConnectionFailed as error:
                run.count("connection errors (kills)")
                if not error.stale and up and run.up and run.generation == generation:
                    # Not a kill. A reset is reported (the retry shows whether anything was lost);
                    # no answer at all for --max-silence seconds is a stall.
                    run.count("connection errors while the server was up")
                    if "timed out" in str(error):
                        run.fail(f"{method} {path}: no answer within {run.args.max_silence:g} s while the server was up (stalled)")
                    else:
                        run.note(f"{method} {path}: {error} while the server was up")
                if run.stop.is_set() or time.monotonic() > deadline:
                    return None
                if not retried and what == "payment" and self.rng.random() >= run.args.retry_share:
                    run.count("payments abandoned after a connection error")
                    return None
                retried = True
                run.count(f"{what} retries with the same key")
                time.sleep(0.1 + self.rng.random() * 0.4)
                continue
            if status in (429, 503) or (status == 409 and error_code(payload) == "idempotency_conflict"):
                run.count(f"HTTP {status} {error_code(payload)} (retried)")
                if run.stop.is_set() or time.monotonic() > deadline:
                    return None
                retried = True
                time.sleep(0.2 + self.rng.random() * 0.3)
                continue
            return status, payload, retried

    def payment(self, sequence):
        run = self.run_state
        rng = self.rng
        merchant = rng.choice(self.MERCHANTS)
        amount = decimal(rng.randint(100, 20_000))
        key = f"crash-{run.args.seed}-{sequence}"
        body = {
            "user_id": f"user-{run.args.seed}-{sequence}",
            "merchant_id": merchant,
            "amount": amount,
            "currency": "USD",
            "payment_method": {"type": "card", "details": {
                "card_number": luhn_card(rng, rng.choice(["411111", "555555", "400000", "522222"])),
                "expiry_date": "12/35", "cvv": f"{rng.randint(100, 999)}"}},
            "idempotency_key": key,
        }
        run.count("payments sent")
        answer = self.send("POST", "/payments", body, f"sk_test_{merchant}", "payment")
        if answer is None:
            return
        status, payload, retried = answer
        if status not in (200, 201):
            run.fail(f"POST /payments key {key}: HTTP {status} {payload}")
            return
        if status == 200 and not retried:
            run.fail(f"POST /payments key {key}: a fresh key was answered as a replay: {payload}")
        payment = run.acknowledge_payment(key, merchant, amount, status, payload, retried)
        if payment and rng.random() < run.args.duplicate_share:
            # A client that re-sends an answered request: the same payment, as a replay.
            run.count("deliberate duplicate payment requests")
            again = self.send("POST", "/payments", body, f"sk_test_{merchant}", "duplicate")
            if again is not None:
                status, payload, _ = again
                if status != 200 or not isinstance(payload, dict) or payload.get("payment_id") != payment or not payload.get("replayed"):
                    run.fail(f"duplicate POST /payments key {key}: expected a 200 replay of {payment}, got HTTP {status} {payload}")

    def refund(self):
        """Refunds one completed payment at most once; False when none is ready."""
        run = self.run_state
        rng = self.rng
        with run.lock:
            ready = [i for i, (at, _) in enumerate(run.refund_candidates) if time.monotonic() - at > 1.5]
            if not ready:
                return False
            _, payment = run.refund_candidates.pop(rng.choice(ready))
            merchant = run.payments[payment]["merchant"]
        api_key = f"sk_test_{merchant}"
        answer = self.send("GET", f"/payments/{payment}", None, api_key, "lookup")
        if answer is None:
            return True
        status, payload, _ = answer
        if status != 200:
            run.fail(f"GET /payments/{payment} (acknowledged): HTTP {status} {payload}")
            return True
        if payload.get("status") == "processing":
            with run.lock:
                run.refund_candidates.append((time.monotonic(), payment))
            return True
        if payload.get("status") != "completed":
            return True
        captured = minor(payload["amount"])
        full = rng.random() < 0.5 or captured < 2
        amount = decimal(captured if full else captured // 2)
        key = f"refund-{run.args.seed}-{payment}"
        body = {"payment_id": payment, "amount": amount, "idempotency_key": key}
        run.count("refunds sent")
        answer = self.send("POST", "/refunds", body, api_key, "refund")
        if answer is None:
            return True
        status, payload, _ = answer
        if status not in (200, 201):
            run.fail(f"POST /refunds {payment} {amount} key {key}: HTTP {status} {payload}")
            return True
        if run.acknowledge_refund(key, payment, merchant, amount, status, payload):
            run.count("refunds acknowledged")
        if full and rng.random() < 0.5:
            # The reservation must survive crashes: nothing is left to refund.
            extra = {"payment_id": payment, "amount": "0.01", "idempotency_key": key + "-extra"}
            run.count("over-refund probes")
            answer = self.send("POST", "/refunds", extra, api_key, "probe")
            if answer is not None:
                status, payload, _ = answer
                if status != 409 or error_code(payload) != "refund_exceeds_captured":
                    run.fail(f"refund of 0.01 beyond a full refund of {payment}: expected 409 refund_exceeds_captured, got HTTP {status} {payload}")
        return True


class Cluster:
    """The sandbox and the server processes."""

    def __init__(self, args, run, work):
        self.args = args
        self.run = run
        self.work = work
        self.database = os.path.join(work, "p.sqlite")
        self.server = None
        self.sandbox = None
        self.server_log = open(os.path.join(work, "serve.log"), "ab")
        self.sandbox_log = open(os.path.join(work, "psp-sandbox.log"), "ab")
        run.server_alive = self.server_alive

    def server_alive(self):
        return self.server is not None and self.server.poll() is None

    def spawn(self, argv, output):
        command = ["nice", "-n", "10", self.args.binary] + argv if shutil.which("nice") else [self.args.binary] + argv
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        CHILDREN.append(child)
        return child

    def start_sandbox(self):
        argv = ["psp-sandbox", "--port", str(self.args.psp_port), "--seed", str(self.args.seed),
                "--webhook-url", f"http://127.0.0.1:{self.args.port}/webhook"] + self.args.sandbox_arg
        self.sandbox = self.spawn(argv, self.sandbox_log)
        self.wait_healthy(self.args.psp_port, self.sandbox, "psp-sandbox")

    def start_server(self):
        self.server_log.write(f"\n===== crash-test: start {self.run.generation} at {time.strftime('%H:%M:%S')} =====\n".encode())
        self.server_log.flush()
        argv = ["serve", "--port", str(self.args.port), "--database", self.database,
                "--psp-url", f"http://127.0.0.1:{self.args.psp_port}",
                "--notify-url", f"http://127.0.0.1:{self.args.psp_port}/notifications"]
        started = time.monotonic()
        self.server = self.spawn(argv, self.server_log)
        self.wait_healthy(self.args.port, self.server, "serve")
        self.run.up = True
        return time.monotonic() - started

    def wait_healthy(self, port, child, name, timeout=60.0):
        deadline = time.monotonic() + timeout
        client = Client(port, timeout=2)
        try:
            while time.monotonic() < deadline:
                if child.poll() is not None:
                    raise SystemExit(f"paystorm {name} exited with status {child.returncode} before it was healthy; see {self.work}")
                try:
                    status, _ = client.request("GET", "/health")
                    if status == 200:
                        return
                except ConnectionFailed:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise SystemExit(f"paystorm {name} not healthy on port {port} within {timeout:.0f} s; see {self.work}")

    def kill_server(self):
        self.run.up = False
        self.run.generation += 1  # first: a request cut off by this kill sees a new generation
        if self.server.poll() is not None:
            self.run.fail(f"the server had exited on its own (status {self.server.returncode}) before kill {self.run.generation}")
        else:
            self.server.send_signal(signal.SIGKILL)
        self.server.wait()

    def health(self):
        client = Client(self.args.port, timeout=10)
        try:
            status, payload = client.request("GET", "/health")
            return payload.get("engine") if status == 200 and isinstance(payload, dict) else None
        except ConnectionFailed:
            return None
        finally:
            client.close()

    def stop_server(self, timeout=60.0):
        """SIGTERM: the server stops taking requests, drains and exits."""
        if self.server.poll() is not None:
            self.run.fail(f"the server had exited on its own (status {self.server.returncode}) before the graceful stop")
            return
        self.run.up = False
        began = time.monotonic()
        self.server.send_signal(signal.SIGTERM)
        try:
            code = self.server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.run.fail(f"the server did not exit within {timeout:.0f} s of SIGTERM (hung drain?); killed")
            self.server.kill()
            self.server.wait()
            return
        if code != 0:
            self.run.fail(f"the server exited with status {code} after SIGTERM")
        self.run.counts["graceful stop, seconds"] = round(time.monotonic() - began, 2)


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def open_database(path):
    try:
        import sqlite3
    except ImportError:
        return None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        connection.execute("PRAGMA query_only = 1")
        return connection
    except sqlite3.Error as error:
        log(f"cannot read {path} with sqlite3 ({error}); the database checks are left to paystorm audit")
        return None


def journal_head(path):
    """The journal's head as a killed server left it, SEQUENCE:HASH as `paystorm
    audit --witness` takes it; None for an empty journal or an unreadable file."""
    database = open_database(path)
    if database is None:
        return None
    try:
        row = database.execute("SELECT sequence, lower(hex(hash)) FROM journal_head WHERE id = 1").fetchone()
    except Exception as error:  # sqlite3.Error; the module may be missing
        log(f"cannot read the journal head of {path} ({error})")
        return None
    finally:
        database.close()
    return f"{row[0]}:{row[1]}" if row and row[0] > 0 else None


def open_work(database):
    """Non-terminal payments and refunds in the database (the server may be running: WAL)."""
    if database is None:
        return None, None
    payments = [row[0] for row in database.execute(
        "SELECT payment_id FROM payment WHERE status NOT IN ('completed', 'failed') ORDER BY payment_id")]
    refunds = [row[0] for row in database.execute(
        "SELECT refund_id FROM refund WHERE status NOT IN ('succeeded', 'failed') ORDER BY refund_id")]
    return payments, refunds


def settle(run, cluster, args, database):
    """Waits until every acknowledged payment and refund is terminal (asked over
    the API) and nothing is open in the database, then until the engine is idle.
    A server that stops answering is waited for until the deadline, then reported."""
    pending = set(run.payments)
    pending_refunds = dict(run.refunds)
    deadline = time.monotonic() + args.settle_timeout
    client = Client(args.port, timeout=args.max_silence)
    last_report = 0.0
    silent_since = None  # when the server last failed to answer, if it has not answered since
    stalls = []  # (began, seconds) of each time the live server did not answer
    open_payments, open_refunds = [], []

    def ask(method, path, body, merchant):
        nonlocal silent_since
        try:
            answer = client.request(method, path, body, key=f"sk_test_{merchant}")
            if silent_since is not None:
                stalls.append((silent_since, time.monotonic() - silent_since))
                log(f"settling: the server answers again after {stalls[-1][1]:.1f} s")
            silent_since = None
            return answer
        except ConnectionFailed as error:
            run.count("requests unanswered while settling")
            if silent_since is None:
                silent_since = time.monotonic() - (args.max_silence if "timed out" in str(error) else 0)
                log(f"settling: {method} {path}: {error}; waiting for the server")
            return None

    try:
        while time.monotonic() < deadline:
            if not cluster.server_alive():
                run.fail(f"the server exited on its own (status {cluster.server.returncode}) while settling")
                return False
            for payment in sorted(pending):
                answer = ask("GET", f"/payments/{payment}", None, run.payments[payment]["merchant"])
                if answer is None:
                    break
                status, payload = answer
                if status != 200:
                    run.fail(f"acknowledged payment {payment} (key {run.payments[payment]['key']}): GET answered HTTP {status} {payload}")
                    pending.discard(payment)
                elif payload.get("status") in TERMINAL_PAYMENT:
                    pending.discard(payment)
                    run.count(f"payments {payload['status']}")
                    if minor(payload.get("refunded", "0")) > minor(payload["amount"]):
                        run.fail(f"payment {payment} refunded {payload['refunded']} of {payload['amount']}")
            for refund, info in sorted(pending_refunds.items()):
                if silent_since is not None:
                    break
                # A replay of the refund's own request answers its current state.
                body = {"payment_id": info["payment"], "amount": info["amount"], "idempotency_key": info["key"]}
                answer = ask("POST", "/refunds", body, info["merchant"])
                if answer is None:
                    break
                status, payload = answer
                if status != 200 or payload.get("refund_id") != refund:
                    run.fail(f"acknowledged refund {refund}: replay answered HTTP {status} {payload}")
                    pending_refunds.pop(refund)
                elif payload.get("status") in TERMINAL_REFUND:
                    pending_refunds.pop(refund)
                    run.count(f"refunds {payload['status']}")
            if not pending and not pending_refunds and silent_since is None:
                open_payments, open_refunds = open_work(database)
                if not open_payments and not open_refunds:
                    break
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                extra = f"; in the database: {len(open_payments)} payments, {len(open_refunds)} refunds" if open_payments or open_refunds else ""
                silent = f"; no answer from the server for {time.monotonic() - silent_since:.0f} s" if silent_since is not None else ""
                log(f"settling: {len(pending)} acknowledged payments and {len(pending_refunds)} refunds not terminal yet{extra}{silent}")
            time.sleep(0.5)
    finally:
        client.close()
    if silent_since is not None:
        stalls.append((silent_since, time.monotonic() - silent_since))
    if stalls:
        longest = max(seconds for _, seconds in stalls)
        run.fail(f"the server (alive, not killed) answered no HTTP request for {longest:.1f} s while settling "
                 f"({len(stalls)} stalls{', the last one still going at the deadline' if silent_since is not None else ''})")
    open_payments, open_refunds = open_work(database)
    if pending or pending_refunds or open_payments or open_refunds:
        detail = ", ".join(dict.fromkeys(sorted(pending)[:10] + sorted(pending_refunds)[:5] + (open_payments or [])[:10] + (open_refunds or [])[:5]))
        run.fail(f"not terminal after {args.settle_timeout:.0f} s: {len(pending)} acknowledged payments, "
                 f"{len(pending_refunds)} refunds, {len(open_payments or [])} payments and {len(open_refunds or [])} refunds "
                 f"in the database ({detail}); their attempts are listed below")
        return False
    idle_since = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        engine = cluster.health()
        # Timers may remain (notification retries, stale timeouts); nothing may be in flight or queued.
        idle = engine is not None and engine.get("consumer_lag") == 0 and engine.get("psp_calls_in_flight") == 0 \
            and engine.get("notifications_in_flight") == 0 and engine.get("outbound_queued", 0) == 0
        if idle:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= 1.0:
                run.engine = engine
                return True
        else:
            idle_since = None
        time.sleep(0.2)
    run.fail(f"the engine did not go idle within 30 s of every payment being terminal: {cluster.health()}")
    return False


def describe_open_attempts(database):
    if database is None:
        return []
    return [" ".join(str(field) for field in row) for row in database.execute("""
        SELECT a.subject, a.subject_id, a.psp_id, a.state, 'tries=' || a.tries, 'status_queries=' || a.status_queries,
               COALESCE(a.last_error, '') FROM psp_attempt a
        WHERE a.state NOT IN ('succeeded', 'failed') ORDER BY a.attempt_id LIMIT 20""")]


def fetch_sandbox(args, path):
    client = Client(args.psp_port, timeout=30)
    try:
        status, payload = client.request("GET", path)
    finally:
        client.close()
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}")
    return payload


def fetch_settlement(args, psp):
    connection = http.client.HTTPConnection("127.0.0.1", args.psp_port, timeout=30)
    try:
        connection.request("GET", f"/psp/{psp}/settlement")
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET /psp/{psp}/settlement: HTTP {response.status}")
    rows = [line.split(",") for line in text.splitlines()[1:] if line]
    return [{"key": r[0], "kind": r[1], "amount": minor(r[2]), "status": r[4]} for r in rows]


def reconcile_with_psps(run, args, database):
    """Money the PSPs moved versus what the database says, line by line."""
    if database is None:
        return
    captured, refunded = {}, {}
    for psp in args.psps:
        for row in fetch_settlement(args, psp):
            if row["kind"] == "charge" and row["status"] == "captured":
                captured[(psp, row["key"])] = row["amount"]
            elif row["kind"] == "refund" and row["status"] == "refunded":
                refunded[(psp, row["key"])] = row["amount"]
    completed = {(psp, f"{payment}:{psp}"): amount for payment, psp, amount in database.execute(
        "SELECT payment_id, psp_id, captured_minor FROM payment WHERE status = 'completed'")}
    succeeded = {(psp, f"{refund}:{psp}"): amount for refund, psp, amount in database.execute(
        "SELECT refund_id, psp_id, amount_minor FROM refund WHERE status = 'succeeded'")}
    for what, psp_side, db_side in (("charge", captured, completed), ("refund", refunded, succeeded)):
        for key in sorted(set(psp_side) - set(db_side))[:10]:
            run.fail(f"{key[0]} moved money for {what} {key[1]} ({decimal(psp_side[key])}) and the database has no such "
                     f"{'completed payment' if what == 'charge' else 'succeeded refund'}")
        for key in sorted(set(db_side) - set(psp_side))[:10]:
            run.fail(f"the database has {what} {key[1]} ({decimal(db_side[key])}) as done and {key[0]} never moved that money")
        for key in sorted(set(psp_side) & set(db_side)):
            if psp_side[key] != db_side[key]:
                run.fail(f"{what} {key[1]} at {key[0]}: the PSP moved {decimal(psp_side[key])}, the database says {decimal(db_side[key])}")
    run.count("PSP charges reconciled", len(captured))
    run.count("PSP refunds reconciled", len(refunded))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs of the server under load (default 10)")
    parser.add_argument("--rate", type=float, default=100, help="requests per second, all threads together (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the load, the kill times and the sandbox (default: random, printed)")
    parser.add_argument("--work-dir", help="where the database and logs go (default: a new temporary directory, removed after a passing run)")
    parser.add_argument("--port", type=int, default=28080, help="the server's port (default 28080)")
    parser.add_argument("--psp-port", type=int, default=29090, help="the sandbox's port (default 29090)")
    parser.add_argument("--threads", type=int, default=8, help="load threads, one keep-alive connection each (default 8)")
    parser.add_argument("--min-interval", type=float, default=1.0, help="shortest time between a restart and the next kill, s")
    parser.add_argument("--max-interval", type=float, default=3.0, help="longest time between a restart and the next kill, s")
    parser.add_argument("--tail", type=float, default=2.0, help="seconds of load after the last restart (default 2)")
    parser.add_argument("--settle-timeout", type=float, default=90.0, help="seconds for everything to reach a terminal state (default 90)")
    parser.add_argument("--max-silence", type=float, default=15.0, help="seconds without any answer from a live server that count as a stall (default 15)")
    parser.add_argument("--stop-timeout", type=float, default=60.0, help="seconds the server may take to exit after SIGTERM (default 60)")
    parser.add_argument("--refund-share", type=float, default=0.1, help="share of request slots spent on a refund")
    parser.add_argument("--retry-share", type=float, default=0.8, help="share of cut-off payments the client retries with the same key")
    parser.add_argument("--duplicate-share", type=float, default=0.03, help="share of answered payments sent again with the same key")
    parser.add_argument("--sandbox-arg", action="append", default=[], help="extra psp-sandbox argument (repeatable), e.g. --sandbox-arg=--ambiguous-rate=0.1")
    parser.add_argument("--keep", action="store_true", help="keep the work directory after a passing run")
    args = parser.parse_args()
    args.binary = os.environ.get("PAYSTORM_BIN", ".build/debug/paystorm")
    args.psps = ["stripe", "paypal"]
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    if not (os.path.isfile(args.binary) and os.access(args.binary, os.X_OK)):
        parser.error(f"no executable paystorm at {args.binary}; build it (swift build) or set PAYSTORM_BIN")
    if args.kills < 0 or args.rate <= 0 or args.threads < 1 or not 0 < args.min_interval <= args.max_interval:
        parser.error("expected --kills >= 0, --rate > 0, --threads >= 1 and 0 < --min-interval <= --max-interval")
    for port in (args.port, args.psp_port):
        if not port_free(port):
            parser.error(f"port {port} is in use; choose others with --port/--psp-port")

    temporary = args.work_dir is None
    work = tempfile.mkdtemp(prefix="paystorm-crash-") if temporary else os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    if os.path.exists(os.path.join(work, "p.sqlite")):
        parser.error(f"{work} already holds a database; give an empty --work-dir")
    atexit.register(kill_children)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    began = time.monotonic()
    run = Run(args, work)
    cluster = Cluster(args, run, work)
    log(f"crash test: seed {args.seed}, {args.kills} kills, {args.rate:g} req/s, {args.threads} threads, binary {args.binary}, work dir {work}")
    cluster.start_sandbox()
    cluster.start_server()

    threads = [LoadThread(run, index) for index in range(args.threads)]
    for thread in threads:
        thread.start()
    killer = random.Random(args.seed)
    restarts = []
    witnesses = []
    for kill in range(1, args.kills + 1):
        time.sleep(killer.uniform(args.min_interval, args.max_interval))
        cluster.kill_server()
        # What the killed server had committed: the final audit checks the journal still begins with it.
        head = journal_head(cluster.database)
        if head and head not in witnesses:
            witnesses.append(head)
        try:
            restarts.append(cluster.start_server())
        except SystemExit as error:
            run.fail(f"restart after kill {kill} failed: {error}")
            break
        log(f"kill {kill}/{args.kills}: restarted in {restarts[-1]:.2f} s; "
            f"{run.counts.get('payments acknowledged', 0)} payments acknowledged so far")
    time.sleep(args.tail)
    run.stop.set()
    for thread in threads:
        thread.join(timeout=60)
        if thread.is_alive():
            run.fail(f"{thread.name} still blocked 60 s after the load stopped (a request hangs?)")
    load_seconds = time.monotonic() - began
    log(f"load stopped after {load_seconds:.1f} s; waiting for every payment to reach a terminal state")

    database = open_database(cluster.database)
    settled = cluster.server_alive() and settle(run, cluster, args, database)
    open_attempts = describe_open_attempts(database)
    if database is not None:
        database.close()
    cluster.stop_server(args.stop_timeout)
    run.acknowledged_file.close()

    audit_command = [args.binary, "audit", "--database", cluster.database,
                     "--acknowledged", os.path.join(work, "acknowledged.txt"),
                     "--sandbox", f"http://127.0.0.1:{args.psp_port}", "--settled"]
    for head in witnesses:
        audit_command += ["--witness", head]
    run.counts["journal heads witnessed at kills"] = len(witnesses)
    try:
        audit = subprocess.run(audit_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        audit_output = audit.stdout
        if audit.returncode != 0:
            run.fail(f"paystorm audit exited with status {audit.returncode}")
    except subprocess.TimeoutExpired:
        audit_output = "(no answer within 300 s)"
        run.fail("paystorm audit did not finish within 300 s")
    stats = {}
    try:
        stats = fetch_sandbox(args, "/stats")
        if stats.get("double_charged"):
            run.fail(f"the sandbox charged these payments twice: {stats['double_charged']}")
        database = open_database(cluster.database)
        if settled:
            reconcile_with_psps(run, args, database)
        if database is not None:
            missing = [p for p in run.payments if database.execute("SELECT 1 FROM payment WHERE payment_id = ?", (p,)).fetchone() is None]
            if missing:
                run.fail(f"{len(missing)} acknowledged payments are not in the database: {missing[:10]}")
            statuses = dict(database.execute("SELECT status, COUNT(*) FROM payment GROUP BY status").fetchall())
            run.counts["database payments by status"] = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
            database.close()
    except (RuntimeError, ConnectionFailed, OSError) as error:
        run.fail(f"cannot ask the sandbox: {error}")
    kill_children()

    print()
    print("=" * 72)
    print(f"paystorm crash test, seed {args.seed}: {len(restarts)} of {args.kills} kills restarted, "
          f"{time.monotonic() - began:.1f} s in all ({load_seconds:.1f} s of load)")
    if restarts:
        print(f"  restart to healthy: median {sorted(restarts)[len(restarts) // 2]:.2f} s, longest {max(restarts):.2f} s")
    for name in sorted(run.counts):
        print(f"  {name}: {run.counts[name]}")
    if stats:
        print(f"  sandbox: {stats.get('calls')} PSP calls, answered {stats.get('answered')}, captured {stats.get('captured')}, "
              f"refunded {stats.get('refunded')}, double_charged {stats.get('double_charged')}")
    if run.engine:
        print(f"  engine when idle: {json.dumps(run.engine, sort_keys=True)}")
    print("  audit: " + "\n  audit: ".join(audit_output.strip().splitlines()))
    for note in run.notes:
        print(f"  note: {note}")
    if open_attempts:
        print("  open PSP attempts at the graceful stop:")
        for line in open_attempts:
            print(f"    {line}")
    if run.failures:
        print(f"FAILED: {len(run.failures)} problems (work dir kept: {work})")
        for failure in run.failures[:40]:
            print(f"  - {failure}")
        again = sys.argv[1:] + ([] if any(a.startswith("--seed") for a in sys.argv[1:]) else ["--seed", str(args.seed)])
        print(f"again: PAYSTORM_BIN={shlex.quote(args.binary)} {shlex.quote(sys.argv[0])} {shlex.join(again)}")
        return 1
    print(f"PASSED: every acknowledged payment is durable and terminal, no double charge, audit clean"
          f"{'' if temporary and not args.keep else f' (work dir {work})'}")
    if temporary and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
