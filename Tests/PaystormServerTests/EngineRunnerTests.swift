import Foundation
import GRDB
import PaystormEngine
import PaystormStore
import Testing
@testable import PaystormServer

@Suite("Engine runner: group commit, durability, relay and consumers")
struct EngineRunnerTests {
    @Test("calls queued together share one transaction, and every one is answered")
    func groupCommit() async throws {
        let directory = TemporaryDirectory()
        let runner = try ServerFixture.runner(in: directory)
        // Queued before the thread starts: its first batch takes them all.
        let answers = AnswerBox()
        for index in 0..<100 {
            runner.submit(.createPayment(ServerFixture.command(key: "k\(index)", user: "u\(index)"))) { answers.add($0) }
        }
        try runner.start()
        #expect(await ServerFixture.eventually { answers.count == 100 })
        #expect(answers.failures.isEmpty, "\(answers.failures)")
        let status = runner.currentStatus
        #expect(status.largestBatch >= 100, "the hundred queued calls went in one transaction")
        #expect(status.batches < 100)
        await runner.stop()
    }

    @Test("an answered payment is on disk: another connection finds it at once")
    func acknowledgedIsDurable() async throws {
        let directory = TemporaryDirectory()
        let runner = try ServerFixture.runner(in: directory)
        try runner.start()
        let result = await runner.perform(.createPayment(ServerFixture.command(key: "durable")))
        guard case let .success(.payment(view)) = result else {
            Issue.record("expected a payment, got \(result)")
            return
        }
        // A second connection, as after kill -9: only committed data is visible to it.
        let store = try PaymentEngine.openStore(.file(path: directory.file("engine.sqlite")))
        let found = try store.queue.inDatabase { try Bool.fetchOne($0, sql: "SELECT 1 FROM payment WHERE payment_id = ?", arguments: [view.paymentID]) }
        #expect(found == true)
        await runner.stop()
    }

    @Test("an answered call's timeout is dropped, not kept until it fires")
    func spentTimersDropped() async throws {
        let directory = TemporaryDirectory()
        // Timeouts an hour long: kept, each would stay armed through the test.
        let runner = try ServerFixture.runner(in: directory, configuration: ServerFixture.patientConfiguration())
        try runner.start()
        for index in 0..<10 {
            guard case .success(.payment) = await runner.perform(.createPayment(ServerFixture.command(key: "spent-\(index)", user: "u\(index)",
                                                                                                         card: LoadGenerator.card(user: index)))) else {
                Issue.record("payment \(index) refused")
                return
            }
        }
        let dropped = await ServerFixture.eventually(30) {
            guard case let .success(.status(status)) = await runner.perform(.status) else { return false }
            return status.pspCallsInFlight == 0 && status.timersArmed == 1
        }
        #expect(dropped, "every call was answered at once, so only the idempotency purge is left armed")
        await runner.stop()
    }

    @Test("a payment goes all the way: PSP, outbox, broker, ledger, wallet; the audit finds nothing wrong")
    func lifecycle() async throws {
        let directory = TemporaryDirectory()
        let psp = InstantPSP(declineMinor: [777])
        let runner = try ServerFixture.runner(in: directory, psp: psp)
        try runner.start()
        var ids: [String] = []
        for index in 0..<20 {
            let amount = index == 7 ? "7.77" : "1\(index).00"
            if case let .success(.payment(view)) = await runner.perform(.createPayment(ServerFixture.command(key: "life-\(index)", amount: amount, user: "u\(index)",
                                                                                                    card: LoadGenerator.card(user: index)))) {
                ids.append(view.paymentID)
            }
        }
        #expect(ids.count == 20)
        let settled = await ServerFixture.eventually {
            let status = runner.currentStatus
            guard case let .success(.status(full)) = await runner.perform(.status) else { return false }
            return status.outboxRelayed >= 20 && full.outboxBacklog == 0 && full.consumerLag == 0 && status.pspCallsInFlight == 0
        }
        #expect(settled)
        // Every consumer committed every topic: the broker's log is trimmed to nothing.
        #expect(try (runner.broker as? SQLiteBroker)?.retainedMessages() == 0)
        guard case let .success(.payment(declined)) = await runner.perform(.payment(id: ids[7], merchantID: "m1")) else {
            Issue.record("payment \(ids[7]) missing")
            return
        }
        #expect(declined.status == .failed)
        guard case let .success(.ledger(page)) = await runner.perform(.ledger(LedgerQuery(limit: 100))) else {
            Issue.record("no ledger")
            return
        }
        #expect(page.entries.count == 19)
        await runner.stop()
        let findings = try ServerAudit.run(databasePath: directory.file("engine.sqlite"), acknowledged: ids, settled: true, doubleCharged: [])
        #expect(findings.violations.isEmpty, "\(findings.violations)")
        #expect(findings.acknowledged == 20)
        #expect(psp.calls.filter { $0.operation == .charge }.count == 20)
    }

