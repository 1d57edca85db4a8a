/// What the engine asks a PSP to do. The host's PSP adapter performs it and
/// feeds the answer back with ``PaymentEngine/pspReplied(attemptID:outcome:now:sentAtNanoseconds:)``.
public struct PSPRequest: Sendable, Equatable {
    public enum Operation: String, Sendable, Equatable {
        case charge, refund, status
        /// Void the key: the PSP must refuse any later request with it. The
        /// answer is `.succeeded` if the key had already moved money (nothing
        /// was voided), `.declined` if the PSP had declined it, and
        /// `.voided` once it is void.
        case cancel
    }

    /// The attempt this call belongs to; the reply must carry it back.
    public var attemptID: Int64
    public var pspID: String
    public var operation: Operation
    /// The PSP-side idempotency key: derived from the payment (or refund)
    /// and the PSP, so every retry to the same PSP is the same charge.
    public var idempotencyKey: String
    public var amount: Money
    /// Vault token of the card (charges only); the adapter detokenizes.
    public var cardToken: String?
    /// The engine time the call was stamped with (its attempt's
    /// `updated_ns`). A host hands it back with the answer
    /// (``PaymentEngine/pspReplied(attemptID:outcome:now:sentAtNanoseconds:)``),
    /// so an answer to an earlier call of the attempt — a duplicate, or a
    /// reply that outran its timeout — is told from the current one.
    public var sentAtNanoseconds: Int64
}

/// A PSP's answer (or the host's report that none came).
public enum PSPOutcome: Sendable, Equatable {
    /// Charged, refunded, or (for a status query) found captured.
    case succeeded(pspReference: String)
    /// A definite refusal: card declined, insufficient funds, or (status) found failed.
    case declined(reason: String)
    /// The key is void at the PSP (the answer to a `cancel`, or to any
    /// later call with the key): nothing moved and nothing will, and the
    /// PSP never judged the card — so trying another PSP is safe and fair,
    /// where after a decline it is neither.
    case voided
    /// A definite transient failure: nothing happened at the PSP; safe to retry.
    case transientError(String)
    /// HTTP 429 or equivalent: nothing happened; retry later.
    case rateLimited
    /// Status query: the PSP has no record of the key (the call never landed).
    case notFound
    /// Status query: the PSP is still processing.
    case pending

    /// Whether it fixes the key's outcome (money moved, refused, or void),
    /// whichever call of the attempt it answers.
    public var isDefinite: Bool {
        switch self {
        case .succeeded, .declined, .voided: true
        case .transientError, .rateLimited, .notFound, .pending: false
        }
    }
}

/// Timers the engine arms through the host. A timer that fires after its
/// purpose is gone is ignored, so a host need not cancel one; where the
/// engine knows a timer is spent it says so (``EngineEffect/cancelTimer(_:)``).
public enum EngineTimer: Hashable, Sendable {
    /// No PSP reply to the attempt within the call timeout: its outcome is
    /// unknown. `sentAtNanoseconds` is the engine time the call was stamped
    /// with (the attempt's `updated_ns`): a timer of an earlier call finds
    /// the attempt stamped anew and is stale, judged without comparing
    /// clocks — a replica's clock that stepped back does not make a live
    /// timer look early and drop it, which left the attempt open for good.
    case pspTimeout(attemptID: Int64, sentAtNanoseconds: Int64)
    /// Backoff over: retry the payment's charge (or refund).
    case retry(attemptID: Int64)
    /// Ask the PSP for the status of an ambiguous attempt.
    case statusQuery(attemptID: Int64)
    /// Backoff over: deliver the notification again.
    case notificationRetry(notificationID: Int64)
    /// Delete idempotency records past their retention (armed by ``PaymentEngine/armMaintenance()``).
    case idempotencyPurge

    /// Whether the timer belongs to a PSP attempt, the only kind the engine
    /// may call spent (``EngineEffect/cancelTimer(_:)``): a host need track
    /// only these to drop them.
    public var isAttemptTimer: Bool {
        switch self {
        case .pspTimeout, .retry, .statusQuery: true
        case .notificationRetry, .idempotencyPurge: false
        }
    }
}

/// A transaction event from the outbox, published at least once.
public struct OutboxMessage: Sendable, Equatable {
    public var sequence: Int64
    public var topic: String
    /// Topics are partitioned by merchant id.
    public var partitionKey: String
    public var event: TransactionEvent
}

/// A notification for a user or a merchant.
public struct NotificationMessage: Sendable, Equatable {
    public var notificationID: Int64
    /// `user:<id>` or `merchant:<id>`.
    public var recipient: String
    public var body: String
    /// Hex HMAC-SHA256 of `body` under the merchant's webhook secret (merchant
    /// webhooks only), sent as a signature header.
    public var signature: String?
    public var attempt: Int
}

/// Everything the engine asks its host to do. The host drains them with
/// ``PaymentEngine/takeEffects()`` after each call.
public enum EngineEffect: Sendable, Equatable {
    case callPSP(PSPRequest)
    case armTimer(EngineTimer, afterNanoseconds: Int64)
    /// A timer armed earlier can no longer do anything: the host may drop it
    /// rather than wake the engine to ignore it. (Today: what a PSP attempt
    /// was waiting on — its call's timeout, its next status query or next
    /// try — once an answer moved it on.) Dropping it is never required, and
    /// it comes before any timer armed by the same call, which may be equal to it.
    case cancelTimer(EngineTimer)
    case publish(OutboxMessage)
    case sendNotification(NotificationMessage)
}

/// The engine's own consumers of the transaction topics.
public enum EngineConsumer: String, Sendable, CaseIterable {
    case ledger, wallet, notification
}
