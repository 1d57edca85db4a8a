import Foundation
import GRDB
import PaystormStore
import Testing
@testable import PaystormEngine

@Suite("Double-entry ledger")
struct LedgerTests {
    func makeDatabase() throws -> DatabaseQueue {
        let queue = try DatabaseQueue()
        try queue.write { try Ledger.createTables($0) }
        return queue
    }

    let usd = Currency.usd
    func capture(_ id: String, gross: Int64, fee: Int64, time: Int64 = 1) -> JournalEntry {
        JournalEntry(id: "capture:\(id)", transactionID: id, timeNanoseconds: time, postings: [
            .debit(.psp("stripe"), Money(minorUnits: gross, currency: usd)),
            .credit(.merchant("m-1"), Money(minorUnits: gross - fee, currency: usd)),
            .credit(.platformFees, Money(minorUnits: fee, currency: usd)),
        ])
    }

    @Test func postsBalancedEntriesAndKeepsBalances() throws {
        let db = try makeDatabase()
        try db.write { (db: Database) throws in
            try Ledger.post(capture("pay-1", gross: 1000, fee: 30), in: db)
            try Ledger.post(capture("pay-2", gross: 2500, fee: 75), in: db)
        }
        try db.read { (db: Database) throws in
            #expect(try Ledger.balance(of: .merchant("m-1"), currency: usd, in: db) == 3395)
            #expect(try Ledger.balance(of: .platformFees, currency: usd, in: db) == 105)
            #expect(try Ledger.balance(of: .psp("stripe"), currency: usd, in: db) == -3500)
            let audit = try Ledger.verify(db)
            #expect(audit.entries == 2)
            #expect(audit.headHash == (try Ledger.headHash(in: db)))
        }
    }

