import Foundation
import PaystormEngine
import PaystormKernel
import PaystormStatistics

/// Everything one run of the payments world measured and found. Contains
/// no wall-clock figure: the same configuration, seed and build give the
/// same report.
public struct WorldReport: Sendable {
    public var seed: UInt64
    public var paymentsStarted: Int
    public var virtualSeconds: Double
    public var loadEndSeconds: Double
    public var events: Int
    public var traceHash: String
    public var kernel: KernelCounters

    /// Requests (payments and refunds) that finished, and how.
    public var requests: Int
    public var answered: Int
    /// Of those, answered by the end of the load (the last arrival): what
    /// the achieved rate counts. Answers during healing are not throughput.
    public var answeredDuringLoad: Int
    public var clientErrors: Int
    public var serverErrors: Int
    public var timedOut: Int
    public var throttled: Int
    public var retries: Int
    public var outstandingAtEnd: Int
    /// One-sided lower bound on availability (answered / requests) at `confidence`.
    public var availabilityLowerBound: Double
    public var confidence: Double
    /// End-to-end latency (p50, p90, p99, p99.9, p99.99) with order-statistic intervals.
    public var latency: [QuantileEstimate]
    /// Payment creation to terminal state.
    public var timeToTerminal: [QuantileEstimate]

    public var paymentsCreated: Int
    public var paymentsCompleted: Int
    public var paymentsFailed: Int
    public var refundsRequested: Int
    public var refundsAccepted: Int
    public var psp: [WorldMetrics.PSPCounters]
    public var fraud: WorldMetrics.FraudConfusion
    public var windows: [WorldMetrics.Window]

    public var webhooksApplied: Int
    public var webhooksRejected: Int
    public var webhooksDropped: Int
    public var queueOverflows: Int
    public var lostInCrashes: Int
    public var gatewayUnauthorized: Int
    public var gatewayThrottled: Int
    public var gatewayUnavailable: Int
    public var brokerProduced: Int
    public var consumerRedeliveries: Int
    public var rebalances: Int
    public var brokerDeadLetters: Int
    /// Events a consumer's engine refused (dead-lettered, replayed at healing).
    public var consumerRefusals: Int
    public var notificationsDelivered: Int
    public var notificationsFailed: Int
    public var networkSent: Int
    public var networkLost: Int
    public var networkDuplicated: Int
    public var networkPartitioned: Int
    public var audits: Int
    /// Reconciliation in the healing phase: per PSP, matched lines and discrepancies by kind.
    public var reconciliation: [(psp: String, matched: Int, discrepancies: [(kind: String, count: Int)])]
    public var buggifyEnabled: [String]
    public var buggifyFired: [(site: String, count: Int)]
    public var faults: [ScheduledFault]
    /// When each of ``faults`` really acted.
    public var faultWindows: [FaultWindow]
    /// When the healing phase began (the load's last steps run to it): it
    /// ended every fault still active, and no fault starts after it.
    public var healingBeganSeconds: Double

    /// Broken safety invariants (kept in full up to 1,000; `safetyViolationCount` counts all).
    public var safetyViolations: [Violation]
    public var safetyViolationCount: Int
    /// Every safety violation, per check: those kept and those only counted.
    public var safetyViolationCounts: [Invariant: Int]
    /// Liveness checks that failed after healing (kept in full up to 1,000;
    /// `livenessViolationCount` counts all).
    public var livenessViolations: [Violation]
    public var livenessViolationCount: Int
    /// Every liveness violation, per check: those kept and those only counted.
    public var livenessViolationCounts: [Invariant: Int]
    /// Payments and refunds not in a terminal state after healing (lost to the client).
    public var nonTerminalAtEnd: Int

    public var violations: Int { safetyViolationCount + livenessViolationCount }

    /// Every answered request's latency and every payment's time to
    /// terminal state, sorted: any percentile a threshold asks for.
    let latencySample: SortedSample
    let timeToTerminalSample: SortedSample

    /// Mean API latency of answered requests, seconds (0 without samples).
    public var latencyMean: Double {
        latencySample.count == 0 ? 0 : latencySample.values.reduce(0, +) / Double(latencySample.count)
    }

    /// The `p`-quantile of API latency with its order-statistic interval (`nil` without samples).
    public func latencyQuantile(_ p: Double) throws -> QuantileEstimate? {
        latencySample.count == 0 ? nil : try latencySample.quantile(p, confidence: confidence)
    }

