import Foundation
import PaystormEngine
import PaystormKernel

/// Everything that shapes one run of the payments world. Times are seconds
/// of virtual time; rates are per virtual second; probabilities are in [0, 1].
/// ``validate()`` names the first field that is out of range.
public struct WorldConfiguration: Sendable {
    public var seed: UInt64 = 1
    /// New payments the client population initiates (refunds and retries come on top).
    public var payments: Int = 10_000
    public var load = LoadProfile.constant(ratePerSecond: 1_000)
    public var clients = ClientModel()
    public var gateway = GatewayModel()
    public var service = ServiceModel()
    public var psps: [PSPProfile] = [.stripeLike, .paypalLike]
    public var network = NetworkModel()
    public var broker = BrokerModel()
    /// Probability that one notification delivery fails at the sink.
    public var notificationFailureRate: Double = 0.02
    public var faults: [ScheduledFault] = []
    public var buggify = BuggifyModel()
    /// After the last arrival: faults are cleared and the world runs this long
    /// before the liveness checks (reconciliation runs in the middle of it).
    public var healingSeconds: Double = 120
    /// Full safety audit of the store every this many virtual seconds (0: only
    /// at the end of the load and after healing). Incremental checks run always.
    public var auditEverySeconds: Double = 0
    /// Width of one metrics window.
    public var windowSeconds: Double = 1
    /// The database: a scratch file (bounded memory) or `nil` for in-memory.
    public var scratchDatabasePath: String?
    public var databaseCacheMebibytes: Int = 256
    /// PSP records per part of a settlement report at the end of the run:
    /// memory for the reconciliation phase is bounded by this, not by the
    /// run's payments.
    public var settlementPartRecords: Int = 50_000
    /// Deliberately broken engine behaviour, to show the checker catches it.
    public var sabotage: Sabotage?
    /// Confidence level for availability and percentile intervals.
    public var confidence: Double = 0.95

    public init() {}