    /// A journal rewritten whole — an entry changed and every hash after it
    /// recomputed, the head moved — or cut back to fewer entries verifies on
    /// its own; only a hash kept outside the database shows it.
    @Test func witnessesCatchARecomputedOrTruncatedJournal() throws {
        let real = try makeDatabase()
        try real.write { db in
            for (index, gross) in [1000, 2500, 400].enumerated() { try Ledger.post(capture("pay-\(index)", gross: Int64(gross), fee: 30), in: db) }
        }
        let audit = try real.read { try Ledger.verify($0) }
        let head = try #require(audit.head)
        #expect(head.sequence == 3 && Ledger.Witness(head.description) == head)
        #expect(try real.read { try Ledger.head(in: $0) } == head, "the stored head, as the server logs it at stop")
        #expect(try makeDatabase().read { try Ledger.head(in: $0) } == nil)
        let second = try real.read { db in
            Ledger.Witness(sequence: 2, hash: try Data.fetchOne(db, sql: "SELECT hash FROM journal_entry WHERE sequence = 2")!)
        }
        #expect(try real.read { try Ledger.verify($0, witnesses: [head, second]) } == audit)

        // Rewritten: the second capture for 2,600, every hash recomputed by posting again.
        let rewritten = try makeDatabase()
        try rewritten.write { db in
            for (index, gross) in [1000, 2600, 400].enumerated() { try Ledger.post(capture("pay-\(index)", gross: Int64(gross), fee: 30), in: db) }
        }
        #expect(try rewritten.read { try Ledger.verify($0) }.entries == 3, "the chain alone cannot tell")
        #expect(throws: LedgerError.self) { try rewritten.read { try Ledger.verify($0, witnesses: [head]) } }
        do {
            _ = try rewritten.read { try Ledger.verify($0, witnesses: [second]) }
            Issue.record("a rewritten second entry passed its witness")
        } catch let error as LedgerError {
            guard case .witnessMismatch(sequence: 2, _, _) = error else { Issue.record("\(error)"); return }
            #expect(error.description.contains("#2 was witnessed"))
        }

        // Cut back: the newest entry gone, the head moved to the one before.
        let truncated = try makeDatabase()
        try truncated.write { db in
            for (index, gross) in [1000, 2500].enumerated() { try Ledger.post(capture("pay-\(index)", gross: Int64(gross), fee: 30), in: db) }
        }
        #expect(try truncated.read { try Ledger.verify($0, witnesses: [second]) }.entries == 2)
        #expect(throws: LedgerError.witnessBeyondJournal(sequence: 3, entries: 2)) {
            try truncated.read { try Ledger.verify($0, witnesses: [second, head]) }
        }
    }

    @Test func witnessesAreReadOnlyInTheirPrintedForm() {
        let hash = String(repeating: "ab", count: 32)
        #expect(Ledger.Witness("7:\(hash)")?.sequence == 7)
        #expect(Ledger.Witness("7:\(hash.uppercased())")?.description == "7:\(hash)")
        for bad in ["", "7", "7:", ":\(hash)", "0:\(hash)", "-1:\(hash)", "7:\(hash.dropLast())", "7:\(hash)00", "7:\(hash.dropLast())g", "x:\(hash)", "7:\(hash):1", "+7:\(hash)", " 7:\(hash)"] {
            #expect(Ledger.Witness(bad) == nil, "\(bad)")
        }
    }

    /// The chain's byte format is fixed: journals written before must still
    /// verify. The expected digest was computed outside Swift (Python's
    /// hashlib over the documented encoding).
    @Test func chainHashKeepsItsEncoding() {
        let entry = JournalEntry(id: "e-1", transactionID: "t-1", timeNanoseconds: 42, postings: [
            .debit(.psp("stripe"), Money(minorUnits: 1000, currency: usd)),
            .credit(.merchant("m-1"), Money(minorUnits: 1000, currency: usd)),
        ])
        #expect(Hex.encode(Ledger.chainHash(previous: Data(count: 32), sequence: 1, entry: entry))
                == "346cc3e6afda2f8d203440baffbe4e49acf79a5b78542577e502ec7eb22a0b9e")
    }

    @Test func refusesUnbalancedEntriesAndWritesNothing() throws {
        let db = try makeDatabase()
        let unbalanced = JournalEntry(id: "bad", transactionID: "pay-1", timeNanoseconds: 1, postings: [
            .debit(.psp("stripe"), Money(minorUnits: 1000, currency: usd)),
            .credit(.merchant("m-1"), Money(minorUnits: 999, currency: usd)),
        ])
        #expect(throws: LedgerError.unbalanced(entry: "bad", currency: "USD", debits: 1000, credits: 999)) {
            try db.write { try Ledger.post(unbalanced, in: $0) }
        }
        // Balanced in total but not per currency.
        let mixed = JournalEntry(id: "mixed", transactionID: "pay-1", timeNanoseconds: 1, postings: [
            .debit(.psp("stripe"), Money(minorUnits: 1000, currency: usd)),
            .credit(.merchant("m-1"), Money(minorUnits: 1000, currency: .eur)),
        ])
        #expect(throws: LedgerError.self) { try db.write { try Ledger.post(mixed, in: $0) } }
        let zero = JournalEntry(id: "zero", transactionID: "pay-1", timeNanoseconds: 1, postings: [
            .debit(.psp("stripe"), Money(minorUnits: 0, currency: usd)),
            .credit(.merchant("m-1"), Money(minorUnits: 0, currency: usd)),
        ])
        #expect(throws: LedgerError.self) { try db.write { try Ledger.post(zero, in: $0) } }
        try db.read { (db: Database) throws in
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM journal_entry") == 0)
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM account_balance") == 0)
        }
    }

    @Test func internalAccountsNeverGoNegative() throws {
        let db = try makeDatabase()
        _ = try db.write { try Ledger.post(capture("pay-1", gross: 1000, fee: 30), in: $0) }
        let overRefund = JournalEntry(id: "refund:r-1", transactionID: "r-1", timeNanoseconds: 2, postings: [
            .debit(.merchant("m-1"), Money(minorUnits: 971, currency: usd)),
            .credit(.psp("stripe"), Money(minorUnits: 971, currency: usd)),
        ])
        #expect(throws: LedgerError.wouldGoNegative(entry: "refund:r-1", account: "merchant:m-1", currency: "USD", balance: -1)) {
            try db.write { try Ledger.post(overRefund, in: $0) }
        }
        let balance = try db.read { try Ledger.balance(of: .merchant("m-1"), currency: usd, in: $0) }
        #expect(balance == 970)
    }

    @Test func duplicateEntryIDsAreRefused() throws {
        let db = try makeDatabase()
        _ = try db.write { try Ledger.post(capture("pay-1", gross: 1000, fee: 30), in: $0) }
        #expect(throws: LedgerError.duplicateEntry("capture:pay-1")) {
            _ = try db.write { try Ledger.post(capture("pay-1", gross: 1000, fee: 30), in: $0) }
        }
    }

    /// A redelivered refund whose merchant has nothing left to give back is
    /// a duplicate, not an overdraft: the first delivery took the money.
    @Test func aRedeliveredEntryThatWouldOverdrawIsADuplicate() throws {
        let db = try makeDatabase()
        _ = try db.write { try Ledger.post(capture("pay-1", gross: 1000, fee: 30), in: $0) }
        let refund = JournalEntry(id: "refund:r-1", transactionID: "r-1", timeNanoseconds: 2, postings: [
            .debit(.merchant("m-1"), Money(minorUnits: 970, currency: usd)),
            .credit(.psp("stripe"), Money(minorUnits: 970, currency: usd)),
        ])
        _ = try db.write { try Ledger.post(refund, in: $0) }
        #expect(throws: LedgerError.duplicateEntry("refund:r-1")) {
            _ = try db.write { try Ledger.post(refund, in: $0) }
        }
        #expect(try db.read { try Ledger.verify($0).entries } == 2)
    }

    @Test func journalIsAppendOnlyInTheSchema() throws {
        let db = try makeDatabase()
        _ = try db.write { try Ledger.post(capture("pay-1", gross: 1000, fee: 30), in: $0) }
        #expect(throws: DatabaseError.self) { try db.write { try $0.execute(sql: "DELETE FROM journal_entry") } }
        #expect(throws: DatabaseError.self) { try db.write { try $0.execute(sql: "UPDATE journal_posting SET amount_minor = 1") } }
    }

    /// Posts `entries` captures, runs `sql` as an attacker with file access
    /// could (no foreign keys, no append-only triggers), and returns what
    /// ``Ledger/verify(_:)`` then reports (`nil`: nothing).
    func verifyError(afterTampering sql: String, entries: Int = 5) throws -> LedgerError? {
        let db = try makeDatabase()
        try db.write { (db: Database) throws in
            for i in 1...entries { try Ledger.post(capture("pay-\(i)", gross: Int64(1000 * i), fee: Int64(30 * i), time: Int64(i)), in: db) }
            #expect(try Ledger.verify(db).entries == entries)
        }
        try db.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA foreign_keys = OFF; DROP TRIGGER journal_posting_append_only_update; DROP TRIGGER journal_entry_append_only_update; DROP TRIGGER journal_entry_append_only_delete; DROP TRIGGER journal_posting_append_only_delete")
            try db.execute(sql: sql)
        }
        do {
            _ = try db.read { try Ledger.verify($0) }
            return nil
        } catch let error as LedgerError {
            return error
        }
    }

    /// The checksum exists to catch tampering: show that it does, for each kind.
    @Test func verifyDetectsTampering() throws {
        func tampered(_ sql: String) throws -> LedgerError? { try verifyError(afterTampering: sql) }
        #expect(try tampered("UPDATE journal_posting SET amount_minor = amount_minor + 1 WHERE entry_sequence = 3 AND line = 1; UPDATE journal_posting SET amount_minor = amount_minor + 1 WHERE entry_sequence = 3 AND line = 0") == .chainBroken(sequence: 3, entry: "capture:pay-3"))
        #expect(try tampered("UPDATE journal_entry SET time_ns = 99 WHERE sequence = 2") == .chainBroken(sequence: 2, entry: "capture:pay-2"))
        #expect(try tampered("DELETE FROM journal_posting WHERE entry_sequence = 5; DELETE FROM journal_entry WHERE sequence = 5") != nil)
        #expect(try tampered("UPDATE account_balance SET balance_minor = balance_minor + 100 WHERE account = 'merchant:m-1'") != nil)
        #expect(try tampered("UPDATE journal_posting SET account = 'merchant:evil' WHERE entry_sequence = 1 AND line = 1") == .chainBroken(sequence: 1, entry: "capture:pay-1"))
    }

    /// The guard that keeps internal accounts from going below zero is the
    /// writer's; the audit checks it too: an entry written past the guard,
    /// balanced and chained, is found.
    @Test func verifyFindsAnInternalAccountTakenBelowZero() throws {
        let queue = try makeDatabase()
        try queue.write { db in
            try Ledger.post(capture("pay-1", gross: 1_000, fee: 30), in: db)
            let payout = JournalEntry(id: "payout:1", transactionID: "payout-1", timeNanoseconds: 2, postings: [
                .debit(.merchant("m-1"), Money(minorUnits: 2_000, currency: usd)),
                .credit(.psp("stripe"), Money(minorUnits: 2_000, currency: usd)),
            ])
            let previous = try #require(try Data.fetchOne(db, sql: "SELECT hash FROM journal_head WHERE id = 1"))
            let hash = Ledger.chainHash(previous: previous, sequence: 2, entry: payout)
            try db.execute(sql: "INSERT INTO journal_entry (sequence, entry_id, transaction_id, time_ns, previous_hash, hash) VALUES (2, 'payout:1', 'payout-1', 2, ?, ?)",
                           arguments: [previous, hash])
            try db.execute(sql: """
                INSERT INTO journal_posting (entry_sequence, line, account, side, amount_minor, currency) VALUES
                    (2, 0, 'merchant:m-1', 'debit', 2000, 'USD'), (2, 1, 'external:psp:stripe', 'credit', 2000, 'USD');
                UPDATE journal_head SET sequence = 2, hash = ? WHERE id = 1;
                UPDATE account_balance SET balance_minor = balance_minor - 2000 WHERE account = 'merchant:m-1';
                UPDATE account_balance SET balance_minor = balance_minor + 2000 WHERE account = 'external:psp:stripe';
                """, arguments: [hash])
        }
        #expect(throws: LedgerError.wouldGoNegative(entry: "payout:1", account: "merchant:m-1", currency: "USD", balance: -1_030)) {
            try queue.read { try Ledger.verify($0) }
        }
    }

    /// Postings moved out of their entry — to a number between two entries
    /// (a real number reads back as the integer below it) or past the last —
    /// break the chain, as an edited posting does.
    @Test func verifyDetectsPostingsOfNoEntry() throws {
        func tampered(_ sql: String) throws -> LedgerError? { try verifyError(afterTampering: sql, entries: 3) }
        #expect(try tampered("SELECT 1") == nil)
        // Entry 2 is left with two lines that no longer balance.
        let moved = try tampered("UPDATE journal_posting SET entry_sequence = 2.5 WHERE entry_sequence = 2 AND line = 2")
        #expect(moved != nil)
        #expect(moved.map { "\($0)" }?.contains("capture:pay-2") == true)
        #expect(try tampered("INSERT INTO journal_posting (entry_sequence, line, account, side, amount_minor, currency) VALUES (4, 0, 'merchant:m-1', 'credit', 5, 'USD')")
            == .chainBroken(sequence: 4, entry: "(none)"))
    }

    @Test("random balanced entries keep every invariant", arguments: 0..<20)
    func randomEntries(seed: Int) throws {
        var generator = SplitMix(seed: UInt64(seed))
        let db = try makeDatabase()
        var expectedMerchant: Int64 = 0
        try db.write { (db: Database) throws in
            for i in 0..<50 {
                let gross = Int64(generator.next() % 100_000) + 2
                let fee = Int64(generator.next() % UInt64(gross - 1)) + 1
                try Ledger.post(capture("pay-\(i)", gross: gross, fee: fee, time: Int64(i)), in: db)
                expectedMerchant += gross - fee
            }
        }
        try db.read { (db: Database) throws in
            #expect(try Ledger.balance(of: .merchant("m-1"), currency: usd, in: db) == expectedMerchant)
            let total = try Int64.fetchOne(db, sql: "SELECT SUM(balance_minor) FROM account_balance WHERE currency = 'USD'")
            #expect(total == 0, "globally, the books balance")
            #expect(try Ledger.verify(db).entries == 50)
        }
    }
}

