import Foundation
import GRDB
import PaystormEngine
import PaystormStore

/// What really happened at the PSPs — every outcome they settled, and the
/// captures and payouts the checker holds the engine to — kept in a SQLite
/// database of the world's own, never the engine's. A run settles about
/// once per payment: held in the process, this truth was some 45 bytes a
/// payment and most of what grew with a run (a ten-million run ended above
/// a gibibyte). On disk it costs a bounded page cache.
///
/// The database is a scratch file (or memory, for a run without one): one
/// transaction for the whole run, never rolled back, no journal, no sync.
/// A write that fails (a full disk) is kept in ``failure``; the run stops
/// with it at its next step, before any result is reported.
final class WorldTruth {
    private let queue: DatabaseQueue
    let location: String
    private(set) var failure: StoreError?

    private var insertRecord: PreparedStatement!
    private var recordByNumber: PreparedStatement!
    private var insertCapture: PreparedStatement!
    private var captureByNumber: PreparedStatement!
    private var insertPayout: PreparedStatement!
    private var updatePayout: PreparedStatement!
    private var payoutByReference: PreparedStatement!
    private var insertCreation: PreparedStatement!
    private var creationByRequest: PreparedStatement!

    /// - Parameter path: the scratch file (replaced if it exists; the caller
    ///   removes it), or `nil` for memory.
    init(path: String?, cacheMebibytes: Int) throws(StoreError) {
        location = path ?? ":memory:"
        var configuration = Configuration()
        configuration.label = "world truth \(location)"
        // The one transaction stays open between accesses.
        configuration.allowsUnsafeTransactions = true
        do {
            if let path {
                for suffix in ["", "-journal"] where FileManager.default.fileExists(atPath: path + suffix) {
                    try FileManager.default.removeItem(atPath: path + suffix)
                }
                queue = try DatabaseQueue(path: path, configuration: configuration)
            } else {
                queue = try DatabaseQueue(configuration: configuration)
            }
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: """
                    PRAGMA journal_mode = OFF;
                    PRAGMA synchronous = OFF;
                    PRAGMA locking_mode = EXCLUSIVE;
                    PRAGMA temp_store = FILE;
                    PRAGMA cache_size = -\(max(1, cacheMebibytes) * 1024);
                    CREATE TABLE psp_record (
                        psp INTEGER NOT NULL,
                        number INTEGER NOT NULL,  -- the PSP's own count: webhooks name a record by it
                        reference TEXT NOT NULL,  -- the idempotency key: settlement reports list by it
                        kind TEXT NOT NULL,
                        status TEXT NOT NULL,
                        amount_minor INTEGER NOT NULL,
                        currency TEXT NOT NULL,
                        settled_ns INTEGER NOT NULL,
                        PRIMARY KEY (psp, reference)) WITHOUT ROWID;
                    -- Kept in reference order, which a settlement report reads
                    -- whole; by number, this index alone answers webhooks and
                    -- the discrepancy draw (it carries the key).
                    CREATE INDEX psp_record_number ON psp_record(psp, number, status, kind);
                    CREATE TABLE capture (payment_number INTEGER PRIMARY KEY, psp INTEGER NOT NULL, amount_minor INTEGER NOT NULL);
                    CREATE TABLE payout (reference TEXT PRIMARY KEY, amount_minor INTEGER NOT NULL) WITHOUT ROWID;
                    CREATE TABLE creation (request_id INTEGER PRIMARY KEY, payment_id TEXT NOT NULL);
                    BEGIN IMMEDIATE TRANSACTION;
                    """)
                insertRecord = try PreparedStatement(db, sql: """
                    INSERT INTO psp_record (psp, number, reference, kind, status, amount_minor, currency, settled_ns)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                recordByNumber = try PreparedStatement(db, sql: """
                    SELECT reference, kind, status FROM psp_record WHERE psp = ? AND number = ?
                    """)
                insertCapture = try PreparedStatement(db, sql: "INSERT OR IGNORE INTO capture (payment_number, psp, amount_minor) VALUES (?, ?, ?)")
                captureByNumber = try PreparedStatement(db, sql: "SELECT psp, amount_minor FROM capture WHERE payment_number = ?")
                insertPayout = try PreparedStatement(db, sql: "INSERT OR IGNORE INTO payout (reference, amount_minor) VALUES (?, ?)")
                updatePayout = try PreparedStatement(db, sql: "UPDATE payout SET amount_minor = ? WHERE reference = ?")
                payoutByReference = try PreparedStatement(db, sql: "SELECT amount_minor FROM payout WHERE reference = ?")
                insertCreation = try PreparedStatement(db, sql: "INSERT OR IGNORE INTO creation (request_id, payment_id) VALUES (?, ?)")
                creationByRequest = try PreparedStatement(db, sql: "SELECT payment_id FROM creation WHERE request_id = ?")
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(path: location, operation: "open the world's truth", message: "\(error)")
        }
    }

    deinit {
        // The statements go before the connection: the last one finalized
        // closes a connection already closed, and SQLite then rolls the
        // open transaction back into hooks GRDB has freed.
        insertRecord = nil
        recordByNumber = nil
        insertCapture = nil
        captureByNumber = nil
        insertPayout = nil
        updatePayout = nil
        payoutByReference = nil
        insertCreation = nil
        creationByRequest = nil
    }

    /// Runs `body` on the connection; a failure is kept (the first one) and
    /// `fallback` returned, so an actor's step never throws.
    private func access<T>(_ operation: String, fallback: T, _ body: (Database) throws -> T) -> T {
        guard failure == nil else { return fallback }
        do {
            return try queue.inDatabase(body)
        } catch let error as StoreError {
            failure = StoreError(path: location, operation: operation, message: error.message)
        } catch {
            failure = StoreError(path: location, operation: operation, message: "\(error)")
        }
        return fallback
    }

    // MARK: - The PSPs' records

    /// One outcome a PSP settled, as its settlement report will list it.
    struct Record: Equatable {
        var number: Int32
        var reference: String
        var kind: SettlementKind
        var status: SettlementStatus
        var amount: Money
        var settledNanoseconds: Int64
    }

    func append(psp: Int, _ record: Record) {
        access("record a settlement", fallback: ()) { _ in
            let insert = insertRecord!
            insert.bind(Int64(psp), at: 1)
            insert.bind(Int64(record.number), at: 2)
            insert.bind(record.reference, at: 3)
            insert.bind(record.kind.rawValue, at: 4)
            insert.bind(record.status.rawValue, at: 5)
            insert.bind(record.amount.minorUnits, at: 6)
            insert.bind(record.amount.currency.code, at: 7)
            insert.bind(record.settledNanoseconds, at: 8)
            try insert.execute()
        }
    }

    /// The reference, kind and status of a PSP's record `number` (what its webhook says).
    func webhookFacts(psp: Int, number: Int32) -> (reference: String, kind: SettlementKind, status: SettlementStatus)? {
        access("read a settlement", fallback: nil) { _ in
            let row = recordByNumber!
            defer { row.reset() }
            row.bind(Int64(psp), at: 1)
            row.bind(Int64(number), at: 2)
            guard try row.step() else { return nil }
            return (row.text(at: 0), SettlementKind(rawValue: row.text(at: 1))!, SettlementStatus(rawValue: row.text(at: 2))!)
        }
    }

    /// Calls `body` with each of a PSP's records numbered below `end`, in
    /// number order: the number, the status and the reference.
    func forEachRecord(psp: Int, below end: Int32, _ body: (Int32, SettlementStatus, String) -> Void) {
        access("read the settlements", fallback: ()) { db in
            let rows = try Row.fetchCursor(db, sql: """
                SELECT number, status, reference FROM psp_record WHERE psp = ? AND number < ? ORDER BY number
                """, arguments: [psp, end])
            while let row = try rows.next() {
                body(row[0], SettlementStatus(rawValue: row[1])!, row[2])
            }
        }
    }

    /// Up to `limit` of a PSP's records numbered below `end`, in reference
    /// order (byte by byte, as the engine's reconciler orders them), those
    /// after `after` only.
    func records(psp: Int, below end: Int32, after: String?, limit: Int) -> [Record] {
        access("read a settlement part", fallback: []) { db in
            let rows = try Row.fetchCursor(db, sql: """
                SELECT number, reference, kind, status, amount_minor, currency, settled_ns FROM psp_record
                WHERE psp = ? AND number < ?\(after == nil ? "" : " AND reference > ?")
                ORDER BY reference LIMIT ?
                """, arguments: after.map { [psp, end, $0, limit] } ?? [psp, end, limit])
            var records: [Record] = []
            while let row = try rows.next() {
                records.append(Record(number: row[0], reference: row[1], kind: SettlementKind(rawValue: row[2])!,
                                      status: SettlementStatus(rawValue: row[3])!,
                                      amount: Money(minorUnits: row[4], currency: Currency(code: row[5])!), settledNanoseconds: row[6]))
            }
            return records
        }
    }

    // MARK: - The checker's side: creations, captures and payouts

    /// Records that client request `request` (one idempotency key, however
    /// many times it was sent) created payment `paymentID`.
    /// - Returns: the payment an earlier send of the request had created
    ///   (the first is kept), if one had.
    func created(request: Int64, paymentID: String) -> String? {
        access("record a creation", fallback: nil) { _ in
            let insert = insertCreation!
            insert.bind(request, at: 1)
            insert.bind(paymentID, at: 2)
            try insert.execute()
            guard insert.changes == 0 else { return nil }
            let row = creationByRequest!
            defer { row.reset() }
            row.bind(request, at: 1)
            return try row.step() ? row.text(at: 0) : nil
        }
    }

    /// Records PSP `psp`'s capture of `amountMinor` for payment `number`.
    /// - Returns: the PSP that had captured it already, if one had (the
    ///   first capture is kept).
    func capture(paymentNumber number: Int, psp: Int, amountMinor: Int64) -> Int? {
        access("record a capture", fallback: nil) { _ in
            let insert = insertCapture!
            insert.bind(Int64(number), at: 1)
            insert.bind(Int64(psp), at: 2)
            insert.bind(amountMinor, at: 3)
            try insert.execute()
            guard insert.changes == 0 else { return nil }
            return try captured(number)?.psp
        }
    }

    /// Which PSP captured payment `number`, and how much.
    func captured(paymentNumber number: Int) -> (psp: Int, amountMinor: Int64)? {
        access("read a capture", fallback: nil) { _ in try captured(number) }
    }

    /// ``captured(paymentNumber:)`` of each number, entering the connection
    /// once: for a check that reads every payment, entering it per payment
    /// cost more than the lookups.
    func captured(paymentNumbers numbers: [Int]) -> [(psp: Int, amountMinor: Int64)?] {
        access("read the captures", fallback: Array(repeating: nil, count: numbers.count)) { _ in try numbers.map { number in try captured(number) } }
    }

    private func captured(_ number: Int) throws -> (psp: Int, amountMinor: Int64)? {
        let row = captureByNumber!
        defer { row.reset() }
        row.bind(Int64(number), at: 1)
        guard try row.step() else { return nil }
        return (Int(row.int64(at: 0)), row.int64(at: 1))
    }

    /// Records a payout of `amountMinor` for refund key `reference`.
    /// - Returns: false if the key had paid out before (its amount is
    ///   replaced by this one).
    func payOut(reference: String, amountMinor: Int64) -> Bool {
        access("record a payout", fallback: true) { _ in
            let insert = insertPayout!
            insert.bind(reference, at: 1)
            insert.bind(amountMinor, at: 2)
            try insert.execute()
            guard insert.changes == 0 else { return true }
            let update = updatePayout!
            update.bind(amountMinor, at: 1)
            update.bind(reference, at: 2)
            try update.execute()
            return false
        }
    }

    /// What refund key `reference` paid out, if it did.
    func paidOut(reference: String) -> Int64? {
        access("read a payout", fallback: nil) { _ in
            let row = payoutByReference!
            defer { row.reset() }
            row.bind(reference, at: 1)
            return try row.step() ? row.int64(at: 0) : nil
        }
    }

    /// Up to `limit` payouts in reference order, those after `after` only.
    func payouts(after: String?, limit: Int) -> [(reference: String, amountMinor: Int64)] {
        access("read the payouts", fallback: []) { db in
            let rows = try Row.fetchCursor(db, sql: """
                SELECT reference, amount_minor FROM payout\(after == nil ? "" : " WHERE reference > ?") ORDER BY reference LIMIT ?
                """, arguments: after.map { [$0, limit] } ?? [limit])
            var payouts: [(reference: String, amountMinor: Int64)] = []
            while let row = try rows.next() { payouts.append((row[0], row[1])) }
            return payouts
        }
    }

    /// The payouts of every key of refund `refundID` ("ref-N:<psp>" for any PSP).
    func paidOut(refundID: String) -> Int64 {
        access("read a refund's payouts", fallback: 0) { db in
            // ';' follows ':': the keys "<refundID>:…" and nothing else.
            try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(SUM(amount_minor), 0) FROM payout WHERE reference >= ? AND reference < ?"),
                               arguments: [refundID + ":", refundID + ";"]) ?? 0
        }
    }
}
