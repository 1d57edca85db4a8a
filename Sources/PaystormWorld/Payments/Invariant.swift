import PaystormEngine

/// Every check the world makes, by the name its violations carry. The
/// checker and the liveness pass record only these, so a report can list
/// every check from this one table, the ones that held included.
public enum Invariant: String, CaseIterable, Sendable {
    // One key, at most one charge; one refund key, at most one payout.
    case oneCharge = "one-charge"
    case oneRefund = "one-refund"
    case chargedButNotCompleted = "charged-but-not-completed"
    case completedWithoutCharge = "completed-without-charge"
    case chargeAmount = "charge-amount"
    case noFailoverWhenAmbiguous = "no-failover-when-ambiguous"
    // What clients were told for one idempotency key.
    case idempotentCreate = "idempotent-create"
    case idempotentReplay = "idempotent-replay"
    case idempotencyKeyReuse = "idempotency-key-reuse"
    // The books.
    case ledger
    case ledgerEqualsCaptures = "ledger-equals-captures"
    // Refunds against captures and payouts.
    case refunds
    case refundsExceedCapture = "refunds-exceed-capture"
    case refundWithoutRecord = "refund-without-record"
    case refundWithoutPayout = "refund-without-payout"
    case refundedButFailed = "refunded-but-failed"
    case refundAmount = "refund-amount"
    case amount
    // Terminal states are never left.
    case terminalState = "terminal-state"
    // A webhook not signed by its PSP now changes nothing.
    case webhookAuthenticated = "webhook-authenticated"
    // Merchant wallets.
    case wallet
    case walletGrossFeeNet = "wallet-gross-fee-net"
    case walletEqualsJournal = "wallet-equals-journal"
    // No card data in clear.
    case cardData = "card-data"
    // The engine and the audit themselves.
    case engineError = "engine-error"
    case audit
    case merchantWebhookSignature = "merchant-webhook-signature"
    // Liveness, after healing.
    case paymentTerminal = "payment-terminal"
    case refundTerminal = "refund-terminal"
    case outboxPublished = "outbox-published"
    case consumerLag = "consumer-lag"
    case notificationDelivered = "notification-delivered"
    case notificationSent = "notification-sent"
    case deadLettersDrained = "dead-letters-drained"
    case reconciliationClassified = "reconciliation-classified"

    /// The invariants as a report lists them: each check under the one it belongs to.
    public enum Group: String, CaseIterable, Sendable {
        case oneCharge = "one-charge"
        case idempotency
        case ledger
        case refunds
        case terminalState = "terminal-state"
        case webhooks
        case wallet
        case cardData = "card-data"
        case engineError = "engine-error"
        case paymentTerminal = "payment-terminal"
        case eventsDelivered = "events-delivered"
        case reconciliationClassified = "reconciliation-classified"

        /// The checks in this group, in declaration order.
        public var members: [Invariant] { Invariant.allCases.filter { $0.group == self } }
    }

    public var group: Group {
        switch self {
        case .oneCharge, .oneRefund, .chargedButNotCompleted, .completedWithoutCharge, .chargeAmount, .noFailoverWhenAmbiguous: .oneCharge
        case .idempotentCreate, .idempotentReplay, .idempotencyKeyReuse: .idempotency
        case .ledger, .ledgerEqualsCaptures: .ledger
        case .refunds, .refundsExceedCapture, .refundWithoutRecord, .refundWithoutPayout, .refundedButFailed, .refundAmount, .amount: .refunds
        case .terminalState: .terminalState
        case .webhookAuthenticated: .webhooks
        case .wallet, .walletGrossFeeNet, .walletEqualsJournal: .wallet
        case .cardData: .cardData
        case .engineError, .audit, .merchantWebhookSignature: .engineError
        case .paymentTerminal, .refundTerminal: .paymentTerminal
        case .outboxPublished, .consumerLag, .notificationDelivered, .notificationSent, .deadLettersDrained: .eventsDelivered
        case .reconciliationClassified: .reconciliationClassified
        }
    }

    /// The world's name for a violation the engine's audit found, and its
    /// detail. The audit names only its own checks; a name it cannot have
    /// made is kept under `audit`, with the name in the detail, not lost.
    static func of(_ violation: EngineAudit.Violation) -> (invariant: Invariant, detail: String) {
        guard let engine = EngineAudit.Invariant(rawValue: violation.invariant) else {
            return (.audit, "[\(violation.invariant)] \(violation.detail)")
        }
        return (Invariant(engine), violation.detail)
    }

    /// The world's name for a check the engine's audit makes.
    init(_ engine: EngineAudit.Invariant) {
        switch engine {
        case .ledger: self = .ledger
        case .refunds: self = .refunds
        case .oneCharge: self = .oneCharge
        case .noFailoverWhenAmbiguous: self = .noFailoverWhenAmbiguous
        case .wallet: self = .wallet
        case .walletEqualsJournal: self = .walletEqualsJournal
        case .ledgerEqualsCaptures: self = .ledgerEqualsCaptures
        }
    }
}
