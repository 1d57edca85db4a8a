import CSQLiteTuning
import Foundation
import GRDB

/// Paystorm's SQLite database: an in-memory database for simulations and
/// benchmarks, or a WAL-mode file for the server host.
///
/// SQLite is reached through GRDB: migrations, typed rows and cached
/// prepared statements come with it, and `paystorm bench store` shows its
/// cached statement path costs a few percent over the raw C API. The SQLite
/// underneath is the one built into the executable (`Sources/CSQLite`);
/// GRDB compiles against the system's `sqlite3.h`, whose API it only needs.
public final class Store {
    /// Where the database lives.
    public enum Location: Sendable, Equatable {
        /// A private in-memory database (lost when the store is released).
        case memory
        /// A file opened in WAL mode with `synchronous = FULL`: a committed
        /// transaction survives a crash of the process or the machine.
        case file(path: String)
        /// A file with no durability (`synchronous = OFF`, the rollback
        /// journal in memory so transactions and savepoints still roll back)
        /// and a bounded page cache: a simulation's
        /// database, which must not hold millions of payments in the
        /// process's memory and never needs to survive the process. The file
        /// is created fresh (an existing one is replaced) and the caller
        /// removes it.
        case scratch(path: String, cacheMebibytes: Int)
    }

    /// The single writer connection. All engine writes go through it, one
    /// transaction per command or batch.
    public let queue: DatabaseQueue
    public let location: Location

    /// Opens (creating if needed) the database and applies all migrations:
    /// the store's own, then those `migrations` registers (the engine's tables).
    /// - Throws: ``StoreError`` naming the path and SQLite's message.
    /// - Parameter allowsHeldTransactions: whether a host may hold a
    ///   transaction open across accesses (``beginHeldTransaction()``), for
    ///   a memory or scratch database only. Without it GRDB keeps checking
    ///   that no access leaves a transaction open.
    public init(_ location: Location, allowsHeldTransactions: Bool = false,
                migrations: (inout DatabaseMigrator) -> Void = { _ in }) throws(StoreError) {
        if case .file = location {
            precondition(!allowsHeldTransactions, "a durable file never holds a transaction across accesses")
        }
        self.location = location
        self.allowsHeldTransactions = allowsHeldTransactions
        var configuration = Configuration()
        // GRDB uses the label as the database's description: errors name the file.
        configuration.label = location.description
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        configuration.allowsUnsafeTransactions = allowsHeldTransactions
        do {
            switch location {
            case .memory:
                queue = try DatabaseQueue(configuration: configuration)
            case let .file(path):
                queue = try DatabaseQueue(path: path, configuration: configuration)
                try queue.writeWithoutTransaction { db in
                    let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                    guard mode?.lowercased() == "wal" else {
                        throw StoreError(path: path, operation: "enable WAL", message: "journal_mode is \(mode ?? "unknown")")
                    }
                    try db.execute(sql: "PRAGMA synchronous = FULL")
                }
            case let .scratch(path, cacheMebibytes):
                for suffix in ["", "-journal", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                    try FileManager.default.removeItem(atPath: path + suffix)
                }
                queue = try DatabaseQueue(path: path, configuration: configuration)
                try queue.writeWithoutTransaction { db in
                    try db.execute(sql: "PRAGMA journal_mode = MEMORY")
                    try db.execute(sql: "PRAGMA synchronous = OFF")
                    try db.execute(sql: "PRAGMA cache_size = -\(max(1, cacheMebibytes) * 1024)")
                    try db.execute(sql: "PRAGMA temp_store = FILE")
                    // One process owns a scratch database: no file locking per transaction.
                    try db.execute(sql: "PRAGMA locking_mode = EXCLUSIVE")
                }
            }
            var migrator = Self.migrator
            migrations(&migrator)
            try migrator.migrate(queue)
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(path: location.description, operation: "open", message: "\(error)")
        }
    }

    // SQLite's process-wide settings (memory statistics off, the page cache
    // wrapped so that commits skip needless truncations) are made by
    // CSQLiteTuning as the process loads it, before anything can initialise
    // SQLite: `sqlite3_config` is not safe to call once another thread may be
    // opening a connection. `paystorm bench engine` measured the statistics'
    // global mutex at about a tenth of an engine call; the page cache's
    // needless scans were a third of a world run of 300,000 payments.

    /// What the page-cache wrapper did since the process started: truncations
    /// passed on to SQLite's cache, truncations skipped, and pages parked by
    /// B-tree balancing (all 0 without the wrapper).
    public static var pageCacheCounts: (passed: Int64, skipped: Int64, parked: Int64) {
        var passed: Int64 = 0
        var skipped: Int64 = 0
        var parked: Int64 = 0
        paystorm_sqlite_page_cache_counts(&passed, &skipped, &parked)
        return (passed, skipped, parked)
    }

