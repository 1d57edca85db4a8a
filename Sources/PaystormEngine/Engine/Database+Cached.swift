import GRDB

/// The engine's statements go through GRDB's statement cache: compiling SQL
/// (and GRDB's authorizer pass over it) was half of a payment's cost in
/// `paystorm bench engine` before this.
extension Database {
    /// Executes one cached statement.
    @inline(__always)
    func run(_ sql: String, _ arguments: StatementArguments = StatementArguments()) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }

    /// The first row of a cached query.
    @inline(__always)
    func row(_ sql: String, _ arguments: StatementArguments = StatementArguments()) throws -> Row? {
        try Row.fetchOne(cachedStatement(sql: sql), arguments: arguments)
    }

    /// All rows of a cached query.
    @inline(__always)
    func rows(_ sql: String, _ arguments: StatementArguments = StatementArguments()) throws -> [Row] {
        try Row.fetchAll(cachedStatement(sql: sql), arguments: arguments)
    }

    /// The first column of the first row of a cached query.
    @inline(__always)
    func value<T: DatabaseValueConvertible & StatementColumnConvertible>(_ sql: String, as type: T.Type, _ arguments: StatementArguments = StatementArguments()) throws -> T? {
        try T.fetchOne(cachedStatement(sql: sql), arguments: arguments)
    }
}

/// Lowercase hex of bytes, without `String(format:)` (a locale-aware
/// formatter that cost 8% of the engine benchmark).
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
