/// Writes one flat JSON object byte for byte as `JSONEncoder` with
/// `.sortedKeys` does; the caller adds fields in sorted key order.
package struct CanonicalJSONWriter {
    private var bytes: [UInt8] = []

    package init() {
        bytes.reserveCapacity(320)
        bytes.append(UInt8(ascii: "{"))
    }

    package mutating func field(_ key: StaticString, _ value: String) {
        writeKey(key)
        string(value)
    }

    /// Nothing for `nil`, as `JSONEncoder` leaves out an absent optional.
    package mutating func field(_ key: StaticString, _ value: String?) {
        if let value { field(key, value) }
    }

    package mutating func field(_ key: StaticString, _ value: Int64) {
        writeKey(key)
        bytes.append(contentsOf: String(value).utf8)
    }

    package mutating func field(_ key: StaticString, _ value: Bool) {
        writeKey(key)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    /// The object's text; the writer is spent.
    package mutating func finish() -> String {
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func writeKey(_ key: StaticString) {
        if bytes.count > 1 { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    /// A JSON string with `JSONEncoder`'s escapes: `"`, `\`, `/`, the short
    /// forms \b \f \n \r \t, `\u00xx` for other control bytes, and every
    /// other byte (UTF-8 included) as is.
    private mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(byte)
            case 0x08: escape(UInt8(ascii: "b"))
            case 0x0C: escape(UInt8(ascii: "f"))
            case 0x0A: escape(UInt8(ascii: "n"))
            case 0x0D: escape(UInt8(ascii: "r"))
            case 0x09: escape(UInt8(ascii: "t"))
            case 0x00..<0x20:
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                bytes.append(Self.hexDigits[Int(byte >> 4)])
                bytes.append(Self.hexDigits[Int(byte & 0x0F)])
            default:
                bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func escape(_ letter: UInt8) {
        bytes.append(UInt8(ascii: "\\"))
        bytes.append(letter)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}

/// Reads the flat JSON objects ``CanonicalJSONWriter`` writes, and only
/// inputs `JSONDecoder` would read the same way; `nil` sends the caller to
/// `JSONDecoder`.
enum CanonicalJSONReader {
    /// A ``TransactionEvent`` from `{"key":value,...}` (JSON whitespace
    /// allowed between tokens), values plain printable-ASCII strings without
    /// escapes or canonical integers, each key known and present at most
    /// once; `nil` otherwise.
    static func transactionEvent(_ json: String) -> TransactionEvent? {
        var amountMinor: Int64?, feeMinor: Int64?, timeNanoseconds: Int64?
        var currency: String?, eventID: String?, kind: String?, merchantID: String?, paymentID: String?
        var pspID: String?, reason: String?, refundID: String?, userID: String?
        var json = json
        let read = json.withUTF8 { bytes in
            PlainJSONCursor.object(in: UnsafeRawBufferPointer(bytes)) { key, reader in
                switch key {
                case "amountMinor": reader.integer(into: &amountMinor)
                case "feeMinor": reader.integer(into: &feeMinor)
                case "timeNanoseconds": reader.integer(into: &timeNanoseconds)
                case "currency": reader.plainString(into: &currency)
                case "eventID": reader.plainString(into: &eventID)
                case "kind": reader.plainString(into: &kind)
                case "merchantID": reader.plainString(into: &merchantID)
                case "paymentID": reader.plainString(into: &paymentID)
                case "pspID": reader.plainString(into: &pspID)
                case "reason": reader.plainString(into: &reason)
                case "refundID": reader.plainString(into: &refundID)
                case "userID": reader.plainString(into: &userID)
                default: false
                }
            }
        }
        guard read, let amountMinor, let feeMinor, let timeNanoseconds, let currency, let eventID,
              let kind = kind.flatMap(TransactionEvent.Kind.init(rawValue:)),
              let merchantID, let paymentID, let pspID, let userID else { return nil }
        return TransactionEvent(eventID: eventID, kind: kind, paymentID: paymentID, refundID: refundID,
                                merchantID: merchantID, userID: userID, amountMinor: amountMinor, currency: currency,
                                feeMinor: feeMinor, pspID: pspID, timeNanoseconds: timeNanoseconds, reason: reason)
    }
}

/// A reader over UTF-8 bytes of the plainest JSON: printable-ASCII strings
/// without escapes and canonical integers. Each read returns `nil` for
/// anything else, so a caller can send such input to a full JSON reader.
package struct PlainJSONCursor {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    package init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    package var atEnd: Bool { index == bytes.count }

    package mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// A string of bytes 0x20...0x7E other than `"` and `\`, in quotes.
    package mutating func plainString() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return text
            }
            guard byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    /// An optional `-`, then `0` or digits without a leading zero, fitting Int64;
    /// not followed by a fraction or exponent.
    package mutating func integer() -> Int64? {
        let negative = take(UInt8(ascii: "-"))
        let start = index
        var magnitude: UInt64 = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
            guard !overflow1 && !overflow2 else { return nil }
            magnitude = sum
            index += 1
        }
        let digits = index - start
        guard digits > 0, digits == 1 || bytes[start] != UInt8(ascii: "0") else { return nil }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") || bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            return nil
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    /// A plain string (``plainString()``) of at most `limit` bytes into an
    /// empty `slot`; `false` if the slot is taken (a key given twice) or no such string is next.
    package mutating func plainString(into slot: inout String?, limit: Int = .max) -> Bool {
        guard slot == nil, let text = plainString(), text.utf8.count <= limit else { return false }
        slot = text
        return true
    }

    /// An ``integer()`` into an empty `slot`; `false` if the slot is taken or no such integer is next.
    package mutating func integer(into slot: inout Int64?) -> Bool {
        guard slot == nil, let value = integer() else { return false }
        slot = value
        return true
    }

    /// `{ "key": value, ... }` with JSON whitespace around every token, each
    /// value read by `member` (given the key and this cursor); `false` at the
    /// first misfit, an empty object included.
    package mutating func object(_ member: (String, inout PlainJSONCursor) -> Bool) -> Bool {
        skipWhitespace()
        guard take(UInt8(ascii: "{")) else { return false }
        repeat {
            skipWhitespace()
            guard let key = plainString() else { return false }
            skipWhitespace()
            guard take(UInt8(ascii: ":")) else { return false }
            skipWhitespace()
            guard member(key, &self) else { return false }
            skipWhitespace()
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "}"))
    }

    /// A whole body: one ``object(_:)`` and nothing after it but whitespace.
    package static func object(in body: UnsafeRawBufferPointer, _ member: (String, inout PlainJSONCursor) -> Bool) -> Bool {
        var reader = PlainJSONCursor(bytes: body.bindMemory(to: UInt8.self))
        guard reader.object(member) else { return false }
        reader.skipWhitespace()
        return reader.atEnd
    }

    /// Skips JSON's whitespace: space, tab, line feed, carriage return.
    package mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }
}
