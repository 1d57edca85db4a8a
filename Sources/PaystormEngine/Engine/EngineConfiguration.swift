import Foundation

/// Everything that shapes the engine's behaviour, from the host.
public struct EngineConfiguration: Sendable {
    /// One PSP the engine can route to.
    public struct PSPRoute: Sendable, Equatable {
        public var id: String
        /// Secret for verifying this PSP's webhook signatures.
        public var webhookSecret: String
        public init(id: String, webhookSecret: String) {
            self.id = id
            self.webhookSecret = webhookSecret
        }
    }

    /// PSPs in preference order: the first whose breaker is closed takes a
    /// new payment; later ones are failover targets.
    public var psps: [PSPRoute]
    /// Attempts per PSP for transient errors (including the first).
    public var maxAttemptsPerPSP: Int = 4
    public var backoffBaseNanoseconds: Int64 = 100_000_000
    public var backoffMaxNanoseconds: Int64 = 5_000_000_000
    /// Waiting this long for a PSP reply makes the outcome ambiguous.
    public var pspTimeoutNanoseconds: Int64 = 2_000_000_000
    /// Delay before the first status query of an ambiguous attempt; doubles.
    public var statusQueryDelayNanoseconds: Int64 = 1_000_000_000
    /// Status queries of an ambiguous attempt before the engine voids its key
    /// instead (a void gets a definite answer: charged, or void for good).
    public var maxStatusQueries: Int = 6
    /// Consecutive failures that open a PSP's breaker, and how long it stays open.
    public var breakerFailureThreshold: Int = 5
    public var breakerOpenNanoseconds: Int64 = 10_000_000_000
    /// How long an idempotency record is kept (engine time).
    public var idempotencyRetentionNanoseconds: Int64 = 24 * 3_600 * 1_000_000_000
    /// How often expired idempotency records are deleted, and at most how
    /// many per transaction (a full batch is followed by another a second later).
    public var idempotencyPurgeIntervalNanoseconds: Int64 = 600 * 1_000_000_000
    public var idempotencyPurgeBatch: Int = 1_000
    /// Webhooks whose timestamp is further than this from now are refused.
    public var webhookToleranceSeconds: Int64 = 300
    /// Fee on each capture: basis points of the amount plus a fixed part.
    public var feeBasisPoints: Int64 = 290
    public var feeFixedMinor: Int64 = 30
    /// Notification delivery attempts before the dead-letter table.
    public var maxNotificationAttempts: Int = 5
    public var notificationBackoffNanoseconds: Int64 = 500_000_000
    /// Secret used to sign merchant webhooks (per-merchant secrets are derived from it).
    public var merchantWebhookSecret: String = "paystorm-merchant-webhooks"
    /// Real-time fraud screening of every new payment.
    public var fraudRules: FraudRules = .standard

    public init(psps: [PSPRoute]) {
        self.psps = psps
    }