    /// Checks every field; the error names it and says what was expected.
    public func validate() throws(WorldConfigurationError) {
        func require(_ ok: Bool, _ field: String, _ expected: String) throws(WorldConfigurationError) {
            if !ok { throw WorldConfigurationError(field: field, expected: expected) }
        }
        func probability(_ value: Double, _ field: String) throws(WorldConfigurationError) {
            try require(value >= 0 && value <= 1, field, "a probability in [0, 1], got \(value)")
        }
        func seconds(_ value: Double, _ field: String, max: Double = 86_400 * 30) throws(WorldConfigurationError) {
            try require(value.isFinite && value >= 0 && value <= max, field, "seconds in [0, \(Int(max))], got \(value)")
        }
        try require((1...100_000_000).contains(payments), "payments", "1...100000000, got \(payments)")
        try load.validate()
        try require((1...100_000_000).contains(clients.users), "clients.users", "1...100000000")
        try require((1...10_000_000).contains(clients.merchants), "clients.merchants", "1...10000000")
        try require(clients.zipfExponent >= 0 && clients.zipfExponent <= 5, "clients.zipf_exponent", "0...5")
        try probability(clients.refundShare, "clients.refund_share")
        try probability(clients.fraudulentUserShare, "clients.fraudulent_user_share")
        try probability(clients.reusedKeyConflictShare, "clients.reused_key_conflict_share")
        try seconds(clients.timeoutSeconds, "clients.timeout")
        try require(clients.timeoutSeconds > 0, "clients.timeout", "more than 0 s")
        try require((0...20).contains(clients.maxRetries), "clients.max_retries", "0...20")
        try probability(gateway.badAPIKeyShare, "gateway.bad_api_key_share")
        try require(gateway.rateLimitPerSecond > 0, "gateway.rate_limit", "a rate > 0")
        try require(gateway.burst >= 1, "gateway.burst", ">= 1")
        try require((1...256).contains(service.replicas), "service.replicas", "1...256")
        try require((1...10_000).contains(service.workersPerReplica), "service.workers", "1...10000")
        try require((1...10_000_000).contains(service.queueCapacity), "service.queue_capacity", "1...10000000")
        try seconds(service.apiServiceMedianSeconds, "service.api_service_median", max: 60)
        try seconds(service.internalServiceMedianSeconds, "service.internal_service_median", max: 60)
        try require(service.serviceSigma >= 0 && service.serviceSigma <= 4, "service.service_sigma", "0...4")
        try require(!psps.isEmpty && psps.count <= 16, "psps", "1...16 PSP profiles")
        var ids: Set<String> = []
        for (index, psp) in psps.enumerated() {
            try psp.validate(field: "psps[\(index)]")
            try require(ids.insert(psp.id).inserted, "psps[\(index)].id", "a unique id, \"\(psp.id)\" is repeated")
        }
        try network.validate()
        try require((1...1_024).contains(broker.partitions), "broker.partitions", "1...1024")
        try require((1...64).contains(broker.consumersPerGroup), "broker.consumers_per_group", "1...64")
        try require((1...10_000).contains(broker.maxInFlightPerPartition), "broker.max_in_flight", "1...10000")
        try seconds(broker.sessionTimeoutSeconds, "broker.session_timeout", max: 600)
        try require(broker.sessionTimeoutSeconds > 0, "broker.session_timeout", "more than 0 s")
        try seconds(broker.redeliveryTimeoutSeconds, "broker.redelivery_timeout", max: 600)
        try require(broker.redeliveryTimeoutSeconds > 0, "broker.redelivery_timeout", "more than 0 s")
        try probability(notificationFailureRate, "notification_failure_rate")
        for (index, fault) in faults.enumerated() { try fault.validate(field: "faults[\(index)]", configuration: self) }
        try validateClockSkews()
        try buggify.validate()
        try seconds(healingSeconds, "healing")
        let minimumHealing = minimumHealingSeconds
        try require(healingSeconds >= minimumHealing, "healing",
                    "at least \(Int(minimumHealing)) s: once faults stop, the engine may wait that long to settle a payment "
                        + "(its longest status-query wait, a chain of tries at the next PSP, the notification retries), "
                        + "so a shorter healing reports a correct engine's payments as stuck; got \(String(format: "%g", healingSeconds)) s")
        try seconds(auditEverySeconds, "audit_every")
        try require(windowSeconds > 0 && windowSeconds <= 3_600, "window", "seconds in (0, 3600]")
        // A run's virtual time costs wall time and a metrics window each: bounded, so a slip of the
        // rate's decimal point is refused at once rather than run for hours into a huge report.
        let loadSeconds = load.secondsFor(payments: payments, upTo: Self.maximumLoadSeconds + 1)
        try require(loadSeconds <= Self.maximumLoadSeconds, "load",
                    "arrivals that end within \(Int(Self.maximumLoadSeconds)) s (30 days) of virtual time; "
                        + "\(payments) payments at this rate would take longer")
        let windows = ((loadSeconds + healingSeconds) / windowSeconds).rounded(.up)
        try require(windows <= Double(Self.maximumWindows), "window",
                    "at most \(Self.maximumWindows) metrics windows in a run; \(String(format: "%g", windowSeconds)) s windows "
                        + "over about \(Int(loadSeconds + healingSeconds)) s of load and healing make \(String(format: "%.0f", windows)): use longer windows")
        try require((1...65_536).contains(databaseCacheMebibytes), "database_cache_mib", "1...65536")
        try require((1...100_000_000).contains(settlementPartRecords), "settlement_part_records", "1...100000000")
        try require(confidence > 0.5 && confidence < 1, "confidence", "a value in (0.5, 1)")
    }

