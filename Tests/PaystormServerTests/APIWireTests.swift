import Foundation
import PaystormEngine
import PaystormStatistics
import Testing
@testable import PaystormServer

/// `POST /payments` bodies have two readers: the plain one for the common
/// body, and `JSONSerialization` field by field for everything else. Both
/// must read a body the same way, so these tests hold the plain reader to
/// the field reader on generated bodies.
@Suite("API wire: the plain reader of payment bodies")
struct APIWireTests {
    /// What a command holds, comparable.
    static func fields(_ command: CreatePaymentCommand) -> [String] {
        [command.userID, command.merchantID, command.amount, command.currency, command.idempotencyKey,
         command.card.number, command.card.expiry, command.card.cvv]
    }

    /// A random body the plain reader must take: the keys in any order,
    /// any JSON whitespace between tokens, printable-ASCII values (no `"`
    /// or `\`) up to each field's limit.
    /// `stretch`: the index of a value (in ``fields(_:)``'s order) to make one byte over its limit.
    static func plainBody(_ random: RandomStream, stretch: Int? = nil) -> (json: String, fields: [String]) {
        func space() -> String {
            String((0..<random.uniformInt(below: 3)).map { _ in [" ", "\t", "\n", "\r"][random.uniformInt(below: 4)] })
        }
        func text(_ limit: Int) -> String {
            let length = random.uniformInt(below: 3) == 0 ? limit : random.uniformInt(below: limit + 1)
            return String((0..<length).map { _ in
                var scalar = 0x20 + random.uniformInt(below: 0x5F)
                if scalar == 0x22 || scalar == 0x5C { scalar = 0x41 }
                return Character(Unicode.Scalar(UInt8(scalar)))
            })
        }
        func object(_ members: [(String, String)]) -> String {
            var shuffled = members
            for i in stride(from: shuffled.count - 1, to: 0, by: -1) { shuffled.swapAt(i, random.uniformInt(below: i + 1)) }
            return space() + "{" + shuffled.map { space() + "\"\($0.0)\"" + space() + ":" + space() + $0.1 + space() }.joined(separator: ",") + "}" + space()
        }
        let limits = [255, 255, 40, 3, 255, 40, 10, 10]
        var values = limits.map(text)
        if let stretch { values[stretch] = String(repeating: "x", count: limits[stretch] + 1) }
        let details = object([("card_number", "\"\(values[5])\""), ("expiry_date", "\"\(values[6])\""), ("cvv", "\"\(values[7])\"")])
        let method = object([("type", "\"card\""), ("details", details)])
        let json = object([("user_id", "\"\(values[0])\""), ("merchant_id", "\"\(values[1])\""), ("amount", "\"\(values[2])\""),
                           ("currency", "\"\(values[3])\""), ("idempotency_key", "\"\(values[4])\""), ("payment_method", method)])
        return (json, values)
    }

    @Test(arguments: 1...8 as ClosedRange<UInt64>)
    func plainBodiesReadAsTheFieldReaderReadsThem(seed: UInt64) throws {
        let random = RandomStream(seed: seed)
        for _ in 0..<300 {
            let (json, expected) = Self.plainBody(random)
            let body = Data(json.utf8)
            let plain = try #require(APIWire.plainCreatePayment(body), "the plain reader refused \(json)")
            #expect(Self.fields(plain) == expected)
            #expect(Self.fields(try APIWire.createPaymentFieldByField(body)) == expected, "\(json)")
        }
    }

    /// Bodies one edit away from plain ones: whatever the plain reader takes
    /// of them, the field reader takes too, the same way; the rest it leaves
    /// to the field reader.
    @Test(arguments: 1...8 as ClosedRange<UInt64>)
    func everyOtherBodyIsLeftToTheFieldReader(seed: UInt64) throws {
        let random = RandomStream(seed: seed)
        let insertions = ["\\u0041", "\\\"", "é", "\u{1}", "null", "1", "[]", "{}", "\"x\":\"y\",", "\"cvv\":\"999\",",
                          "\"amount\":\"1.00\",", "\"type\":\"card\",", "\"details\":{},", "\u{FEFF}", "\u{B}", "\u{C}", ",", ":", "\"", "}", "{", " "]
        var refused = 0, refusedByBoth = 0
        for _ in 0..<400 {
            let edit = random.uniformInt(below: 5)
            var bytes = Array(Self.plainBody(random, stretch: edit == 4 ? random.uniformInt(below: 8) : nil).json.utf8)
            let position = random.uniformInt(below: bytes.count + 1)
            switch edit {
            case 0: bytes.insert(contentsOf: Array(insertions[random.uniformInt(below: insertions.count)].utf8), at: position)
            case 1: if position < bytes.count { bytes[position] = UInt8(random.uniformInt(below: 256)) }
            case 2: bytes.removeSubrange(position...)
            case 3: if position < bytes.count { bytes.remove(at: position) }
            default: break  // a value one byte over its limit
            }
            let body = Data(bytes)
            let slow = Result { () throws(APIWire.BadRequest) in try APIWire.createPaymentFieldByField(body) }
            guard let plain = APIWire.plainCreatePayment(body) else {
                refused += 1
                if case .failure = slow { refusedByBoth += 1 }
                continue
            }
            let text = String(decoding: bytes, as: UTF8.self)
            switch slow {
            case let .success(command): #expect(Self.fields(plain) == Self.fields(command), "\(text)")
            case let .failure(error): Issue.record("the plain reader took a body the field reader refuses (\(error)): \(text)")
            }
        }
        // The edits do reach the readers: many bodies go to the field reader, most of them wrong.
        #expect(refused > 200 && refusedByBoth > 150, "refused \(refused), by both \(refusedByBoth)")
    }

    @Test func leavesWhatItCannotReadAlikeToTheFieldReader() throws {
        let (json, _) = Self.plainBody(RandomStream(seed: 99))
        let escaped = json.replacingOccurrences(of: "\"card\"", with: "\"c\\u0061rd\"")
        #expect(APIWire.plainCreatePayment(Data(escaped.utf8)) == nil)
        #expect(throws: Never.self) { try APIWire.createPayment(Data(escaped.utf8)) }
        let twice = json.replacingOccurrences(of: "\"type\"", with: "\"type\":\"paypal\",\"type\"")
        #expect(APIWire.plainCreatePayment(Data(twice.utf8)) == nil)
        let other = json.replacingOccurrences(of: "\"card\"", with: "\"sepa\"")
        #expect(APIWire.plainCreatePayment(Data(other.utf8)) == nil)
        #expect(throws: APIWire.BadRequest(field: "payment_method.type", message: "\"sepa\" is not supported; expected \"card\"")) {
            try APIWire.createPayment(Data(other.utf8))
        }
    }
}
