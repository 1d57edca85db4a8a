/// Which way an attempt moves money: a charge takes it from the customer, a
/// refund gives it back.
public enum SettlementKind: String, Sendable, CaseIterable, Codable {
    case charge
    case refund
}

/// What the PSP says became of one attempt.
public enum SettlementStatus: String, Sendable, CaseIterable, Codable {
    /// A charge the PSP captured: money moved to the merchant.
    case captured
    /// The PSP refused the attempt: no money moved.
    case failed
    /// A refund the PSP paid out: money moved back to the customer.
    case refunded
}

/// What the PSP says happened, one line per charge (or refund) in its settlement report.
public struct SettlementLine: Sendable, Equatable {
    /// The PSP that wrote the line, e.g. `stripe`.
    public var pspID: String
    /// The PSP-side idempotency key the engine sent, e.g. `pay-17:stripe`.
    public var pspReference: String
    public var kind: SettlementKind
    /// Always > 0.
    public var amount: Money
    public var status: SettlementStatus
    /// PSP time of settlement, nanoseconds.
    public var settledAtNanoseconds: Int64

    public init(pspID: String, pspReference: String, kind: SettlementKind, amount: Money,
                status: SettlementStatus, settledAtNanoseconds: Int64) {
        self.pspID = pspID
        self.pspReference = pspReference
        self.kind = kind
        self.amount = amount
        self.status = status
        self.settledAtNanoseconds = settledAtNanoseconds
    }

    /// The engine status this line corresponds to: `.completed` when money
    /// moved the way `kind` says (a captured charge, a refunded refund),
    /// `.failed` when it did not, and `nil` for a combination that is no
    /// outcome of that kind (a "refunded" charge, a "captured" refund), which
    /// no engine status can agree with.
    public var impliedStatus: PaymentStatus? {
        switch (kind, status) {
        case (.charge, .captured), (.refund, .refunded): return .completed
        case (_, .failed): return .failed
        case (.charge, .refunded), (.refund, .captured): return nil
        }
    }
}

/// The columns of a settlement report CSV, numbered from 1 as a spreadsheet shows them.
public enum SettlementReportColumn: Int, Sendable, CaseIterable, CustomStringConvertible {
    case pspReference = 1, kind, amount, currency, status, settledAt

    /// The name in the header row.
    public var name: String {
        switch self {
        case .pspReference: return "psp_reference"
        case .kind: return "kind"
        case .amount: return "amount"
        case .currency: return "currency"
        case .status: return "status"
        case .settledAt: return "settled_at_ns"
        }
    }

    public var description: String { "column \(rawValue) (\(name))" }

    /// The exact header row: `psp_reference,kind,amount,currency,status,settled_at_ns`.
    public static let header = allCases.map(\.name).joined(separator: ",")
}

/// One PSP's settlement report for a period: the lines it says it settled.
public struct SettlementReport: Sendable {
    public var pspID: String
    /// The period is `[start, end)`, so consecutive reports tile time without overlap.
    public var periodStartNanoseconds: Int64
    public var periodEndNanoseconds: Int64
    public var lines: [SettlementLine]

    /// The most data lines a report may hold; a bigger file is refused, not truncated.
    public static let maximumLines = 1_000_000
    /// The longest PSP reference accepted, in UTF-8 bytes.
    public static let maximumReferenceBytes = 200

    /// - Precondition: `periodStartNanoseconds < periodEndNanoseconds`.
    public init(pspID: String, periodStartNanoseconds: Int64, periodEndNanoseconds: Int64, lines: [SettlementLine]) {
        precondition(periodStartNanoseconds < periodEndNanoseconds,
                     "settlement period [\(periodStartNanoseconds), \(periodEndNanoseconds)) is empty")
        self.pspID = pspID
        self.periodStartNanoseconds = periodStartNanoseconds
        self.periodEndNanoseconds = periodEndNanoseconds
        self.lines = lines
    }

