import Crypto
import Foundation
import GRDB
import PaystormStore

/// The double-entry journal and account balances, stored in SQLite.
///
/// Append-only: entries are inserted, never updated or deleted. Each entry's
/// SHA-256 covers its canonical bytes and the previous entry's hash, and the
/// newest hash is kept as the head, so ``verify(_:)`` detects any edit,
/// deletion or reordering. Balances are maintained in the same transaction as
/// the entry. All methods run inside the caller's write transaction.
public enum Ledger {
    /// Creates the ledger tables (a store migration step).
    public static func createTables(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE journal_entry (
                sequence INTEGER PRIMARY KEY,
                entry_id TEXT NOT NULL UNIQUE,
                transaction_id TEXT NOT NULL,
                time_ns INTEGER NOT NULL,
                previous_hash BLOB NOT NULL,
                hash BLOB NOT NULL);
            CREATE INDEX journal_entry_transaction ON journal_entry(transaction_id);
            CREATE TABLE journal_posting (
                entry_sequence INTEGER NOT NULL REFERENCES journal_entry(sequence),
                line INTEGER NOT NULL,
                account TEXT NOT NULL,
                side TEXT NOT NULL CHECK (side IN ('debit', 'credit')),
                amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
                currency TEXT NOT NULL,
                PRIMARY KEY (entry_sequence, line));
            CREATE INDEX journal_posting_account ON journal_posting(account, currency);
            CREATE TABLE account_balance (
                account TEXT NOT NULL,
                currency TEXT NOT NULL,
                balance_minor INTEGER NOT NULL,
                PRIMARY KEY (account, currency));
            CREATE TABLE journal_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                sequence INTEGER NOT NULL,
                hash BLOB NOT NULL);
            INSERT INTO journal_head (id, sequence, hash) VALUES (1, 0, zeroblob(32));
            CREATE TRIGGER journal_entry_append_only_update BEFORE UPDATE ON journal_entry
                BEGIN SELECT RAISE(ABORT, 'journal_entry is append-only'); END;
            CREATE TRIGGER journal_entry_append_only_delete BEFORE DELETE ON journal_entry
                BEGIN SELECT RAISE(ABORT, 'journal_entry is append-only'); END;
            CREATE TRIGGER journal_posting_append_only_update BEFORE UPDATE ON journal_posting
                BEGIN SELECT RAISE(ABORT, 'journal_posting is append-only'); END;
            CREATE TRIGGER journal_posting_append_only_delete BEFORE DELETE ON journal_posting
                BEGIN SELECT RAISE(ABORT, 'journal_posting is append-only'); END;
            """)
    }

    /// Validates and appends `entry`, updating balances and the chain head.
    /// Nothing is written if any check fails (the caller's transaction rolls back
    /// on the thrown error).
    ///
    /// - Returns: the entry's sequence number.
    /// - Throws: ``LedgerError`` for an unbalanced, duplicate or overdrawing entry.
    /// - Complexity: prepares its statements on each call; the engine posts
    ///   through statements it keeps prepared.
    @discardableResult
    public static func post(_ entry: JournalEntry, in db: Database) throws(LedgerError) -> Int64 {
        try post(entry, in: db, statements: EngineStatements(store: nil))
    }

    @discardableResult
    static func post(_ entry: JournalEntry, in db: Database, statements: EngineStatements) throws(LedgerError) -> Int64 {
        try entry.validate()
        do {
            // Net change per (account, currency), applied in a fixed order.
            // An entry has a handful of postings: a sorted array beats hashing.
            var changes: [(key: Key, delta: Int64)] = []
            changes.reserveCapacity(entry.postings.count)
            for posting in entry.postings {
                let key = Key(account: posting.account, currency: posting.amount.currency.code)
                let delta = posting.side == .credit ? posting.amount.minorUnits : -posting.amount.minorUnits
                if let index = changes.firstIndex(where: { $0.key == key }) {
                    changes[index].delta += delta
                } else {
                    changes.append((key, delta))
                }
            }
            changes.sort { $0.key < $1.key }
            // Check first, write after: a refused entry writes nothing, so a
            // batch of engine commands needs no savepoint around it. Only a
            // fall of a non-external account can end below zero.
            for (key, delta) in changes where delta < 0 && !key.account.isExternal {
                let current = try statements.balance(key, in: db)
                if current + delta < 0 {
                    // A redelivered entry may overdraw only because it was posted once already.
                    if try contains(entry.id, in: db, statements: statements) { throw LedgerError.duplicateEntry(entry.id) }
                    throw LedgerError.wouldGoNegative(entry: entry.id, account: key.account.name, currency: key.currency, balance: current + delta)
                }
            }
            let head = try statements.journalHead(in: db)
            let sequence = head.sequence + 1
            let previous = head.hash
            let hash = chainHash(previous: previous, sequence: sequence, entry: entry)
            // The entry's first write is also its duplicate check: an entry id
            // already in the journal inserts nothing, and nothing else is written.
            let insertEntry = try statements(.insertJournalEntry, db)
            insertEntry.bind(sequence, at: 1)
            insertEntry.bind(entry.id, at: 2)
            insertEntry.bind(entry.transactionID, at: 3)
            insertEntry.bind(entry.timeNanoseconds, at: 4)
            insertEntry.bind(previous, at: 5)
            insertEntry.bind(hash, at: 6)
            try insertEntry.execute()
            if insertEntry.changes == 0 { throw LedgerError.duplicateEntry(entry.id) }
            // Stored now, or summed per account and stored once before the engine's transaction commits.
            for (key, delta) in changes { try statements.addToBalance(key, delta, in: db) }
            // A capture's or a refund's three postings in one run of one statement.
            let perRun = entry.postings.count == 3 ? 3 : 1
            let insertPostings = try statements(perRun == 3 ? .insertThreeJournalPostings : .insertJournalPosting, db)
            for (line, posting) in entry.postings.enumerated() {
                let first = Int32(line % perRun) * 6
                insertPostings.bind(sequence, at: first + 1)
                insertPostings.bind(Int64(line), at: first + 2)
                insertPostings.bind(posting.account.name, at: first + 3)
                insertPostings.bind(posting.side.rawValue, at: first + 4)
                insertPostings.bind(posting.amount.minorUnits, at: first + 5)
                insertPostings.bind(posting.amount.currency.code, at: first + 6)
                if (line + 1) % perRun == 0 { try insertPostings.execute() }
            }
            // Stored now, or once before the engine's transaction commits.
            try statements.moveJournalHead(to: EngineStatements.JournalHead(sequence: sequence, hash: hash), in: db)
            return sequence
        } catch let error as LedgerError {
            throw error
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Whether the journal holds an entry with this id.
    static func contains(_ entryID: String, in db: Database, statements: EngineStatements) throws -> Bool {
        let exists = try statements(.journalContains, db)
        defer { exists.reset() }
        exists.bind(entryID, at: 1)
        return try exists.step()
    }

    /// The balance of an account in a currency (credits − debits), 0 if never posted.
    public static func balance(of account: LedgerAccount, currency: Currency, in db: Database) throws -> Int64 {
        try db.value("SELECT balance_minor FROM account_balance WHERE account = ? AND currency = ?", as: Int64.self, [account.name, currency.code]) ?? 0
    }

    /// The stored chain head as hex (64 digits).
    public static func headHash(in db: Database) throws -> String {
        let data = try Data.fetchOne(db, sql: "SELECT hash FROM journal_head WHERE id = 1") ?? Data()
        return Hex.encode(data)
    }

    /// The stored chain head as a witness to keep (``Witness``); `nil` for
    /// an empty journal. Read, not verified: a later ``verify(_:witnesses:)``
    /// given it checks the journal reproduces it.
    public static func head(in db: Database) throws -> Witness? {
        guard let row = try Row.fetchOne(db, sql: "SELECT sequence, hash FROM journal_head WHERE id = 1") else { return nil }
        let sequence: Int64 = row["sequence"]
        let hash: Data = row["hash"]
        return sequence > 0 && hash.count == 32 ? Witness(sequence: sequence, hash: hash) : nil
    }

    /// What ``verify(_:)`` found when the ledger is sound.
    public struct Audit: Equatable, Sendable {
        public var entries: Int
        public var headHash: String
        /// The head as a witness to keep for later audits; `nil` for an empty journal.
        public var head: Witness? {
            entries > 0 ? Hex.decode(headHash).map { Witness(sequence: Int64(entries), hash: $0) } : nil
        }
    }

    /// A chain hash kept outside the database — printed by an earlier audit,
    /// written down elsewhere — that the journal must still reproduce.
    ///
    /// The chain alone shows that the journal agrees with its stored head,
    /// and so catches an edit of a few rows. Whoever can write the database
    /// can also recompute every hash after an edit, or cut the newest entries
    /// and move the head back: only a hash held elsewhere tells that journal
    /// from the real one.
    public struct Witness: Sendable, Equatable, CustomStringConvertible {
        /// The entry the hash was taken after (1 is the first entry).
        public var sequence: Int64
        /// The chain hash after that entry, 32 bytes.
        public var hash: Data

        public init(sequence: Int64, hash: Data) {
            self.sequence = sequence
            self.hash = hash
        }

        /// Reads `SEQUENCE:HASH`, the form ``description`` writes (the hash in
        /// 64 hex digits); `nil` for anything else.
        public init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let sequence = Int64(parts[0]), sequence >= 1,
                  let hash = Hex.decode(String(parts[1])), hash.count == 32 else { return nil }
            self.init(sequence: sequence, hash: hash)
        }

        public var description: String { "\(sequence):\(Hex.encode(hash))" }
    }

    /// Replays the whole journal: recomputes every hash from the entry rows
    /// and postings, checks each entry is balanced, that no account but an
    /// external one went below zero, that the last hash is the stored head,
    /// that stored balances equal the replayed ones, and that the chain
    /// still reproduces every witness.
    /// - Complexity: O(entries + postings + witnesses).
    public static func verify(_ db: Database, witnesses: [Witness] = []) throws(LedgerError) -> Audit {
        var witnessed: [Int64: Data] = [:]
        for witness in witnesses {
            if let other = witnessed[witness.sequence], other != witness.hash {
                throw .witnessMismatch(sequence: witness.sequence, witnessed: hex(witness.hash), recomputed: "another witness's \(hex(other))")
            }
            witnessed[witness.sequence] = witness.hash
        }
        do {
            var previous = Data(count: 32)
            var count = 0
            var replayed: [Key: Int64] = [:]
            // Entries and postings each read once, in key order, side by side
            // (a query of postings per entry was most of a world's audits).
            let entries = try PreparedStatement(db, sql: "SELECT sequence, entry_id, transaction_id, time_ns, previous_hash, hash FROM journal_entry ORDER BY sequence")
            let postings = try PreparedStatement(db, sql: "SELECT entry_sequence, account, side, amount_minor, currency FROM journal_posting ORDER BY entry_sequence, line")
            defer {
                entries.reset()
                postings.reset()
            }
            var postingReady = try postings.step()
            while try entries.step() {
                let sequence = entries.int64(at: 0)
                let id = entries.text(at: 1)
                count += 1
                guard sequence == Int64(count), entries.blob(at: 4) == previous else {
                    throw LedgerError.chainBroken(sequence: sequence, entry: id)
                }
                // A posting sorted before this entry belongs to none (the entries
                // before it took theirs); one whose entry number is not an
                // integer would be read as the integer below it.
                if postingReady, !postings.isInteger(at: 0) || postings.int64(at: 0) < sequence {
                    throw LedgerError.chainBroken(sequence: sequence, entry: id)
                }
                var lines: [LedgerPosting] = []
                while postingReady && postings.isInteger(at: 0) && postings.int64(at: 0) == sequence {
                    guard let currency = Currency(code: postings.text(at: 4)), let side = LedgerPosting.Side(rawValue: postings.text(at: 2)) else {
                        throw LedgerError.chainBroken(sequence: sequence, entry: id)
                    }
                    lines.append(LedgerPosting(side, LedgerAccount(postings.text(at: 1)), Money(minorUnits: postings.int64(at: 3), currency: currency)))
                    postingReady = try postings.step()
                }
                let entry = JournalEntry(id: id, transactionID: entries.text(at: 2), timeNanoseconds: entries.int64(at: 3), postings: lines)
                try entry.validate()
                let hash = chainHash(previous: previous, sequence: sequence, entry: entry)
                guard hash == entries.blob(at: 5) else { throw LedgerError.chainBroken(sequence: sequence, entry: id) }
                if let expected = witnessed[sequence], expected != hash {
                    throw LedgerError.witnessMismatch(sequence: sequence, witnessed: hex(expected), recomputed: hex(hash))
                }
                for posting in lines {
                    replayed[Key(account: posting.account, currency: posting.amount.currency.code), default: 0]
                        += posting.side == .credit ? posting.amount.minorUnits : -posting.amount.minorUnits
                }
                // As ``post(_:in:)`` refuses: no account but an external one ever below zero after an entry.
                for posting in lines where posting.side == .debit && !posting.account.isExternal {
                    let key = Key(account: posting.account, currency: posting.amount.currency.code)
                    if let balance = replayed[key], balance < 0 {
                        throw LedgerError.wouldGoNegative(entry: id, account: key.account.name, currency: key.currency, balance: balance)
                    }
                }
                previous = hash
            }
            // Postings after the last entry belong to none.
            if postingReady { throw LedgerError.chainBroken(sequence: Int64(count + 1), entry: "(none)") }
            if let beyond = witnessed.keys.filter({ $0 > Int64(count) }).min() {
                throw LedgerError.witnessBeyondJournal(sequence: beyond, entries: count)
            }
            let stored = try Data.fetchOne(db, sql: "SELECT hash FROM journal_head WHERE id = 1") ?? Data()
            guard stored == previous else { throw LedgerError.headMismatch(stored: hex(stored), recomputed: hex(previous)) }
            for row in try Row.fetchAll(db, sql: "SELECT account, currency, balance_minor FROM account_balance ORDER BY account, currency") {
                let key = Key(account: LedgerAccount(row["account"]), currency: row["currency"])
                let balance: Int64 = row["balance_minor"]
                guard replayed[key, default: 0] == balance else {
                    throw LedgerError.storage("balance of \(key.account) in \(key.currency) is \(balance), the journal says \(replayed[key, default: 0])")
                }
                replayed[key] = nil
            }
            if let missing = replayed.keys.sorted().first(where: { replayed[$0] != 0 }) {
                throw LedgerError.storage("no stored balance for \(missing.account) in \(missing.currency)")
            }
            return Audit(entries: count, headHash: hex(previous))
        } catch let error as LedgerError {
            throw error
        } catch {
            throw .storage("\(error)")
        }
    }

    struct Key: Hashable, Comparable {
        var account: LedgerAccount
        var currency: String
        static func < (lhs: Key, rhs: Key) -> Bool { (lhs.account.name, lhs.currency) < (rhs.account.name, rhs.currency) }
    }

    /// SHA-256 over the previous hash and a length-prefixed canonical
    /// encoding of the entry, so no two different entries encode alike.
    static func chainHash(previous: Data, sequence: Int64, entry: JournalEntry) -> Data {
        // Gathered into one buffer and hashed once: a hash update per field
        // cost more than the hashing.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(previous.count + 128 + entry.postings.count * 64)
        bytes.append(contentsOf: previous)
        func add(_ value: Int64) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
        func add(_ text: String) {
            add(Int64(text.utf8.count))
            bytes.append(contentsOf: text.utf8)
        }
        add(sequence)
        add(entry.id)
        add(entry.transactionID)
        add(entry.timeNanoseconds)
        add(Int64(entry.postings.count))
        for posting in entry.postings {
            add(posting.account.name)
            add(posting.side.rawValue)
            add(posting.amount.minorUnits)
            add(posting.amount.currency.code)
        }
        return Data(SHA256.hash(data: bytes))
    }

    static func hex(_ data: Data) -> String { Hex.encode(data) }
}