    @Test("a restarted runner recovers: open attempts are resumed from SQLite")
    func recoversOpenAttempts() async throws {
        let directory = TemporaryDirectory()
        // A PSP that never answers: the attempt stays in flight, as when the process dies mid-call.
        // No PSP timeout before the stop (under a busy test run this task has waited long enough
        // for the first runner to exhaust its status queries and start a void): the second
        // runner, with the default timeout, finds the attempt in flight.
        let silent = SilentPSP()
        let first = try ServerFixture.runner(in: directory, psp: silent, configuration: ServerFixture.patientConfiguration())
        try first.start()
        guard case let .success(.payment(view)) = await first.perform(.createPayment(ServerFixture.command(key: "resume"))) else {
            Issue.record("payment not created")
            return
        }
        await first.stop(grace: .seconds(0))
        let psp = InstantPSP()
        let second = try ServerFixture.runner(in: directory, psp: psp)
        try second.start()
        let done = await ServerFixture.eventually(60) {
            guard case let .success(.payment(now)) = await second.perform(.payment(id: view.paymentID, merchantID: "m1")) else { return false }
            return now.status == .completed
        }
        #expect(done, "the recovered attempt was settled by a status query")
        #expect(psp.calls.contains { $0.operation == .status }, "\(psp.calls.map(\.operation))")
        await second.stop()
    }
}

extension EngineRunnerTests {
    @Test("outbound calls are bounded: past the limit they wait in the runner, not in the HTTP client")
    func outboundBound() async throws {
        let directory = TemporaryDirectory()
        let psp = HoldingPSP()
        let runner = try ServerFixture.runner(in: directory, psp: psp, configuration: ServerFixture.patientConfiguration())
        runner.maximumOutbound = 2
        try runner.start()
        for index in 0..<5 {
            _ = await runner.perform(.createPayment(ServerFixture.command(key: "bound-\(index)", user: "u\(index)",
                                                                           card: LoadGenerator.card(user: index))))
        }
        guard case let .success(.status(status)) = await runner.perform(.status) else {
            Issue.record("no status")
            return
        }
        #expect(psp.count == 2)
        #expect(status.pspCallsInFlight == 2)
        #expect(status.outboundQueued == 3)
        // Each release frees two connections, and the next two waiting calls go out.
        psp.release()
        #expect(await ServerFixture.eventually(60) { psp.count == 4 })
        psp.release()
        #expect(await ServerFixture.eventually(60) { psp.count == 5 }, "freed connections take the waiting calls")
        psp.release()
        await runner.stop()
    }
}

extension EngineRunnerTests {
    @Test("a PSP reply whose batch rolled back is applied again once the storage recovers")
    func rolledBackEngineWorkIsRetried() async throws {
        let directory = TemporaryDirectory()
        let psp = HoldingPSP()
        let log = LogLines()
        let runner = try ServerFixture.runner(in: directory, psp: psp, configuration: ServerFixture.patientConfiguration(),
                                              log: { log.add($0) })
        try runner.start()
        guard case let .success(.payment(view)) = await runner.perform(.createPayment(ServerFixture.command(key: "retried"))) else {
            Issue.record("no payment")
            return
        }
        #expect(await ServerFixture.eventually { psp.count == 1 })
        // Another connection holds the write lock: the runner's transaction for the reply cannot begin.
        var blocking = Configuration()
        blocking.allowsUnsafeTransactions = true
        let blocker = try DatabaseQueue(path: directory.file("engine.sqlite"), configuration: blocking)
        try await blocker.writeWithoutTransaction { try $0.execute(sql: "BEGIN EXCLUSIVE") }
        psp.release()
        #expect(await ServerFixture.eventually { log.contains("rolled back") }, "the reply's batch failed while the lock was held")
        try await blocker.writeWithoutTransaction { try $0.execute(sql: "COMMIT") }
        // Nothing else would settle it: no timeout fires within the test.
        let settled = await ServerFixture.eventually(60) {
            guard case let .success(.payment(now)) = await runner.perform(.payment(id: view.paymentID, merchantID: "m1")) else { return false }
            return now.status == .completed
        }
        #expect(settled, "the PSP's answer was applied on the retry")
        await runner.stop()
    }