    /// Whether an engine time falls in the report's period `[start, end)`.
    public func covers(_ timeNanoseconds: Int64) -> Bool {
        periodStartNanoseconds <= timeNanoseconds && timeNanoseconds < periodEndNanoseconds
    }

    /// Parses the PSP's CSV format: the header
    /// `psp_reference,kind,amount,currency,status,settled_at_ns`, then one row per line.
    ///
    /// `amount` is a decimal string in major units, parsed exactly by
    /// ``Money/parse(_:currency:)``. Fields are not quoted; rows end in `\n`
    /// or `\r\n`; trailing empty rows are ignored, an empty row elsewhere is
    /// a row with no columns. Line numbers count the header as line 1.
    /// Lines are kept in file order; a line settled outside the period is
    /// kept (the reconciler matches by reference, not by time).
    ///
    /// - Throws: ``SettlementReportError`` naming the line and column of the
    ///   first bad field: wrong column count, bad reference, unknown kind,
    ///   currency or status, bad amount, bad timestamp; or a bad header,
    ///   an empty period, too many lines.
    /// - Complexity: O(n) in the size of `text`.
    public static func parseCSV(_ text: String, pspID: String, periodStart: Int64, periodEnd: Int64)
        throws(SettlementReportError) -> SettlementReport
    {
        guard periodStart < periodEnd else { throw .emptyPeriod(start: periodStart, end: periodEnd) }
        // Split on bytes: Swift treats "\r\n" as one Character, so splitting the String on "\n" would not.
        var rows = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { row in
            row.last == UInt8(ascii: "\r") ? row.dropLast() : row
        }
        while let last = rows.last, last.isEmpty { rows.removeLast() }
        guard let headerRow = rows.first else { throw .missingHeader }
        let header = String(decoding: headerRow, as: UTF8.self)
        guard header == SettlementReportColumn.header else { throw .badHeader(found: header) }
        guard rows.count - 1 <= maximumLines else { throw .tooManyLines(count: rows.count - 1, limit: maximumLines) }

        var lines: [SettlementLine] = []
        lines.reserveCapacity(rows.count - 1)
        for (index, row) in rows.enumerated().dropFirst() {
            let fields = row.isEmpty ? [] : row.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
                .map { String(decoding: $0, as: UTF8.self) }
            lines.append(try parseRow(fields, line: index + 1, pspID: pspID))
        }
        return SettlementReport(pspID: pspID, periodStartNanoseconds: periodStart, periodEndNanoseconds: periodEnd, lines: lines)
    }

    private static func parseRow(_ fields: [String], line: Int, pspID: String) throws(SettlementReportError) -> SettlementLine {
        let expected = SettlementReportColumn.allCases.count
        guard fields.count == expected else { throw .wrongColumnCount(line: line, expected: expected, found: fields.count) }
        func field(_ column: SettlementReportColumn) -> String { fields[column.rawValue - 1] }

        let reference = field(.pspReference)
        if let reason = referenceProblem(reference) {
            throw .badReference(reference, line: line, column: .pspReference, reason: reason)
        }
        guard let kind = SettlementKind(rawValue: field(.kind)) else {
            throw .unknownKind(field(.kind), line: line, column: .kind)
        }
        guard let currency = Currency(code: field(.currency)) else {
            throw .unknownCurrency(field(.currency), line: line, column: .currency)
        }
        let amount: Money
        do {
            amount = try Money.parse(field(.amount), currency: currency)
        } catch {
            throw .badAmount(field(.amount), line: line, column: .amount, error)
        }
        guard let status = SettlementStatus(rawValue: field(.status)) else {
            throw .unknownStatus(field(.status), line: line, column: .status)
        }
        guard isDecimalDigits(field(.settledAt)), let settledAt = Int64(field(.settledAt)) else {
            throw .badTimestamp(field(.settledAt), line: line, column: .settledAt)
        }
        return SettlementLine(pspID: pspID, pspReference: reference, kind: kind, amount: amount,
                              status: status, settledAtNanoseconds: settledAt)
    }

