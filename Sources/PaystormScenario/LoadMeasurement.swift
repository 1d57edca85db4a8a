import Crypto
import Foundation
import PaystormStatistics
import PaystormWorld

/// A run measured against a real server (`paystorm load`), in the terms of a
/// simulated one: the same thresholds judge it and the same report files
/// show it, so `paystorm compare` can set the two side by side.
public struct LoadMeasurement: ThresholdSubject, Sendable {
    /// One request: when it was due (seconds from the start), its latency
    /// from then, and its HTTP status (0: no answer).
    public struct Request: Sendable {
        public var dueSeconds: Double
        public var latencySeconds: Double
        public var status: Int
        public var kind: Kind

        /// What a request asked for.
        public enum Kind: Sendable {
            case payment, refund, read
        }

        public init(dueSeconds: Double, latencySeconds: Double, status: Int, kind: Kind) {
            self.dueSeconds = dueSeconds
            self.latencySeconds = latencySeconds
            self.status = status
            self.kind = kind
        }

        public var isPayment: Bool { kind == .payment }

        /// Answered: anything but a 5xx, a 429 or no answer. A 4xx is the
        /// server working as specified.
        var isAnswered: Bool { status > 0 && status < 500 && status != 429 }
    }

    public var target: String
    public var description: String
    public var seed: UInt64
    public var durationSeconds: Double
    public var elapsedSeconds: Double
    public var maximumSendLagSeconds: Double
    public var acknowledgedPayments: Int
    public var confidence = 0.95
    public var windowSeconds = 1.0
    let requestsMade: [Request]
    let latencies: SortedSample?

    public init(target: String, description: String, seed: UInt64, durationSeconds: Double, elapsedSeconds: Double,
                maximumSendLagSeconds: Double, acknowledgedPayments: Int, requests: [Request]) {
        self.target = target
        self.description = description
        self.seed = seed
        self.durationSeconds = durationSeconds
        self.elapsedSeconds = elapsedSeconds
        self.maximumSendLagSeconds = maximumSendLagSeconds
        self.acknowledgedPayments = acknowledgedPayments
        requestsMade = requests
        let answered = requests.filter(\.isAnswered).map(\.latencySeconds)
        latencies = answered.isEmpty ? nil : try? SortedSample(answered)
    }

    public var requests: Int { requestsMade.count }
    public var outstandingAtEnd: Int { 0 }
    public var answered: Int { requestsMade.reduce(0) { $0 + ($1.isAnswered ? 1 : 0) } }
    public var answeredDuringLoad: Int {
        requestsMade.reduce(0) { $0 + ($1.isAnswered && $1.dueSeconds + $1.latencySeconds <= durationSeconds ? 1 : 0) }
    }
    public var loadEndSeconds: Double { durationSeconds }
    public var violations: Int { 0 }
    public var safetyViolationCount: Int { 0 }
    public var livenessViolationCount: Int { 0 }
    public var nonTerminalAtEnd: Int { 0 }
    public var paymentsCompleted: Int { 0 }
    public var paymentsFailed: Int { 0 }
    public var fraudPrecision: Double? { nil }
    public var fraudRecall: Double? { nil }

    /// The `p`-quantile (a probability) of latency with its order-statistic interval.
    public func latencyQuantile(_ p: Double) throws -> QuantileEstimate? {
        try latencies?.quantile(p, confidence: confidence)
    }

    public func latencyQuantile(_ p: Double, countingUnanswered: Bool) throws -> QuantileEstimate? {
        guard countingUnanswered else { return try latencyQuantile(p) }
        let unanswered = requests + outstandingAtEnd - answered
        guard unanswered > 0 else { return try latencyQuantile(p) }
        return try (latencies ?? SortedSample([])).quantile(p, confidence: confidence, unboundedAbove: unanswered)
    }

    /// A load run sees acknowledgements only, not when payments became terminal.
    public func timeToTerminalQuantile(_ p: Double) throws -> QuantileEstimate? { nil }

