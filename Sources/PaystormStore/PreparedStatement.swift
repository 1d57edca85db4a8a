import GRDB
import GRDBSQLite

/// A prepared SQLite statement bound and stepped through the C API, for the
/// few statements on the engine's hot path.
///
/// GRDB's `cachedStatement(sql:).execute(arguments:)` boxes every argument in
/// `StatementArguments`; `paystorm bench store` measures that at about twice
/// the cost of binding directly. The connection, transactions and migrations
/// stay GRDB's. Use only inside the `Database` access it was prepared in.
public final class PreparedStatement {
    private let connection: OpaquePointer
    private var handle: OpaquePointer?
    public let sql: String
    /// The database's description (its path, or ":memory:"), for error messages.
    private let database: String

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
    }

    deinit {
        sqlite3_finalize(handle)
    }

    /// Binds a 64-bit integer to parameter `index` (1-based).
    @inlinable
    public func bind(_ value: Int64, at index: Int32) {
        sqlite3_bind_int64(statementHandle, index, value)
    }

    /// Binds UTF-8 text to parameter `index` (1-based); SQLite copies it.
    public func bind(_ value: String, at index: Int32) {
        var value = value
        value.withUTF8 { bytes in
            _ = bytes.withMemoryRebound(to: CChar.self) { chars in
                sqlite3_bind_text(handle, index, chars.baseAddress, Int32(chars.count), Self.transient)
            }
        }
    }

    /// Runs a statement that returns no rows, then resets it for reuse.
    public func execute() throws(StoreError) {
        let status = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard status == SQLITE_DONE else {
            throw StoreError(path: database, operation: "execute \(sql)", message: String(cString: sqlite3_errmsg(connection)))
        }
    }

    @usableFromInline var statementHandle: OpaquePointer? { handle }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}