    @Test("a request whose transaction cannot begin (another connection holds the write lock) is answered with a storage error")
    func requestIsAnsweredWhenTheBatchCannotBegin() async throws {
        let directory = TemporaryDirectory()
        let runner = try ServerFixture.runner(in: directory)
        try runner.start()
        var blocking = Configuration()
        blocking.allowsUnsafeTransactions = true
        let blocker = try DatabaseQueue(path: directory.file("engine.sqlite"), configuration: blocking)
        try await blocker.writeWithoutTransaction { try $0.execute(sql: "BEGIN EXCLUSIVE") }
        // Unstructured, so that a call never answered fails the test instead of hanging it.
        let answers = AnswerBox()
        Task { answers.add(await runner.perform(.createPayment(ServerFixture.command(key: "locked-out")))) }
        let answered = await ServerFixture.eventually(10) { answers.count == 1 }
        try await blocker.writeWithoutTransaction { try $0.execute(sql: "COMMIT") }
        #expect(answered, "the client of a batch that could not begin waited forever")
        guard answered else { return }
        guard case .storage = answers.failures.first else {
            Issue.record("expected a storage failure (503, retry with the same key), got \(answers.failures)")
            return
        }
        // Nothing was done: the same key goes through once the lock is gone.
        let retried = await runner.perform(.createPayment(ServerFixture.command(key: "locked-out")))
        guard case let .success(.payment(view)) = retried else {
            Issue.record("the retry with the same key failed: \(retried)")
            return
        }
        #expect(!view.replayed, "the refused attempt left no idempotency record behind")
        await runner.stop()
    }

    @Test("a drain waits its whole grace, fractions of a second included")
    func drainHonoursSubSecondGrace() async throws {
        let directory = TemporaryDirectory()
        let psp = HoldingPSP()
        let runner = try ServerFixture.runner(in: directory, psp: psp, configuration: ServerFixture.patientConfiguration())
        try runner.start()
        guard case let .success(.payment(view)) = await runner.perform(.createPayment(ServerFixture.command(key: "drained"))) else {
            Issue.record("no payment")
            return
        }
        #expect(await ServerFixture.eventually { psp.count == 1 })
        // On a thread of its own: a task's sleep could overrun the grace
        // while other tests keep the few threads that run tasks busy.
        Thread {
            Thread.sleep(forTimeInterval: 0.2)
            psp.release()
        }.start()
        await runner.stop(grace: .milliseconds(900))
        let store = try PaymentEngine.openStore(.file(path: directory.file("engine.sqlite")))
        let status = try store.queue.inDatabase { try String.fetchOne($0, sql: "SELECT status FROM payment WHERE payment_id = ?", arguments: [view.paymentID]) }
        #expect(status == "completed", "the answer that came 200 ms into a 900 ms grace was applied before the runner stopped")
    }

