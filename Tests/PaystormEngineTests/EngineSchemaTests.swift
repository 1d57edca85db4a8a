import Foundation
import GRDB
import Testing
@testable import PaystormEngine
@testable import PaystormStore

@Suite("Engine schema migrations")
struct EngineSchemaTests {
    /// A database at the first engine schema, with rows in every table the
    /// second migration rebuilds.
    func versionOneDatabase() throws -> (DatabaseQueue, DatabaseMigrator) {
        var migrator = Store.migrator
        EngineSchema.register(in: &migrator)
        let queue = try DatabaseQueue()
        try migrator.migrate(queue, upTo: "v1-engine")
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO counter (name, value) VALUES ('payment', 2);
                INSERT INTO card_vault (token, ciphertext, first6, last4, expiry_month, expiry_year) VALUES ('tok_1', x'00', '411111', '1111', 12, 2030);
                INSERT INTO payment (payment_id, user_id, merchant_id, amount_minor, currency, status, card_token, card_masked,
                    psp_id, fee_minor, captured_minor, fraud_decision, created_ns, updated_ns)
                VALUES ('pay-1', 'u-1', 'm-1', 1000, 'USD', 'completed', 'tok_1', '411111******1111', 'stripe', 30, 1000, 'approve', 1, 2),
                       ('pay-2', 'u-1', 'm-1', 500, 'USD', 'processing', 'tok_1', '411111******1111', 'stripe', 0, 0, 'approve', 3, 3);
                INSERT INTO idempotency_record VALUES ('m-1', 'k-1', 'payment', 'h', 'pay-1', 1, 99);
                INSERT INTO psp_attempt (subject, subject_id, psp_id, psp_idempotency_key, tries, state, created_ns, updated_ns)
                VALUES ('payment', 'pay-1', 'stripe', 'pay-1:1', 1, 'succeeded', 1, 2),
                       ('payment', 'pay-2', 'stripe', 'pay-2:1', 1, 'ambiguous', 3, 3);
                INSERT INTO consumed_event VALUES ('ledger', 'payment.completed:pay-1', 2);
                INSERT INTO webhook_event VALUES ('stripe', 'evt_1', 2, 'applied');
                INSERT INTO wallet VALUES ('m-1', 'USD', 970, 1000, 30, 0);
                """)
            try Ledger.post(JournalEntry(id: "payment.completed:pay-1", transactionID: "pay-1", timeNanoseconds: 2, postings: [
                .debit(.psp("stripe"), Money(minorUnits: 1000, currency: .usd)),
                .credit(.merchant("m-1"), Money(minorUnits: 970, currency: .usd)),
                .credit(.platformFees, Money(minorUnits: 30, currency: .usd)),
            ]), in: db)
        }
        return (queue, migrator)
    }

    @Test func theKeyedTablesMigrationKeepsEveryRowAndTheLedgerVerifies() throws {
        let (queue, migrator) = try versionOneDatabase()
        let tables = ["counter", "card_vault", "payment", "idempotency_record", "psp_attempt", "consumed_event",
                      "webhook_event", "wallet", "account_balance", "journal_entry", "journal_posting"]
        func contents(_ db: Database) throws -> [String: [String]] {
            var contents: [String: [String]] = [:]
            for table in tables {
                // The vault's own columns: v9 adds its row number and token key.
                let columns = table == "card_vault" ? "token, ciphertext, first6, last4, expiry_month, expiry_year" : "*"
                contents[table] = try Row.fetchAll(db, sql: "SELECT \(columns) FROM \(table)").map(\.description).sorted()
            }
            return contents
        }
        let before = try queue.read(contents)
        try migrator.migrate(queue)
        try queue.read { db in
            #expect(try contents(db) == before)
            #expect(try Ledger.verify(db).entries == 1)
            let withoutRowID = try String.fetchAll(db, sql: "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%WITHOUT ROWID'").sorted()
            // The rebuilt tables, and a later one made without a rowid from the start.
            // The vault, rebuilt by v2, went back to a rowid table in v9.
            #expect(withoutRowID == ["account_balance", "consumed_event", "counter", "idempotency_record",
                                     "journal_posting", "reconciled_period", "wallet", "webhook_event"])
            // The open attempts' index holds only open rows, and recovery's query uses it.
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM psp_attempt INDEXED BY psp_attempt_open WHERE state NOT IN ('succeeded', 'failed')") == 1)
            // Open payments have no index since v11: nothing on the payment path maintains one.
            #expect(try String.fetchAll(db, sql: "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'payment' AND sql IS NOT NULL") == [])
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM payment WHERE status NOT IN ('completed', 'failed')") == 1)
        }
        // The journal is still append-only, and its postings still need their entry (by the commit).
        try queue.write { db in
            #expect(throws: DatabaseError.self) { try db.execute(sql: "UPDATE journal_posting SET amount_minor = 1") }
            #expect(throws: DatabaseError.self) { try db.execute(sql: "DELETE FROM journal_posting") }
        }
        #expect(throws: DatabaseError.self) {
            try queue.write { try $0.execute(sql: "INSERT INTO journal_posting VALUES (99, 0, 'platform:fees', 'debit', 1, 'USD')") }
        }
    }

    /// The ledger's statement for three postings cannot stop half-way with
    /// an abort, which is what makes SQLite keep a statement journal (a
    /// copy of every page the statement touches) for a statement that
    /// writes several rows: its constraints fail it (`OR FAIL`) and its
    /// entry is checked at commit. Read from SQLite's program for it: an
    /// abort is a constraint halt with `OE_Abort` (2), an entry checked at
    /// once a foreign-key counter of the statement (p1 = 0). Before v10 the
    /// same reading finds both.
    @Test func theThreePostingsStatementNeedsNoStatementJournal() throws {
        func aborts(_ queue: DatabaseQueue, _ sql: String) throws -> [String] {
            try queue.read { db in
                let parameters = sql.filter { $0 == "?" }.count
                let arguments = StatementArguments(Array(repeating: DatabaseValue.null, count: parameters))
                return try Row.fetchAll(db, sql: "EXPLAIN " + sql, arguments: arguments).compactMap { row -> String? in
                    let opcode: String = row["opcode"], p1: Int = row["p1"], p2: Int = row["p2"]
                    let abort = (opcode == "Halt" || opcode == "HaltIfNull") && p1 != 0 && p2 == 2
                    return abort || (opcode == "FkCounter" && p1 == 0) ? "\(opcode) \(p1) \(p2)" : nil
                }
            }
        }
        let statement = EngineStatement.insertThreeJournalPostings.sql
        let (queue, migrator) = try versionOneDatabase()
        try migrator.migrate(queue, upTo: "v9-engine-vault-appended")
        #expect(try !aborts(queue, statement.replacingOccurrences(of: "INSERT OR FAIL", with: "INSERT")).isEmpty)
        #expect(try !aborts(queue, statement).isEmpty, "the entry is still checked at once before v10")
        try migrator.migrate(queue)
        #expect(try aborts(queue, statement) == [])
        #expect(try aborts(queue, EngineStatement.insertJournalPosting.sql) == [])
        // A posting still needs its entry, by the commit.
        try queue.read { db in
            let sql = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE name = 'journal_posting'") ?? ""
            #expect(sql.contains("REFERENCES journal_entry(sequence) DEFERRABLE INITIALLY DEFERRED"), "\(sql)")
            #expect(sql.hasSuffix("WITHOUT ROWID"), "\(sql)")
        }
        #expect(throws: DatabaseError.self) {
            try queue.inTransaction { db in
                try db.execute(sql: "INSERT INTO journal_posting VALUES (99, 0, 'platform:fees', 'debit', 1, 'USD')")
                return .commit
            }
        }
        #expect(try queue.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM journal_posting WHERE entry_sequence = 99") } == 0)
    }

    /// Keys that grow over time are appended at one place, not at one per
    /// merchant: the key comes first. A lookup still finds its record by
    /// the whole key, and the purge still goes by expiry.
    @Test func idempotencyRecordsAreKeyedByTheKeyFirst() throws {
        let (queue, migrator) = try versionOneDatabase()
        try migrator.migrate(queue)
        try queue.read { db in
            let key = try String.fetchAll(db, sql: """
                SELECT name FROM pragma_index_info((SELECT name FROM pragma_index_list('idempotency_record') WHERE origin = 'pk'))
                ORDER BY seqno
                """)
            #expect(key == ["idempotency_key", "merchant_id", "kind"])
            #expect(try String.fetchAll(db, sql: "SELECT name FROM pragma_index_list('idempotency_record') WHERE origin = 'c'") == ["idempotency_expiry"])
            let lookup = try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + EngineStatement.idempotencyRecord.sql, arguments: ["m-1", "k-1", "payment"])
                .map { $0["detail"] as String }
            #expect(lookup == ["SEARCH idempotency_record USING PRIMARY KEY (idempotency_key=? AND merchant_id=? AND kind=?)"], "\(lookup)")
            let record = try Row.fetchOne(db, sql: EngineStatement.idempotencyRecord.sql, arguments: ["m-1", "k-1", "payment"])
            #expect(record?["resource_id"] == "pay-1")
        }
    }

    /// Cards stored under v8's vault, keyed by their token, are all there
    /// and decrypt after v9, each under its own token key; a card stored
    /// again is not added, and a new one goes after them.
    @Test func theVaultMigrationKeepsEveryCardAndAppendsNewOnes() throws {
        let vault = try CardVault(encryptionKey: Data(repeating: 7, count: 32), tokenKey: Data(repeating: 9, count: 32))
        func card(_ number: String) throws -> CardDetails {
            try CardDetails(number: number, expiry: "12/30", cvv: "123", currentYear: 2026, currentMonth: 11)
        }
        let numbers = ["4111111111111111", "5555555555554444", "378282246310005"]
        // Their vault rows as the engine writes them, carried to a v8 store.
        let current = try DatabaseQueue()
        var migrator = Store.migrator
        EngineSchema.register(in: &migrator)
        try migrator.migrate(current)
        for number in numbers { _ = try current.write { try vault.store(try card(number), in: $0) } }
        let columns = "token, ciphertext, first6, last4, expiry_month, expiry_year"
        let rows = try current.read { try Row.fetchAll($0, sql: "SELECT \(columns) FROM card_vault ORDER BY token") }
        let queue = try DatabaseQueue()
        try migrator.migrate(queue, upTo: "v8-engine-idempotency-key-first")
        try queue.write { db in
            for row in rows {
                try db.execute(sql: "INSERT INTO card_vault (\(columns)) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: StatementArguments(row.databaseValues))
            }
        }
        try migrator.migrate(queue)
        try queue.read { (db: Database) throws -> Void in
            #expect(try Row.fetchAll(db, sql: "SELECT \(columns) FROM card_vault ORDER BY card_id") == rows, "copied in token order")
            for row in rows {
                let token: String = row["token"]
                #expect(try Int64.fetchOne(db, sql: "SELECT token_key FROM card_vault WHERE token = ?", arguments: [token]) == CardVault.tokenKey(token))
            }
            for number in numbers { #expect(try vault.cardNumber(for: vault.token(for: try card(number)), in: db) == number) }
            #expect(try !db.tableExists("card_vault_nonce"))
        }
        _ = try queue.write { try vault.store(try card(numbers[0]), in: $0) }
        let added = try queue.write { try vault.store(try card("6011111111111117"), in: $0) }
        try queue.read { (db: Database) throws -> Void in
            #expect(try String.fetchAll(db, sql: "SELECT token FROM card_vault ORDER BY card_id") == rows.map { $0["token"] } + [added])
        }
    }

    /// A store at the schema before one notification row per event, with
    /// two events' notifications in the old pairs of rows.
    /// The events are in the outbox, except those in `lostEvents`.
    func versionSixDatabase(pairs: String, lostEvents: Set<String> = []) throws -> (DatabaseQueue, DatabaseMigrator) {
        var migrator = Store.migrator
        EngineSchema.register(in: &migrator)
        let queue = try DatabaseQueue()
        try migrator.migrate(queue, upTo: "v6-engine-reconciled-period")
        try queue.write { db in
            try db.execute(sql: "INSERT INTO notification (notification_id, event_id, recipient, body, signature, attempts, state, created_ns, updated_ns) VALUES \(pairs)")
            for event in try String.fetchAll(db, sql: "SELECT DISTINCT event_id FROM notification ORDER BY event_id") where !lostEvents.contains(event) {
                try db.execute(sql: "INSERT INTO outbox (event_id, topic, partition_key, payload, created_ns) VALUES (?, 'transactions', 'm-1', '{}', 0)",
                               arguments: [event])
            }
        }
        return (queue, migrator)
    }

    func expectRefused(_ queue: DatabaseQueue, _ migrator: DatabaseMigrator, saying message: String) throws {
        let before = try queue.read { try Row.fetchAll($0, sql: "SELECT * FROM notification ORDER BY notification_id") }
        #expect {
            try migrator.migrate(queue)
        } throws: { error in
            "\(error)".contains(message) && "\(error)".contains("cannot move to one notification row per event")
        }
        let columns = try queue.read { try $0.columns(in: "notification").map(\.name) }
        #expect(columns.contains("recipient") && columns.contains("body"))
        #expect(try queue.read { try Row.fetchAll($0, sql: "SELECT * FROM notification ORDER BY notification_id") } == before)
    }

    @Test func notificationsBecomeOneRowPerEventAndKeepTheirNumbers() throws {
        let (queue, migrator) = try versionSixDatabase(pairs: """
            (1, 'payment.completed:pay-1', 'user:u-1', '{}', NULL, 1, 'delivered', 10, 11),
            (2, 'payment.completed:pay-1', 'merchant:m-1', '{}', 'ab', 3, 'dead', 10, 40),
            (3, 'payment.failed:pay-2', 'user:u-2', '{}', NULL, 2, 'pending', 20, 30),
            (4, 'payment.failed:pay-2', 'merchant:m-2', '{}', 'cd', 1, 'delivered', 20, 21)
            """)
        try migrator.migrate(queue)
        let rows = try queue.read { try Row.fetchAll($0, sql: "SELECT * FROM notification ORDER BY notification_id") }
        #expect(rows.map(\.description) == [
            #"[notification_id:1 event_id:"payment.completed:pay-1" user_attempts:1 user_state:"delivered" merchant_attempts:3 merchant_state:"dead" created_ns:10 updated_ns:40]"#,
            #"[notification_id:2 event_id:"payment.failed:pay-2" user_attempts:2 user_state:"pending" merchant_attempts:1 merchant_state:"delivered" created_ns:20 updated_ns:30]"#,
        ])
        // The old numbers name the same notifications: 2 was event 1's merchant's, 3 event 2's user's.
        #expect(NotificationRecipient.of(2) == (1, .merchant) && NotificationRecipient.of(3) == (2, .user))
    }

    @Test func aStoreWhoseNotificationsDoNotPairUpIsRefusedUnchanged() throws {
        // The user's notification at an even number: no pairing can keep its number.
        let (queue, migrator) = try versionSixDatabase(pairs: """
            (2, 'payment.completed:pay-1', 'user:u-1', '{}', NULL, 1, 'delivered', 10, 11),
            (3, 'payment.completed:pay-1', 'merchant:m-1', '{}', 'ab', 1, 'delivered', 10, 11)
            """)
        try expectRefused(queue, migrator, saying: "2 notification row(s) are not one of an event's pair")
    }

    @Test func aStoreWithTwoPairsForOneEventIsRefusedUnchanged() throws {
        let (queue, migrator) = try versionSixDatabase(pairs: """
            (1, 'payment.completed:pay-1', 'user:u-1', '{}', NULL, 1, 'delivered', 10, 11),
            (2, 'payment.completed:pay-1', 'merchant:m-1', '{}', 'ab', 1, 'delivered', 10, 11),
            (3, 'payment.completed:pay-1', 'user:u-2', '{}', NULL, 1, 'delivered', 10, 11),
            (4, 'payment.completed:pay-1', 'merchant:m-2', '{}', 'ab', 1, 'delivered', 10, 11)
            """)
        try expectRefused(queue, migrator, saying: "2 notification row(s) belong to a second pair for the same event")
    }

    @Test func aStoreWhoseUndeliveredNotificationLostItsEventIsRefusedUnchanged() throws {
        let pairs = """
            (1, 'payment.completed:pay-1', 'user:u-1', '{}', NULL, 1, 'delivered', 10, 11),
            (2, 'payment.completed:pay-1', 'merchant:m-1', '{}', 'ab', 3, 'dead', 10, 40)
            """
        let (queue, migrator) = try versionSixDatabase(pairs: pairs, lostEvents: ["payment.completed:pay-1"])
        try expectRefused(queue, migrator, saying: "1 undelivered notification(s) have no event in the outbox")
        // Delivered notifications need their event no more.
        let (delivered, deliveredMigrator) = try versionSixDatabase(pairs: pairs.replacingOccurrences(of: "'dead'", with: "'delivered'"),
                                                                    lostEvents: ["payment.completed:pay-1"])
        try deliveredMigrator.migrate(delivered)
        #expect(try delivered.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM notification") } == 1)
    }
}
