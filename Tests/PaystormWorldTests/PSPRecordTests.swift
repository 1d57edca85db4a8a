import Testing
@testable import PaystormWorld

@Suite("Simulated PSP: packed records and idempotency keys")
struct PSPRecordTests {
    @Test("distinct texts get distinct keys; the engine's shapes pack into numbers, others into a table")
    func keysRoundTrip() {
        var table = PSP.KeyTable(pspID: "stripe")
        let texts = ["pay-0:stripe", "pay-1:stripe", "ref-1:stripe", "pay-123456789:stripe", "ref-9:stripe",
                     "pay-07:stripe", "pay--1:stripe", "pay-+7:stripe", "pay-1:paypal", "refund-1:stripe", "pay-:stripe",
                     "pay-1", "anything", "", "pay-9223372036854775807:stripe"]
        var keys: [PSP.Key] = []
        for text in texts {
            let key = table.key(text)
            keys.append(key)
            #expect(table.key(text) == key, "the same text, the same key")
        }
        #expect(Set(keys).count == texts.count, "distinct texts, distinct keys")
        #expect(table.key("pay-5:stripe") == PSP.Key(code: 10))
        #expect(table.key("ref-5:stripe") == PSP.Key(code: 11))
        #expect(table.key("pay-07:stripe").code < 0, "would come back as pay-7: kept as text")
        #expect(table.key("anything") == keys[texts.firstIndex(of: "anything")!], "the same text, the same key")
    }

    @Test("outcomes of numbers sit in a dense table that never reaches out to a stray huge number")
    func outcomeTable() {
        var table = PSP.KeyTable(pspID: "stripe")
        var outcomes = PSP.OutcomeTable()
        let first = table.key("pay-3:stripe"), refund = table.key("ref-3:stripe"), text = table.key("anything")
        #expect(outcomes[first] == nil)
        outcomes[first] = .done
        outcomes[refund] = .declined
        outcomes[text] = .voided
        #expect(outcomes[first] == .done && outcomes[refund] == .declined && outcomes[text] == .voided)
        #expect(outcomes[table.key("pay-4:stripe")] == nil)
        let dense = outcomes.denseCount
        #expect(dense >= 8 && dense <= 1 << 16, "\(dense)")
        // A number far beyond the table's end is kept aside, not allocated up to.
        let far = table.key("pay-999999999999:stripe")
        outcomes[far] = .done
        #expect(outcomes[far] == .done)
        #expect(outcomes.denseCount == dense)
        // Numbers just beyond the end still grow the table; what was aside stays found.
        let near = table.key("pay-40000:stripe")
        outcomes[near] = .declined
        #expect(outcomes.denseCount > 80_000 && outcomes.denseCount < 80_000 + (1 << 16))
        #expect(outcomes[near] == .declined && outcomes[far] == .done && outcomes[first] == .done)
    }

    /// A ten-million-payment run keys ten million outcomes: a key's size
    /// is part of the world's memory per payment.
    @Test("a key takes 8 bytes")
    func packedSizes() {
        #expect(MemoryLayout<PSP.Key>.stride == 8)
    }
}