    /// Why a reference is unusable, or `nil` if it is fine. Quotes and
    /// whitespace are refused because this format has no quoting: seeing one
    /// means the file is in a dialect this parser does not read.
    private static func referenceProblem(_ reference: String) -> String? {
        if reference.isEmpty { return "the reference is empty" }
        if reference.utf8.count > maximumReferenceBytes { return "the reference is longer than \(maximumReferenceBytes) bytes" }
        if reference.utf8.contains(where: { $0 <= UInt8(ascii: " ") || $0 == UInt8(ascii: "\"") || $0 == 0x7F }) {
            return "the reference contains whitespace, a control character or a quote"
        }
        return nil
    }

    /// Only plain digits: `Int64("+5")` would accept a sign, and a time is never negative.
    private static func isDecimalDigits(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }
}

/// Why a settlement report was refused; each case names the input, and
/// field errors name the line (header = 1) and column.
public enum SettlementReportError: Error, Equatable, CustomStringConvertible {
    case emptyPeriod(start: Int64, end: Int64)
    case missingHeader
    case badHeader(found: String)
    case tooManyLines(count: Int, limit: Int)
    case wrongColumnCount(line: Int, expected: Int, found: Int)
    case badReference(String, line: Int, column: SettlementReportColumn, reason: String)
    case unknownKind(String, line: Int, column: SettlementReportColumn)
    case unknownCurrency(String, line: Int, column: SettlementReportColumn)
    case badAmount(String, line: Int, column: SettlementReportColumn, MoneyError)
    case unknownStatus(String, line: Int, column: SettlementReportColumn)
    case badTimestamp(String, line: Int, column: SettlementReportColumn)

    /// The 1-based line of the bad input, when there is one.
    public var line: Int? {
        switch self {
        case .emptyPeriod, .missingHeader, .tooManyLines: return nil
        case .badHeader: return 1
        case let .wrongColumnCount(line, _, _), let .badReference(_, line, _, _), let .unknownKind(_, line, _),
             let .unknownCurrency(_, line, _), let .badAmount(_, line, _, _), let .unknownStatus(_, line, _),
             let .badTimestamp(_, line, _):
            return line
        }
    }

    public var description: String {
        switch self {
        case let .emptyPeriod(start, end):
            return "settlement period [\(start), \(end)) ns is empty; the start must be before the end"
        case .missingHeader:
            return "settlement report is empty; expected the header \"\(SettlementReportColumn.header)\""
        case let .badHeader(found):
            return "line 1: header \"\(found)\" is not \"\(SettlementReportColumn.header)\""
        case let .tooManyLines(count, limit):
            return "settlement report has \(count) lines; at most \(limit) are accepted"
        case let .wrongColumnCount(line, expected, found):
            return "line \(line): \(found) column\(found == 1 ? "" : "s"), expected \(expected)"
        case let .badReference(value, line, column, reason):
            return "line \(line), \(column): reference \"\(value)\" is refused: \(reason)"
        case let .unknownKind(value, line, column):
            return "line \(line), \(column): kind \"\(value)\" is not one of \(SettlementKind.allCases.map(\.rawValue).joined(separator: ", "))"
        case let .unknownCurrency(value, line, column):
            return "line \(line), \(column): \(MoneyError.unknownCurrency(value))"
        case let .badAmount(value, line, column, error):
            return "line \(line), \(column): amount \"\(value)\" is refused: \(error)"
        case let .unknownStatus(value, line, column):
            return "line \(line), \(column): status \"\(value)\" is not one of \(SettlementStatus.allCases.map(\.rawValue).joined(separator: ", "))"
        case let .badTimestamp(value, line, column):
            return "line \(line), \(column): \"\(value)\" is not a non-negative whole number of nanoseconds that fits in 64 bits"
        }
    }
}
