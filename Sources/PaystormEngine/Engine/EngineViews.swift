/// A payment as `GET /payments/{id}` and `POST /payments` return it.
/// Never carries card data beyond the masked number.
public struct PaymentView: Sendable, Equatable {
    public var paymentID: String
    public var merchantID: String
    public var userID: String
    public var status: PaymentStatus
    public var amount: Money
    public var cardMasked: String
    public var pspID: String?
    public var failureReason: String?
    public var refundedMinor: Int64
    /// True when this is the stored result of an earlier request with the
    /// same idempotency key.
    public var replayed: Bool
}

/// A refund as `POST /refunds` returns it.
public struct RefundView: Sendable, Equatable {
    public var refundID: String
    public var paymentID: String
    public var status: RefundStatus
    public var amount: Money
    public var failureReason: String?
    public var replayed: Bool
}

/// What the engine did with a PSP webhook.
public enum WebhookOutcome: String, Sendable, Equatable {
    /// Moved a payment or refund forward.
    case applied
    /// Seen before (same PSP event id): nothing changed.
    case duplicate
    /// Valid, but it would not move anything forward (late or out of order).
    case ignored
    /// Valid, but names no attempt the engine knows: left for reconciliation.
    case unknownReference
}

/// One journal entry as `GET /ledger` returns it.
public struct LedgerEntryView: Sendable, Equatable {
    public var sequence: Int64
    public var entryID: String
    public var transactionID: String
    public var timeNanoseconds: Int64
    public var postings: [LedgerPosting]
    public var hash: String
}

/// A page of ledger entries; pass `nextCursor` as `afterSequence` for the next.
public struct LedgerPage: Sendable, Equatable {
    public var entries: [LedgerEntryView]
    public var nextCursor: Int64?
}

/// Counts of what the engine saw that changed nothing, for reports.
public struct EngineCounters: Sendable, Equatable {
    public var idempotentReplays = 0
    public var lateReplies = 0
    /// Answers to an earlier call of an attempt that say nothing definite (see ``PaymentEngine/pspReplied(attemptID:outcome:now:sentAtNanoseconds:)``).
    public var staleReplies = 0
    public var staleTimers = 0
    public var ambiguousAttempts = 0
    public var statusQueriesExhausted = 0
    public var failovers = 0
    public var breakerRejections = 0
    public var duplicateWebhooks = 0
    public var duplicateDeliveries = 0
    public var deadLetters = 0
    /// Idempotency records deleted after their retention.
    public var idempotencyRecordsPurged = 0
}