    /// No clock may come to read a retention or more ahead of a clock that
    /// wrote before it. A record written at true time t₁ by a replica offset
    /// by o₁ expires, for a reader at t₂ offset by o₂, once o₂ − o₁ reaches
    /// the idempotency retention less the seconds between them; a client's
    /// retry comes seconds later, so a retried request would create a second
    /// payment. That is not a bug of the engine, whose retention assumes
    /// clocks do not jump a day, but a world that cannot be. The bound
    /// compares every clock at each moment a skew starts or ends with every
    /// clock before it (each replica's own included, and the true time every
    /// replica keeps before any skew), ignoring the time between: stricter by
    /// those seconds. Overlapping skews of one replica add up, as the injector
    /// applies them.
    func validateClockSkews() throws(WorldConfigurationError) {
        let skews = faults.enumerated().compactMap { index, fault -> (index: Int, replica: Int, offset: Double, start: Double, end: Double)? in
            guard case let .clockSkew(replica, offset) = fault.kind else { return nil }
            return (index, replica, offset, fault.atSeconds, fault.atSeconds + fault.durationSeconds)
        }
        guard !skews.isEmpty else { return }
        let retention = Double(engineConfiguration.idempotencyRetentionNanoseconds) / 1e9
        // Offsets change only where a skew starts or ends.
        let moments = Set(skews.flatMap { [$0.start, $0.end] }).sorted()
        var lowestSoFar = 0.0  // every clock keeps the true time before the first skew
        for moment in moments {
            var offsets = Array(repeating: 0.0, count: service.replicas)
            for skew in skews where skew.start <= moment && moment < skew.end { offsets[skew.replica] += skew.offset }
            lowestSoFar = min(lowestSoFar, offsets.min()!)
            let highest = offsets.max()!
            guard highest - lowestSoFar >= retention else { continue }
            // Named: the skew that put the leading clock there.
            let leader = offsets.firstIndex(of: highest)!
            let culprit = skews.last { $0.replica == leader && $0.start <= moment && moment < $0.end } ?? skews.last { $0.end == moment }!
            throw WorldConfigurationError(
                field: "faults[\(culprit.index)].offset",
                expected: "no replica's clock \(String(format: "%g", retention)) s (the idempotency retention) or more ahead of a clock "
                    + "earlier in the run; from \(String(format: "%g", moment)) s replica \(leader)'s is \(String(format: "%g", highest - lowestSoFar)) s "
                    + "ahead of one before it, and would read the idempotency records written then as expired")
        }
    }

    /// The longest load a run may have, in virtual seconds: 30 days.
    public static let maximumLoadSeconds: Double = 30 * 86_400
    /// The most metrics windows a run may have.
    public static let maximumWindows = 100_000

    /// Virtual seconds the arrivals are expected to take.
    public var expectedLoadSeconds: Double { load.secondsFor(payments: payments) }

    /// The actors' names, in the order the world spawns them: what a
    /// partition's `from` and `to` prefixes are matched against.
    public var actorNames: [String] {
        ["clients", "gateway"] + (0..<service.replicas).map { "replica.\($0)" } + psps.map { "psp.\($0.id)" } + ["broker", "relay"]
            + ["ledger", "wallet", "notification"].flatMap { group in (0..<broker.consumersPerGroup).map { "consumer.\(group).\($0)" } }
            + ["notifications", "faults", "monitor"]
    }
}

/// An arrival rate over virtual time.
public enum LoadProfile: Sendable, Equatable {
    case constant(ratePerSecond: Double)
    /// Linear from `from` to `to` over `overSeconds`, then `to`.
    case ramp(from: Double, to: Double, overSeconds: Double)
    /// `base`, then `peak` from `atSeconds` on.
    case step(base: Double, peak: Double, atSeconds: Double)
    /// `base`, with `peak` between `atSeconds` and `atSeconds + forSeconds`.
    case spike(base: Double, peak: Double, atSeconds: Double, forSeconds: Double)
    /// `mean · (1 + amplitude · sin(2π t / period))`.
    case diurnal(mean: Double, amplitude: Double, periodSeconds: Double)

    public func rate(at seconds: Double) -> Double {
        switch self {
        case let .constant(rate): return rate
        case let .ramp(from, to, over): return seconds >= over ? to : from + (to - from) * seconds / over
        case let .step(base, peak, at): return seconds >= at ? peak : base
        case let .spike(base, peak, at, duration): return seconds >= at && seconds < at + duration ? peak : base
        case let .diurnal(mean, amplitude, period):
            return mean * (1 + amplitude * sin(2 * Double.pi * seconds / period))
        }
    }

    /// The highest rate the profile reaches (the thinning envelope).
    public var peakRate: Double {
        switch self {
        case let .constant(rate): return rate
        case let .ramp(from, to, _): return max(from, to)
        case let .step(base, peak, _), let .spike(base, peak, _, _): return max(base, peak)
        case let .diurnal(mean, amplitude, _): return mean * (1 + amplitude)
        }
    }

    /// Roughly how long `payments` arrivals take (numerically, 0.1 s steps).
    public func secondsFor(payments: Int, upTo limit: Double = 86_400 * 365) -> Double {
        var expected = 0.0
        var t = 0.0
        while expected < Double(payments) && t < limit {
            expected += rate(at: t) * 0.1
            t += 0.1
        }
        return t
    }

