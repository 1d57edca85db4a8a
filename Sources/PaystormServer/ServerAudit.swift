import Foundation
import GRDB
import PaystormEngine
import PaystormStore

/// `paystorm audit`: the engine's invariants checked against a server's
/// database after the fact — the ledger balanced and its hash chain intact,
/// every safety invariant, and (once every event was consumed) wallets equal
/// to the journal; every acknowledged payment present; and, given the
/// sandbox's figures, no payment charged twice. It also accounts for the
/// dead letters: notifications that failed every attempt, and events a
/// consumer group refused, in the broker's database beside the engine's.
public enum ServerAudit {
    public struct Findings: Sendable {
        public var payments = 0
        public var acknowledged = 0
        public var journalEntries = 0
        /// The verified chain head, to keep outside the database as a
        /// ``Ledger/Witness`` for later audits; `nil` when the journal is not sound.
        public var journalHead: Ledger.Witness?
        public var violations: [EngineAudit.Violation] = []
        /// Dead-lettered notifications not replayed yet.
        public var notificationDeadLetters = 0
        /// Events parked in the broker's dead letters, every group's; `nil`
        /// when there is no broker database beside the engine's.
        public var brokerDeadLetters: [BrokerDeadLetter]?
    }

    /// The payment ids of an `--acknowledged` file, one a line: trimmed of
    /// spaces and tabs (a file edited by hand) and of a CR (one saved on
    /// Windows), blank lines skipped. Untrimmed, each read as an id no
    /// payment has: a false violation.
    public static func acknowledgedIDs(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// What an audit says of the dead letters, a line each: every parked
    /// event is named (an operator replays or explains each one).
    public static func deadLetterReport(_ findings: Findings) -> [String] {
        var lines = ["dead letters: \(findings.notificationDeadLetters) notification(s) not replayed; "
                     + (findings.brokerDeadLetters.map { "\($0.count) event(s) parked in the broker" } ?? "no broker database beside this one")]
        for letter in findings.brokerDeadLetters ?? [] { lines.append("  dead letter of \(letter)") }
        if findings.notificationDeadLetters + (findings.brokerDeadLetters?.count ?? 0) > 0 {
            lines.append("  (once their cause is fixed: paystorm serve --replay-dead-letters)")
        }
        return lines
    }

    /// - Parameters:
    ///   - acknowledged: payment ids the server acknowledged (answered 200/201).
    ///   - settled: also check what holds once every event was consumed.
    ///   - doubleCharged: payment ids the PSPs charged more than once.
    ///   - witnesses: chain hashes of earlier audits the journal must still reproduce.
    public static func run(databasePath: String, acknowledged: [String], settled: Bool,
                           doubleCharged: [String], witnesses: [Ledger.Witness] = []) throws -> Findings {
        let store = try PaymentEngine.openStore(.file(path: databasePath))
        var findings = Findings()
        try store.queue.inDatabase { db in
            findings.payments = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM payment") ?? 0
            findings.journalEntries = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM journal_entry") ?? 0
            let (safety, journal) = try EngineAudit.safetyAndJournal(db, witnesses: witnesses)
            findings.violations += safety
            findings.journalHead = journal?.head
            if settled { findings.violations += try EngineAudit.settled(db) }
            findings.notificationDeadLetters = try PaymentEngine.deadLetterCount(in: db)
            let exists = try db.makeStatement(sql: "SELECT 1 FROM payment WHERE payment_id = ?")
            for id in Set(acknowledged).sorted() {
                findings.acknowledged += 1
                if try Bool.fetchOne(exists, arguments: [id]) != true {
                    findings.violations.append(.init(invariant: "acknowledged-payment-durable", subject: id,
                                                     detail: "the server acknowledged this payment, and the database does not have it"))
                }
            }
        }
        let brokerPath = ServerOptions.brokerPath(beside: databasePath)
        if FileManager.default.fileExists(atPath: brokerPath) {
            // Read only: an audit changes nothing, and the broker may be older than this build's migrations.
            var configuration = Configuration()
            configuration.readonly = true
            let broker = try DatabaseQueue(path: brokerPath, configuration: configuration)
            findings.brokerDeadLetters = try broker.read { try SQLiteBroker.deadLetters(in: $0) }
        }
        for id in doubleCharged {
            findings.violations.append(.init(invariant: "no-double-charge", subject: id, detail: "the PSPs charged this payment more than once"))
        }
        return findings
    }
}
