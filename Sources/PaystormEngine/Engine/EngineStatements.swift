import Foundation
import GRDB
import PaystormStore

/// The statements every payment lifecycle runs, bound positionally through
/// ``PreparedStatement`` instead of GRDB's cached statements and `Row`s:
/// boxing arguments, looking columns up by name and GRDB's per-statement
/// bookkeeping were about half of a payment's cost in `paystorm bench engine`.
///
/// Parameters are listed in the order they are bound; result columns in the
/// order they are read. Statements off the hot path stay on GRDB.
///
/// No statement here uses `RETURNING`: SQLite buffers its rows in a
/// temporary b-tree it opens and closes on every run, which costs more than
/// a second statement reading the row back.
enum EngineStatement: Int, CaseIterable {
    // Transactions: one per command, or one per batch.
    case begin, commit, rollback
    /// (name) → value
    case counter
    /// (name, value)
    case storeCounter
    /// (merchant_id, idempotency_key, kind) → request_hash, resource_id, expires_ns
    case idempotencyRecord
    /// (merchant_id, idempotency_key, kind, request_hash, resource_id, created_ns, expires_ns);
    /// replaces an expired record of the same key (only an expired one is
    /// ever there: a live one is replayed instead)
    case insertIdempotencyRecord
    /// (payment_id, user_id, merchant_id, amount_minor, currency, status, card_token,
    ///  card_masked, psp_id, failure_reason, fraud_decision, created_ns, updated_ns)
    case insertPayment
    /// (payment_id) → payment_id, merchant_id, user_id, status, amount_minor, currency,
    ///  card_masked, psp_id, failure_reason, refunded_minor
    case paymentView
    /// (payment_id) → status, amount_minor, currency, user_id, merchant_id, psp_id
    case paymentForTransition
    /// (psp_id, psp_reference, fee_minor, updated_ns, payment_id)
    case completePayment
    /// (failure_reason, updated_ns, payment_id)
    case failPayment
    /// (token_key, token) → 1
    case vaultContains
    /// (token_key, token, ciphertext, first6, last4, expiry_month, expiry_year)
    case vaultInsert
    /// (subject, subject_id, psp_id, psp_idempotency_key, created_ns, updated_ns)
    case insertAttempt
    /// (attempt_id) → ``Attempt/columns``
    case attempt
    /// (psp_id, psp_idempotency_key) → ``Attempt/columns`` of the newest such attempt
    case attemptByKey
    case paymentAmount, refundAmount
    /// (state, last_error, updated_ns, attempt_id)
    case updateAttempt
    /// (event_id, topic, partition_key, payload, created_ns)
    case insertOutbox
    /// (after sequence, limit) → sequence, topic, partition_key, payload
    case pollOutbox
    /// (consumer, event_id, consumed_ns)
    case consumedEvent
    case claimEvent
    /// (balance, gross, fees, refunded deltas, merchant_id, currency)
    case updateWallet
    /// (merchant_id, currency, balance_minor, gross_minor, fees_minor, refunded_minor)
    case insertWallet
    /// (event_id, created_ns, updated_ns): both recipients pending at their
    /// first attempt; inserts nothing for an event notified already
    case insertNotification
    /// (notification row) → user_attempts, user_state, merchant_attempts, merchant_state
    case notificationState
    /// (updated_ns, notification row); change nothing unless that recipient's notification is pending
    case userNotificationDelivered, merchantNotificationDelivered
    /// (psp_id, event_id) → 1 if the webhook was received before
    case webhookSeen
    /// (psp_id, event_id, received_ns, outcome)
    case insertWebhookEvent
    /// (entry_id) → 1
    case journalContains
    /// (delta, account, currency)
    case updateBalance
    /// (account, currency) → balance_minor
    case balance
    /// (account, currency, balance_minor)
    case insertBalance
    /// () → sequence, hash
    case journalHead
    /// (sequence, entry_id, transaction_id, time_ns, previous_hash, hash);
    /// inserts nothing for an entry id the journal holds already
    case insertJournalEntry
    /// (entry_sequence, line, account, side, amount_minor, currency)
    case insertJournalPosting
    /// ``insertJournalPosting``'s parameters for three postings in one run:
    /// a capture's or a refund's entry. `OR FAIL`, with the entry checked
    /// at commit, so that SQLite keeps no statement journal for it (see
    /// ``EngineSchema/checkPostingEntryAtCommit(_:)``): a row that breaks a
    /// constraint fails the command after it wrote, which rolls back its
    /// transaction or batch.
    case insertThreeJournalPostings
    /// (sequence, hash)
    case updateJournalHead