    @Test("a drain waits for the notifications its own last pass sent, instead of stopping with them in flight")
    func drainWaitsForWorkSentByItsLastPass() async throws {
        let directory = TemporaryDirectory()
        let psp = HoldingPSP()
        let notifier = SlowNotifier(delaySeconds: 0.3)
        let runner = try ServerFixture.runner(in: directory, psp: psp, notifier: notifier,
                                              configuration: ServerFixture.patientConfiguration())
        try runner.start()
        guard case .success(.payment) = await runner.perform(.createPayment(ServerFixture.command(key: "last-pass"))) else {
            Issue.record("no payment")
            return
        }
        // Quiet but for the PSP call: every event consumed, every notification answered.
        let quiet = await ServerFixture.eventually {
            guard psp.count == 1, case let .success(.status(status)) = await runner.perform(.status) else { return false }
            let counts = notifier.counts
            return status.consumerLag == 0 && status.notificationsInFlight == 0 && counts.taken == counts.answered
        }
        #expect(quiet)
        let stop = Task { await runner.stop(grace: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(300))  // the drain is waiting for the PSP
        // The reply completes the payment: in one pass the drain applies it, relays the event,
        // and the notification consumer sends its notifications.
        psp.release()
        await stop.value
        let counts = notifier.counts
        #expect(counts.taken > 0 && counts.answered == counts.taken, "the drain stopped with notifications in flight: \(counts)")
        #expect(runner.currentStatus.notificationsInFlight == 0)
        let store = try PaymentEngine.openStore(.file(path: directory.file("engine.sqlite")))
        let pending = try store.queue.inDatabase { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM notification WHERE user_state = 'pending' OR merchant_state = 'pending'") }
        #expect(pending == 0, "every notification's result was recorded before the runner stopped")
    }

    @Test("a call made after the runner stopped is answered, with an error")
    func callAfterStopIsAnswered() async throws {
        let directory = TemporaryDirectory()
        let runner = try ServerFixture.runner(in: directory)
        try runner.start()
        await runner.stop()
        let answers = AnswerBox()
        runner.submit(.status) { answers.add($0) }
        #expect(answers.count == 1, "answered at once, on the caller's thread")
        #expect(answers.failures.count == 1)
    }
}

extension EngineRunnerTests {
    @Test("a merchant endpoint that never answers holds no connection a PSP call needs")
    func stuckNotificationsLeavePSPCallsAlone() async throws {
        let directory = TemporaryDirectory()
        let psp = InstantPSP()
        let notifier = StuckNotifier()
        let runner = try ServerFixture.runner(in: directory, psp: psp, notifier: notifier,
                                              configuration: ServerFixture.patientConfiguration())
        runner.maximumOutbound = 2
        runner.maximumNotificationsOut = 2
        try runner.start()
        func completes(_ key: String, user: Int) async -> Bool {
            guard case let .success(.payment(view)) = await runner.perform(.createPayment(
                ServerFixture.command(key: key, user: "u\(user)", card: LoadGenerator.card(user: user)))) else { return false }
            return await ServerFixture.eventually(30) {
                guard case let .success(.payment(now)) = await runner.perform(.payment(id: view.paymentID, merchantID: "m1")) else { return false }
                return now.status == .completed
            }
        }
        #expect(await completes("first", user: 1))
        // The first payment's two notifications now hold both notification slots, for good.
        #expect(await ServerFixture.eventually(30) { notifier.count == 2 })
        #expect(await completes("second", user: 2), "its PSP call went out beside the stuck notifications")
        #expect(psp.calls.count == 2)
        await runner.stop(grace: .milliseconds(100))
    }
}

/// A PSP that holds every call until released, then answers success.
final class HoldingPSP: PSPPort, @unchecked Sendable {
    private let lock = NSLock()
    private var held: [(PSPRequest, @Sendable (PSPOutcome?) -> Void)] = []
    private var calls = 0
    var count: Int { lock.withLock { calls } }
    func call(_ request: PSPRequest, reply: @escaping @Sendable (PSPOutcome?) -> Void) {
        lock.withLock {
            calls += 1
            held.append((request, reply))
        }
    }
    func release() {
        let waiting = lock.withLock { defer { held.removeAll() }; return held }
        for (request, reply) in waiting { reply(.succeeded(pspReference: "ref-\(request.idempotencyKey)")) }
    }
}

/// Answers collected from the engine thread.
final class AnswerBox: @unchecked Sendable {
    private let lock = NSLock()
    private var answers: [Result<EngineRunner.Answer, EngineError>] = []
    func add(_ answer: Result<EngineRunner.Answer, EngineError>) { lock.withLock { answers.append(answer) } }
    var count: Int { lock.withLock { answers.count } }
    var failures: [EngineError] {
        lock.withLock { answers.compactMap { if case let .failure(error) = $0 { error } else { nil } } }
    }
}

/// A PSP that takes every call and never answers.
struct SilentPSP: PSPPort {
    func call(_ request: PSPRequest, reply: @escaping @Sendable (PSPOutcome?) -> Void) {}
}

extension EngineRunnerTests {
    @Test("reconciliation rounds over overlapping periods record one wrong line once, not once a round")
    func reconciliationRecordsADiscrepancyOnce() async throws {
        let directory = TemporaryDirectory()
        let psp = InstantPSP()
        let runner = try ServerFixture.runner(in: directory, psp: psp)
        try runner.start()
        guard case let .success(.payment(view)) = await runner.perform(.createPayment(ServerFixture.command(key: "recon", amount: "10.50"))) else {
            Issue.record("no payment")
            return
        }
        #expect(await ServerFixture.eventually {
            guard case let .success(.payment(now)) = await runner.perform(.payment(id: view.paymentID, merchantID: "m1")) else { return false }
            return now.status == .completed
        })
        let charge = try #require(psp.calls.first { $0.operation == .charge })
        // The PSP says it captured a cent more than the engine charged.
        let start = WallClock.nanoseconds(), second: Int64 = 1_000_000_000
        let line = SettlementLine(pspID: charge.pspID, pspReference: charge.idempotencyKey, kind: .charge,
                                  amount: Money(minorUnits: 1_051, currency: .usd), status: .captured, settledAtNanoseconds: start + 20 * second)
        var reconciledThrough: Int64?
        for round in 1...3 {
            // Rounds 20 s apart: periods [0, 50), [0, 70) and [10, 90) s from the start.
            let (from, to) = try #require(Reconciliation.period(reconciledThrough: reconciledThrough, start: start,
                                                                 now: start + (40 + 20 * Int64(round)) * second))
            #expect(from <= line.settledAtNanoseconds && line.settledAtNanoseconds < to, "round \(round): the line is in the overlap")
            let report = SettlementReport(pspID: charge.pspID, periodStartNanoseconds: from, periodEndNanoseconds: to, lines: [line])
            guard case let .success(.reconciliation(result)) = await runner.perform(.reconcile(report)) else {
                Issue.record("round \(round) failed")
                return
            }
            #expect(result.items.map(\.kind) == [.amountMismatch], "each round still finds it")
            reconciledThrough = to
        }
        await runner.stop()
        let store = try PaymentEngine.openStore(.file(path: directory.file("engine.sqlite")))
        let recorded = try store.queue.inDatabase { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM reconciliation_item") }
        #expect(recorded == 1)
    }

    @Test("a reconciliation round reads from where the last one ended, less an overlap, not from the server's start")
    func reconciliationPeriodsSlide() {
        let start: Int64 = 1_000_000_000_000_000_000, second: Int64 = 1_000_000_000
        let settling = Reconciliation.settlingNanoseconds, overlap = Reconciliation.overlapNanoseconds
        #expect(Reconciliation.period(reconciledThrough: nil, start: start, now: start + 5 * second) == nil, "nothing has settled yet")
        let first = Reconciliation.period(reconciledThrough: nil, start: start, now: start + 30 * second)
        #expect(first.map { [$0.from, $0.to] } == [start, start + 30 * second - settling])
        // Early on the overlap would reach back past the start: it stops there.
        let early = Reconciliation.period(reconciledThrough: first?.to, start: start, now: start + 60 * second)
        #expect(early.map { [$0.from, $0.to] } == [start, start + 60 * second - settling])
        let hour = 3_600 * second
        let later = Reconciliation.period(reconciledThrough: start + hour, start: start, now: start + hour + 30 * second)
        #expect(later.map { [$0.from, $0.to] } == [start + hour - overlap, start + hour + 30 * second - settling])
        // A last end in the future (a wrong clock then) is not waited for.
        #expect(Reconciliation.resumePoints(["stripe": start + hour, "paypal": start - hour], now: start) == ["stripe": start, "paypal": start - hour])
        // After a day stopped, rounds catch up an hour at a time.
        let catchingUp = Reconciliation.period(reconciledThrough: start + hour, start: start, now: start + 25 * hour)
        #expect(catchingUp.map { [$0.from, $0.to] } == [start + hour - overlap, start + 2 * hour - overlap])
    }
}