    /// The same over every request, the `unanswered` ones counted as slower
    /// than any answer; `nil` when there was no request.
    public func latencyQuantile(_ p: Double, countingUnanswered: Bool) throws -> QuantileEstimate? {
        guard countingUnanswered else { return try latencyQuantile(p) }
        let unanswered = requests + outstandingAtEnd - answered
        return latencySample.count + unanswered == 0 ? nil
            : try latencySample.quantile(p, confidence: confidence, unboundedAbove: unanswered)
    }

    /// The `p`-quantile of creation-to-terminal time with its interval (`nil` without samples).
    public func timeToTerminalQuantile(_ p: Double) throws -> QuantileEstimate? {
        timeToTerminalSample.count == 0 ? nil : try timeToTerminalSample.quantile(p, confidence: confidence)
    }

    init(world: World, clients: ClientPopulation, gateway: Gateway, broker: Broker, sink: NotificationSink, monitor: Monitor,
         liveness: (kept: [Violation], counts: [Invariant: Int]), nonTerminal: Int, loadEndSeconds: Double) throws {
        let metrics = world.metrics
        let configuration = world.configuration
        seed = configuration.seed
        paymentsStarted = clients.paymentsStarted
        virtualSeconds = world.kernel.now.seconds
        self.loadEndSeconds = loadEndSeconds
        events = world.kernel.counters.delivered
        traceHash = world.kernel.traceHash
        kernel = world.kernel.counters
        requests = metrics.requests
        answered = metrics.answered
        answeredDuringLoad = metrics.answeredDuringLoad ?? metrics.answered
        clientErrors = metrics.clientErrors
        serverErrors = metrics.serverErrors
        timedOut = metrics.timedOut
        throttled = metrics.throttledFinal
        retries = metrics.retries
        outstandingAtEnd = clients.outstanding
        confidence = configuration.confidence
        let total = metrics.requests + clients.outstanding
        availabilityLowerBound = total > 0
            ? try Availability.lowerBound(failures: total - metrics.answered, requests: total, confidence: configuration.confidence)
            : 0
        latencySample = try SortedSample(metrics.latencies.map(Double.init))
        timeToTerminalSample = try SortedSample(metrics.timeToTerminal.map(Double.init))
        latency = try Self.quantiles(latencySample, confidence: configuration.confidence)
        timeToTerminal = try Self.quantiles(timeToTerminalSample, confidence: configuration.confidence)
        paymentsCreated = metrics.paymentsCreated
        paymentsCompleted = metrics.paymentsCompleted
        paymentsFailed = metrics.paymentsFailed
        refundsRequested = metrics.refundsRequested
        refundsAccepted = metrics.refundsAccepted
        psp = metrics.psp
        fraud = metrics.fraud
        windows = metrics.windows
        webhooksApplied = metrics.webhooksApplied
        webhooksRejected = metrics.webhooksRejected
        webhooksDropped = metrics.webhooksDropped
        queueOverflows = metrics.queueOverflows
        lostInCrashes = metrics.lostInCrashes
        gatewayUnauthorized = gateway.unauthorized
        gatewayThrottled = gateway.throttled
        gatewayUnavailable = gateway.unavailable
        brokerProduced = broker.produced
        consumerRedeliveries = metrics.consumerRedeliveries
        rebalances = metrics.rebalances
        brokerDeadLetters = metrics.brokerDeadLetters
        consumerRefusals = metrics.consumerRefusals
        notificationsDelivered = metrics.notificationsSent
        notificationsFailed = metrics.notificationsFailed
        networkSent = world.network.counters.sent
        networkLost = world.network.counters.lost
        networkDuplicated = world.network.counters.duplicated
        networkPartitioned = world.network.counters.partitioned
        audits = monitor.audits
        reconciliation = world.reconciliations.map { entry in
            var kinds: [String: Int] = [:]
            for item in entry.result.items { kinds[item.kind.rawValue, default: 0] += 1 }
            return (entry.pspID, entry.result.matched, kinds.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        }
        buggifyEnabled = world.buggify.enabled.map(\.rawValue).sorted()
        buggifyFired = world.buggify.fired.map { ($0.key.rawValue, $0.value) }.sorted { $0.site < $1.site }
        faults = configuration.faults
        faultWindows = world.faultWindows
        healingBeganSeconds = world.healingBeganSeconds ?? virtualSeconds
        safetyViolations = world.checker.violations
        safetyViolationCount = world.checker.violationCount
        safetyViolationCounts = world.checker.violationCounts
        livenessViolations = liveness.kept
        livenessViolationCounts = liveness.counts
        livenessViolationCount = liveness.counts.values.reduce(0, +)
        nonTerminalAtEnd = nonTerminal
    }

    static let levels = [0.5, 0.9, 0.99, 0.999, 0.9999]

    static func quantiles(_ sample: SortedSample, confidence: Double) throws -> [QuantileEstimate] {
        guard sample.count > 0 else { return [] }
        return try levels.map { try sample.quantile($0, confidence: confidence) }
    }

    /// A plain-text summary for a terminal.
    public var summary: String {
        func percent(_ value: Double) -> String { String(format: "%.4f%%", value * 100) }
        func ms(_ seconds: Double) -> String { String(format: "%.1f ms", seconds * 1e3) }
        func quantileLine(_ estimates: [QuantileEstimate]) -> String {
            zip(Self.levels, estimates).map { level, estimate in
                "p\(String(format: "%g", level * 100))=\(ms(estimate.value))"
            }.joined(separator: "  ")
        }
        var lines: [String] = []
        lines.append("seed \(seed): \(paymentsStarted) payments started over \(String(format: "%.1f", loadEndSeconds)) s of load, \(String(format: "%.1f", virtualSeconds)) s virtual in all, \(events) events, trace \(traceHash)")
        lines.append("requests \(requests): answered \(answered) (client errors \(clientErrors)), server errors \(serverErrors), timed out \(timedOut), throttled \(throttled), retries \(retries), unfinished \(outstandingAtEnd)")
        lines.append("availability ≥ \(percent(availabilityLowerBound)) at \(Int(confidence * 100))% confidence")
        lines.append("latency: \(quantileLine(latency))")
        lines.append("time to terminal: \(quantileLine(timeToTerminal))")
        lines.append("payments: created \(paymentsCreated), completed \(paymentsCompleted), failed \(paymentsFailed); refunds requested \(refundsRequested), accepted \(refundsAccepted)")
        for counters in psp {
            lines.append("psp \(counters.id): charges \(counters.charges), refunds \(counters.refunds), status queries \(counters.statusQueries), cancels \(counters.cancels); received \(counters.received): succeeded \(counters.succeeded), declined \(counters.declined), voided \(counters.voided), not found \(counters.notFound), transient \(counters.transientErrors), rate-limited \(counters.rateLimited), ambiguous \(counters.ambiguous), unanswered \(counters.unanswered), webhooks \(counters.webhooksSent)")
        }
        let precision = fraud.precision.map { String(format: "%.3f", $0) } ?? "n/a"
        let recall = fraud.recall.map { String(format: "%.3f", $0) } ?? "n/a"
        lines.append("fraud screening: precision \(precision), recall \(recall) (TP \(fraud.truePositives), FP \(fraud.falsePositives), FN \(fraud.falseNegatives), TN \(fraud.trueNegatives))")
        lines.append("webhooks applied \(webhooksApplied), rejected \(webhooksRejected), dropped by a full accept queue \(webhooksDropped); broker produced \(brokerProduced), redelivered \(consumerRedeliveries), rebalances \(rebalances), dead letters \(brokerDeadLetters) (\(consumerRefusals) refused by the engine); notifications delivered \(notificationsDelivered), failed \(notificationsFailed)")
        lines.append("network sent \(networkSent), lost \(networkLost), duplicated \(networkDuplicated), partitioned \(networkPartitioned); queue overflows \(queueOverflows), lost in crashes \(lostInCrashes); crashes \(kernel.crashes), restarts \(kernel.restarts)")
        for entry in reconciliation {
            let kinds = entry.discrepancies.map { "\($0.kind) \($0.count)" }.joined(separator: ", ")
            lines.append("reconciliation \(entry.psp): matched \(entry.matched); \(kinds.isEmpty ? "no discrepancies" : kinds)")
        }
        if !buggifyEnabled.isEmpty {
            lines.append("buggify sites enabled: \(buggifyEnabled.joined(separator: ", ")); fired: \(buggifyFired.map { "\($0.site) ×\($0.count)" }.joined(separator: ", "))")
        }
        lines.append("violations: \(safetyViolationCount) safety, \(livenessViolationCount) liveness")
        for violation in (safetyViolations + livenessViolations).prefix(20) {
            lines.append("  \(violation)")
            for step in violation.trail.prefix(12) { lines.append("      \(step)") }
        }
        return lines.joined(separator: "\n")
    }
}
