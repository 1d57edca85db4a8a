import GRDB

/// The engine's tables, grown from the design's Payments and Ledger tables.
/// Amounts are integer minor units with their currency; times are engine
/// nanoseconds; no column ever holds a CVV or a plaintext card number.
enum EngineSchema {
    static func register(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v1-engine") { db in
            try db.execute(sql: """
                CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                CREATE TABLE payment (
                    payment_id TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    merchant_id TEXT NOT NULL,
                    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
                    currency TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status = 'initiated' OR status = 'processing' OR status = 'completed' OR status = 'failed'),
                    card_token TEXT NOT NULL,
                    card_masked TEXT NOT NULL,
                    psp_id TEXT,
                    psp_reference TEXT,
                    fee_minor INTEGER NOT NULL DEFAULT 0,
                    captured_minor INTEGER NOT NULL DEFAULT 0,
                    refund_reserved_minor INTEGER NOT NULL DEFAULT 0,
                    refunded_minor INTEGER NOT NULL DEFAULT 0,
                    fee_returned_minor INTEGER NOT NULL DEFAULT 0,
                    failure_reason TEXT,
                    fraud_decision TEXT NOT NULL,
                    created_ns INTEGER NOT NULL,
                    updated_ns INTEGER NOT NULL,
                    CHECK (refund_reserved_minor <= captured_minor));
                CREATE INDEX payment_merchant ON payment(merchant_id, created_ns);
                CREATE INDEX payment_status ON payment(status);
                CREATE TABLE idempotency_record (
                    merchant_id TEXT NOT NULL,
                    idempotency_key TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    request_hash TEXT NOT NULL,
                    resource_id TEXT NOT NULL,
                    created_ns INTEGER NOT NULL,
                    expires_ns INTEGER NOT NULL,
                    PRIMARY KEY (merchant_id, idempotency_key, kind));
                CREATE INDEX idempotency_expiry ON idempotency_record(expires_ns);
                CREATE TABLE psp_attempt (
                    attempt_id INTEGER PRIMARY KEY,
                    subject TEXT NOT NULL CHECK (subject = 'payment' OR subject = 'refund'),
                    subject_id TEXT NOT NULL,
                    psp_id TEXT NOT NULL,
                    psp_idempotency_key TEXT NOT NULL,
                    tries INTEGER NOT NULL,
                    status_queries INTEGER NOT NULL DEFAULT 0,
                    state TEXT NOT NULL CHECK (state = 'in_flight' OR state = 'backoff' OR state = 'ambiguous' OR state = 'canceling' OR state = 'succeeded' OR state = 'failed'),
                    last_error TEXT,
                    created_ns INTEGER NOT NULL,
                    updated_ns INTEGER NOT NULL);
                CREATE INDEX psp_attempt_subject ON psp_attempt(subject, subject_id);
                CREATE INDEX psp_attempt_key ON psp_attempt(psp_id, psp_idempotency_key);
                CREATE INDEX psp_attempt_open ON psp_attempt(state);
                CREATE TABLE refund (
                    refund_id TEXT PRIMARY KEY,
                    payment_id TEXT NOT NULL REFERENCES payment(payment_id),
                    merchant_id TEXT NOT NULL,
                    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
                    currency TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status = 'requested' OR status = 'processing' OR status = 'succeeded' OR status = 'failed'),
                    psp_id TEXT NOT NULL,
                    failure_reason TEXT,
                    created_ns INTEGER NOT NULL,
                    updated_ns INTEGER NOT NULL);
                CREATE INDEX refund_payment ON refund(payment_id);
                CREATE TABLE outbox (
                    sequence INTEGER PRIMARY KEY,
                    event_id TEXT NOT NULL UNIQUE,
                    topic TEXT NOT NULL,
                    partition_key TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    created_ns INTEGER NOT NULL);
                CREATE TABLE outbox_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), published_through INTEGER NOT NULL);
                INSERT INTO outbox_cursor (id, published_through) VALUES (1, 0);
                CREATE TABLE consumed_event (
                    consumer TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    consumed_ns INTEGER NOT NULL,
                    PRIMARY KEY (consumer, event_id));
                CREATE TABLE webhook_event (
                    psp_id TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    received_ns INTEGER NOT NULL,
                    outcome TEXT NOT NULL,
                    PRIMARY KEY (psp_id, event_id));
                CREATE TABLE wallet (
                    merchant_id TEXT NOT NULL,
                    currency TEXT NOT NULL,
                    balance_minor INTEGER NOT NULL CHECK (balance_minor >= 0),
                    gross_minor INTEGER NOT NULL,
                    fees_minor INTEGER NOT NULL,
                    refunded_minor INTEGER NOT NULL,
                    PRIMARY KEY (merchant_id, currency));
                CREATE TABLE notification (
                    notification_id INTEGER PRIMARY KEY,
                    event_id TEXT NOT NULL,
                    recipient TEXT NOT NULL,
                    body TEXT NOT NULL,
                    signature TEXT,
                    attempts INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'dead'),
                    created_ns INTEGER NOT NULL,
                    updated_ns INTEGER NOT NULL,
                    UNIQUE (event_id, recipient));
                CREATE TABLE dead_letter (
                    dead_letter_id INTEGER PRIMARY KEY,
                    source TEXT NOT NULL,
                    reference TEXT NOT NULL,
                    reason TEXT NOT NULL,
                    created_ns INTEGER NOT NULL,
                    replayed_ns INTEGER);
                CREATE TABLE reconciliation_item (
                    item_id INTEGER PRIMARY KEY,
                    psp_id TEXT NOT NULL,
                    psp_reference TEXT NOT NULL,
                    payment_id TEXT,
                    kind TEXT NOT NULL,
                    explanation TEXT NOT NULL,
                    resolution TEXT NOT NULL,
                    created_ns INTEGER NOT NULL);
                CREATE TABLE audit_log (
                    audit_id INTEGER PRIMARY KEY,
                    subject_id TEXT NOT NULL,
                    action TEXT NOT NULL,
                    reason TEXT NOT NULL,
                    created_ns INTEGER NOT NULL);
                """)
            try Ledger.createTables(db)
            try CardVault.createTables(db)
        }
        migrator.registerMigration("v2-engine-keyed-tables", migrate: rebuildKeyedTables)
        // No query reads payments by merchant: the index only cost a B-tree insert per payment.
        migrator.registerMigration("v3-engine-no-merchant-index") { db in
            try db.execute(sql: "DROP INDEX payment_merchant")
        }
        // GET /ledger?account= reads an account's postings in entry order
        // (``PaymentEngine/ledgerSelect(_:)``); the currency in the old key
        // kept that order from the planner. Same cost per posting written.
        migrator.registerMigration("v4-engine-posting-account-order") { db in
            try db.execute(sql: """
                DROP INDEX journal_posting_account;
                CREATE INDEX journal_posting_account ON journal_posting(account, entry_sequence);
                """)
        }
        // A reconciliation looks up whether it recorded a discrepancy before
        // (``PaymentEngine/reconcile(_:references:now:)``): the server's
        // rounds overlap. Not unique: a database may hold repeats from before.
        migrator.registerMigration("v5-engine-reconciliation-item-key") { db in
            try db.execute(sql: "CREATE INDEX reconciliation_item_key ON reconciliation_item(psp_id, psp_reference, kind)")
        }
        // The host's mark of the latest reconciliation with each PSP — the
        // server's round end by its wall clock (``PaymentEngine/reconciledThrough()``):
        // a restarted server goes on from there instead of from its own start.
        migrator.registerMigration("v6-engine-reconciled-period") { db in
            try db.execute(sql: "CREATE TABLE reconciled_period (psp_id TEXT PRIMARY KEY, through_ns INTEGER NOT NULL) WITHOUT ROWID")
        }
        migrator.registerMigration("v7-engine-notification-per-event", migrate: notificationPerEvent)
        // The key before the merchant in the idempotency records' key. Keys
        // that grow over time (a client's counter, a ULID or UUIDv7) are
        // now written at one place in the table, not at one per merchant:
        // a commit of n payments for n merchants dirtied n leaf pages of it,
        // one page's write each for a row of about 150 bytes. Random keys
        // (UUIDv4) land anywhere under either key. Every lookup names all three.
        migrator.registerMigration("v8-engine-idempotency-key-first") { db in
            try db.execute(sql: """
                CREATE TABLE idempotency_record_rekeyed (
                    merchant_id TEXT NOT NULL,
                    idempotency_key TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    request_hash TEXT NOT NULL,
                    resource_id TEXT NOT NULL,
                    created_ns INTEGER NOT NULL,
                    expires_ns INTEGER NOT NULL,
                    PRIMARY KEY (idempotency_key, merchant_id, kind)) WITHOUT ROWID;
                INSERT INTO idempotency_record_rekeyed SELECT merchant_id, idempotency_key, kind, request_hash, resource_id, created_ns, expires_ns
                    FROM idempotency_record ORDER BY idempotency_key, merchant_id, kind;
                DROP TABLE idempotency_record;
                ALTER TABLE idempotency_record_rekeyed RENAME TO idempotency_record;
                CREATE INDEX idempotency_expiry ON idempotency_record(expires_ns);
                """)
        }
        migrator.registerMigration("v9-engine-vault-appended", migrate: CardVault.appendInOrder)
        migrator.registerMigration("v10-engine-posting-entry-checked-at-commit", migrate: checkPostingEntryAtCommit)
        migrator.registerMigration("v11-engine-no-open-payment-index", migrate: dropOpenPaymentIndex)
    }

    /// The partial index of open payments goes. Only the simulator's checks
    /// after healing read it (the payments still open then), and a scan of
    /// the table once a run serves them; keeping it cost every payment an
    /// index insert when created and a delete when it ended: 27 of the 762
    /// SQLite VM instructions of a lifecycle in `paystorm bench engine`.
    /// Open PSP attempts keep theirs: recovery reads it at every start.
    static func dropOpenPaymentIndex(_ db: Database) throws {
        try db.execute(sql: "DROP INDEX payment_open")
    }

    /// A posting's entry is checked when the transaction commits instead of
    /// when its statement ends (`DEFERRABLE INITIALLY DEFERRED`), so that
    /// the ledger's one statement for a capture's or a refund's three
    /// postings (``EngineStatement/insertThreeJournalPostings``, `INSERT OR
    /// FAIL`) needs no statement journal. A statement that writes several
    /// rows and may abort half-way makes SQLite copy every page it touches
    /// to a journal of its own first, to undo just that statement; that was
    /// about 5% of `paystorm bench engine`. The engine needs no such undo: a
    /// command that fails after writing rolls back its whole transaction or
    /// batch (``PaymentEngine/inBatch(_:)``). A posting without its entry
    /// still never commits.
    static func checkPostingEntryAtCommit(_ db: Database) throws {
        try rebuild("journal_posting", in: db) { definition in
            let immediate = "REFERENCES journal_entry(sequence)"
            precondition(definition.contains(immediate), "journal_posting's reference to its entry is not as v1 made it")
            return definition.replacingOccurrences(of: immediate, with: immediate + " DEFERRABLE INITIALLY DEFERRED")
        }
    }

    /// One `notification` row per event instead of one per recipient, and
    /// without the body and signature, which the event in the outbox renders
    /// again (``PaymentEngine/notify(_:now:in:effects:)``): the two rows, each
    /// with its own copy of the body, were a quarter of the store, and one
    /// insert fewer runs per event.
    ///
    /// The host still knows each notification by its number (timers, dead
    /// letters): the user's was always the odd row `2k − 1` inserted just
    /// before the merchant's `2k`, and the event's row becomes `k`. A store
    /// whose rows do not pair up that way, one pair per event, is refused,
    /// and so is one where a notification still to be delivered has lost its
    /// event from the outbox (it could never be sent again); nothing changes.
    static func notificationPerEvent(_ db: Database) throws {
        func refuse(_ problem: String) -> DatabaseError {
            DatabaseError(resultCode: .SQLITE_CONSTRAINT,
                          message: "\(problem): this store cannot move to one notification row per event")
        }
        let unpaired = try Int.fetchOne(db, sql: """
            SELECT COUNT(*) FROM notification n
            WHERE NOT EXISTS (
                SELECT 1 FROM notification u JOIN notification m ON m.notification_id = u.notification_id + 1
                WHERE u.notification_id % 2 = 1 AND u.event_id = n.event_id AND m.event_id = n.event_id
                  AND u.recipient LIKE 'user:%' AND m.recipient LIKE 'merchant:%'
                  AND n.notification_id IN (u.notification_id, m.notification_id))
            """) ?? 0
        guard unpaired == 0 else {
            throw refuse("\(unpaired) notification row(s) are not one of an event's pair (the user's at an odd id, the merchant's just after it)")
        }
        let repeated = try Int.fetchOne(db, sql: "SELECT COUNT(*) - 2 * COUNT(DISTINCT event_id) FROM notification") ?? 0
        guard repeated == 0 else {
            throw refuse("\(repeated) notification row(s) belong to a second pair for the same event")
        }
        let lost = try Int.fetchOne(db, sql: """
            SELECT COUNT(*) FROM notification n
            WHERE n.state != 'delivered' AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = n.event_id)
            """) ?? 0
        guard lost == 0 else {
            throw refuse("\(lost) undelivered notification(s) have no event in the outbox to be rendered from")
        }
        try db.execute(sql: """
            CREATE TABLE notification_per_event (
                notification_id INTEGER PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                user_attempts INTEGER NOT NULL,
                user_state TEXT NOT NULL CHECK (user_state = 'pending' OR user_state = 'delivered' OR user_state = 'dead'),
                merchant_attempts INTEGER NOT NULL,
                merchant_state TEXT NOT NULL CHECK (merchant_state = 'pending' OR merchant_state = 'delivered' OR merchant_state = 'dead'),
                created_ns INTEGER NOT NULL,
                updated_ns INTEGER NOT NULL);
            INSERT INTO notification_per_event
            SELECT (u.notification_id + 1) / 2, u.event_id, u.attempts, u.state, m.attempts, m.state, u.created_ns, MAX(u.updated_ns, m.updated_ns)
            FROM notification u JOIN notification m ON m.notification_id = u.notification_id + 1
            WHERE u.notification_id % 2 = 1
            ORDER BY u.notification_id;
            DROP TABLE notification;
            ALTER TABLE notification_per_event RENAME TO notification;
            """)
    }

    /// Tables looked up only by their primary key become `WITHOUT ROWID`
    /// (one B-tree per row written instead of the table's and its key
    /// index's), and the indexes that exist to find open payments and
    /// attempts hold only those. Measured with `paystorm bench engine`.
    /// (Their conditions name the two terminal states: SQLite tests a list of
    /// at most two constants inline, a longer one through a temporary table
    /// built for every row written. Queries use the same condition, or the
    /// planner cannot use the index.)
    /// Rows, columns, constraints, indexes and triggers are unchanged: each
    /// table is rebuilt from its own stored definition by SQLite's
    /// create-copy-drop-rename procedure (foreign keys are checked after the
    /// migration, which GRDB runs with them deferred).
    static func rebuildKeyedTables(_ db: Database) throws {
        let keyed = ["counter", "idempotency_record", "consumed_event", "webhook_event", "wallet", "account_balance",
                     "journal_posting", "card_vault"]
        for table in keyed {
            try rebuild(table, in: db) { "\($0) WITHOUT ROWID" }
        }
        try db.execute(sql: """
            DROP INDEX payment_status;
            CREATE INDEX payment_open ON payment(status) WHERE status NOT IN ('completed', 'failed');
            DROP INDEX psp_attempt_open;
            CREATE INDEX psp_attempt_open ON psp_attempt(state) WHERE state NOT IN ('succeeded', 'failed');
            """)
    }

    /// Rebuilds `table` by SQLite's create-copy-drop-rename procedure with
    /// the definition `redefine` makes of its stored one (what follows the
    /// table's name: the columns and constraints in parentheses, and any
    /// table options), keeping its rows, indexes and triggers.
    static func rebuild(_ table: String, in db: Database, redefine: (String) -> String) throws {
        guard let create = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", arguments: [table]),
              let columnsStart = create.firstIndex(of: "(") else {
            preconditionFailure("table \(table) of the engine schema is missing")
        }
        // Its own indexes and triggers (not the key's automatic index), re-created after the rename.
        let dependents = try Row.fetchAll(db, sql: """
            SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL
            ORDER BY type, name
            """, arguments: [table])
        // The journal's append-only triggers would refuse the old table's removal.
        for trigger in dependents where trigger["type"] as String == "trigger" {
            try db.execute(sql: "DROP TRIGGER \(trigger["name"] as String)")
        }
        let columns = try db.columns(in: table).map(\.name).joined(separator: ", ")
        try db.execute(sql: """
            CREATE TABLE \(table)_rebuilt \(redefine(String(create[columnsStart...])));
            INSERT INTO \(table)_rebuilt (\(columns)) SELECT \(columns) FROM \(table);
            DROP TABLE \(table);
            ALTER TABLE \(table)_rebuilt RENAME TO \(table);
            """)
        for dependent in dependents { try db.execute(sql: dependent["sql"]) }
    }
}