extension EngineRunnerTests {
    @Test("a webhook's timestamp is checked against the wall clock: an engine clock 400 s behind it still applies a webhook signed now")
    func webhookToleranceUsesTheWallClock() async throws {
        let directory = TemporaryDirectory()
        // As after a 400 s VM suspend: the monotonic clock stopped, the wall clock went on.
        let lag: Int64 = 400_000_000_000
        let runner = try ServerFixture.runner(in: directory, psp: SilentPSP(), configuration: ServerFixture.patientConfiguration(),
                                              clockAnchor: (wall: WallClock.nanoseconds() - lag, monotonic: WallClock.monotonic()))
        try runner.start()
        guard case let .success(.payment(view)) = await runner.perform(.createPayment(ServerFixture.command(key: "lagging"))) else {
            await runner.stop(grace: .milliseconds(100))
            Issue.record("no payment")
            return
        }
        let body = PSPWebhookPayload.settlementEventJSON(reference: "\(view.paymentID):stripe", type: .chargeSucceeded)
        let now = WallClock.nanoseconds() / 1_000_000_000
        let signature = PaymentEngine.webhookSignature(body: body, timestampSeconds: now,
                                                       secret: WebhookSecrets.development(pspIDs: ["stripe"]).psps["stripe"]!)
        let result = await runner.perform(.webhook(pspID: "stripe", body: body, signature: signature, timestampSeconds: now))
        let after = await runner.perform(.payment(id: view.paymentID, merchantID: "m1"))
        await runner.stop(grace: .milliseconds(100))  // the PSP call never returns
        guard case .success(.webhook(.applied)) = result else {
            Issue.record("expected the webhook applied, got \(result)")
            return
        }
        guard case let .success(.payment(settled)) = after else {
            Issue.record("payment \(view.paymentID) missing: \(after)")
            return
        }
        #expect(settled.status == .completed)
    }
}

extension EngineRunnerTests {
    /// A round over one PSP whose report holds `lines`, served as the sandbox serves them: by stamp, in the range asked for.
    static func reconciliation(_ runner: EngineRunner, psp: String, lines: [SettlementLine], resumed: [String: Int64] = [:]) -> Reconciliation {
        Reconciliation(runner: runner, pspIDs: [psp], every: 1, resumed: resumed, log: { _ in }) { _, from, to in
            lines.filter { from <= $0.settledAtNanoseconds && $0.settledAtNanoseconds < to }
        }
    }

