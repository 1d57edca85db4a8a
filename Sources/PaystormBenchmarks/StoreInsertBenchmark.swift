import GRDB
import PaystormStore

/// Measures row inserts per second through GRDB's cached prepared statements
/// and through ``PreparedStatement`` (the C API) on the same connection, so the cost of
/// the library is a measured number, not a guess.
public enum StoreInsertBenchmark {
    public struct Result: Sendable {
        public var rows: Int
        /// Rows found in the table after each phase (must equal `rows`).
        public var grdbRowsStored: Int
        public var rawRowsStored: Int
        public var grdbSeconds: Double
        public var rawSeconds: Double
        public var grdbRowsPerSecond: Double { Double(rows) / grdbSeconds }
        public var rawRowsPerSecond: Double { Double(rows) / rawSeconds }
    }

    static let createSQL = """
        CREATE TABLE bench_payment (
            id INTEGER PRIMARY KEY,
            payment_id TEXT NOT NULL UNIQUE,
            merchant_id TEXT NOT NULL,
            amount_minor INTEGER NOT NULL,
            currency TEXT NOT NULL,
            status TEXT NOT NULL)
        """
    static let insertSQL = "INSERT INTO bench_payment (payment_id, merchant_id, amount_minor, currency, status) VALUES (?, ?, ?, ?, ?)"

    /// Inserts `rows` rows twice (into fresh tables), `batch` rows per transaction.
    public static func run(location: Store.Location, rows: Int, batch: Int) throws -> Result {
        precondition(rows > 0 && batch > 0)
        let store = try Store(location)
        try store.queue.writeWithoutTransaction { db in
            try db.execute(sql: createSQL)
        }
        let clock = ContinuousClock()
        let grdb = try clock.measure {
            var written = 0
            while written < rows {
                let count = min(batch, rows - written)
                try store.queue.inTransaction { db in
                    let statement = try db.cachedStatement(sql: insertSQL)
                    for i in written..<(written + count) {
                        try statement.execute(arguments: ["pay-\(i)", "m-\(i % 97)", i * 10 + 1, "USD", "completed"])
                    }
                    return .commit
                }
                written += count
            }
        }
        let grdbRowsStored = try store.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM bench_payment") ?? 0 }
        try store.queue.writeWithoutTransaction { db in
            try db.execute(sql: "DROP TABLE bench_payment")
            try db.execute(sql: createSQL)
        }
        let raw = try clock.measure {
            var written = 0
            while written < rows {
                let count = min(batch, rows - written)
                try store.queue.inTransaction { db in
                    let statement = try PreparedStatement(db, sql: insertSQL)
                    for i in written..<(written + count) {
                        statement.bind("pay-\(i)", at: 1)
                        statement.bind("m-\(i % 97)", at: 2)
                        statement.bind(Int64(i * 10 + 1), at: 3)
                        statement.bind("USD", at: 4)
                        statement.bind("completed", at: 5)
                        try statement.execute()
                    }
                    return .commit
                }
                written += count
            }
        }
        let rawRowsStored = try store.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM bench_payment") ?? 0 }
        return Result(rows: rows, grdbRowsStored: grdbRowsStored, rawRowsStored: rawRowsStored,
                      grdbSeconds: grdb.seconds, rawSeconds: raw.seconds)
    }
}

public extension Duration {
    /// Seconds as a `Double`, for benchmark arithmetic.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
