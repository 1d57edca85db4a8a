import PaystormKernel
import PaystormStatistics

/// One fault on the timeline: what, when (virtual seconds from the start)
/// and for how long. Every fault ends by itself; the healing phase clears any
/// still active, so a violation after healing means a bug, not a broken world.
public struct ScheduledFault: Sendable, Equatable {
    public var atSeconds: Double
    public var durationSeconds: Double
    public var kind: Kind

    public enum Kind: Sendable, Equatable {
        /// The PSP answers nothing at all (requests time out).
        case pspOutage(psp: String)
        /// The PSP is slow (latency × factor) and fails transiently with `errorRate`.
        case pspBrownout(psp: String, latencyFactor: Double, errorRate: Double)
        /// Messages from actors named with prefix `from` to prefix `to` are lost
        /// (and back, unless `oneWay`).
        case partition(from: String, to: String, oneWay: Bool)
        /// Replica `replica` crashes (in-flight work lost) and restarts after the duration.
        case replicaCrash(replica: Int)
        /// Broker partition `partition` takes no writes and delivers nothing.
        case brokerPartitionDown(partition: Int)
        /// Consumer `index` of `group` (ledger, wallet, notification) crashes, restarts after the duration.
        case consumerCrash(group: String, index: Int)
        /// The PSP sends `count` duplicate webhooks of recent outcomes.
        case webhookStorm(psp: String, count: Int)
        /// `count` webhooks in the PSP's name that claim a recent charge or
        /// refund succeeded, none of them authentic: signed under a wrong
        /// secret, altered after signing, or signed an hour ago. The
        /// engine must refuse every one (invariant 6).
        case webhookForgery(psp: String, count: Int)
        /// Replica `replica`'s clock runs `offsetSeconds` off for the duration.
        case clockSkew(replica: Int, offsetSeconds: Double)
        /// The outbox relay crashes and restarts after the duration.
        case relayCrash
    }

    public init(atSeconds: Double, durationSeconds: Double, kind: Kind) {
        self.atSeconds = atSeconds
        self.durationSeconds = durationSeconds
        self.kind = kind
    }

    public var endSeconds: Double { atSeconds + durationSeconds }

    /// A short label for reports ("psp outage stripe").
    public var label: String {
        switch kind {
        case let .pspOutage(psp): return "PSP outage \(psp)"
        case let .pspBrownout(psp, factor, rate): return "PSP brownout \(psp) ×\(factor) latency, \(rate) errors"
        case let .partition(from, to, oneWay): return "partition \(from) \(oneWay ? "→" : "↔") \(to)"
        case let .replicaCrash(replica): return "replica \(replica) crash"
        case let .brokerPartitionDown(partition): return "broker partition \(partition) down"
        case let .consumerCrash(group, index): return "consumer \(group).\(index) crash"
        case let .webhookStorm(psp, count): return "webhook storm \(psp) ×\(count)"
        case let .webhookForgery(psp, count): return "forged webhooks \(psp) ×\(count)"
        case let .clockSkew(replica, offset): return "clock skew replica \(replica) \(offset) s"
        case .relayCrash: return "outbox relay crash"
        }
    }