    /// A completed payment's charge, and when the engine made its attempt (engine time).
    static func completedCharge(_ runner: EngineRunner, _ psp: InstantPSP, key: String, user: Int = 1,
                                in directory: TemporaryDirectory) async throws -> (PSPRequest, createdNanoseconds: Int64) {
        let command = ServerFixture.command(key: key, user: "u\(user)", card: LoadGenerator.card(user: user))
        guard case let .success(.payment(view)) = await runner.perform(.createPayment(command)) else {
            throw ServerError("no payment")
        }
        #expect(await ServerFixture.eventually {
            guard case let .success(.payment(now)) = await runner.perform(.payment(id: view.paymentID, merchantID: "m1")) else { return false }
            return now.status == .completed
        })
        let charge = try #require(psp.calls.first { $0.operation == .charge && $0.idempotencyKey.hasPrefix(view.paymentID + ":") })
        let store = try PaymentEngine.openStore(.file(path: directory.file("engine.sqlite")))
        let created = try store.queue.inDatabase {
            try Int64.fetchOne($0, sql: "SELECT created_ns FROM psp_attempt WHERE psp_idempotency_key = ?", arguments: [charge.idempotencyKey])
        }
        return (charge, try #require(created))
    }

    @Test("a payment made 1 ms before a round's end whose line the PSP stamped 1 ms after it is matched, not missing at the PSP")
    func reconciliationReadsLinesStampedJustAfterTheEnd() async throws {
        let directory = TemporaryDirectory()
        let psp = InstantPSP()
        let runner = try ServerFixture.runner(in: directory, psp: psp)
        try runner.start()
        let (charge, created) = try await Self.completedCharge(runner, psp, key: "edge", in: directory)
        let millisecond: Int64 = 1_000_000
        let end = created + millisecond
        let line = SettlementLine(pspID: charge.pspID, pspReference: charge.idempotencyKey, kind: .charge,
                                  amount: charge.amount, status: .captured, settledAtNanoseconds: end + millisecond)
        let result = try await Self.reconciliation(runner, psp: charge.pspID, lines: [line])
            .round(psp: charge.pspID, from: end - 60_000 * millisecond, to: end)
        await runner.stop()
        #expect(result.count(of: .missingAtPSP) == 0, "\(result.items.map(\.explanation))")
        #expect(result.matched == 1)
    }
}

extension EngineRunnerTests {
    @Test("with the engine clock 400 s behind the wall clock, a round expects the payments made in its period by the wall clock")
    func reconciliationPeriodFollowsTheWallClock() async throws {
        let directory = TemporaryDirectory()
        let psp = InstantPSP()
        let second: Int64 = 1_000_000_000
        let runner = try ServerFixture.runner(in: directory, psp: psp,
                                              clockAnchor: (wall: WallClock.nanoseconds() - 400 * second, monotonic: WallClock.monotonic()))
        try runner.start()
        let before = WallClock.nanoseconds()
        let (settled, _) = try await Self.completedCharge(runner, psp, key: "settled", user: 1, in: directory)
        let (lost, _) = try await Self.completedCharge(runner, psp, key: "lost", user: 2, in: directory)
        let after = WallClock.nanoseconds()
        // The PSP reports the first charge and has no line for the second.
        let line = SettlementLine(pspID: settled.pspID, pspReference: settled.idempotencyKey, kind: .charge,
                                  amount: settled.amount, status: .captured, settledAtNanoseconds: after)
        let reconciliation = Self.reconciliation(runner, psp: settled.pspID, lines: [line])
        let current = try await reconciliation.round(psp: settled.pspID, from: before - second, to: after + second)
        // A period that ended before either payment was made, though their engine time falls in it.
        let earlier = try await reconciliation.round(psp: settled.pspID, from: before - 460 * second, to: before - 340 * second)
        await runner.stop()
        #expect(current.matched == 1)
        #expect(current.items.map { [$0.kind.rawValue, $0.pspReference] } == [[DiscrepancyKind.missingAtPSP.rawValue, lost.idempotencyKey]],
                "\(current.items.map(\.explanation))")
        #expect(earlier.items.isEmpty, "\(earlier.items.map(\.explanation))")
    }
}

extension EngineRunnerTests {
    @Test("a round keeps its end by the wall clock, not by an engine clock 400 s ahead of it")
    func aRoundKeepsItsWallClockEnd() async throws {
        let directory = TemporaryDirectory()
        let second: Int64 = 1_000_000_000
        let runner = try ServerFixture.runner(in: directory, clockAnchor: (wall: WallClock.nanoseconds() + 400 * second, monotonic: WallClock.monotonic()))
        try runner.start()
        let to = WallClock.nanoseconds() - 10 * second
        _ = try await Self.reconciliation(runner, psp: "stripe", lines: []).round(psp: "stripe", from: to - 60 * second, to: to)
        await runner.stop()
        let resumed = try Reconciliation.resumed(ServerFixture.engine(at: directory.file("engine.sqlite")), pspIDs: ["stripe"])
        #expect(resumed == ["stripe": to], "a restart would wait 400 s for a period it thought was still to come")
    }

