import Foundation
import PaystormEngine
import PaystormStatistics
import Testing
@testable import PaystormServer

/// The JSON on every payment's path is read and written by hand for the
/// common case, and by Foundation for the rest: `POST /payments` bodies
/// (else `JSONSerialization` field by field), the PSP wire's calls and
/// answers (else `JSONDecoder`), and the answers written (instead of
/// `JSONEncoder`). These tests hold each to Foundation on generated input.
@Suite("API wire: the plain readers and writers")
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

    /// `JSONSerialization` keeps the last of two values for one key: a body
    /// that says `"amount":"0.01","amount":"0.90"` must not be read as either.
    @Test func aKeyGivenTwiceIsRefusedAtAnyLevelAndNamed() throws {
        let (json, _) = Self.plainBody(RandomStream(seed: 7))
        let cases: [(String, String)] = [
            (json.replacingOccurrences(of: "\"amount\"", with: "\"amount\":\"0.01\",\"amount\""), "amount"),
            // Spelt with an escape, it is still the same key.
            (json.replacingOccurrences(of: "\"amount\"", with: "\"amount\":\"0.01\",\"amo\\u0075nt\""), "amount"),
            (json.replacingOccurrences(of: "\"cvv\"", with: "\"cvv\":\"999\",\"cvv\""), "payment_method.details.cvv"),
            (json.replacingOccurrences(of: "\"type\"", with: "\"type\":\"card\",\"type\""), "payment_method.type"),
            // Not a plain body (a number), so only the field reader sees it.
            (json.replacingOccurrences(of: "\"user_id\"", with: "\"user_id\":1,\"user_id\""), "user_id"),
        ]
        for (body, field) in cases {
            #expect(APIWire.plainCreatePayment(Data(body.utf8)) == nil, "\(body)")
            do {
                let command = try APIWire.createPayment(Data(body.utf8))
                Issue.record("a body with \(field) twice was read, amount \(command.amount): \(body)")
            } catch {
                #expect(error.field == field, "\(body) → \(error)")
                #expect(error.message.contains("more than once"), "\(error)")
            }
        }
        let refund = #"{"payment_id":"pay-1","amount":"0.01","idempotency_key":"r1","amount":"0.90"}"#
        #expect(throws: APIWire.BadRequest(field: "amount", message: "given more than once; each field may appear once")) {
            try APIWire.createRefund(Data(refund.utf8), merchantID: "m1")
        }
        // The same key in two different objects is no repeat.
        let nested = #"{"payment_id":"pay-1","amount":"0.01","idempotency_key":"r1"}"#
        #expect(try APIWire.createRefund(Data(nested.utf8), merchantID: "m1").amount == "0.01")
        #expect(throws: Never.self) { try APIWire.object(Data(#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#.utf8)) }
        #expect(throws: APIWire.BadRequest(field: "b.a", message: "given more than once; each field may appear once")) {
            try APIWire.object(Data(#"{"a":1,"b":{"a":1,"c":[1,{"x":"}"}],"a":2}}"#.utf8))
        }
    }

    /// Strings that exercise every escape `JSONEncoder` writes, and UTF-8.
    static let awkward = ["", "pay-1", "a/b", "quote\"d", "back\\slash", "tab\there", "nl\nr\r", "\u{0}\u{1}\u{1F}\u{7F}", "café", "日本 😀"]

    static func text(_ random: RandomStream) -> String {
        if random.uniformInt(below: 3) == 0 { return awkward[random.uniformInt(below: awkward.count)] }
        return String((0..<random.uniformInt(below: 12)).map { _ in Character(Unicode.Scalar(UInt8(0x20 + random.uniformInt(below: 0x5F)))) })
    }

    static func encoded(_ value: some Encodable) throws -> String {
        String(decoding: try PaystormAPI.wireEncoder.encode(value), as: UTF8.self)
    }

    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func writtenAnswersAreTheEncodersBytes(seed: UInt64) throws {
        let random = RandomStream(seed: seed)
        func maybe() -> String? { random.uniformInt(below: 2) == 0 ? nil : Self.text(random) }
        for _ in 0..<300 {
            let payment = try JSONDecoder().decode(APIWire.Payment.self, from: JSONSerialization.data(withJSONObject: [
                "payment_id": Self.text(random), "status": Self.text(random), "merchant_id": Self.text(random), "user_id": Self.text(random),
                "amount": Self.text(random), "currency": Self.text(random), "card": Self.text(random), "refunded": Self.text(random),
                "replayed": random.uniformInt(below: 2) == 0,
            ].merging([("psp", maybe()), ("failure_reason", maybe())].compactMap { key, value in value.map { (key, $0 as Any) } }) { a, _ in a }))
            #expect(payment.wireJSON == (try Self.encoded(payment)))
            let result = APIWire.WebhookResult(outcome: Self.text(random))
            #expect(result.wireJSON == (try Self.encoded(result)))
            let answer = PSPWire.Answer(outcome: Self.text(random), reference: maybe(), reason: maybe())
            #expect(answer.wireJSON == (try Self.encoded(answer)))
        }
    }

    /// A PSP call or answer body as a client may write it (keys in any order,
    /// JSON whitespace), then one edit away from that half the time.
    static func pspBody(_ random: RandomStream, members: [(String, String)]) -> [UInt8] {
        func space() -> String { String((0..<random.uniformInt(below: 2)).map { _ in [" ", "\n", "\t"][random.uniformInt(below: 3)] }) }
        var shuffled = members
        for i in stride(from: shuffled.count - 1, to: 0, by: -1) { shuffled.swapAt(i, random.uniformInt(below: i + 1)) }
        var bytes = Array((space() + "{" + shuffled.map { space() + "\"\($0.0)\":" + space() + $0.1 }.joined(separator: ",") + "}" + space()).utf8)
        guard random.uniformInt(below: 2) == 0 else { return bytes }
        let insertions = ["\\u0041", "null", "1.5", "01", "-0", "99999999999999999999", "\"x\":\"y\",", "é", "true", "\"", "}", ",", " "]
        let position = random.uniformInt(below: bytes.count + 1)
        switch random.uniformInt(below: 3) {
        case 0: bytes.insert(contentsOf: Array(insertions[random.uniformInt(below: insertions.count)].utf8), at: position)
        case 1: if position < bytes.count { bytes[position] = UInt8(random.uniformInt(below: 256)) }
        default: if position < bytes.count { bytes.remove(at: position) }
        }
        return bytes
    }

    static func plainText(_ random: RandomStream) -> String {
        String((0..<random.uniformInt(below: 12)).map { _ in
            var scalar = 0x20 + random.uniformInt(below: 0x5F)
            if scalar == 0x22 || scalar == 0x5C { scalar = 0x42 }
            return Character(Unicode.Scalar(UInt8(scalar)))
        })
    }

    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func pspWireIsReadAsJSONDecoderReadsIt(seed: UInt64) throws {
        let random = RandomStream(seed: seed)
        var plainCalls = 0, plainAnswers = 0
        for _ in 0..<400 {
            var members = [("idempotency_key", "\"\(Self.plainText(random))\""), ("amount_minor", String(random.uniformInt(below: 2_000_000) - 1_000)),
                           ("currency", "\"\(Self.plainText(random))\"")]
            if random.uniformInt(below: 2) == 0 { members.append(("card_token", "\"\(Self.plainText(random))\"")) }
            let call = Data(Self.pspBody(random, members: members))
            if let plain = PSPWire.Call.plain(call) {
                plainCalls += 1
                let decoded = try #require(try? JSONDecoder().decode(PSPWire.Call.self, from: call), "\(String(decoding: call, as: UTF8.self))")
                #expect([plain.idempotencyKey, String(plain.amountMinor), plain.currency, plain.cardToken ?? "-"]
                        == [decoded.idempotencyKey, String(decoded.amountMinor), decoded.currency, decoded.cardToken ?? "-"])
            }
            var fields = [("outcome", "\"\(Self.plainText(random))\"")]
            if random.uniformInt(below: 2) == 0 { fields.append(("reference", "\"\(Self.plainText(random))\"")) }
            if random.uniformInt(below: 2) == 0 { fields.append(("reason", "\"\(Self.plainText(random))\"")) }
            let answer = Data(Self.pspBody(random, members: fields))
            if let plain = PSPWire.Answer.plain(answer) {
                plainAnswers += 1
                let decoded = try #require(try? JSONDecoder().decode(PSPWire.Answer.self, from: answer), "\(String(decoding: answer, as: UTF8.self))")
                #expect([plain.outcome, plain.reference ?? "-", plain.reason ?? "-"] == [decoded.outcome, decoded.reference ?? "-", decoded.reason ?? "-"])
            }
        }
        // The unedited half, and some edits the plain readers take (whitespace, a digit), go the plain way.
        #expect(plainCalls > 200 && plainCalls < 400 && plainAnswers > 200 && plainAnswers < 400, "calls \(plainCalls), answers \(plainAnswers)")
    }
}