    func validate() throws(WorldConfigurationError) {
        func rate(_ value: Double, _ name: String) throws(WorldConfigurationError) {
            guard value.isFinite && value >= 0 && value <= 10_000_000 else {
                throw WorldConfigurationError(field: "load.\(name)", expected: "a rate in [0, 10000000] per second, got \(value)")
            }
        }
        switch self {
        case let .constant(r): try rate(r, "rate")
        case let .ramp(from, to, over):
            try rate(from, "from"); try rate(to, "to")
            guard over > 0 else { throw WorldConfigurationError(field: "load.over", expected: "seconds > 0") }
        case let .step(base, peak, _), let .spike(base, peak, _, _):
            try rate(base, "base"); try rate(peak, "peak")
        case let .diurnal(mean, amplitude, period):
            try rate(mean, "mean")
            guard amplitude >= 0 && amplitude <= 1 else { throw WorldConfigurationError(field: "load.amplitude", expected: "0...1") }
            guard period > 0 else { throw WorldConfigurationError(field: "load.period", expected: "seconds > 0") }
        }
        guard peakRate > 0 else { throw WorldConfigurationError(field: "load", expected: "a profile whose rate is above 0 somewhere") }
    }
}

/// The client population.
public struct ClientModel: Sendable {
    public var users: Int = 100_000
    public var merchants: Int = 1_000
    /// Zipf exponent of user and merchant popularity (0: uniform).
    public var zipfExponent: Double = 1.0
    /// Share of arrivals that refund an earlier completed payment instead of paying.
    public var refundShare: Double = 0.05
    /// Share of users who are fraudulent: card testing bursts, odd amounts.
    public var fraudulentUserShare: Double = 0.01
    /// Share of payments that reuse an earlier key with a different body (a client bug).
    public var reusedKeyConflictShare: Double = 0.001
    public var timeoutSeconds: Double = 3
    /// Retries (same idempotency key) after a timeout, 5xx or 429.
    public var maxRetries: Int = 3
    public init() {}
}

/// The API gateway in front of the replicas.
public struct GatewayModel: Sendable {
    /// Share of requests sent with an invalid API key (answered 401).
    public var badAPIKeyShare: Double = 0.0005
    /// Token bucket over all requests.
    public var rateLimitPerSecond: Double = 1_000_000
    public var burst: Double = 10_000
    /// Health checks of the replicas.
    public var healthCheckIntervalSeconds: Double = 1
    public init() {}
}

/// The payment service: replicas of the engine over one store.
public struct ServiceModel: Sendable {
    public var replicas: Int = 3
    public var workersPerReplica: Int = 16
    public var queueCapacity: Int = 2_000
    /// Lognormal service time of an API request on a worker.
    public var apiServiceMedianSeconds: Double = 0.002
    /// Lognormal service time of internal work (PSP replies, webhooks).
    public var internalServiceMedianSeconds: Double = 0.0005
    public var serviceSigma: Double = 0.5
    public init() {}
}

/// A modelled PSP.
public struct PSPProfile: Sendable, Equatable {
    public var id: String
    public var latencyMedianSeconds: Double = 0.150
    public var latencySigma: Double = 0.5
    /// Card declines among charges.
    public var declineRate: Double = 0.02
    /// Transient errors (nothing happened; safe to retry).
    public var transientErrorRate: Double = 0.03
    /// Rate-limit answers (429).
    public var rateLimitRate: Double = 0.002
    /// The ambiguous failure: the charge happened, the reply is lost.
    public var ambiguousRate: Double = 0.005
    /// Webhooks: sent for this share of final outcomes, after a lognormal delay,
    /// some duplicated and some lost.
    public var webhookRate: Double = 0.8
    public var webhookDelayMedianSeconds: Double = 2
    public var webhookDuplicateRate: Double = 0.05
    public var webhookLossRate: Double = 0.02
    /// Settlement reports: share of lines with a wrong amount, and of lines missing.
    public var settlementAmountErrorRate: Double = 0.0005
    public var settlementMissingRate: Double = 0.0005

    public init(id: String) { self.id = id }

    public static let stripeLike = PSPProfile(id: "stripe")
    public static var paypalLike: PSPProfile {
        var profile = PSPProfile(id: "paypal")
        profile.latencyMedianSeconds = 0.150
        profile.latencySigma = 0.7
        profile.webhookDelayMedianSeconds = 5
        return profile
    }