    @Test("a restarted server reconciles from where the last run's rounds ended, not from its own start")
    func reconciliationResumesAfterARestart() async throws {
        let directory = TemporaryDirectory()
        let psp = InstantPSP()
        let second: Int64 = 1_000_000_000
        let first = try ServerFixture.runner(in: directory, psp: psp)
        try first.start()
        let (charge, created) = try await Self.completedCharge(first, psp, key: "before-restart", in: directory)
        // The charge was made two minutes ago, after the last round of that run ended.
        let made = created - 120 * second
        let store = try PaymentEngine.openStore(.file(path: directory.file("engine.sqlite")))
        try await store.queue.write {
            try $0.execute(sql: "UPDATE psp_attempt SET created_ns = ? WHERE psp_idempotency_key = ?", arguments: [made, charge.idempotencyKey])
        }
        let lastRound = SettlementReport(pspID: charge.pspID, periodStartNanoseconds: made - 300 * second,
                                         periodEndNanoseconds: made - 30 * second, lines: [])
        guard case .success(.reconciliation) = await first.perform(.reconcile(lastRound, mark: made - 30 * second)) else {
            Issue.record("the last run's round failed")
            return
        }
        await first.stop()

        let restarted = try ServerFixture.runner(in: directory, psp: psp)
        let resumed = try Reconciliation.resumed(restarted.engine, pspIDs: [charge.pspID, "paypal"])
        #expect(resumed == [charge.pspID: made - 30 * second], "only the PSP reconciled whole has an end")
        try restarted.start()
        let log = LogLines()
        let line = SettlementLine(pspID: charge.pspID, pspReference: charge.idempotencyKey, kind: .charge,
                                  amount: charge.amount, status: .captured, settledAtNanoseconds: made + second)
        let rounds = Reconciliation(runner: restarted, pspIDs: [charge.pspID], every: 0.05, resumed: resumed, log: log.add) { _, from, to in
            [line].filter { from <= $0.settledAtNanoseconds && $0.settledAtNanoseconds < to }
        }
        let running = Task { try await rounds.run() }
        // From this start the first period would be empty for ten seconds, and then begin after the charge.
        let reconciled = await ServerFixture.eventually(5) { log.contains("reconciled \(charge.pspID) for") }
        running.cancel()
        try await running.value
        await restarted.stop()
        #expect(reconciled, "\(log.all)")
        #expect(log.all.contains { $0.hasPrefix("reconciled \(charge.pspID) for") && $0.hasSuffix(": 1 matched, 0 discrepancies") }, "\(log.all)")
    }
}

/// Fails every delivery, as a merchant endpoint that is down.
struct FailingNotifier: NotificationPort {
    func deliver(_ message: NotificationMessage, done: @escaping @Sendable (Bool) -> Void) { done(false) }
}

/// Records what it delivered.
final class RecordingNotifier: NotificationPort, @unchecked Sendable {
    private let lock = NSLock()
    private var _delivered: [NotificationMessage] = []
    var delivered: [NotificationMessage] { lock.withLock { _delivered } }
    func deliver(_ message: NotificationMessage, done: @escaping @Sendable (Bool) -> Void) {
        lock.withLock { _delivered.append(message) }
        done(true)
    }
}

