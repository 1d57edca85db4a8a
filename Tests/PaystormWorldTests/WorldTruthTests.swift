import Foundation
import PaystormEngine
import Testing
@testable import PaystormWorld

@Suite("The world's truth: what the PSPs did, kept outside the engine")
struct WorldTruthTests {
    static func record(_ number: Int32, _ reference: String, status: SettlementStatus = .captured) -> WorldTruth.Record {
        WorldTruth.Record(number: number, reference: reference, kind: reference.hasPrefix("ref-") ? .refund : .charge, status: status,
                          amount: Money(minorUnits: 100 + Int64(number), currency: .usd), settledNanoseconds: 1_000 + Int64(number))
    }

    @Test("records come back by number, and in parts in byte order of their references")
    func records() throws {
        let truth = try WorldTruth(path: nil, cacheMebibytes: 1)
        let references = ["pay-2:stripe", "pay-10:stripe", "pay-1:stripe", "ref-3:stripe", "pay-100:stripe", "pay-9:stripe"]
        for (number, reference) in references.enumerated() { truth.append(psp: 0, Self.record(Int32(number), reference)) }
        truth.append(psp: 1, Self.record(0, "pay-5:paypal", status: .failed))
        #expect(truth.webhookFacts(psp: 0, number: 3)?.reference == "ref-3:stripe")
        #expect(truth.webhookFacts(psp: 0, number: 3)?.kind == .refund)
        #expect(truth.webhookFacts(psp: 1, number: 0)?.status == .failed)
        #expect(truth.webhookFacts(psp: 1, number: 1) == nil)

        var parts: [[String]] = []
        var after: String?
        while case let part = truth.records(psp: 0, below: 5, after: after, limit: 2), let last = part.last {
            parts.append(part.map(\.reference))
            after = last.reference
        }
        // Byte order (':' follows '9', so "pay-100:" comes before "pay-1:"),
        // and only records numbered below 5.
        #expect(parts == [["pay-100:stripe", "pay-10:stripe"], ["pay-1:stripe", "pay-2:stripe"], ["ref-3:stripe"]])
        #expect(truth.records(psp: 0, below: 6, after: nil, limit: 10).first == Self.record(4, "pay-100:stripe"))

        var seen: [Int32] = []
        truth.forEachRecord(psp: 0, below: 4) { number, _, _ in seen.append(number) }
        #expect(seen == [0, 1, 2, 3])
        #expect(truth.failure == nil)
    }

    @Test("a second capture names the first; a second payout replaces the amount and says so")
    func capturesAndPayouts() throws {
        let truth = try WorldTruth(path: nil, cacheMebibytes: 1)
        #expect(truth.capture(paymentNumber: 7, psp: 0, amountMinor: 500) == nil)
        #expect(truth.capture(paymentNumber: 7, psp: 1, amountMinor: 500) == 0)
        #expect(truth.captured(paymentNumber: 7)! == (psp: 0, amountMinor: 500))
        #expect(truth.captured(paymentNumber: 8) == nil)

        #expect(truth.payOut(reference: "ref-1:stripe", amountMinor: 30))
        #expect(truth.payOut(reference: "ref-10:stripe", amountMinor: 40))
        #expect(truth.payOut(reference: "ref-1:paypal", amountMinor: 5))
        #expect(!truth.payOut(reference: "ref-1:stripe", amountMinor: 31))
        #expect(truth.paidOut(reference: "ref-1:stripe") == 31)
        #expect(truth.paidOut(reference: "ref-2:stripe") == nil)
        // Every PSP's key of ref-1, and not ref-10's.
        #expect(truth.paidOut(refundID: "ref-1") == 36)
        #expect(truth.payouts(after: nil, limit: 2).map(\.reference) == ["ref-10:stripe", "ref-1:paypal"])
        #expect(truth.payouts(after: "ref-1:paypal", limit: 2).map(\.reference) == ["ref-1:stripe"])
    }

    @Test("a truth on a scratch file is written, read and released with its transaction open")
    func scratchFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("paystorm-truth-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let truth = try WorldTruth(path: path, cacheMebibytes: 1)
            for number in 0..<50_000 { truth.append(psp: 0, Self.record(Int32(number), "pay-\(number):stripe")) }
            #expect(truth.webhookFacts(psp: 0, number: 12_345)?.reference == "pay-12345:stripe")
            #expect(truth.failure == nil)
        }
        // Past a one-mebibyte cache, the pages went to the file.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size > 2 << 20, "\(size) bytes")
    }
}