    func validate(field: String) throws(WorldConfigurationError) {
        func require(_ ok: Bool, _ name: String, _ expected: String) throws(WorldConfigurationError) {
            if !ok { throw WorldConfigurationError(field: "\(field).\(name)", expected: expected) }
        }
        try require(!id.isEmpty && id.utf8.count <= 32 && id.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" },
                    "id", "1-32 letters, digits, - or _")
        try require(latencyMedianSeconds > 0 && latencyMedianSeconds <= 60, "latency_median", "seconds in (0, 60]")
        try require(latencySigma >= 0 && latencySigma <= 4, "latency_sigma", "0...4")
        for (name, value) in [("decline_rate", declineRate), ("transient_error_rate", transientErrorRate),
                              ("rate_limit_rate", rateLimitRate), ("ambiguous_rate", ambiguousRate),
                              ("webhook_rate", webhookRate), ("webhook_duplicate_rate", webhookDuplicateRate),
                              ("webhook_loss_rate", webhookLossRate), ("settlement_amount_error_rate", settlementAmountErrorRate),
                              ("settlement_missing_rate", settlementMissingRate)] {
            try require(value >= 0 && value <= 1, name, "a probability in [0, 1], got \(value)")
        }
        try require(declineRate + transientErrorRate + rateLimitRate + ambiguousRate <= 1, "rates",
                    "decline + transient + rate-limit + ambiguous rates summing to at most 1")
        try require(webhookDelayMedianSeconds > 0 && webhookDelayMedianSeconds <= 3_600, "webhook_delay_median", "seconds in (0, 3600]")
    }
}

/// Links between actors.
public struct NetworkModel: Sendable {
    public var latencyMedianSeconds: Double = 0.0005
    public var latencySigma: Double = 0.4
    public var lossRate: Double = 0.0
    public var duplicationRate: Double = 0.0
    public init() {}

    func validate() throws(WorldConfigurationError) {
        guard latencyMedianSeconds > 0 && latencyMedianSeconds <= 10 else {
            throw WorldConfigurationError(field: "network.latency_median", expected: "seconds in (0, 10]")
        }
        guard latencySigma >= 0 && latencySigma <= 4 else { throw WorldConfigurationError(field: "network.latency_sigma", expected: "0...4") }
        guard lossRate >= 0 && lossRate < 1 else { throw WorldConfigurationError(field: "network.loss_rate", expected: "a probability in [0, 1)") }
        guard duplicationRate >= 0 && duplicationRate < 1 else {
            throw WorldConfigurationError(field: "network.duplication_rate", expected: "a probability in [0, 1)")
        }
    }
}

/// The Kafka-like broker.
public struct BrokerModel: Sendable {
    public var partitions: Int = 8
    /// Consumers in each of the ledger, wallet and notification groups.
    public var consumersPerGroup: Int = 2
    /// Messages delivered and not yet committed, per partition and group.
    public var maxInFlightPerPartition: Int = 200
    /// A consumer silent this long is dropped from its group (partitions rebalanced).
    public var sessionTimeoutSeconds: Double = 3
    /// A delivered batch neither committed nor progressing this long is sent again.
    public var redeliveryTimeoutSeconds: Double = 5
    public init() {}
}

/// FoundationDB-style fault points: each site is enabled in a run with
/// `enableProbability` (drawn from the seed), then fires with its own probability.
public struct BuggifyModel: Sendable {
    public var enabled: Bool = false
    public var enableProbability: Double = 0.5
    public var fireProbability: Double = 0.001
    public init() {}

    func validate() throws(WorldConfigurationError) {
        guard enableProbability >= 0 && enableProbability <= 1 else {
            throw WorldConfigurationError(field: "buggify.enable_probability", expected: "a probability in [0, 1]")
        }
        guard fireProbability >= 0 && fireProbability <= 0.5 else {
            throw WorldConfigurationError(field: "buggify.fire_probability", expected: "a probability in [0, 0.5]")
        }
    }
}

