import Foundation
import Testing
@testable import PaystormEngine

@Suite("Transaction event JSON")
struct TransactionEventJSONTests {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    /// Strings that exercise every escape JSONEncoder writes, and UTF-8.
    static let awkward = ["", "pay-1", "a/b", "quote\"d", "back\\slash", "tab\there", "nl\nr\r", "\u{0}\u{1}\u{1F}\u{7F}",
                          "\u{8}\u{C}", "café", "日本", "😀 emoji", "declined by stripe: insufficient funds; retry"]

    static func randomEvent(_ random: inout SplitMix) -> TransactionEvent {
        func text() -> String {
            if random.below(3) == 0 { return awkward[random.below(awkward.count)] }
            return String((0..<random.below(12)).map { _ in Character(Unicode.Scalar(UInt8(0x20 + random.below(0x5F)))) })
        }
        let kinds: [TransactionEvent.Kind] = [.paymentCompleted, .paymentFailed, .refundSucceeded, .refundFailed]
        let extremes: [Int64] = [0, 1, -1, .max, .min, 1_790_000_000_000_000_000]
        func integer() -> Int64 { random.below(2) == 0 ? extremes[random.below(extremes.count)] : random.int(-1_000_000...1_000_000) }
        return TransactionEvent(eventID: text(), kind: kinds[random.below(kinds.count)], paymentID: text(),
                                refundID: random.below(2) == 0 ? nil : text(), merchantID: text(), userID: text(),
                                amountMinor: integer(), currency: text(), feeMinor: integer(), pspID: text(),
                                timeNanoseconds: integer(), reason: random.below(2) == 0 ? nil : text())
    }

    @Test(arguments: 1...20 as ClosedRange<UInt64>)
    func writesJSONEncodersBytesAndReadsThemBack(seed: UInt64) throws {
        var random = SplitMix(seed: seed)
        for _ in 0..<500 {
            let event = Self.randomEvent(&random)
            let expected = String(decoding: try Self.encoder.encode(event), as: UTF8.self)
            #expect(event.json() == expected)
            #expect(try TransactionEvent.decode(event.json()) == event)
        }
    }

    @Test func readsWhatOnlyJSONDecoderReads() throws {
        let event = TransactionEvent(eventID: "payment.completed:pay-1", kind: .paymentCompleted, paymentID: "pay-1", refundID: nil,
                                     merchantID: "m-1", userID: "u-1", amountMinor: 1050, currency: "USD", feeMinor: 30,
                                     pspID: "stripe", timeNanoseconds: 7, reason: nil)
        let variants = [
            event.json().replacingOccurrences(of: ",", with: ", "),
            event.json().replacingOccurrences(of: "}", with: ",\"reason\":null}"),
            event.json().replacingOccurrences(of: "{", with: "{\"extra\":[1,2],"),
            event.json().replacingOccurrences(of: "\"pay-1\"", with: "\"pay\\u002d1\""),
        ]
        for json in variants {
            #expect(try TransactionEvent.decode(json) == event, "\(json)")
        }
        for bad in ["", "{}", "{\"amountMinor\":1.5}", event.json().replacingOccurrences(of: "1050", with: "01050"),
                    event.json().replacingOccurrences(of: "payment.completed\"", with: "payment.unknown\""),
                    event.json().replacingOccurrences(of: "1050", with: "99999999999999999999")] {
            #expect(throws: (any Error).self, "\(bad)") { try TransactionEvent.decode(bad) }
        }
    }
}
