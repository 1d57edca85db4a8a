import Testing
@testable import PaystormWorld

@Suite("Simulated PSP: packed records and idempotency keys")
struct PSPRecordTests {
    @Test("every key comes back as the same text; the engine's shapes pack into numbers, others into a table")
    func keysRoundTrip() {
        var table = PSP.KeyTable(pspID: "stripe")
        let texts = ["pay-0:stripe", "pay-1:stripe", "ref-1:stripe", "pay-123456789:stripe", "ref-9:stripe",
                     "pay-07:stripe", "pay--1:stripe", "pay-+7:stripe", "pay-1:paypal", "refund-1:stripe", "pay-:stripe",
                     "pay-1", "anything", "", "pay-9223372036854775807:stripe"]
        var keys: [PSP.Key] = []
        for text in texts {
            let key = table.key(text)
            keys.append(key)
            #expect(table.text(key) == text)
        }
        #expect(Set(keys).count == texts.count, "distinct texts, distinct keys")
        #expect(table.key("pay-5:stripe") == PSP.Key(code: 10))
        #expect(table.key("ref-5:stripe") == PSP.Key(code: 11))
        #expect(table.key("pay-07:stripe").code < 0, "would come back as pay-7: kept as text")
        #expect(table.key("anything") == keys[texts.firstIndex(of: "anything")!], "the same text, the same key")
    }

    /// A ten-million-payment run holds ten million records and keys: their
    /// size is the world's memory per payment.
    @Test("a settled record takes 32 bytes and a key 8")
    func packedSizes() {
        #expect(MemoryLayout<PSP.Record>.stride <= 32, "\(MemoryLayout<PSP.Record>.stride)")
        #expect(MemoryLayout<PSP.Key>.stride == 8)
    }
}
