/// The life of a payment: `initiated → processing → completed | failed`.
///
/// `initiated → failed` covers payments refused before any PSP call (fraud
/// decline, invalid card). An ambiguous PSP outcome keeps the payment in
/// `processing` until a status query, webhook or reconciliation settles it.
/// Terminal states are never left: a late or out-of-order event that would
/// move a payment backwards is refused, not applied.
public enum PaymentStatus: String, Sendable, CaseIterable, Codable {
    case initiated
    case processing
    case completed
    case failed

    /// Whether no transition leaves this state.
    public var isTerminal: Bool { self == .completed || self == .failed }

    /// Whether `self → next` is a legal step. Staying put is not a step.
    public func canMove(to next: PaymentStatus) -> Bool {
        switch (self, next) {
        case (.initiated, .processing), (.initiated, .failed),
             (.processing, .completed), (.processing, .failed):
            return true
        default:
            return false
        }
    }

    /// The state after `next`, or a ``StatusTransitionError`` naming both ends.
    public func moving(to next: PaymentStatus) throws(StatusTransitionError) -> PaymentStatus {
        guard canMove(to: next) else {
            throw StatusTransitionError(subject: "payment", from: rawValue, to: next.rawValue, terminal: isTerminal)
        }
        return next
    }
}

/// The life of a refund: `requested → processing → succeeded | failed`.
///
/// A refund counts against the captured amount from the moment it is
/// requested until it fails, so concurrent refunds cannot together exceed
/// what was captured.
public enum RefundStatus: String, Sendable, CaseIterable, Codable {
    case requested
    case processing
    case succeeded
    case failed

    public var isTerminal: Bool { self == .succeeded || self == .failed }

    /// Whether the refund's amount is reserved against the capture (every
    /// state but `failed`).
    public var reservesAmount: Bool { self != .failed }

    public func canMove(to next: RefundStatus) -> Bool {
        switch (self, next) {
        case (.requested, .processing), (.requested, .failed),
             (.processing, .succeeded), (.processing, .failed):
            return true
        default:
            return false
        }
    }

    public func moving(to next: RefundStatus) throws(StatusTransitionError) -> RefundStatus {
        guard canMove(to: next) else {
            throw StatusTransitionError(subject: "refund", from: rawValue, to: next.rawValue, terminal: isTerminal)
        }
        return next
    }
}

/// A refused state change: which kind of object, from where to where.
public struct StatusTransitionError: Error, Equatable, CustomStringConvertible {
    public var subject: String
    public var from: String
    public var to: String
    /// The object was already in a terminal state.
    public var terminal: Bool

    public var description: String {
        terminal
            ? "\(subject) is already \(from) (terminal); it cannot become \(to)"
            : "\(subject) cannot go from \(from) to \(to)"
    }
}
