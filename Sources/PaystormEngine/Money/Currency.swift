/// An ISO 4217 currency and its minor-unit exponent.
///
/// Only currencies in ``Currency/table`` exist; an unknown code is an input
/// error, never a guess.
public struct Currency: Hashable, Sendable, CustomStringConvertible {
    /// The three-letter ISO 4217 code, upper case.
    public let code: String
    /// Digits after the decimal point in the major unit: 2 for USD, 0 for JPY, 3 for KWD.
    public let exponent: Int

    private init(code: String, exponent: Int) {
        self.code = code
        self.exponent = exponent
    }

    /// Looks a code up (exactly three upper-case ASCII letters).
    /// - Returns: `nil` for a code that is not in the table.
    public init?(code: String) {
        // Byte by byte: Swift compares strings by canonical equivalence, and
        // the Kelvin sign (U+212A) is equivalent to "K", so "\u{212A}WD"
        // would find KWD and be stored as a second, non-ASCII currency.
        guard code.utf8.count == 3, code.utf8.allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }),
              let exponent = Self.table[code] else { return nil }
        self.init(code: code, exponent: exponent)
    }

    public var description: String { code }

    /// 10^exponent: minor units per major unit.
    public var minorUnitsPerMajor: Int64 {
        var scale: Int64 = 1
        for _ in 0..<exponent { scale *= 10 }
        return scale
    }

    /// ISO 4217 minor-unit exponents of the currencies Paystorm accepts.
    public static let table: [String: Int] = [
        // exponent 2
        "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2, "NOK": 2,
        "DKK": 2, "PLN": 2, "CZK": 2, "HUF": 2, "RON": 2, "BGN": 2, "TRY": 2, "ILS": 2, "INR": 2,
        "CNY": 2, "HKD": 2, "SGD": 2, "MXN": 2, "BRL": 2, "ZAR": 2, "AED": 2, "SAR": 2, "THB": 2,
        "MYR": 2, "PHP": 2, "EGP": 2, "NGN": 2, "KES": 2,
        // exponent 0
        "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "UGX": 0, "PYG": 0, "XAF": 0, "XOF": 0,
        // exponent 3
        "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3, "IQD": 3, "LYD": 3,
    ]

    public static let usd = Currency(code: "USD", exponent: 2)
    public static let eur = Currency(code: "EUR", exponent: 2)
    public static let jpy = Currency(code: "JPY", exponent: 0)
    public static let kwd = Currency(code: "KWD", exponent: 3)
}
