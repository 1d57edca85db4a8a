import GRDB

/// Checks the engine's invariants against its database: what must hold at
/// every step (safety) and what must hold once the world has healed and
/// every event was consumed (liveness). Returns violations, never throws
/// them away.
///
/// - Complexity: O(rows); for tests, the simulator's checker and reports.
///
/// **Reading order.** Payment ids sort as text ("pay-10" before "pay-2"),
/// not in the order the rows were written, so a scan in id order reads the
/// table's pages in no order at all. Once a database outgrows the memory
/// that caches it, every such read is one from disk. The whole-table checks
/// therefore read tables in storage order (`ORDER BY +payment_id`: the `+`
/// keeps SQLite from taking the id index for the sort), group what they
/// join through SQLite's sorter, and sort only the violations.
public enum EngineAudit {
    public struct Violation: Sendable, Equatable, CustomStringConvertible {
        public var invariant: String
        public var subject: String
        public var detail: String
        public var description: String { "[\(invariant)] \(subject): \(detail)" }

        public init(invariant: String, subject: String, detail: String) {
            self.invariant = invariant
            self.subject = subject
            self.detail = detail
        }
    }

    /// Every check the audit makes, by the name its violations carry.
    public enum Invariant: String, CaseIterable, Sendable {
        case ledger
        case refunds
        case oneCharge = "one-charge"
        case noFailoverWhenAmbiguous = "no-failover-when-ambiguous"
        case wallet
        case walletEqualsJournal = "wallet-equals-journal"
        case ledgerEqualsCaptures = "ledger-equals-captures"
    }

    /// Invariants that hold at every instant; the journal must also
    /// reproduce every chain hash in `witnesses` (``Ledger/Witness``).
    public static func safety(_ db: Database, witnesses: [Ledger.Witness] = []) throws -> [Violation] {
        try safetyAndJournal(db, witnesses: witnesses).violations
    }

    /// ``safety(_:witnesses:)``, and the journal as verified: its entries and
    /// chain head, `nil` when it is not sound.
    public static func safetyAndJournal(_ db: Database, witnesses: [Ledger.Witness] = []) throws -> (violations: [Violation], journal: Ledger.Audit?) {
        var violations: [Violation] = []
        func add(_ invariant: Invariant, _ subject: String, _ detail: String) {
            violations.append(Violation(invariant: invariant.rawValue, subject: subject, detail: detail))
        }
        var journal: Ledger.Audit?
        do {
            journal = try Ledger.verify(db, witnesses: witnesses)
        } catch {
            add(.ledger, "journal", error.description)
        }
        // Refunds never exceed the capture; the reservation equals the non-failed refunds.
        for row in try Row.fetchAll(db, sql: """
            WITH r AS (
                SELECT payment_id,
                       SUM(CASE WHEN status != 'failed' THEN amount_minor ELSE 0 END) AS open_refunds,
                       SUM(CASE WHEN status = 'succeeded' THEN amount_minor ELSE 0 END) AS done_refunds
                FROM refund GROUP BY payment_id)
            SELECT p.payment_id, p.captured_minor, p.refund_reserved_minor, p.refunded_minor,
                   COALESCE(r.open_refunds, 0) AS open_refunds, COALESCE(r.done_refunds, 0) AS done_refunds
            FROM payment p LEFT JOIN r ON r.payment_id = p.payment_id
            WHERE COALESCE(r.open_refunds, 0) > p.captured_minor OR COALESCE(r.open_refunds, 0) != p.refund_reserved_minor
               OR COALESCE(r.done_refunds, 0) != p.refunded_minor
            ORDER BY +p.payment_id
            """) {
            add(.refunds, row["payment_id"], "captured \(row["captured_minor"] as Int64), reserved \(row["refund_reserved_minor"] as Int64), non-failed refunds \(row["open_refunds"] as Int64), refunded \(row["refunded_minor"] as Int64) vs succeeded \(row["done_refunds"] as Int64)")
        }
        // At most one successful charge per payment; completed ⇔ one success.
        for row in try Row.fetchAll(db, sql: """
            WITH s AS (
                SELECT subject_id, COUNT(*) AS successes FROM psp_attempt NOT INDEXED
                WHERE subject = 'payment' AND state = 'succeeded' GROUP BY subject_id)
            SELECT p.payment_id, p.status, COALESCE(s.successes, 0) AS successes
            FROM payment p LEFT JOIN s ON s.subject_id = p.payment_id
            WHERE COALESCE(s.successes, 0) > 1 OR (p.status = 'completed') != (COALESCE(s.successes, 0) = 1)
            ORDER BY +p.payment_id
            """) {
            add(.oneCharge, row["payment_id"], "status \(row["status"] as String) with \(row["successes"] as Int) successful PSP attempt(s)")
        }
        for row in try Row.fetchAll(db, sql: noFailoverWhenAmbiguousSQL) {
            add(.noFailoverWhenAmbiguous, row["subject_id"], "tried \(row["other"] as String) while \(row["psp_id"] as String) was ambiguous")
        }
        for row in try Row.fetchAll(db, sql: "SELECT merchant_id, currency, balance_minor FROM wallet WHERE balance_minor < 0") {
            add(.wallet, row["merchant_id"], "negative balance \(row["balance_minor"] as Int64) \(row["currency"] as String)")
        }
        return (violations, journal)
    }