    /// Schema migrations, applied in order and recorded by GRDB.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-store-metadata") { db in
            try db.create(table: "store_metadata") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
            try db.execute(sql: "INSERT INTO store_metadata (key, value) VALUES ('schema', 'paystorm')")
        }
        return migrator
    }

    // MARK: - A held transaction

    /// Whether this store may hold a transaction (set when opened).
    public let allowsHeldTransactions: Bool
    /// Whether a host holds a transaction open that writers join (see
    /// ``beginHeldTransaction()``).
    public private(set) var holdsTransaction = false
    /// Whether a joined writer failed after writing: the held transaction
    /// will not commit, and further writers should refuse to join it.
    public var heldTransactionFailed: Bool { heldTransactionFailure != nil }
    /// Why the held transaction must not commit: a joined writer failed
    /// after writing (``joinedWriterFailed(_:)``).
    private var heldTransactionFailure: String?

    /// Opens a transaction that the writers of this store join instead of
    /// each beginning and committing its own, until
    /// ``commitHeldTransaction()``: many commands, one commit.
    ///
    /// For a store whose commits mark nothing — a simulation's scratch
    /// database, whose process owns it alone and never survives a crash of
    /// its own — where each command's commit only wrote the same pages to
    /// the file again. A joined command is still all or nothing as far as
    /// its readers can tell: every reader shares this connection, and a
    /// command that fails before writing leaves nothing behind. One that
    /// fails after writing cannot be undone alone; its writer reports it
    /// (``joinedWriterFailed(_:)``) and the held transaction then refuses to
    /// commit.
    ///
    /// Inside a held transaction a writer's own batch (``PaymentEngine``'s
    /// `inBatch`) is part of it too: its effects go out before the held
    /// transaction commits, and a batch that fails after writing spoils the
    /// held transaction rather than rolling back alone.
    /// - Precondition: the store was opened with `allowsHeldTransactions`,
    ///   and no transaction is open or held.
    public func beginHeldTransaction() throws(StoreError) {
        precondition(allowsHeldTransactions, "store \(location) was not opened to hold transactions")
        precondition(!holdsTransaction, "a held transaction is already open")
        do {
            try queue.writeWithoutTransaction { db in try db.execute(sql: "BEGIN IMMEDIATE TRANSACTION") }
        } catch {
            throw StoreError(path: location.description, operation: "begin a held transaction", message: "\(error)")
        }
        holdsTransaction = true
        heldTransactionFailure = nil
    }

    /// Commits the held transaction, or — if a joined writer failed after
    /// writing — rolls it back and throws that failure: half a command is
    /// never committed.
    /// - Precondition: a transaction is held.
    public func commitHeldTransaction() throws(StoreError) {
        precondition(holdsTransaction, "no held transaction to commit")
        holdsTransaction = false
        let failure = heldTransactionFailure
        heldTransactionFailure = nil
        do {
            try queue.writeWithoutTransaction { db in
                guard db.isInsideTransaction else {
                    throw StoreError(path: location.description, operation: "commit a held transaction",
                                     message: "SQLite ended the transaction under its writers" + (failure.map { ": \($0)" } ?? ""))
                }
                if let failure {
                    try db.execute(sql: "ROLLBACK TRANSACTION")
                    throw StoreError(path: location.description, operation: "commit a held transaction",
                                     message: "a command failed after writing, so the transaction was rolled back: \(failure)")
                }
                do {
                    try db.execute(sql: "COMMIT TRANSACTION")
                } catch {
                    // Not left open under the next writer (it would refuse to begin its own).
                    if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK TRANSACTION") }
                    throw error
                }
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(path: location.description, operation: "commit a held transaction", message: "\(error)")
        }
    }

    /// Commits the held transaction and opens the next one.
    public func commitHeldTransactionAndContinue() throws(StoreError) {
        try commitHeldTransaction()
        try beginHeldTransaction()
    }

    /// A writer that joined the held transaction failed after writing (or
    /// found SQLite had ended it): the transaction will refuse to commit.
    public func joinedWriterFailed(_ error: any Error) {
        if heldTransactionFailure == nil { heldTransactionFailure = "\(error)" }
    }

    /// A read on the store's connection: inside the transaction already
    /// open (a held one, say), else in a deferred transaction of its own, so
    /// its statements see one state of the database.
    ///
    /// Not GRDB's `read`: that brackets the read with `PRAGMA query_only = 1`
    /// and `= 0`, and SQLite expires every prepared statement of the
    /// connection when a flag pragma changes. The engine's statements
    /// (``PreparedStatement``) were then compiled again, each on its next
    /// use, after every audit or gauge read of a world run.
    public func read<T>(_ body: (Database) throws -> T) throws -> T {
        try queue.inDatabase { db in
            if db.isInsideTransaction { return try body(db) }
            var result: T?
            try db.inTransaction(.deferred) {
                result = try body(db)
                return .commit
            }
            return result!
        }
    }

    /// Names of the migrations applied so far, in order.
    public func appliedMigrations() throws -> [String] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
        }
    }
}

extension Store.Location: CustomStringConvertible {
    public var description: String {
        switch self {
        case .memory: return ":memory:"
        case let .file(path): return path
        case let .scratch(path, _): return path
        }
    }
}

/// A database failure with its context: which database, doing what, and
/// SQLite's own message.
public struct StoreError: Error, CustomStringConvertible {
    public var path: String
    public var operation: String
    public var message: String

    public init(path: String, operation: String, message: String) {
        self.path = path
        self.operation = operation
        self.message = message
    }

    public var description: String { "database \"\(path)\": cannot \(operation): \(message)" }
}