/// A deliberately broken engine host, to prove the checker catches each class of bug.
public enum Sabotage: String, Sendable, CaseIterable {
    /// Every `sabotageEvery`-th charge is also sent, under another key, to a second PSP.
    case doubleCharge
    /// An unbalanced journal entry is written behind the ledger's back.
    case unbalancedPosting
    /// A completed payment is moved back to failed.
    case terminalLeft
    /// A refund larger than the capture is recorded.
    case overRefund
    /// A card number is written in clear to the audit log.
    case cardNumberInClear
    /// One wallet is credited twice.
    case walletDrift
    /// A journal entry is rewritten in place.
    case journalRewritten
    /// A payment is accepted but no PSP attempt is ever started (a liveness bug).
    case stuckPayment
    /// The first refund a PSP pays out is read as declined: the customer has
    /// the money, the engine's books say the refund failed, and they agree
    /// with each other.
    case refundMisread
    /// The notification consumer skips one event and commits its offset
    /// anyway: nobody is told of that state change (a liveness bug).
    case notificationDropped
    /// A payment request being retried finds its idempotency record gone:
    /// the retry creates a second payment, whose first answer the client
    /// may never have seen.
    case idempotencyForgotten
    /// The same for refunds: a retried refund request creates a second
    /// refund, every time.
    case refundIdempotencyForgotten
    /// The reconciliation records every discrepancy it finds as a status
    /// mismatch, whatever it is.
    case reconciliationMislabelled
    /// The host takes every webhook as authentic: forged ones (a
    /// `webhook_forgery` fault) reach the engine signed as if by the PSP.
    case webhookUnverified
    /// While a charge is ambiguous, the host also charges it at the next PSP.
    case failoverWhileAmbiguous

    /// Whether it is written to the store behind the engine's back in the
    /// middle of the load (``PaymentsWorld``); the others live in the
    /// engine hosts or act after the load.
    var writesStoreMidRun: Bool {
        switch self {
        case .unbalancedPosting, .terminalLeft, .overRefund, .cardNumberInClear, .walletDrift, .journalRewritten, .stuckPayment: true
        case .doubleCharge, .refundMisread, .notificationDropped, .idempotencyForgotten, .refundIdempotencyForgotten,
             .reconciliationMislabelled, .webhookUnverified, .failoverWhileAmbiguous: false
        }
    }
}

extension WorldConfiguration {
    /// The configuration every engine instance of this world runs with.
    var engineConfiguration: EngineConfiguration {
        var engine = EngineConfiguration(psps: psps.map { .init(id: $0.id, webhookSecret: World.webhookSecret($0.id)) })
        // Velocity state is soft and bounded (a real service keeps it in a cache
        // with a TTL): fraud bursts last seconds, so the most recent keys matter.
        engine.fraudRules.maxTrackedKeys = 100_000
        return engine
    }

    /// The shortest healing a run may have: the engine's
    /// ``EngineConfiguration/settleHorizonNanoseconds`` in whole seconds,
    /// rounded up, and one more — healing is counted from the last arrival,
    /// and the run stops its faults at its next step, up to a second later.
    /// Liveness is judged when healing ends; sooner than this, a payment
    /// the engine is still rightly waiting on reads as stuck.
    public var minimumHealingSeconds: Double {
        (Double(engineConfiguration.settleHorizonNanoseconds) / 1e9).rounded(.up) + 1
    }
}

/// A configuration field out of range.
public struct WorldConfigurationError: Error, Equatable, CustomStringConvertible {
    public var field: String
    public var expected: String
    public var description: String { "invalid \(field): expected \(expected)" }
}

extension WorldConfiguration {
    /// The reference run: `payments` payments at 1,000/s offered, two PSPs
    /// (lognormal latency, median 150 ms; 3% transient errors; 0.5% ambiguous
    /// timeouts), retries, broker consumers, webhooks, and in the middle of
    /// the load a 30 s outage of the first PSP and a crash of one replica
    /// (restarted 20 s later).
    public static func reference(payments: Int = 1_000_000, seed: UInt64 = 1) -> WorldConfiguration {
        var configuration = WorldConfiguration()
        configuration.seed = seed
        configuration.payments = payments
        configuration.load = .constant(ratePerSecond: 1_000)
        configuration.clients.users = max(1_000, payments)
        configuration.psps = [.stripeLike, .paypalLike]
        for index in configuration.psps.indices {
            configuration.psps[index].latencyMedianSeconds = 0.150
            configuration.psps[index].transientErrorRate = 0.03
            configuration.psps[index].ambiguousRate = 0.005
        }
        let middle = configuration.expectedLoadSeconds / 2
        configuration.faults = [
            ScheduledFault(atSeconds: middle, durationSeconds: 30, kind: .pspOutage(psp: "stripe")),
            ScheduledFault(atSeconds: middle + 10, durationSeconds: 20, kind: .replicaCrash(replica: 1)),
        ]
        return configuration
    }
}