    var sql: String {
        switch self {
        case .begin: "BEGIN IMMEDIATE TRANSACTION"
        case .commit: "COMMIT TRANSACTION"
        case .rollback: "ROLLBACK TRANSACTION"
        case .counter: "SELECT value FROM counter WHERE name = ?"
        case .storeCounter: "INSERT INTO counter (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        case .idempotencyRecord:
            """
            SELECT request_hash, resource_id, expires_ns FROM idempotency_record
            WHERE merchant_id = ? AND idempotency_key = ? AND kind = ?
            """
        case .insertIdempotencyRecord:
            """
            INSERT INTO idempotency_record (merchant_id, idempotency_key, kind, request_hash, resource_id, created_ns, expires_ns)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (merchant_id, idempotency_key, kind) DO UPDATE SET request_hash = excluded.request_hash,
                resource_id = excluded.resource_id, created_ns = excluded.created_ns, expires_ns = excluded.expires_ns
            """
        case .insertPayment:
            """
            INSERT INTO payment (payment_id, user_id, merchant_id, amount_minor, currency, status, card_token,
                card_masked, psp_id, failure_reason, fraud_decision, created_ns, updated_ns)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """
        case .paymentView:
            """
            SELECT payment_id, merchant_id, user_id, status, amount_minor, currency, card_masked, psp_id,
                   failure_reason, refunded_minor FROM payment WHERE payment_id = ?
            """
        case .paymentForTransition:
            "SELECT status, amount_minor, currency, user_id, merchant_id, psp_id FROM payment WHERE payment_id = ?"
        case .completePayment:
            """
            UPDATE payment SET status = 'completed', psp_id = ?, psp_reference = ?, captured_minor = amount_minor,
                fee_minor = ?, updated_ns = ? WHERE payment_id = ?
            """
        case .failPayment:
            "UPDATE payment SET status = 'failed', failure_reason = ?, updated_ns = ? WHERE payment_id = ?"
        case .vaultContains: "SELECT 1 FROM card_vault WHERE token_key = ? AND token = ?"
        case .vaultInsert:
            """
            INSERT INTO card_vault (token_key, token, ciphertext, first6, last4, expiry_month, expiry_year)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """
        case .insertAttempt:
            """
            INSERT INTO psp_attempt (subject, subject_id, psp_id, psp_idempotency_key, tries, state, created_ns, updated_ns)
            VALUES (?, ?, ?, ?, 1, 'in_flight', ?, ?)
            """
        case .attempt: "SELECT \(Attempt.columns) FROM psp_attempt WHERE attempt_id = ?"
        case .attemptByKey:
            """
            SELECT \(Attempt.columns) FROM psp_attempt
            WHERE psp_id = ? AND psp_idempotency_key = ? ORDER BY attempt_id DESC LIMIT 1
            """
        case .paymentAmount: "SELECT amount_minor, currency, card_token FROM payment WHERE payment_id = ?"
        case .refundAmount: "SELECT amount_minor, currency, NULL FROM refund WHERE refund_id = ?"
        case .updateAttempt:
            "UPDATE psp_attempt SET state = ?, last_error = COALESCE(?, last_error), updated_ns = ? WHERE attempt_id = ?"
        case .insertOutbox:
            "INSERT INTO outbox (event_id, topic, partition_key, payload, created_ns) VALUES (?, ?, ?, ?, ?)"
        case .pollOutbox:
            "SELECT sequence, topic, partition_key, payload FROM outbox WHERE sequence > ? ORDER BY sequence LIMIT ?"
        case .consumedEvent: "SELECT 1 FROM consumed_event WHERE consumer = ? AND event_id = ?"
        case .claimEvent: "INSERT INTO consumed_event (consumer, event_id, consumed_ns) VALUES (?, ?, ?)"
        case .updateWallet:
            """
            UPDATE wallet SET balance_minor = balance_minor + ?, gross_minor = gross_minor + ?, fees_minor = fees_minor + ?,
                refunded_minor = refunded_minor + ? WHERE merchant_id = ? AND currency = ?
            """
        case .insertWallet:
            """
            INSERT INTO wallet (merchant_id, currency, balance_minor, gross_minor, fees_minor, refunded_minor) VALUES (?, ?, ?, ?, ?, ?)
            """
        case .insertNotification:
            """
            INSERT INTO notification (event_id, user_attempts, user_state, merchant_attempts, merchant_state, created_ns, updated_ns)
            VALUES (?, 1, 'pending', 1, 'pending', ?, ?)
            ON CONFLICT (event_id) DO NOTHING
            """
        case .notificationState:
            "SELECT user_attempts, user_state, merchant_attempts, merchant_state FROM notification WHERE notification_id = ?"
        case .userNotificationDelivered:
            "UPDATE notification SET user_state = 'delivered', updated_ns = ? WHERE notification_id = ? AND user_state = 'pending'"
        case .merchantNotificationDelivered:
            "UPDATE notification SET merchant_state = 'delivered', updated_ns = ? WHERE notification_id = ? AND merchant_state = 'pending'"
        case .webhookSeen: "SELECT 1 FROM webhook_event WHERE psp_id = ? AND event_id = ?"
        case .insertWebhookEvent: "INSERT INTO webhook_event (psp_id, event_id, received_ns, outcome) VALUES (?, ?, ?, ?)"
        case .journalContains: "SELECT 1 FROM journal_entry WHERE entry_id = ?"
        case .updateBalance:
            "UPDATE account_balance SET balance_minor = balance_minor + ? WHERE account = ? AND currency = ?"
        case .balance: "SELECT balance_minor FROM account_balance WHERE account = ? AND currency = ?"
        case .insertBalance: "INSERT INTO account_balance (account, currency, balance_minor) VALUES (?, ?, ?)"
        case .journalHead: "SELECT sequence, hash FROM journal_head WHERE id = 1"
        case .insertJournalEntry:
            """
            INSERT INTO journal_entry (sequence, entry_id, transaction_id, time_ns, previous_hash, hash) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (entry_id) DO NOTHING
            """
        case .insertJournalPosting:
            "INSERT OR FAIL INTO journal_posting (entry_sequence, line, account, side, amount_minor, currency) VALUES (?, ?, ?, ?, ?, ?)"
        case .insertThreeJournalPostings:
            """
            INSERT OR FAIL INTO journal_posting (entry_sequence, line, account, side, amount_minor, currency)
            VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?)
            """
        case .updateJournalHead: "UPDATE journal_head SET sequence = ?, hash = ? WHERE id = 1"
        }
    }
}

