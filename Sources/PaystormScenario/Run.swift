import Foundation
import PaystormStatistics
import PaystormWorld

/// Paystorm's exit codes, for CI.
public enum ExitStatus: Int32, Sendable, CaseIterable {
    case passed = 0
    case thresholdFailed = 2
    case invariantViolated = 3
    case livenessFailed = 4
    /// Not enough samples for the confidence asked.
    case inconclusive = 5
    /// Only under `--check-expectation`: the run passed, but its scenario
    /// documents a failure (`expect: fail`) that did not happen.
    case passedUnexpectedly = 6
    /// Bad input: unreadable or invalid scenario, bad options (EX_USAGE).
    case badInput = 64

    public var label: String {
        switch self {
        case .passed: return "passed"
        case .thresholdFailed: return "threshold-failed"
        case .invariantViolated: return "invariant-violated"
        case .livenessFailed: return "liveness-failed"
        case .inconclusive: return "inconclusive"
        case .passedUnexpectedly: return "passed-unexpectedly"
        case .badInput: return "bad-input"
        }
    }

    /// Whether a finished run can end with this code (0, 2–5): a verdict, as
    /// opposed to bad input or `--check-expectation`'s judgement of one.
    public var isVerdict: Bool {
        switch self {
        case .passed, .thresholdFailed, .invariantViolated, .livenessFailed, .inconclusive: return true
        case .badInput, .passedUnexpectedly: return false
        }
    }

    /// How bad an outcome is, for picking the worst of several: a violated
    /// safety invariant outranks a liveness failure, which outranks a failed
    /// threshold, which outranks too few samples to judge. Bad input outranks
    /// them all: nothing was judged. A documented failure that did not happen
    /// sits between a failed threshold and an inconclusive run. The exit
    /// code's number says nothing of this.
    public var severity: Int {
        switch self {
        case .passed: return 0
        case .inconclusive: return 1
        case .passedUnexpectedly: return 2
        case .thresholdFailed: return 3
        case .livenessFailed: return 4
        case .invariantViolated: return 5
        case .badInput: return 6
        }
    }

    /// This run's exit code under `--check-expectation`: 0 when it ended the
    /// way its scenario documents; otherwise its own code, or
    /// ``passedUnexpectedly`` when it passed but the scenario documents a
    /// failure — never 0 for a run that did not end as documented.
    public func checked(asExpected: Bool) -> ExitStatus {
        if asExpected { return .passed }
        return self == .passed ? .passedUnexpectedly : self
    }

    /// The most severe of `statuses` (``passed`` when there are none): a
    /// run's verdict, a seed farm's or a fuzz run's exit code.
    /// - Complexity: O(n).
    public static func worst(_ statuses: some Sequence<ExitStatus>) -> ExitStatus {
        statuses.max { $0.severity < $1.severity } ?? .passed
    }
}

/// The version written into every report (with the scenario hash and the
/// seed it names a run exactly).
public let paystormVersion = "0.8.1"

/// One scenario run: the world's report judged by the scenario's thresholds.
public struct ScenarioRun: Sendable {
    public var scenario: Scenario
    public var report: WorldReport
    public var verdicts: [ThresholdVerdict]
    public var status: ExitStatus

    /// Runs `scenario` with `seed` (or the scenario's own).
    public static func run(_ scenario: Scenario, seed: UInt64? = nil, scratchDirectory: String? = nil,
                           progress: ((Double) -> Void)? = nil) throws -> ScenarioRun {
        var world = scenario.world
        if let seed { world.seed = seed }
        if let scratchDirectory {
            world.scratchDatabasePath = (scratchDirectory as NSString).appendingPathComponent("paystorm-\(scenario.name)-\(world.seed)-\(getpid()).sqlite")
        }
        let report = try PaymentsWorld.run(world, progress: progress)
        return judge(scenario, report)
    }

    /// Judges a finished world run.
    public static func judge(_ scenario: Scenario, _ report: WorldReport) -> ScenarioRun {
        let verdicts = scenario.thresholds.map { $0.judge(report) }
        var found: [ExitStatus] = []
        if report.safetyViolationCount > 0 { found.append(.invariantViolated) }
        if report.livenessViolationCount > 0 { found.append(.livenessFailed) }
        if verdicts.contains(where: { $0.outcome == .failed }) { found.append(.thresholdFailed) }
        if verdicts.contains(where: { $0.outcome == .inconclusive }) { found.append(.inconclusive) }
        // The same ranking a seed farm and fuzz use to pick the worst seed.
        let status = ExitStatus.worst(found)
        return ScenarioRun(scenario: scenario, report: report, verdicts: verdicts, status: status)
    }

    /// Whether the run ended the way the scenario says it should.
    public var asExpected: Bool {
        switch scenario.expectation {
        case .pass: return status == .passed
        case .fail: return status.rawValue == scenario.expectedExit
        }
    }

    /// The report directory's name: `<scenario>-<seed>`.
    public var directoryName: String { "\(scenario.name)-\(report.seed)" }