@Suite("Engine runner: dead letters replayed on request")
struct DeadLetterReplayTests {
    @Test("a replay resends dead-lettered notifications, applies a parked event, keeps a poisoned one with its new reason; the books end whole")
    func replayBeforeStart() async throws {
        let directory = TemporaryDirectory()
        var configuration = ServerFixture.configuration()
        configuration.notificationBackoffNanoseconds = 5_000_000
        configuration.maxNotificationAttempts = 2
        // A poisoned message (not an event), there before the server starts: every group parks it.
        try SQLiteBroker(.file(path: ServerFixture.brokerPath(in: directory)), partitions: 4)
            .produce([BrokerRecord(topic: "transactions", key: "m1", payload: "not an event")])
        // A payment whose notifications fail every attempt: both are dead-lettered.
        let first = try ServerFixture.runner(in: directory, notifier: FailingNotifier(), configuration: configuration)
        try first.start()
        guard case let .success(.payment(paid)) = await first.perform(.createPayment(ServerFixture.command(key: "dead-1"))) else {
            Issue.record("payment not created")
            return
        }
        let parked = try await ServerFixture.eventually(30) {
            let letters = try first.broker.deadLetters(group: "ledger", limit: 10).count
            return try first.engine.deadLetterCount() == 2 && letters == 1 && first.currentStatus.notificationsInFlight == 0
        }
        #expect(parked)
        // GET /health counts what is parked now: the poisoned message once per group, and both notifications.
        guard case let .success(.status(before)) = await first.perform(.status) else {
            Issue.record("no status")
            return
        }
        #expect(before.deadLetters == 3)
        #expect(before.notificationDeadLetters == 2)
        await first.stop()

        // A completed payment's event the wallet consumer refused (parked, its offset committed):
        // made through the engine of a runner not started, as the relay would have handed it over.
        let second = try ServerFixture.runner(in: directory, notifier: RecordingNotifier(), configuration: configuration)
        let now = second.engineNow()
        let created = try second.engine.createPayment(ServerFixture.command(key: "dead-2", amount: "20.00", user: "u2"), now: now)
        let call = try #require(second.engine.takeEffects().compactMap { effect -> PSPRequest? in
            if case let .callPSP(request) = effect { return request } else { return nil }
        }.first)
        try second.engine.pspReplied(attemptID: call.attemptID, outcome: .succeeded(pspReference: "ref-dead-2"), now: now)
        _ = second.engine.takeEffects()
        let completed = try #require(second.engine.pollOutbox(after: try second.engine.outboxCursor(), limit: 10).last)
        _ = second.engine.takeEffects()
        let broker = try #require(second.broker as? SQLiteBroker)
        let records = [BrokerRecord(topic: completed.topic, key: completed.partitionKey, payload: completed.event.json())]
        try broker.produce(records)
        let refused = try #require(try broker.poll(group: "wallet", limit: 10).first { $0.payload == records[0].payload })
        try broker.deadLetter(group: "wallet", refused, reason: "refused for the test")
        try broker.commit(group: "wallet", [refused])
        // Published above, as the relay would have: acknowledged, so that the start does not publish it again.
        try second.engine.acknowledgeOutbox(through: completed.sequence)
        let walletLetters = try broker.deadLetters(group: "wallet", limit: 10).map(\.delivery)
        #expect(walletLetters.map(\.payload).sorted() == [records[0].payload, "not an event"].sorted())
        #expect(walletLetters.first { $0.payload == records[0].payload } == refused, "the letter is the message as delivered, its key too")

        let replay = try second.replayDeadLetters()
        #expect(replay.notifications == 2)
        #expect(replay.events == 1, "the wallet's parked event was applied")
        #expect(replay.stillFailing.map(\.group).sorted() == ["ledger", "notification", "wallet"], "\(replay.stillFailing)")
        #expect(replay.stillFailing.allSatisfy { $0.delivery.payload == "not an event" && !$0.reason.contains("cannot decode") && !$0.reason.isEmpty })
        #expect(try broker.deadLetters(group: "wallet", limit: 10).map(\.delivery.payload) == ["not an event"])
        #expect(try broker.deadLetters(group: "ledger", limit: 10).map(\.reason) == replay.stillFailing.filter { $0.group == "ledger" }.map(\.reason),
                "the letter left carries the new refusal")
        #expect(try second.engine.deadLetterCount() == 0)

        let recorder = try #require(second.notifier as? RecordingNotifier)
        try second.start()
        let drained = await ServerFixture.eventually(30) {
            guard case let .success(.status(status)) = await second.perform(.status) else { return false }
            return status.outboxBacklog == 0 && status.consumerLag == 0 && status.notificationsInFlight == 0
                && recorder.delivered.contains { $0.body.contains(created.paymentID) }
        }
        #expect(drained)
        #expect(recorder.delivered.filter { $0.body.contains(paid.paymentID) }.count == 2, "both dead-lettered notifications were sent again")
        // A restarted server still shows the letters parked before it started, and none of the replayed ones.
        guard case let .success(.status(after)) = await second.perform(.status) else {
            Issue.record("no status")
            return
        }
        #expect(after.deadLetters == 3, "the poisoned message is still parked, once per group")
        #expect(after.notificationDeadLetters == 0)
        await second.stop()
        // The wallet took the replayed event exactly once: wallets equal the journal.
        let findings = try ServerAudit.run(databasePath: directory.file("engine.sqlite"), acknowledged: [paid.paymentID, created.paymentID],
                                           settled: true, doubleCharged: [])
        #expect(findings.violations.isEmpty, "\(findings.violations)")
        #expect(findings.notificationDeadLetters == 0)
        #expect(findings.brokerDeadLetters?.map(\.group) == ["ledger", "notification", "wallet"], "the poisoned message, once per group")
        let report = ServerAudit.deadLetterReport(findings)
        #expect(report.first == "dead letters: 0 notification(s) not replayed; 3 event(s) parked in the broker")
        #expect(report.filter { $0.hasPrefix("  dead letter of ") }.count == 3)
    }
}
