import Foundation
import GRDB
import GRDBSQLite

/// A prepared SQLite statement bound and stepped through the C API, for the
/// few statements on the engine's hot path.
///
/// GRDB's `cachedStatement(sql:).execute(arguments:)` boxes every argument in
/// `StatementArguments`; `paystorm bench store` measures that at about twice
/// the cost of binding directly. The connection, transactions and migrations
/// stay GRDB's. Use only inside a `Database` access of the connection it was
/// prepared on.
///
/// Parameters are numbered from 1 and result columns from 0, as in SQLite.
/// Every parameter is bound before each run: bindings persist across runs.
public final class PreparedStatement {
    private let connection: OpaquePointer
    private var handle: OpaquePointer?
    public let sql: String
    /// The database's description (its path, or ":memory:"), for error messages.
    private let database: String
    /// One buffer per parameter holding the bytes of the text last bound there.
    /// Text is bound without SQLite copying it (`SQLITE_STATIC`): the bytes
    /// stay here, unchanged, until that parameter is bound again or the
    /// statement is finalized. SQLite's own copy cost an allocation and a free
    /// per bind.
    private var textBuffers: [UnsafeMutableRawBufferPointer]

    /// Prepares `sql` on `db`'s connection.
    public init(_ db: Database, sql: String) throws(StoreError) {
        guard let connection = db.sqliteConnection else {
            throw StoreError(path: db.description, operation: "prepare \(sql)", message: "the connection is closed")
        }
        self.connection = connection
        self.sql = sql
        self.database = db.description
        guard sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil) == SQLITE_OK else {
            throw StoreError(path: db.description, operation: "prepare \(sql)", message: String(cString: sqlite3_errmsg(connection)))
        }
        let parameters = Int(sqlite3_bind_parameter_count(handle))
        textBuffers = Array(repeating: UnsafeMutableRawBufferPointer(start: nil, count: 0), count: parameters + 1)
    }

    deinit {
        // Finalize first: SQLite may point into the buffers until then.
        sqlite3_finalize(handle)
        for buffer in textBuffers { buffer.deallocate() }
    }

    /// Whether the statement was prepared on `db`'s connection (the only one it may run on).
    public func belongs(to db: Database) -> Bool { db.sqliteConnection == connection }

    // MARK: - Binding

    /// Binds a 64-bit integer to parameter `index` (1-based).
    @inlinable
    public func bind(_ value: Int64, at index: Int32) {
        sqlite3_bind_int64(statementHandle, index, value)
    }

    /// Binds UTF-8 text to parameter `index` (1-based), copying it into the
    /// parameter's buffer (grown as needed, never shrunk).
    /// - Precondition: `index` is a parameter of the statement.
    public func bind(_ value: String, at index: Int32) {
        precondition(index >= 1 && Int(index) < textBuffers.count, "parameter \(index) is not in \(sql)")
        var value = value
        value.withUTF8 { bytes in
            var buffer = textBuffers[Int(index)]
            if buffer.count < bytes.count || buffer.baseAddress == nil {
                // SQLite still points at the old buffer; the bind below replaces that before any step.
                buffer.deallocate()
                buffer = .allocate(byteCount: max(bytes.count, 32), alignment: 1)
                textBuffers[Int(index)] = buffer
            }
            if let source = bytes.baseAddress { buffer.baseAddress!.copyMemory(from: source, byteCount: bytes.count) }
            sqlite3_bind_text(handle, index, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(bytes.count), Self.static)
        }
    }

    /// Binds text, or NULL for `nil`, to parameter `index` (1-based).
    public func bind(_ value: String?, at index: Int32) {
        if let value { bind(value, at: index) } else { sqlite3_bind_null(handle, index) }
    }

    /// Binds a blob to parameter `index` (1-based); SQLite copies it.
    public func bind(_ value: Data, at index: Int32) {
        value.withUnsafeBytes { bytes in
            // A zero-length blob still needs a non-null pointer, or SQLite stores NULL.
            _ = sqlite3_bind_blob(handle, index, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(bytes.count), Self.transient)
        }
    }

    // MARK: - Work done

    /// How often the statement ran and the virtual-machine instructions it
    /// executed since the last call, SQLite's own counts
    /// (`sqlite3_stmt_status`), which restart from zero here (its counters
    /// are 32 bits: read often enough, nothing wraps). Unlike a time, the
    /// same work gives the same counts on any machine, however busy.
    public func takeWork() -> (runs: Int, instructions: Int) {
        (Int(sqlite3_stmt_status(handle, SQLITE_STMTSTATUS_RUN, 1)), Int(sqlite3_stmt_status(handle, SQLITE_STMTSTATUS_VM_STEP, 1)))
    }

    /// How often SQLite compiled the statement again since it was prepared
    /// (`SQLITE_STMTSTATUS_REPREPARE`): after a schema change, or after any
    /// flag pragma (`PRAGMA query_only`, …) ran on the connection, which
    /// expires every prepared statement of it.
    public var reprepares: Int { Int(sqlite3_stmt_status(handle, SQLITE_STMTSTATUS_REPREPARE, 0)) }

    // MARK: - Running

    /// Runs a statement that returns no rows, then resets it for reuse.
    public func execute() throws(StoreError) {
        let status = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard status == SQLITE_DONE else {
            throw StoreError(path: database, operation: "execute \(sql)", message: String(cString: sqlite3_errmsg(connection)))
        }
    }

    /// Rows the last run inserted, updated or deleted (`sqlite3_changes`,
    /// which GRDB's `changesCount` also reads, after a check of the calling
    /// queue that costs more than the call).
    /// - Precondition: no other statement has run on the connection since.
    public var changes: Int { Int(sqlite3_changes(connection)) }

    /// Steps a query: `true` when a row is ready to read with the column
    /// accessors, `false` when there are no more. The caller must ``reset()``
    /// when done with the rows (a statement left mid-query keeps its read open).
    public func step() throws(StoreError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW:
            return true
        case SQLITE_DONE:
            return false
        default:
            let message = String(cString: sqlite3_errmsg(connection))
            sqlite3_reset(handle)
            throw StoreError(path: database, operation: "execute \(sql)", message: message)
        }
    }

    /// Ends the current run so the statement can be bound and run again.
    public func reset() {
        sqlite3_reset(handle)
    }

    // MARK: - Reading the current row

    /// Column `index` (0-based) of the current row as an integer (0 for NULL).
    @inlinable
    public func int64(at index: Int32) -> Int64 {
        sqlite3_column_int64(statementHandle, index)
    }

    /// Whether column `index` (0-based) of the current row holds an integer
    /// (``int64(at:)`` truncates a real and reads text as a number).
    public func isInteger(at index: Int32) -> Bool {
        sqlite3_column_type(handle, index) == SQLITE_INTEGER
    }

    /// Whether column `index` (0-based) of the current row is NULL.
    public func isNull(at index: Int32) -> Bool {
        sqlite3_column_type(handle, index) == SQLITE_NULL
    }

    /// Column `index` (0-based) of the current row as text ("" for NULL).
    public func text(at index: Int32) -> String {
        guard let bytes = sqlite3_column_text(handle, index) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, index))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    /// Column `index` (0-based) of the current row as text, `nil` for NULL.
    public func optionalText(at index: Int32) -> String? {
        isNull(at: index) ? nil : text(at: index)
    }

    /// Column `index` (0-based) of the current row as a blob (empty for NULL).
    public func blob(at index: Int32) -> Data {
        let count = Int(sqlite3_column_bytes(handle, index))
        guard count > 0, let bytes = sqlite3_column_blob(handle, index) else { return Data() }
        return Data(bytes: bytes, count: count)
    }

    /// Result columns of the statement.
    public var columnCount: Int32 { sqlite3_column_count(handle) }

    /// A cell as SQLite stores it, for scans that look at every value
    /// whatever its column's declared type. Text and blob bytes are SQLite's
    /// own, valid only inside ``withCell(at:_:)``.
    public enum Cell {
        case null
        case integer(Int64)
        case real(Double)
        case text(UnsafeRawBufferPointer)
        case blob(UnsafeRawBufferPointer)
    }

    /// Hands `body` column `index` (0-based) of the current row without
    /// converting or copying it: an integer stays an integer, text and blob
    /// bytes are read in place.
    public func withCell<Result>(at index: Int32, _ body: (Cell) throws -> Result) rethrows -> Result {
        switch sqlite3_column_type(handle, index) {
        case SQLITE_INTEGER: return try body(.integer(sqlite3_column_int64(handle, index)))
        case SQLITE_FLOAT: return try body(.real(sqlite3_column_double(handle, index)))
        case SQLITE_TEXT:
            let start = sqlite3_column_text(handle, index)
            let count = Int(sqlite3_column_bytes(handle, index))
            return try body(.text(UnsafeRawBufferPointer(start: start, count: start == nil ? 0 : count)))
        case SQLITE_BLOB:
            let start = sqlite3_column_blob(handle, index)
            let count = Int(sqlite3_column_bytes(handle, index))
            return try body(.blob(UnsafeRawBufferPointer(start: start, count: start == nil ? 0 : count)))
        default: return try body(.null)
        }
    }

    @usableFromInline var statementHandle: OpaquePointer? { handle }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    /// `SQLITE_STATIC` (a null destructor): SQLite uses the bytes where they are.
    private static let `static`: sqlite3_destructor_type? = nil
}

extension Database {
    /// GRDB's `totalChangesCount` and `isInsideTransaction` first check that
    /// they are called on the connection's queue, through
    /// `dispatch_get_specific`: the engine asks both around every command
    /// of a batch. Same answers, read straight from SQLite; only inside an
    /// access of this connection, as ``PreparedStatement`` runs.
    public var changesSinceOpened: Int { Int(sqlite3_total_changes64(sqliteConnection)) }

    /// See ``changesSinceOpened``.
    public var inTransaction: Bool { sqliteConnection.map { sqlite3_get_autocommit($0) == 0 } ?? false }
}
