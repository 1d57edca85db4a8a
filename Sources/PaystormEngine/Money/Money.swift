/// An amount of money: `Int64` minor units in one currency. Never `Double`.
public struct Money: Hashable, Sendable, CustomStringConvertible {
    /// Amount in minor units (cents for USD, yen for JPY, fils for KWD).
    public var minorUnits: Int64
    public var currency: Currency

    public init(minorUnits: Int64, currency: Currency) {
        self.minorUnits = minorUnits
        self.currency = currency
    }

    /// The largest amount Paystorm accepts in one payment, in major units:
    /// anything above is an input error ("absurd amount"), not a payment.
    public static let maximumMajorUnits: Int64 = 1_000_000_000

    /// Parses a decimal string in the currency's major unit, exactly:
    /// `"10.50"` USD is 1050 minor units, `"1000"` JPY is 1000.
    ///
    /// Accepts digits with at most one `.` followed by at most `exponent`
    /// digits. Rejects signs, exponents, spaces, separators, more decimals
    /// than the currency has, zero and amounts above ``maximumMajorUnits``.
    public static func parse(_ text: String, currency: Currency) throws(MoneyError) -> Money {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty else { throw .malformed(text, reason: "the amount is empty") }
        guard utf8.count <= 32 else { throw .malformed(text, reason: "the amount is longer than 32 characters") }
        if utf8.first == UInt8(ascii: "-") { throw .notPositive(text) }
        var whole: Int64 = 0
        var fraction: Int64 = 0
        var fractionDigits = 0
        var seenPoint = false
        var seenDigit = false
        let limit = maximumMajorUnits
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let digit = Int64(byte - UInt8(ascii: "0"))
                seenDigit = true
                if seenPoint {
                    fractionDigits += 1
                    guard fractionDigits <= currency.exponent else {
                        throw .tooManyDecimals(text, currency: currency)
                    }
                    fraction = fraction * 10 + digit
                } else {
                    whole = whole * 10 + digit
                    guard whole <= limit else { throw .tooLarge(text, currency: currency) }
                }
            case UInt8(ascii: "."):
                guard !seenPoint else { throw .malformed(text, reason: "more than one decimal point") }
                guard seenDigit else { throw .malformed(text, reason: "no digit before the decimal point") }
                seenPoint = true
            default:
                throw .malformed(text, reason: "only digits and one '.' are allowed")
            }
        }
        if seenPoint && fractionDigits == 0 { throw .malformed(text, reason: "no digit after the decimal point") }
        for _ in fractionDigits..<currency.exponent { fraction *= 10 }
        let minor = whole * currency.minorUnitsPerMajor + fraction
        guard minor > 0 else { throw .notPositive(text) }
        guard minor <= limit * currency.minorUnitsPerMajor else { throw .tooLarge(text, currency: currency) }
        return Money(minorUnits: minor, currency: currency)
    }

    /// The amount as a decimal string in major units with exactly `exponent`
    /// decimals: 1050 USD → `"10.50"`, 1000 JPY → `"1000"`, 1 KWD → `"0.001"`.
    /// `parse(decimalString)` gives the same amount back.
    public var decimalString: String {
        let scale = currency.minorUnitsPerMajor
        let magnitude = minorUnits.magnitude
        let whole = magnitude / UInt64(scale)
        let sign = minorUnits < 0 ? "-" : ""
        guard currency.exponent > 0 else { return "\(sign)\(whole)" }
        var fraction = String(magnitude % UInt64(scale))
        while fraction.count < currency.exponent { fraction = "0" + fraction }
        return "\(sign)\(whole).\(fraction)"
    }

    public var description: String { "\(decimalString) \(currency.code)" }
}

/// Why an amount was refused; each case names the input.
public enum MoneyError: Error, Equatable, CustomStringConvertible {
    case malformed(String, reason: String)
    case tooManyDecimals(String, currency: Currency)
    case notPositive(String)
    case tooLarge(String, currency: Currency)
    case unknownCurrency(String)

    public var description: String {
        switch self {
        case let .malformed(text, reason):
            return "amount \"\(text)\" is not a decimal number: \(reason)"
        case let .tooManyDecimals(text, currency):
            return "amount \"\(text)\" has more than \(currency.exponent) decimal\(currency.exponent == 1 ? "" : "s"), the most \(currency.code) allows"
        case let .notPositive(text):
            return "amount \"\(text)\" must be greater than zero"
        case let .tooLarge(text, currency):
            return "amount \"\(text)\" exceeds the limit of \(Money.maximumMajorUnits) \(currency.code)"
        case let .unknownCurrency(code):
            return "currency \"\(code)\" is not a supported ISO 4217 code"
        }
    }
}