    /// Checks every field; the error names it.
    public func validate() throws(EngineError) {
        func require(_ ok: Bool, _ field: String, _ message: String) throws(EngineError) {
            if !ok { throw .invalidField(field: field, message: message) }
        }
        // Durations are added to engine times and multiplied (a backoff cap
        // is 12 × backoffMaxNanoseconds): a year at most keeps that exact.
        func duration(_ value: Int64, _ field: String) throws(EngineError) {
            try require(value > 0 && value <= Self.maximumDurationNanoseconds, field,
                        "must be > 0 and at most \(Self.maximumDurationNanoseconds) (366 days), got \(value)")
        }
        try require(!psps.isEmpty, "psps", "at least one PSP is needed")
        try require(Set(psps.map(\.id)).count == psps.count, "psps", "PSP ids must be unique")
        try require((1...100).contains(maxAttemptsPerPSP), "maxAttemptsPerPSP", "must be 1...100")
        try require(backoffBaseNanoseconds > 0 && backoffBaseNanoseconds <= backoffMaxNanoseconds, "backoffBaseNanoseconds", "must be > 0 and <= backoffMaxNanoseconds")
        try duration(backoffMaxNanoseconds, "backoffMaxNanoseconds")
        try duration(pspTimeoutNanoseconds, "pspTimeoutNanoseconds")
        try duration(statusQueryDelayNanoseconds, "statusQueryDelayNanoseconds")
        try require((0...100).contains(maxStatusQueries), "maxStatusQueries", "must be 0...100")
        try require(breakerFailureThreshold >= 1, "breakerFailureThreshold", "must be >= 1")
        try duration(breakerOpenNanoseconds, "breakerOpenNanoseconds")
        try duration(idempotencyRetentionNanoseconds, "idempotencyRetentionNanoseconds")
        try duration(idempotencyPurgeIntervalNanoseconds, "idempotencyPurgeIntervalNanoseconds")
        try require((1...Self.maximumDurationNanoseconds / 1_000_000_000).contains(webhookToleranceSeconds), "webhookToleranceSeconds",
                    "must be 1...\(Self.maximumDurationNanoseconds / 1_000_000_000), got \(webhookToleranceSeconds)")
        try duration(notificationBackoffNanoseconds, "notificationBackoffNanoseconds")
        try require((1...100_000).contains(idempotencyPurgeBatch), "idempotencyPurgeBatch", "must be 1...100000")
        try require((0...10_000).contains(feeBasisPoints), "feeBasisPoints", "must be 0...10000")
        try require(feeFixedMinor >= 0, "feeFixedMinor", "must be >= 0")
        try require((1...100).contains(maxNotificationAttempts), "maxNotificationAttempts", "must be 1...100")
        do {
            try fraudRules.validate()
        } catch {
            throw .invalidField(field: "fraudRules.\(error.field)", message: error.description)
        }
    }

    /// How long, once every PSP answers again, the engine may take to settle
    /// a payment and tell its parties: its longest wait before it next asks
    /// about an ambiguous attempt (the first status query's delay, or a later
    /// one's backoff at its cap) and that call's timeout; then, at each PSP
    /// after the first, a full chain of tries (each a backoff and a call's
    /// timeout) and its void; then every retry of a notification. A run that
    /// judges liveness sooner after its faults end judges this design's own
    /// waiting, not a fault in it. Saturates at `Int64.max`.
    public var settleHorizonNanoseconds: Int64 {
        func sum(_ terms: Int64...) -> Int64 {
            terms.reduce(0) { total, term in
                let (value, overflow) = total.addingReportingOverflow(term)
                return overflow ? .max : value
            }
        }
        func times(_ count: Int, _ value: Int64) -> Int64 {
            let (product, overflow) = Int64(count).multipliedReportingOverflow(by: value)
            return overflow ? .max : product
        }
        let queryCap = times(4, backoffMaxNanoseconds)
        let queryWait = max(statusQueryDelayNanoseconds,
                            PaymentEngine.backoffCeiling(try: maxStatusQueries + 1, base: statusQueryDelayNanoseconds, cap: queryCap))
        let chain = sum(times(maxAttemptsPerPSP, sum(backoffMaxNanoseconds, pspTimeoutNanoseconds)), backoffMaxNanoseconds, pspTimeoutNanoseconds)
        var notifications: Int64 = 0
        for attempt in 1..<max(1, maxNotificationAttempts) {
            notifications = sum(notifications, PaymentEngine.backoffCeiling(try: attempt, base: notificationBackoffNanoseconds, cap: times(12, backoffMaxNanoseconds)))
        }
        return sum(queryWait, pspTimeoutNanoseconds, times(max(1, psps.count - 1), chain), notifications)
    }

    /// The longest duration a configuration may set: 366 days.
    public static let maximumDurationNanoseconds: Int64 = 366 * 86_400 * 1_000_000_000

    /// The fee on a capture of `gross` minor units, never more than `gross − 1`
    /// so the merchant's net stays positive.
    public func fee(onGross gross: Int64) -> Int64 {
        let proportional = gross.multipliedReportingOverflow(by: feeBasisPoints)
        let variable = proportional.overflow ? gross : proportional.partialValue / 10_000
        return max(0, min(gross - 1, variable + feeFixedMinor))
    }
}