    /// The report, judged by `thresholds`.
    public func document(thresholds: [Threshold]) -> ReportDocument {
        let verdicts = thresholds.map { $0.judge(self) }
        let status: ExitStatus = verdicts.contains { $0.outcome == .failed } ? .thresholdFailed
            : verdicts.contains { $0.outcome == .inconclusive } ? .inconclusive : .passed
        let total = requests
        let answered = self.answered
        let count = { (predicate: (Request) -> Bool) in requestsMade.reduce(0) { $0 + (predicate($1) ? 1 : 0) } }
        let quantiles: [ReportDocument.Quantile] = [50, 90, 99, 99.9].compactMap { percentile in
            guard let estimate = try? latencyQuantile(percentile / 100) else { return nil }
            return .init(percentile: percentile, seconds: estimate.value, lowerSeconds: estimate.lower, upperSeconds: estimate.upper)
        }
        let summary = status == .passed
            ? (thresholds.isEmpty ? "measured; no threshold was given" : "every threshold passed")
            : verdicts.filter { $0.outcome != .passed }.map { "\($0.threshold): \($0.outcome.rawValue) (\($0.observed))" }.joined(separator: "; ")
        let hash = SHA256.hash(data: Data("\(target)|\(description)|\(seed)".utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        let zeroInfrastructure = ReportDocument.Infrastructure(
            webhooksApplied: 0, webhooksRejected: 0, queueOverflows: 0, lostInCrashes: 0, gatewayUnauthorized: count { $0.status == 401 },
            gatewayThrottled: count { $0.status == 429 }, gatewayUnavailable: count { $0.status == 503 }, brokerProduced: 0,
            consumerRedeliveries: 0, rebalances: 0, brokerDeadLetters: 0, notificationsDelivered: 0, notificationsFailed: 0,
            networkSent: total, networkLost: 0, networkDuplicated: 0, networkPartitioned: 0, crashes: 0, restarts: 0)
        return ReportDocument(
            schema: ReportDocument.schema, paystormVersion: paystormVersion,
            scenario: .init(name: "load", description: description, hash: hash, file: target, expectation: "pass", expectedExit: nil),
            seed: seed,
            verdict: .init(status: status.label, exitCode: status.rawValue, summary: summary, asExpected: status == .passed),
            thresholds: verdicts,
            requests: .init(total: total, answered: answered, clientErrors: count { $0.status >= 400 && $0.status < 500 && $0.status != 429 },
                            serverErrors: count { $0.status >= 500 }, timedOut: count { $0.status == 0 }, throttled: count { $0.status == 429 },
                            retries: 0, unfinished: 0,
                            offeredPerSecond: durationSeconds > 0 ? Double(total) / durationSeconds : 0,
                            achievedPerSecond: durationSeconds > 0 ? Double(answeredDuringLoad) / durationSeconds : 0,
                            availability: total > 0 ? Double(answered) / Double(total) : 0,
                            availabilityLowerBound: (try? Availability.lowerBound(failures: total - answered, requests: total, confidence: confidence)) ?? 0,
                            confidence: confidence),
            latency: quantiles, timeToTerminal: [],
            // What became of each payment after its answer is the server's to know (`paystorm audit`), not the generator's.
            payments: .init(started: count(\.isPayment), created: acknowledgedPayments, completed: nil, failed: nil, notTerminalAtEnd: nil,
                            refundsRequested: count { $0.kind == .refund },
                            refundsAccepted: count { $0.kind == .refund && (200..<300).contains($0.status) }),
            psps: [],
            fraud: .init(truePositives: 0, falsePositives: 0, falseNegatives: 0, trueNegatives: 0, precision: nil, recall: nil),
            infrastructure: zeroInfrastructure,
            reconciliation: [], faults: [], buggify: .init(enabled: [], fired: [:]), violations: [],
            windows: windows(),
            simulation: .init(virtualSeconds: elapsedSeconds, loadEndSeconds: durationSeconds, events: total,
                              traceHash: ReportDocument.measuredTraceHash, safetyViolationCount: 0),
            independence: """
                A measured run against a live server on wall time (not reproducible bit for bit). Each request is \
                treated as an independent Bernoulli trial for availability (Clopper–Pearson) and latencies as \
                independent draws for the order-statistic intervals; requests share queues, so the intervals are \
                optimistic. Latency runs from each request's scheduled send time (open loop, no coordinated \
                omission); the generator's worst lateness was \(String(format: "%.1f", maximumSendLagSeconds * 1_000)) ms.
                """)
    }

    /// Per window of `windowSeconds`, by due time. As in the simulator, a
    /// request is answered or failed; a throttled one (429) is failed, and
    /// counted again in `throttled`.
    func windows() -> [WorldMetrics.Window] {
        let count = max(1, Int((durationSeconds / windowSeconds).rounded(.up)))
        var windows = (0..<count).map { WorldMetrics.Window(startSeconds: Double($0) * windowSeconds) }
        var latencies = [[Double]](repeating: [], count: count)
        for request in requestsMade {
            let index = min(count - 1, max(0, Int(request.dueSeconds / windowSeconds)))
            windows[index].offered += 1
            if request.isAnswered {
                windows[index].answered += 1
                latencies[index].append(request.latencySeconds)
            } else {
                windows[index].failed += 1
                if request.status == 429 { windows[index].throttled += 1 }
            }
        }
        for index in windows.indices where !latencies[index].isEmpty {
            let sorted = latencies[index].sorted()
            func at(_ p: Double) -> Double { sorted[SortedSample.nearestRankIndex(p, count: sorted.count)] }
            windows[index].latencyP50Seconds = at(0.5)
            windows[index].latencyP99Seconds = at(0.99)
            windows[index].latencyMaxSeconds = sorted.last!
        }
        return windows
    }
}