/// The ``EngineStatement``s of one connection, each prepared on first use
/// and kept for the life of the table.
///
/// Each engine keeps one table for its store's connection (a store has one
/// writer connection, so engines sharing a store each prepare their own
/// statements on it). The table holds the store so that the connection
/// outlives the statements prepared on it.
///
/// It also holds what the engine's current write transaction defers to its
/// commit — the journal head, id counters and balance changes — since those
/// are written through these statements, on this connection.
final class EngineStatements {
    private var prepared: [PreparedStatement?]
    private let store: Store?

    /// Set by the engine for the span of one write transaction, which calls
    /// ``writeBack(_:)`` before its commit and ``forgetTransaction()`` after
    /// it ends either way.
    var defersWrites = false
    /// Writes deferred in the current write transaction so far (counters
    /// drawn, balances changed, the journal head moved). With SQLite's count
    /// of changed rows it tells whether a command that failed had written:
    /// a deferred write is stored at the commit even when the statement
    /// after it failed and changed no row.
    private(set) var deferredWrites = 0

    /// The journal's chain head: the last entry's sequence and hash.
    struct JournalHead {
        var sequence: Int64
        var hash: Data
    }

    /// The chain head as the current write transaction moved it, when
    /// ``defersWrites``: every entry of a group commit posts against it and
    /// it is stored once, before the commit, instead of read and written per
    /// entry. `nil` until an entry is posted.
    private var movedJournalHead: JournalHead?
    /// Named counters (payment and refund ids) drawn from in the current
    /// write transaction, with their values now; stored by ``writeBack(_:)``.
    private var counters: [(name: String, value: Int64)] = []

    /// The next value of a named counter, read once per write transaction
    /// and advanced in memory.
    /// - Precondition: ``defersWrites`` (the value is stored by ``writeBack(_:)``).
    func nextValue(of name: String, in db: Database) throws(StoreError) -> Int64 {
        precondition(defersWrites, "counters are drawn inside the engine's write transactions")
        deferredWrites += 1
        if let index = counters.firstIndex(where: { $0.name == name }) {
            counters[index].value += 1
            return counters[index].value
        }
        let counter = try self(.counter, db)
        defer { counter.reset() }
        counter.bind(name, at: 1)
        let next = (try counter.step() ? counter.int64(at: 0) : 0) + 1
        counters.append((name, next))
        return next
    }

    /// An account balance's change in the current write transaction, not yet
    /// stored, and the stored balance once read (only a falling balance is).
    private struct PendingBalance {
        var stored: Int64?
        var delta: Int64 = 0
    }

    /// The balance changes of the current write transaction, when
    /// ``defersWrites``: a group commit adds each entry's postings here and
    /// stores one change per account before the commit, instead of one
    /// update per posting (the PSP's and the fee account change with every
    /// capture).
    private var balances: [Ledger.Key: PendingBalance] = [:]

