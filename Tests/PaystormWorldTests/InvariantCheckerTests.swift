import Testing
@testable import PaystormWorld

@Suite("The invariant checker keeps the first violations and counts them all")
struct InvariantCheckerTests {
    @Test("past the 1,000 kept, every violation is still counted under its check")
    func countsBeyondTheKept() throws {
        let checker = InvariantChecker(seed: 1, truth: try WorldTruth(path: nil, cacheMebibytes: 1))
        for index in 0..<1_500 { checker.record(.oneCharge, "pay-\(index)", "captured twice") }
        checker.record(.idempotentCreate, "pay-9", "created twice")
        #expect(checker.violations.count == checker.keep)
        #expect(checker.violationCount == 1_501)
        #expect(checker.violationCounts == [.oneCharge: 1_500, .idempotentCreate: 1], "a check crowded out of the kept ones is still counted")
    }
}
