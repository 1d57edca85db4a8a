/// Card details as they arrive in a payment request, checked before any PSP
/// call. The CVV is checked for format and then dropped: it is never stored,
/// logged or put on a queue, and ``description`` never shows it.
public struct CardDetails: Sendable, CustomStringConvertible {
    /// Digits only (spaces and dashes removed on input).
    public let number: String
    public let expiryMonth: Int
    /// Four-digit year.
    public let expiryYear: Int

    /// Validates a card: 12–19 digits passing the Luhn check, an `MM/YY`
    /// expiry not before `currentMonth` (year, month from the host's clock),
    /// and a 3–4 digit CVV.
    /// - Throws: ``CardError`` naming the field.
    public init(number rawNumber: String, expiry: String, cvv: String, currentYear: Int, currentMonth: Int) throws(CardError) {
        let digits: String
        if let plain = Self.asciiDigits(rawNumber) {
            digits = plain.digits
            guard !plain.bytes.isEmpty else { throw .numberNotDigits }
            guard (12...19).contains(plain.bytes.count) else { throw .numberLength(plain.bytes.count) }
            guard Self.passesLuhn(asciiDigits: plain.bytes) else { throw .numberFailsLuhn }
        } else {
            digits = rawNumber.filter { $0 != " " && $0 != "-" }
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { throw .numberNotDigits }
            guard (12...19).contains(digits.count) else { throw .numberLength(digits.count) }
            guard Self.passesLuhn(digits) else { throw .numberFailsLuhn }
        }
        let parts = expiry.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
              parts.allSatisfy({ $0.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } }),
              let month = Int(parts[0]), let year2 = Int(parts[1]), (1...12).contains(month) else {
            throw .expiryFormat(expiry)
        }
        let year = 2000 + year2
        guard (year, month) >= (currentYear, currentMonth) else { throw .expired(expiry) }
        guard (3...4).contains(cvv.count), cvv.allSatisfy({ $0.isASCII && $0.isNumber }) else { throw .cvvFormat }
        number = digits
        expiryMonth = month
        expiryYear = year
    }

    /// The Luhn (mod 10) check digit test.
    /// Whether the card's expiry month is before `currentMonth`.
    public func isExpired(currentYear: Int, currentMonth: Int) -> Bool {
        (expiryYear, expiryMonth) < (currentYear, currentMonth)
    }

    public static func passesLuhn(_ digits: String) -> Bool {
        var sum = 0
        for (index, character) in digits.reversed().enumerated() {
            guard let digit = character.wholeNumberValue else { return false }
            if index % 2 == 1 {
                let doubled = digit * 2
                sum += doubled > 9 ? doubled - 9 : doubled
            } else {
                sum += digit
            }
        }
        return sum % 10 == 0
    }

    /// For a number of ASCII digits, spaces and dashes only — where bytes and
    /// characters coincide — its digits; `nil` for anything else, which
    /// takes the character-by-character checks.
    private static func asciiDigits(_ raw: String) -> (digits: String, bytes: [UInt8])? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.utf8.count)
        for byte in raw.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): bytes.append(byte)
            case UInt8(ascii: " "), UInt8(ascii: "-"): continue
            default: return nil
            }
        }
        return (String(decoding: bytes, as: UTF8.self), bytes)
    }

    /// ``passesLuhn(_:)`` over ASCII digit bytes.
    private static func passesLuhn(asciiDigits digits: [UInt8]) -> Bool {
        var sum = 0
        for (index, byte) in digits.reversed().enumerated() {
            let digit = Int(byte - UInt8(ascii: "0"))
            if index % 2 == 1 {
                let doubled = digit * 2
                sum += doubled > 9 ? doubled - 9 : doubled
            } else {
                sum += digit
            }
        }
        return sum % 10 == 0
    }

    /// First six digits (the issuer BIN).
    public var first6: String { String(number.prefix(6)) }
    /// Last four digits.
    public var last4: String { String(number.suffix(4)) }

    /// The first six digits where they may be shown and stored: only when
    /// at least six digits stay hidden beside them and the last four (16
    /// digits or more). Of a 12-digit number, first 6 and last 4 left two
    /// digits hidden, which the Luhn check narrows to ten candidates.
    public var displayableFirst6: String { number.count >= 16 ? first6 : "" }

    /// The most that may ever be displayed: first 6 and last 4 digits, and
    /// only the last 4 of a number shorter than 16 digits.
    public var masked: String {
        displayableFirst6 + String(repeating: "*", count: number.count - displayableFirst6.count - 4) + last4
    }

    public var description: String { "card \(masked) exp \(expiryMonth)/\(expiryYear)" }
}

/// Why card details were refused. Messages never repeat the card number or CVV.
public enum CardError: Error, Equatable, CustomStringConvertible {
    case numberNotDigits
    case numberLength(Int)
    case numberFailsLuhn
    case expiryFormat(String)
    case expired(String)
    case cvvFormat

    public var description: String {
        switch self {
        case .numberNotDigits: return "payment_method.details.card_number must contain only digits"
        case let .numberLength(count): return "payment_method.details.card_number has \(count) digits; expected 12 to 19"
        case .numberFailsLuhn: return "payment_method.details.card_number fails the Luhn check"
        case let .expiryFormat(text): return "payment_method.details.expiry_date \"\(text)\" is not MM/YY"
        case let .expired(text): return "payment_method.details.expiry_date \(text) is in the past"
        case .cvvFormat: return "payment_method.details.cvv must be 3 or 4 digits"
        }
    }

    /// The request field at fault, as the API names it.
    public var field: String {
        switch self {
        case .numberNotDigits, .numberLength, .numberFailsLuhn: "payment_method.details.card_number"
        case .expiryFormat, .expired: "payment_method.details.expiry_date"
        case .cvvFormat: "payment_method.details.cvv"
        }
    }
}