    /// An account's balance as the current transaction has it.
    func balance(_ key: Ledger.Key, in db: Database) throws(StoreError) -> Int64 {
        if defersWrites, let pending = balances[key], let stored = pending.stored { return stored + pending.delta }
        let row = try self(.balance, db)
        row.bind(key.account.name, at: 1)
        row.bind(key.currency, at: 2)
        let stored = try row.step() ? row.int64(at: 0) : 0
        row.reset()
        guard defersWrites else { return stored }
        balances[key, default: PendingBalance()].stored = stored
        return stored + balances[key, default: PendingBalance()].delta
    }

    /// The chain head as the current transaction has it.
    func journalHead(in db: Database) throws(StoreError) -> JournalHead {
        if let moved = movedJournalHead { return moved }
        let row = try self(.journalHead, db)
        defer { row.reset() }
        guard try row.step() else { preconditionFailure("the journal head row is missing") }
        return JournalHead(sequence: row.int64(at: 0), hash: row.blob(at: 1))
    }

    /// Moves the chain head to a newly posted entry: stored now, or before
    /// the commit when ``defersWrites``.
    func moveJournalHead(to head: JournalHead, in db: Database) throws(StoreError) {
        if defersWrites {
            deferredWrites += 1
            movedJournalHead = head
        } else {
            try storeJournalHead(head, in: db)
        }
    }

    private func storeJournalHead(_ head: JournalHead, in db: Database) throws(StoreError) {
        let update = try self(.updateJournalHead, db)
        update.bind(head.sequence, at: 1)
        update.bind(head.hash, at: 2)
        try update.execute()
    }

    /// Adds `delta` to an account's balance: now, or before the commit when ``defersWrites``.
    func addToBalance(_ key: Ledger.Key, _ delta: Int64, in db: Database) throws(StoreError) {
        if defersWrites {
            deferredWrites += 1
            balances[key, default: PendingBalance()].delta += delta
        } else {
            try storeBalanceChange(key, delta, in: db)
        }
    }

    private func storeBalanceChange(_ key: Ledger.Key, _ delta: Int64, in db: Database) throws(StoreError) {
        let update = try self(.updateBalance, db)
        update.bind(delta, at: 1)
        update.bind(key.account.name, at: 2)
        update.bind(key.currency, at: 3)
        try update.execute()
        if update.changes == 0 {
            let insert = try self(.insertBalance, db)
            insert.bind(key.account.name, at: 1)
            insert.bind(key.currency, at: 2)
            insert.bind(delta, at: 3)
            try insert.execute()
        }
    }

    /// - Parameter store: the store whose connection the statements run on;
    ///   `nil` for a table used within one database access only.
    init(store: Store?) {
        self.store = store
        prepared = Array(repeating: nil, count: EngineStatement.allCases.count)
    }

    deinit {
        // Finalize the statements before the store (and its connection) may go.
        prepared.removeAll()
    }

    /// Stores what the transaction deferred: the counters drawn from, the
    /// balance changes and the journal head, if it moved.
    func writeBack(_ db: Database) throws(StoreError) {
        for counter in counters {
            let store = try self(.storeCounter, db)
            store.bind(counter.name, at: 1)
            store.bind(counter.value, at: 2)
            try store.execute()
        }
        counters.removeAll(keepingCapacity: true)
        // In account order: the same rows written in the same order on every run.
        for (key, pending) in balances.sorted(by: { $0.key < $1.key }) where pending.delta != 0 {
            try storeBalanceChange(key, pending.delta, in: db)
        }
        balances.removeAll(keepingCapacity: true)
        if let head = movedJournalHead { try storeJournalHead(head, in: db) }
        movedJournalHead = nil
    }

    /// Drops what the ended transaction cached: the next one reads afresh.
    func forgetTransaction() {
        movedJournalHead = nil
        counters.removeAll(keepingCapacity: true)
        balances.removeAll(keepingCapacity: true)
        defersWrites = false
        deferredWrites = 0
    }

    /// The runs and virtual-machine instructions of each statement prepared
    /// so far since the last call (see ``PreparedStatement/takeWork()``).
    func takeWork() -> [SQLWork] {
        prepared.compactMap { statement in
            guard let statement else { return nil }
            let work = statement.takeWork()
            return SQLWork(sql: statement.sql, runs: work.runs, instructions: work.instructions)
        }
    }

    /// The prepared `statement`, preparing it on `db` the first time.
    /// - Precondition: `db` is the connection of every earlier call.
    @inline(__always)
    func callAsFunction(_ statement: EngineStatement, _ db: Database) throws(StoreError) -> PreparedStatement {
        if let prepared = prepared[statement.rawValue] {
            assert(prepared.belongs(to: db), "engine statements run on the connection they were prepared on")
            return prepared
        }
        let fresh = try PreparedStatement(db, sql: statement.sql)
        prepared[statement.rawValue] = fresh
        return fresh
    }
}