    /// An ambiguous attempt never has a later attempt at another PSP. The
    /// ambiguous ones come from the index of open attempts (whose condition
    /// the query repeats so that SQLite may use it), and each one's later
    /// attempts from the index by payment. `CROSS JOIN` fixes that order:
    /// SQLite 3.54's planner otherwise walked every payment attempt and, for
    /// each, all the ambiguous ones — the audit after a world's load, with
    /// thousands of attempts still ambiguous, took 3.9 s at 30,000 payments
    /// and grew with the square of the run.
    static let noFailoverWhenAmbiguousSQL = """
        SELECT a.subject_id, a.psp_id, b.psp_id AS other FROM psp_attempt a CROSS JOIN psp_attempt b
        ON b.subject = 'payment' AND b.subject_id = a.subject_id AND b.attempt_id > a.attempt_id
        WHERE +a.subject = 'payment' AND a.state = 'ambiguous' AND a.state NOT IN ('succeeded', 'failed')
        ORDER BY a.subject_id, a.attempt_id, b.attempt_id
        """

    /// Invariants that hold once every outbox event was consumed: wallets
    /// equal the journal's merchant balances, and the ledger holds exactly the
    /// captured and refunded money.
    public static func settled(_ db: Database) throws -> [Violation] {
        var violations: [Violation] = []
        for row in try Row.fetchAll(db, sql: """
            SELECT w.merchant_id, w.currency, w.balance_minor, COALESCE(b.balance_minor, 0) AS ledger_balance
            FROM wallet w LEFT JOIN account_balance b ON b.account = 'merchant:' || w.merchant_id AND b.currency = w.currency
            WHERE w.balance_minor != COALESCE(b.balance_minor, 0) ORDER BY w.merchant_id, w.currency
            """) {
            violations.append(Violation(invariant: Invariant.walletEqualsJournal.rawValue, subject: row["merchant_id"],
                                        detail: "wallet \(row["balance_minor"] as Int64) vs journal \(row["ledger_balance"] as Int64) \(row["currency"] as String)"))
        }
        for row in try Row.fetchAll(db, sql: """
            SELECT currency, SUM(captured_minor - refunded_minor) AS net FROM payment GROUP BY currency ORDER BY currency
            """) {
            let currency: String = row["currency"]
            let net: Int64 = row["net"]
            let external = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(balance_minor), 0) FROM account_balance WHERE account LIKE 'external:%' AND currency = ?",
                                              arguments: [currency]) ?? 0
            if -external != net {
                violations.append(Violation(invariant: Invariant.ledgerEqualsCaptures.rawValue, subject: currency,
                                            detail: "payments net \(net) vs journal external \(-external)"))
            }
        }
        return violations
    }
}