    func validate(field: String, configuration: WorldConfiguration) throws(WorldConfigurationError) {
        func require(_ ok: Bool, _ name: String, _ expected: String) throws(WorldConfigurationError) {
            if !ok { throw WorldConfigurationError(field: "\(field).\(name)", expected: expected) }
        }
        try require(atSeconds.isFinite && atSeconds >= 0, "at", "seconds >= 0")
        // Faults start only during the load (healing ends them all).
        let loadSeconds = configuration.expectedLoadSeconds
        try require(atSeconds < loadSeconds, "at",
                    "a time before the load ends, about \(String(format: "%.1f", loadSeconds)) s for \(configuration.payments) payments "
                        + "at this load; a fault from \(String(format: "%g", atSeconds)) s on would never happen")
        try require(durationSeconds.isFinite && durationSeconds >= 0 && durationSeconds <= 86_400 * 7, "duration", "seconds in [0, 604800]")
        let psps = configuration.psps.map(\.id)
        switch kind {
        case let .pspOutage(psp), let .webhookStorm(psp, _), let .webhookForgery(psp, _):
            try require(psps.contains(psp), "psp", "one of \(psps.joined(separator: ", ")), got \"\(psp)\"")
        case let .pspBrownout(psp, factor, rate):
            try require(psps.contains(psp), "psp", "one of \(psps.joined(separator: ", ")), got \"\(psp)\"")
            try require(factor >= 1 && factor <= 1_000, "latency_factor", "1...1000")
            try require(rate >= 0 && rate <= 1, "error_rate", "a probability in [0, 1]")
        case let .partition(from, to, _):
            try require(!from.isEmpty && !to.isEmpty, "from/to", "actor name prefixes such as replica, psp.stripe, broker")
            let names = configuration.actorNames
            for (end, prefix) in [("from", from), ("to", to)] {
                try require(names.contains { $0.hasPrefix(prefix) }, end,
                            "a prefix of an actor's name (\(names.joined(separator: ", "))), got \"\(prefix)\", which names none")
            }
        case let .replicaCrash(replica), let .clockSkew(replica, _):
            try require((0..<configuration.service.replicas).contains(replica), "replica",
                        "0...\(configuration.service.replicas - 1), got \(replica)")
        case let .brokerPartitionDown(partition):
            try require((0..<configuration.broker.partitions).contains(partition), "partition",
                        "0...\(configuration.broker.partitions - 1), got \(partition)")
        case let .consumerCrash(group, index):
            try require(["ledger", "wallet", "notification"].contains(group), "group", "ledger, wallet or notification")
            try require((0..<configuration.broker.consumersPerGroup).contains(index), "index",
                        "0...\(configuration.broker.consumersPerGroup - 1), got \(index)")
        case .relayCrash:
            break
        }
        if case let .webhookStorm(_, count) = kind { try require((1...10_000_000).contains(count), "count", "1...10000000") }
        if case let .webhookForgery(_, count) = kind { try require((1...10_000_000).contains(count), "count", "1...10000000") }
    }
}

/// BUGGIFY: named fault points inside the engine hosts and the world. At the
/// start of a run each site is enabled with `enableProbability` (from the
/// seed); an enabled site fires with `fireProbability` each time it is passed.
/// Every site models a failure the design must survive.
public final class Buggify {
    public enum Site: String, CaseIterable, Sendable {
        /// A replica crashes right after its engine committed a command, before it replied.
        case replicaCrashAfterCommit
        /// A consumer crashes after applying a batch, before committing its offsets.
        case consumerCrashBeforeOffsetCommit
        /// A consumer cannot process a message (a poison message): it goes to the dead-letter topic.
        case consumerPoisonMessage
        /// The outbox relay crashes after publishing, before acknowledging.
        case relayCrashBeforeAcknowledge
        /// The PSP charges but the reply is lost on the way back.
        case pspReplyLost
        /// A webhook is delivered twice.
        case webhookDuplicated
    }

    public private(set) var enabled: Set<Site> = []
    public private(set) var fired: [Site: Int] = [:]
    let fireProbability: Double
    let stream: RandomStream
    /// Faults stop during healing.
    var suspended = false

    init(model: BuggifyModel, rootSeed: UInt64) {
        fireProbability = model.fireProbability
        stream = RandomStream(rootSeed: rootSeed, stream: "buggify")
        guard model.enabled else { return }
        for site in Site.allCases where stream.bernoulli(model.enableProbability) {
            enabled.insert(site)
        }
    }

    /// Whether `site` fires now. Every site draws from the one BUGGIFY
    /// stream, and only when enabled: a run with no site enabled draws
    /// nothing, and no other actor's stream ever shifts.
    func fires(_ site: Site) -> Bool {
        guard !suspended, enabled.contains(site), stream.bernoulli(fireProbability) else { return false }
        fired[site, default: 0] += 1
        return true
    }
}

/// When a scheduled fault really acted, in virtual seconds; `nil` for what
/// never happened. A fault's end is cut to the start of healing, and a fault
/// due after healing began never starts.
public struct FaultWindow: Sendable, Equatable {
    public var startedSeconds: Double?
    public var endedSeconds: Double?
    /// Whether healing ended it, still active, rather than its own end.
    public var endedByHealing: Bool

    public init(startedSeconds: Double? = nil, endedSeconds: Double? = nil, endedByHealing: Bool = false) {
        self.startedSeconds = startedSeconds
        self.endedSeconds = endedSeconds
        self.endedByHealing = endedByHealing
    }
}
