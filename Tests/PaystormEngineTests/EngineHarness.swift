import Foundation
import GRDB
import PaystormStore
@testable import PaystormEngine

/// Drives a PaymentEngine in tests: collects its effects and lets a test
/// answer PSP calls, fire timers and run the consumers.
final class EngineHarness {
    static let t0: Int64 = 1_790_000_000 * 1_000_000_000  // 2026-09-21, Unix ns
    let engine: PaymentEngine
    var now: Int64 = EngineHarness.t0
    var calls: [PSPRequest] = []
    var timers: [(timer: EngineTimer, at: Int64)] = []
    /// Timers the engine said were spent (``EngineEffect/cancelTimer(_:)``).
    var cancelledTimers: [EngineTimer] = []
    /// Whether a spent timer is dropped, as the simulator and the server do,
    /// or kept and fired when due, as by a host that ignores the effect.
    var dropsCancelledTimers = false
    var published: [OutboxMessage] = []
    var notifications: [NotificationMessage] = []
    var outboxPosition: Int64 = 0

    static func configuration() -> EngineConfiguration {
        var configuration = EngineConfiguration(psps: [
            .init(id: "stripe", webhookSecret: "whsec-stripe"),
            .init(id: "paypal", webhookSecret: "whsec-paypal"),
        ])
        configuration.maxAttemptsPerPSP = 3
        configuration.breakerFailureThreshold = 3
        configuration.maxNotificationAttempts = 3
        return configuration
    }

    init(_ location: Store.Location = .memory, configuration: EngineConfiguration = EngineHarness.configuration()) throws {
        engine = try PaymentEngine(store: location, configuration: configuration,
                                   vaultEncryptionKey: Data(repeating: 1, count: 32), vaultTokenKey: Data(repeating: 2, count: 32))
    }

    /// A harness on a store opened elsewhere (for example one that may hold transactions).
    init(sharing store: Store, configuration: EngineConfiguration = EngineHarness.configuration(), fraud: FraudDetector? = nil) throws {
        engine = try PaymentEngine(sharing: store, configuration: configuration,
                                   vaultEncryptionKey: Data(repeating: 1, count: 32), vaultTokenKey: Data(repeating: 2, count: 32), fraud: fraud)
    }

    /// Moves the engine's queued effects into the harness's lists.
    func collect() {
        for effect in engine.takeEffects() {
            switch effect {
            case let .callPSP(request): calls.append(request)
            case let .armTimer(timer, after): timers.append((timer, now + after))
            case let .cancelTimer(timer):
                cancelledTimers.append(timer)
                // It comes before any timer its call armed, which may be equal to it: the earlier one goes.
                if dropsCancelledTimers, let index = timers.firstIndex(where: { $0.timer == timer }) { timers.remove(at: index) }
            case let .publish(message): published.append(message)
            case let .sendNotification(message): notifications.append(message)
            }
        }
    }

    func advance(by nanoseconds: Int64) { now += nanoseconds }

    @discardableResult
    func pay(key: String, user: String = "u-1", merchant: String = "m-1", amount: String = "10.00", currency: String = "USD",
             card: String = "4111111111111111") throws -> PaymentView {
        let view = try engine.createPayment(CreatePaymentCommand(
            userID: user, merchantID: merchant, amount: amount, currency: currency,
            card: CardInput(number: card, expiry: "12/27", cvv: "123"), idempotencyKey: key), now: now)
        collect()
        return view
    }

    /// Answers `request`, as a host does: with the call's stamp.
    func reply(_ outcome: PSPOutcome, to request: PSPRequest) throws {
        try engine.pspReplied(attemptID: request.attemptID, outcome: outcome, now: now, sentAtNanoseconds: request.sentAtNanoseconds)
        collect()
    }

    func takeCall() -> PSPRequest? { calls.isEmpty ? nil : calls.removeFirst() }

    /// Opens the first PSP's breaker: three payments ("k0"…"k2"), each first
    /// answered with a transient error (the threshold of ``configuration()``).
    func openFirstBreaker() throws {
        for i in 0..<3 {
            try pay(key: "k\(i)")
            guard let call = takeCall() else { throw EngineError.invalidState("payment k\(i) made no PSP call") }
            try reply(.transientError("down"), to: call)
        }
    }

    /// Fires every timer due by `now`, earliest first.
    func fireDueTimers() throws {
        while let index = timers.indices.filter({ timers[$0].at <= now }).min(by: { timers[$0].at < timers[$1].at }) {
            let timer = timers.remove(at: index).timer
            try engine.timerFired(timer, now: now)
            collect()
        }
    }

    /// Publishes the outbox and delivers each event to every consumer.
    func drainOutbox() throws {
        while true {
            let messages = try engine.pollOutbox(after: outboxPosition, limit: 100)
            collect()
            guard let last = messages.last else { return }
            for message in messages {
                for consumer in EngineConsumer.allCases { try engine.consume(message.event, by: consumer, now: now) }
            }
            collect()
            try engine.acknowledgeOutbox(through: last.sequence)
            outboxPosition = last.sequence
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T { try engine.store.queue.read(body) }

    /// The completion event of payment `pay-<n>`: 10.00 USD of user u-1 at merchant m-1, fee 0.30, by stripe.
    func captured(_ n: Int) -> TransactionEvent {
        TransactionEvent(eventID: "payment.completed:pay-\(n)", kind: .paymentCompleted, paymentID: "pay-\(n)", refundID: nil,
                         merchantID: "m-1", userID: "u-1", amountMinor: 1_000, currency: "USD", feeMinor: 30,
                         pspID: "stripe", timeNanoseconds: now, reason: nil)
    }

    /// Storage failing under the engine: SQLite aborts the statement at
    /// `point` ("AFTER INSERT ON psp_attempt") when `condition` holds, until
    /// ``restoreStorage()``.
    func failStorage(_ point: String, when condition: String? = nil) throws {
        try engine.store.queue.write { db in
            try db.execute(sql: """
                CREATE TRIGGER storage_fails \(point)\(condition.map { " WHEN " + $0 } ?? "")
                BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END
                """)
        }
    }

    func restoreStorage() throws {
        try engine.store.queue.write { try $0.execute(sql: "DROP TRIGGER storage_fails") }
    }

    func safetyViolations() throws -> [EngineAudit.Violation] { try read { try EngineAudit.safety($0) } }
    func settledViolations() throws -> [EngineAudit.Violation] { try read { try EngineAudit.settled($0) } }
}
