import GRDB

extension PaymentEngine {
    /// `GET /ledger`: journal entries with their postings, filtered by
    /// account, transaction and time, in sequence order, one page at a time.
    public func ledger(_ query: LedgerQuery) throws(EngineError) -> LedgerPage {
        guard (1...1_000).contains(query.limit) else {
            throw .invalidField(field: "limit", message: "must be 1...1000, got \(query.limit)")
        }
        guard query.afterSequence >= 0 else {
            throw .invalidField(field: "cursor", message: "must be >= 0, got \(query.afterSequence)")
        }
        if let from = query.fromNanoseconds, let to = query.toNanoseconds, from > to {
            throw .invalidField(field: "from_ns", message: "is after to_ns")
        }
        let (sql, arguments) = Self.ledgerSelect(query)
        do {
            return try read { db in
                let rows = try db.rows(sql, arguments)
                var entries: [LedgerEntryView] = []
                for row in rows.prefix(query.limit) {
                    let sequence: Int64 = row["sequence"]
                    let postings = try db.rows("SELECT account, side, amount_minor, currency FROM journal_posting WHERE entry_sequence = ? ORDER BY line", [sequence]).map { posting in
                        LedgerPosting(LedgerPosting.Side(rawValue: posting["side"])!, LedgerAccount(posting["account"]),
                                      Money(minorUnits: posting["amount_minor"], currency: Currency(code: posting["currency"])!))
                    }
                    entries.append(LedgerEntryView(sequence: sequence, entryID: row["entry_id"], transactionID: row["transaction_id"],
                                                   timeNanoseconds: row["time_ns"], postings: postings,
                                                   hash: Ledger.hex(row["hash"])))
                }
                return LedgerPage(entries: entries, nextCursor: rows.count > query.limit ? entries.last?.sequence : nil)
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    /// The entries of one page of `query` (one row more than the page, to
    /// tell whether another follows).
    ///
    /// An account filter reads the account's postings in entry order from
    /// `journal_posting_account` (account, entry_sequence), so a page costs
    /// O(limit) whether the account is in every entry or in one of a million.
    /// (Tested per entry, it cost a scan of the account's postings for each
    /// entry read: seconds a page at a few hundred thousand entries.)
    static func ledgerSelect(_ query: LedgerQuery) -> (sql: String, arguments: StatementArguments) {
        var conditions = ["e.sequence > ?"]
        var arguments: StatementArguments = [query.afterSequence]
        if let transaction = query.transactionID { conditions.append("e.transaction_id = ?"); arguments += [transaction] }
        if let from = query.fromNanoseconds { conditions.append("e.time_ns >= ?"); arguments += [from] }
        if let to = query.toNanoseconds { conditions.append("e.time_ns <= ?"); arguments += [to] }
        let columns = "e.sequence, e.entry_id, e.transaction_id, e.time_ns, e.hash"
        let sql: String
        if let account = query.account {
            // Driven by the index, in its order; an entry with two postings to the account comes once.
            sql = """
                SELECT \(columns) FROM journal_posting p JOIN journal_entry e ON e.sequence = p.entry_sequence
                WHERE p.account = ? AND p.entry_sequence > ? AND \(conditions.joined(separator: " AND "))
                GROUP BY p.entry_sequence ORDER BY p.entry_sequence LIMIT ?
                """
            arguments = [account, query.afterSequence] + arguments
        } else {
            sql = "SELECT \(columns) FROM journal_entry e WHERE \(conditions.joined(separator: " AND ")) ORDER BY e.sequence LIMIT ?"
        }
        arguments += [query.limit + 1]
        return (sql, arguments)
    }

    /// After a crash: re-arms the timers of every open PSP attempt and
    /// pending notification, so ambiguous attempts are resumed and nothing
    /// waits forever. Idempotent; the effects come out through ``takeEffects()``.
    public func recover(now: Int64) throws(EngineError) {
        try transaction { db, effects in
            for row in try Row.fetchAll(db, sql: "SELECT attempt_id, state, updated_ns FROM psp_attempt WHERE state NOT IN ('succeeded', 'failed') ORDER BY attempt_id") {
                let id: Int64 = row["attempt_id"]
                let updated: Int64 = row["updated_ns"]
                switch row["state"] as String {
                case "in_flight", "canceling":
                    effects.append(.armTimer(.pspTimeout(attemptID: id, sentAtNanoseconds: updated), afterNanoseconds: max(0, updated + configuration.pspTimeoutNanoseconds - now)))
                case "backoff":
                    effects.append(.armTimer(.retry(attemptID: id), afterNanoseconds: configuration.backoffBaseNanoseconds))
                default:
                    try db.run("UPDATE psp_attempt SET status_queries = 0 WHERE attempt_id = ?", [id])
                    effects.append(.armTimer(.statusQuery(attemptID: id), afterNanoseconds: configuration.statusQueryDelayNanoseconds))
                }
            }
            for row in try db.rows("""
                SELECT notification_id, user_state = 'pending' AS user, merchant_state = 'pending' AS merchant FROM notification
                WHERE user_state = 'pending' OR merchant_state = 'pending' ORDER BY notification_id
                """) {
                for recipient in NotificationRecipient.allCases where row[recipient.rawValue] as Bool {
                    effects.append(.armTimer(.notificationRetry(notificationID: recipient.notificationID(row: row["notification_id"])),
                                             afterNanoseconds: configuration.notificationBackoffNanoseconds))
                }
            }
        }
    }
}
