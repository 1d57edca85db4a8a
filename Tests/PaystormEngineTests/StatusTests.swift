import Testing
@testable import PaystormEngine

@Suite("Payment and refund state machines")
struct StatusTests {
    @Test func legalPaymentPaths() throws {
        #expect(try PaymentStatus.initiated.moving(to: .processing).moving(to: .completed) == .completed)
        #expect(try PaymentStatus.initiated.moving(to: .processing).moving(to: .failed) == .failed)
        #expect(try PaymentStatus.initiated.moving(to: .failed) == .failed)
    }

    @Test func everyIllegalPaymentStepIsRefused() {
        let legal: Set<[PaymentStatus]> = [[.initiated, .processing], [.initiated, .failed], [.processing, .completed], [.processing, .failed]]
        for from in PaymentStatus.allCases {
            for to in PaymentStatus.allCases {
                #expect(from.canMove(to: to) == legal.contains([from, to]), "\(from) → \(to)")
            }
        }
        #expect(throws: StatusTransitionError(subject: "payment", from: "completed", to: "failed", terminal: true)) {
            try PaymentStatus.completed.moving(to: .failed)
        }
        #expect(StatusTransitionError(subject: "payment", from: "completed", to: "failed", terminal: true).description
                == "payment is already completed (terminal); it cannot become failed")
    }

    /// Late, duplicated and reordered events: apply random sequences and check
    /// a terminal state is never left and the state only moves forward.
    @Test("random event sequences never leave a terminal state", arguments: 0..<200)
    func randomSequences(seed: Int) {
        var generator = SplitMix(seed: UInt64(seed))
        func rank(_ status: PaymentStatus) -> Int {
            switch status {
            case .initiated: return 0
            case .processing: return 1
            case .completed, .failed: return 2
            }
        }
        var status = PaymentStatus.initiated
        var reachedTerminal: PaymentStatus?
        for _ in 0..<30 {
            let event = PaymentStatus.allCases[Int(generator.next() % 4)]
            if let next = try? status.moving(to: event) {
                #expect(rank(next) > rank(status))
                status = next
            }
            if let terminal = reachedTerminal { #expect(status == terminal) }
            if status.isTerminal { reachedTerminal = status }
        }
    }

    @Test func refundsReserveUntilTheyFail() throws {
        #expect(try RefundStatus.requested.moving(to: .processing).moving(to: .succeeded) == .succeeded)
        #expect(RefundStatus.allCases.filter(\.reservesAmount) == [.requested, .processing, .succeeded])
        #expect(throws: StatusTransitionError.self) { try RefundStatus.succeeded.moving(to: .failed) }
        #expect(throws: StatusTransitionError.self) { try RefundStatus.processing.moving(to: .requested) }
        #expect(!RefundStatus.failed.canMove(to: .processing))
    }
}
