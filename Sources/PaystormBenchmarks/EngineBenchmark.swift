import Foundation
import GRDB
import PaystormEngine
import PaystormStore

/// Complete payment lifecycles through the real engine and SQLite with a
/// trivial in-process PSP: create → PSP success → outbox published → ledger,
/// wallet and notification consumers → notifications delivered.
public enum EngineBenchmark {
    public struct Result: Sendable {
        public var payments: Int
        public var seconds: Double
        public var journalEntries: Int
        public var walletTotalMinor: Int64
        public var violations: [String]
        /// Seconds spent per phase: create, PSP replies, outbox poll, consumers, notification results.
        public var phaseSeconds: [(phase: String, seconds: Double)]
        /// Runs of each of the engine's prepared statements, and the SQLite
        /// virtual-machine instructions they executed, over the timed part:
        /// the same on every run of the same build, however busy the machine.
        /// Most instructions first.
        public var sqlWork: [SQLWork]
        public var statements: Int { sqlWork.reduce(0) { $0 + $1.runs } }
        public var instructions: Int { sqlWork.reduce(0) { $0 + $1.instructions } }
        public var paymentsPerSecond: Double { Double(payments) / seconds }
    }

    /// `value` in decimal, zero-padded to `width` digits (without
    /// `String(format:)`, whose cost the benchmark would count as the engine's).
    static func padded(_ value: Int, width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// A Luhn-valid 16-digit test card number for `index`, built from ASCII
    /// digits (Unicode digit lookups cost the timed loop as much as a SQL
    /// statement per payment, none of it the engine's).
    static func cardNumber(_ index: Int) -> String {
        var digits = [UInt8](repeating: UInt8(ascii: "0"), count: 16)
        digits[0] = UInt8(ascii: "4")
        var rest = index % 100_000_000_000_000
        for position in stride(from: 14, through: 1, by: -1) {
            digits[position] += UInt8(rest % 10)
            rest /= 10
        }
        // Luhn: from the check digit leftwards, every second digit doubled.
        var sum = 0
        for position in 0..<15 {
            var digit = Int(digits[position] - UInt8(ascii: "0"))
            if (15 - position) % 2 == 1 { digit *= 2; if digit > 9 { digit -= 9 } }
            sum += digit
        }
        digits[15] += UInt8((10 - sum % 10) % 10)
        return String(decoding: digits, as: UTF8.self)
    }

    /// Runs `payments` lifecycles, `batch` at a time — each phase of a batch
    /// (creates, PSP replies, consumers, notification results) group-committed
    /// in one transaction (``PaymentEngine/inBatch(_:)``) — and checks the
    /// books afterwards.
    public static func run(payments: Int, batch: Int, location: Store.Location) throws -> Result {
        precondition(payments > 0 && batch > 0)
        var configuration = EngineConfiguration(psps: [.init(id: "stripe", webhookSecret: "s1"), .init(id: "paypal", webhookSecret: "s2")])
        configuration.fraudRules.maxTrackedKeys = max(1_000, payments * 2)
        let engine = try PaymentEngine(store: location, configuration: configuration,
                                       vaultEncryptionKey: Data(repeating: 3, count: 32), vaultTokenKey: Data(repeating: 4, count: 32))
        var now: Int64 = 1_790_000_000 * 1_000_000_000
        var outboxPosition: Int64 = 0
        var expectedNet: Int64 = 0
        let clock = ContinuousClock()
        var phases = [Duration](repeating: .zero, count: 5)
        func timed(_ phase: Int, _ body: () throws -> Void) rethrows {
            let start = clock.now
            try body()
            phases[phase] += clock.now - start
        }
        var work: [String: SQLWork] = [:]
        _ = engine.takeSQLWork()
        let elapsed = try clock.measure {
            var done = 0
            while done < payments {
                let count = min(batch, payments - done)
                // Group commit: each phase's calls share one transaction.
                try timed(0) { try engine.inBatch {
                    for i in done..<(done + count) {
                        let cents = 500 + (i * 7_919) % 20_000
                        _ = try engine.createPayment(CreatePaymentCommand(
                            userID: "u-\(i)", merchantID: "m-\(i % 50)", amount: "\(cents / 100).\(padded(cents % 100, width: 2))",
                            currency: "USD", card: CardInput(number: cardNumber(i), expiry: "12/30", cvv: "123"),
                            idempotencyKey: "bench-\(i)"), now: now)
                        expectedNet += Int64(cents) - configuration.fee(onGross: Int64(cents))
                        now += 100_000
                    }
                } }
                let calls = engine.takeEffects()
                try timed(1) { try engine.inBatch {
                    for effect in calls {
                        if case let .callPSP(request) = effect {
                            try engine.pspReplied(attemptID: request.attemptID, outcome: .succeeded(pspReference: "ch_\(request.attemptID)"), now: now,
                                                   sentAtNanoseconds: request.sentAtNanoseconds)
                        }
                    }
                } }
                _ = engine.takeEffects()
                var messages: [OutboxMessage] = []
                try timed(2) { messages = try engine.pollOutbox(after: outboxPosition, limit: count * 2) }
                _ = engine.takeEffects()
                try timed(3) { try engine.inBatch {
                    for message in messages {
                        for consumer in EngineConsumer.allCases { try engine.consume(message.event, by: consumer, now: now) }
                    }
                } }
                let sends = engine.takeEffects()
                try timed(4) { try engine.inBatch {
                    for effect in sends {
                        if case let .sendNotification(notification) = effect {
                            try engine.notificationDelivered(notification.notificationID, success: true, now: now)
                        }
                    }
                } }
                if let last = messages.last {
                    try engine.acknowledgeOutbox(through: last.sequence)
                    outboxPosition = last.sequence
                }
                done += count
                // Per batch: SQLite's counters are 32 bits.
                for statement in engine.takeSQLWork() where statement.runs > 0 {
                    work[statement.sql, default: SQLWork(sql: statement.sql, runs: 0, instructions: 0)].runs += statement.runs
                    work[statement.sql]!.instructions += statement.instructions
                }
            }
        }
        let (entries, wallets, violations) = try engine.store.read { db in
            let safety = try EngineAudit.safety(db)
            let settled = try EngineAudit.settled(db)
            return (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM journal_entry") ?? 0,
                    try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(balance_minor), 0) FROM wallet") ?? 0,
                    (safety + settled).map(\.description))
        }
        var problems = violations
        if wallets != expectedNet { problems.append("wallets hold \(wallets), expected \(expectedNet)") }
        if entries != payments { problems.append("journal has \(entries) entries for \(payments) payments") }
        let names = ["create", "psp replies", "outbox poll", "consumers", "notification results"]
        return Result(payments: payments, seconds: elapsed.seconds, journalEntries: entries, walletTotalMinor: wallets,
                      violations: problems, phaseSeconds: zip(names, phases).map { ($0, $1.seconds) },
                      sqlWork: work.values.sorted { ($0.instructions, $1.sql) > ($1.instructions, $0.sql) })
    }
}