    public var document: ReportDocument {
        let r = report
        let total = r.requests + r.outstandingAtEnd
        func quantiles(_ estimates: [QuantileEstimate]) -> [ReportDocument.Quantile] {
            estimates.map { .init(percentile: $0.probability * 100, seconds: $0.value, lowerSeconds: $0.lower, upperSeconds: $0.upper) }
        }
        let violations = r.safetyViolations.map { ($0, "safety") } + r.livenessViolations.map { ($0, "liveness") }
        let failing = verdicts.filter { $0.outcome != .passed }
        var summary: String
        switch status {
        case .passed: summary = "every threshold passed and no invariant was violated"
        case .invariantViolated: summary = "\(r.safetyViolationCount) safety invariant violation(s)"
        case .livenessFailed: summary = "\(r.livenessViolationCount) liveness check(s) failed after healing"
        case .thresholdFailed, .inconclusive, .badInput, .passedUnexpectedly:
            summary = failing.map { "\($0.threshold): \($0.outcome.rawValue) (\($0.observed))" }.joined(separator: "; ")
        }
        if scenario.expectation == .fail {
            summary += asExpected ? " — as this scenario documents" : " — this scenario documents exit \(scenario.expectedExit ?? 0)"
        }
        return ReportDocument(
            schema: ReportDocument.schema, paystormVersion: paystormVersion,
            scenario: .init(name: scenario.name, description: scenario.description, hash: scenario.hash,
                            file: (scenario.file as NSString).lastPathComponent, expectation: scenario.expectation.rawValue,
                            expectedExit: scenario.expectedExit),
            seed: r.seed,
            verdict: .init(status: status.label, exitCode: status.rawValue, summary: summary, asExpected: asExpected),
            thresholds: verdicts,
            requests: .init(total: total, answered: r.answered, clientErrors: r.clientErrors, serverErrors: r.serverErrors,
                            timedOut: r.timedOut, throttled: r.throttled, retries: r.retries, unfinished: r.outstandingAtEnd,
                            offeredPerSecond: r.loadEndSeconds > 0 ? Double(r.windows.reduce(0) { $0 + $1.offered }) / r.loadEndSeconds : 0,
                            achievedPerSecond: r.loadEndSeconds > 0 ? Double(r.answeredDuringLoad) / r.loadEndSeconds : 0,
                            availability: total > 0 ? Double(r.answered) / Double(total) : 0,
                            availabilityLowerBound: r.availabilityLowerBound, confidence: r.confidence),
            latency: quantiles(r.latency), timeToTerminal: quantiles(r.timeToTerminal),
            payments: .init(started: r.paymentsStarted, created: r.paymentsCreated, completed: r.paymentsCompleted, failed: r.paymentsFailed,
                            notTerminalAtEnd: r.nonTerminalAtEnd, refundsRequested: r.refundsRequested, refundsAccepted: r.refundsAccepted),
            psps: r.psp.map { .init(id: $0.id, charges: $0.charges, refunds: $0.refunds, statusQueries: $0.statusQueries, cancels: $0.cancels,
                                    succeeded: $0.succeeded, declined: $0.declined, transientErrors: $0.transientErrors,
                                    rateLimited: $0.rateLimited, ambiguous: $0.ambiguous, unanswered: $0.unanswered,
                                    webhooksSent: $0.webhooksSent, voided: $0.voided, received: $0.received, notFound: $0.notFound) },
            fraud: .init(truePositives: r.fraud.truePositives, falsePositives: r.fraud.falsePositives, falseNegatives: r.fraud.falseNegatives,
                         trueNegatives: r.fraud.trueNegatives, precision: r.fraud.precision, recall: r.fraud.recall),
            infrastructure: .init(webhooksApplied: r.webhooksApplied, webhooksRejected: r.webhooksRejected, queueOverflows: r.queueOverflows,
                                  lostInCrashes: r.lostInCrashes, gatewayUnauthorized: r.gatewayUnauthorized, gatewayThrottled: r.gatewayThrottled,
                                  gatewayUnavailable: r.gatewayUnavailable, brokerProduced: r.brokerProduced,
                                  consumerRedeliveries: r.consumerRedeliveries, rebalances: r.rebalances, brokerDeadLetters: r.brokerDeadLetters,
                                  notificationsDelivered: r.notificationsDelivered, notificationsFailed: r.notificationsFailed,
                                  networkSent: r.networkSent, networkLost: r.networkLost, networkDuplicated: r.networkDuplicated,
                                  networkPartitioned: r.networkPartitioned, crashes: r.kernel.crashes, restarts: r.kernel.restarts,
                                  webhooksDropped: r.webhooksDropped),
            reconciliation: r.reconciliation.map { entry in
                .init(psp: entry.psp, matched: entry.matched,
                      discrepancies: Dictionary(uniqueKeysWithValues: entry.discrepancies.map { ($0.kind, $0.count) }))
            },
            faults: ReportDocument.faults(r.faults, windows: r.faultWindows, healingBeganSeconds: r.healingBeganSeconds),
            buggify: .init(enabled: r.buggifyEnabled, fired: Dictionary(uniqueKeysWithValues: r.buggifyFired.map { ($0.site, $0.count) })),
            violations: violations.map { violation, kind in
                .init(kind: kind, invariant: violation.invariant, subject: violation.subject, virtualSeconds: violation.virtualSeconds,
                      seed: violation.seed, detail: violation.detail, trail: violation.trail)
            },
            violationCounts: .init(safety: Dictionary(uniqueKeysWithValues: r.safetyViolationCounts.map { ($0.key.rawValue, $0.value) }),
                                   liveness: Dictionary(uniqueKeysWithValues: r.livenessViolationCounts.map { ($0.key.rawValue, $0.value) })),
            windows: r.windows,
            simulation: .init(virtualSeconds: r.virtualSeconds, loadEndSeconds: r.loadEndSeconds, events: r.events,
                              traceHash: r.traceHash, safetyViolationCount: r.safetyViolationCount),
            independence: """
                One seed is one run. Within it, each request is treated as an independent Bernoulli trial for \
                availability (Clopper–Pearson) and latencies as independent draws for the order-statistic \
                intervals; requests in one run share queues and faults, so the intervals are optimistic when \
                faults correlate failures. Across seeds (run --seeds), each seed is one independent unit and \
                results are combined with t-intervals.
                """)
    }
}
