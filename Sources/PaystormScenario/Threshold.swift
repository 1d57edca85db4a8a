import Foundation
import PaystormStatistics
import PaystormWorld

/// A k6-style threshold — `p(99) < 2s`, `availability >= 99.99%`,
/// `violations == 0` — judged with confidence: a percentile by its
/// order-statistic interval, availability and error rate by Clopper–Pearson
/// bounds. A threshold passes, fails, or is inconclusive (and says how many
/// more samples it needs).
public struct Threshold: Sendable, Equatable, CustomStringConvertible {
    public enum Metric: Sendable, Equatable {
        /// API latency percentile, from the intended send time, over the
        /// requests answered.
        case latency(percentile: Double)
        /// The same over every request, an unanswered one (timed out, a
        /// 5xx, throttled to the end, still open) counted as slower than any:
        /// `p_all(99) < 2s` holds only if 99% of all requests were answered
        /// within 2 s.
        case latencyCountingUnanswered(percentile: Double)
        /// Payment creation to terminal state percentile.
        case timeToTerminal(percentile: Double)
        case availability
        case errorRate
        /// Requests answered during the load, per second of load.
        case throughput
        case violations, safetyViolations, livenessViolations
        /// Payments not terminal after healing.
        case lost
        case fraudPrecision, fraudRecall
    }

    /// Whether a run measured from outside the server (`paystorm load`) sees
    /// this metric: it sees answers and their latency, not the invariants,
    /// the payments' ends or fraud, which only the server's database holds.
    public var isMeasuredFromOutside: Bool {
        switch metric {
        case .latency, .latencyCountingUnanswered, .availability, .errorRate, .throughput: true
        case .timeToTerminal, .violations, .safetyViolations, .livenessViolations, .lost, .fraudPrecision, .fraudRecall: false
        }
    }

    public enum Comparison: String, Sendable, CaseIterable {
        case lessOrEqual = "<=", greaterOrEqual = ">=", equal = "==", notEqual = "!=", less = "<", greater = ">"

        func holds(_ lhs: Double, _ rhs: Double) -> Bool {
            switch self {
            case .less: return lhs < rhs
            case .lessOrEqual: return lhs <= rhs
            case .greater: return lhs > rhs
            case .greaterOrEqual: return lhs >= rhs
            case .equal: return lhs == rhs
            case .notEqual: return lhs != rhs
            }
        }
    }

    public var text: String
    public var metric: Metric
    public var comparison: Comparison
    /// Seconds for durations, a fraction for percentages, a count otherwise.
    public var value: Double

    public var description: String { text }

    static let grammar = """
        <metric> <op> <value>, where <metric> is p(N), p_all(N), terminal_p(N), availability, error_rate, throughput, \
        violations, safety_violations, liveness_violations, lost, fraud_precision or fraud_recall; <op> is \
        <, <=, >, >=, == or !=; durations take ms, s, m (p(99) < 2s), rates take % (availability >= 99.99%)
        """

    /// Parses one threshold; the error says what was expected.
    public static func parse(_ text: String) throws(ThresholdSyntaxError) -> Threshold {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let comparison = Comparison.allCases.first(where: { trimmed.contains($0.rawValue) }),
              let range = trimmed.range(of: comparison.rawValue) else {
            throw ThresholdSyntaxError(message: "\"\(text)\" has no comparison; expected \(grammar)")
        }
        let name = trimmed[..<range.lowerBound].trimmingCharacters(in: .whitespaces)
        let valueText = trimmed[range.upperBound...].trimmingCharacters(in: .whitespaces)
        let metric: Metric
        func percentile(_ prefix: String) throws(ThresholdSyntaxError) -> Double {
            let inner = name.dropFirst(prefix.count).dropLast()
            guard name.hasSuffix(")"), let p = Double(inner), p > 0, p < 100 else {
                throw ThresholdSyntaxError(message: "\"\(name)\" is not a percentile; expected \(prefix)N) with 0 < N < 100, e.g. \(prefix)99.9)")
            }
            return p / 100
        }
        switch name {
        case _ where name.hasPrefix("p("): metric = .latency(percentile: try percentile("p("))
        case _ where name.hasPrefix("p_all("): metric = .latencyCountingUnanswered(percentile: try percentile("p_all("))
        case _ where name.hasPrefix("terminal_p("): metric = .timeToTerminal(percentile: try percentile("terminal_p("))
        case "availability": metric = .availability
        case "error_rate": metric = .errorRate
        case "throughput": metric = .throughput
        case "violations": metric = .violations
        case "safety_violations": metric = .safetyViolations
        case "liveness_violations": metric = .livenessViolations
        case "lost": metric = .lost
        case "fraud_precision": metric = .fraudPrecision
        case "fraud_recall": metric = .fraudRecall
        default:
            throw ThresholdSyntaxError(message: "unknown metric \"\(name)\"; expected \(grammar)")
        }
        let value: Double?
        switch metric {
        case .latency, .latencyCountingUnanswered, .timeToTerminal:
            guard valueText.last?.isLetter == true else {
                throw ThresholdSyntaxError(message: "\"\(valueText)\" needs a unit; expected a duration such as 250ms or 2s")
            }
            value = YAMLValue.parseDuration(valueText)
        case .availability, .errorRate, .fraudPrecision, .fraudRecall:
            value = valueText.hasSuffix("%") ? Double(valueText.dropLast()).map { $0 / 100 } : Double(valueText)
            if let value, !(0...1).contains(value) {
                throw ThresholdSyntaxError(message: "\"\(valueText)\" is not a rate; expected 0...1 or 0%...100%")
            }
        case .throughput, .violations, .safetyViolations, .livenessViolations, .lost:
            value = Double(valueText).flatMap { $0 >= 0 ? $0 : nil }
        }
        guard let value else {
            throw ThresholdSyntaxError(message: "\"\(valueText)\" is not a valid value for \(name)")
        }
        return Threshold(text: trimmed, metric: metric, comparison: comparison, value: value)
    }

    /// Judges the threshold against one run: a simulated one (``WorldReport``)
    /// or a measured one (`paystorm load`).
    public func judge(_ report: some ThresholdSubject) -> ThresholdVerdict {
        let confidence = report.confidence
        switch metric {
        case let .latency(p), let .latencyCountingUnanswered(p), let .timeToTerminal(p):
            let computed = { () -> QuantileEstimate? in
                switch metric {
                case .latency: return try? report.latencyQuantile(p)
                case .latencyCountingUnanswered: return try? report.latencyQuantile(p, countingUnanswered: true)
                default: return try? report.timeToTerminalQuantile(p)
                }
            }()
            guard let estimate = computed else {
                return verdict(.inconclusive, observed: "no samples", detail: "nothing to measure: no request (or payment) finished")
            }
            // Bounds are shown rounded outwards, and to as many decimals as it takes for the
            // figure shown to compare with the limit as the bound itself does.
            func bound(_ seconds: Double, _ rounding: FloatingPointRoundingRule) -> String {
                Self.duration(seconds, rounding: rounding, beside: value, comparison)
            }
            let observed = "\(Self.duration(estimate.value)) [\(estimate.lower.map { bound($0, .down) } ?? "?"), \(estimate.upper.map { bound($0, .up) } ?? "?")]"
            let needed = Self.samplesForQuantile(p, confidence: confidence)
            switch comparison {
            case .less, .lessOrEqual:
                if let upper = estimate.upper, comparison.holds(upper, value) { return verdict(.passed, observed: observed, detail: "upper bound \(bound(upper, .up)) at \(Self.percent(confidence)) confidence") }
                if let lower = estimate.lower, !comparison.holds(lower, value) { return verdict(.failed, observed: observed, detail: "even the lower bound \(bound(lower, .down)) misses \(Self.duration(value))") }
            case .greater, .greaterOrEqual:
                if let lower = estimate.lower, comparison.holds(lower, value) { return verdict(.passed, observed: observed, detail: "lower bound \(bound(lower, .down))") }
                if let upper = estimate.upper, !comparison.holds(upper, value) { return verdict(.failed, observed: observed, detail: "even the upper bound \(bound(upper, .up)) misses \(Self.duration(value))") }
            case .equal, .notEqual:
                return verdict(comparison.holds(estimate.value, value) ? .passed : .failed, observed: observed, detail: "point estimate")
            }
            let more = estimate.upper == nil
                ? (sampleCount(report) >= needed
                    ? " the interval reaches the unanswered requests, so the quantile may be unbounded"
                    : " needs at least \(needed) samples for an upper bound (has \(sampleCount(report)))")
                : " the interval straddles \(Self.duration(value)); more samples narrow it"
            return verdict(.inconclusive, observed: observed, detail: "inconclusive:" + more)
        case .availability, .errorRate:
            let total = report.requests + report.outstandingAtEnd
            let failures = total - report.answered
            guard total > 0 else { return verdict(.inconclusive, observed: "no requests", detail: "no request was made") }
            let (lower, upper) = Self.successBounds(successes: report.answered, total: total, confidence: confidence)
            let isAvailability = metric == .availability
            let point = Double(report.answered) / Double(total)
            let (estimate, low, high) = isAvailability ? (point, lower, upper) : (1 - point, 1 - upper, 1 - lower)
            let observed = "\(Self.percent(estimate)) [\(Self.percent(low, rounding: .down)), \(Self.percent(high, rounding: .up))] (\(failures) of \(total) failed)"
            let upperIsFavourable = comparison == .less || comparison == .lessOrEqual
            let favourable = upperIsFavourable ? high : low
            let unfavourable = upperIsFavourable ? low : high
            if comparison.holds(favourable, value) {
                return verdict(.passed, observed: observed,
                               detail: "bound \(Self.percent(favourable, rounding: upperIsFavourable ? .up : .down)) at \(Self.percent(confidence)) confidence")
            }
            if !comparison.holds(unfavourable, value) {
                return verdict(.failed, observed: observed,
                               detail: "even the bound \(Self.percent(unfavourable, rounding: upperIsFavourable ? .down : .up)) misses \(Self.percent(value))")
            }
            var detail = "inconclusive at \(Self.percent(confidence)) confidence"
            if isAvailability, value < 1, let needed = try? Availability.requiredRequests(target: value, confidence: confidence, failures: failures) {
                detail += ": with \(failures) failure(s), \(needed) requests are needed (\(max(0, needed - total)) more)"
            }
            return verdict(.inconclusive, observed: observed, detail: detail)
        case .throughput:
            let rate = report.loadEndSeconds > 0 ? Double(report.answeredDuringLoad) / report.loadEndSeconds : 0
            return exact(rate, observed: String(format: "%.1f/s", rate))
        case .violations: return exact(Double(report.violations), observed: "\(report.violations)")
        case .safetyViolations: return exact(Double(report.safetyViolationCount), observed: "\(report.safetyViolationCount)")
        case .livenessViolations: return exact(Double(report.livenessViolationCount), observed: "\(report.livenessViolationCount)")
        case .lost: return exact(Double(report.nonTerminalAtEnd), observed: "\(report.nonTerminalAtEnd)")
        case .fraudPrecision, .fraudRecall:
            guard let rate = metric == .fraudPrecision ? report.fraudPrecision : report.fraudRecall else {
                return verdict(.inconclusive, observed: "n/a", detail: "no fraud was flagged or present")
            }
            return exact(rate, observed: Self.percent(rate))
        }
    }

    private func exact(_ observed: Double, observed text: String) -> ThresholdVerdict {
        verdict(comparison.holds(observed, value) ? .passed : .failed, observed: text, detail: "exact")
    }

    private func verdict(_ outcome: ThresholdVerdict.Outcome, observed: String, detail: String) -> ThresholdVerdict {
        ThresholdVerdict(threshold: text, outcome: outcome, observed: observed, detail: detail)
    }

    private func sampleCount(_ report: some ThresholdSubject) -> Int {
        if case .latency = metric { return report.answered }
        if case .latencyCountingUnanswered = metric { return report.requests + report.outstandingAtEnd }
        return report.paymentsCompleted + report.paymentsFailed
    }

    /// Samples needed before the order-statistic upper bound of the
    /// p-quantile exists. The bound is the top of a two-sided interval
    /// (``SortedSample/quantile(_:confidence:)``), which leaves (1 − confidence)/2
    /// above it: it exists once pⁿ ≤ (1 − confidence)/2.
    static func samplesForQuantile(_ p: Double, confidence: Double) -> Int {
        Int((log((1 - confidence) / 2) / log(p)).rounded(.up))
    }

    /// One-sided Clopper–Pearson bounds on a success proportion.
    static func successBounds(successes: Int, total: Int, confidence: Double) -> (lower: Double, upper: Double) {
        let lower = (try? Availability.lowerBound(failures: total - successes, requests: total, confidence: confidence)) ?? 0
        // The upper bound on successes is the upper bound on "failures" with the roles swapped.
        let upper = (try? Availability.failureRateUpperBound(failures: successes, requests: total, confidence: confidence)) ?? 1
        return (lower, upper)
    }

    /// Seconds as "12.3 ms" below a second and "1.234 s" from there. Like
    /// ``percent(_:rounding:)``, a bound is rounded away from what it
    /// claims: an upper bound of 210.04 ms reads 210.1 ms, never 210.0 ms.
    static func duration(_ seconds: Double, rounding: FloatingPointRoundingRule = .toNearestOrAwayFromZero) -> String {
        duration(seconds, rounding: rounding, extraDecimals: 0)
    }

    /// A bound judged against `limit` by `comparison`, as ``duration(_:rounding:)``
    /// shows it, with up to six more decimals while the figure shown would
    /// compare with the limit otherwise than the bound does, or read as the
    /// limit itself: an upper bound of 199.96 ms that passes `< 200ms` reads
    /// 199.96 ms, not 200.0 ms.
    static func duration(_ seconds: Double, rounding: FloatingPointRoundingRule, beside limit: Double, _ comparison: Comparison) -> String {
        let scale = seconds < 1 ? 1_000.0 : 1.0
        let decimals = seconds < 1 ? 1 : 3
        func misleads(_ extra: Int) -> Bool {
            let shown = rounded(seconds * scale, decimals: decimals + extra, rounding) / scale
            // A figure that reads as the limit itself, for a bound that is not, misleads too.
            return comparison.holds(shown, limit) != comparison.holds(seconds, limit) || (shown == limit && seconds != limit)
        }
        var extra = 0
        while extra < 6 && misleads(extra) { extra += 1 }
        return duration(seconds, rounding: rounding, extraDecimals: extra)
    }

    /// Milliseconds to one decimal below a second, else seconds to three,
    /// plus `extraDecimals`.
    private static func duration(_ seconds: Double, rounding: FloatingPointRoundingRule, extraDecimals: Int) -> String {
        guard seconds.isFinite else { return "unanswered" }
        return seconds < 1
            ? String(format: "%.\(1 + extraDecimals)f ms", rounded(seconds * 1_000, decimals: 1 + extraDecimals, rounding))
            : String(format: "%.\(3 + extraDecimals)f s", rounded(seconds, decimals: 3 + extraDecimals, rounding))
    }

    /// `value` rounded to `decimals` places by `rule`, with a hair of slack
    /// against the direction of a directed rule: 0.21, stored a hair above,
    /// still rounds up to 0.21 and not to 0.22.
    public static func rounded(_ value: Double, decimals: Int, _ rule: FloatingPointRoundingRule) -> Double {
        let scale = pow(10, Double(decimals))
        let slack = rule == .down ? 1e-6 : rule == .up ? -1e-6 : 0
        return (value * scale + slack).rounded(rule) / scale
    }

    /// `fraction` in percent, to four decimals. A bound is rounded away
    /// from what it claims: a lower bound down, an upper one up, so that
    /// 99.98996% is never shown as a proven 99.99%.
    public static func percent(_ fraction: Double, rounding: FloatingPointRoundingRule = .toNearestOrAwayFromZero) -> String {
        // In millionths, with a hair of slack: 0.9999, stored a hair below, still reads 99.99%.
        var text = String(format: "%.4f", rounded(fraction, decimals: 6, rounding) * 100)
        while text.hasSuffix("0") && text.contains(".") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text + "%"
    }
}

/// What thresholds read of a run, simulated or measured.
public protocol ThresholdSubject {
    var confidence: Double { get }
    func latencyQuantile(_ p: Double) throws -> QuantileEstimate?
    /// With `countingUnanswered`, over every request, each one not answered
    /// counted as slower than any answer (``Threshold/Metric/latencyCountingUnanswered(percentile:)``).
    func latencyQuantile(_ p: Double, countingUnanswered: Bool) throws -> QuantileEstimate?
    func timeToTerminalQuantile(_ p: Double) throws -> QuantileEstimate?
    /// Requests answered or given up on, and those still unanswered at the end.
    var requests: Int { get }
    var outstandingAtEnd: Int { get }
    var answered: Int { get }
    /// Requests answered by the end of the load: answers that came later,
    /// while a saturated system drained its queues, are not throughput.
    var answeredDuringLoad: Int { get }
    var loadEndSeconds: Double { get }
    var violations: Int { get }
    var safetyViolationCount: Int { get }
    var livenessViolationCount: Int { get }
    var nonTerminalAtEnd: Int { get }
    var paymentsCompleted: Int { get }
    var paymentsFailed: Int { get }
    var fraudPrecision: Double? { get }
    var fraudRecall: Double? { get }
}

extension WorldReport: ThresholdSubject {
    public var fraudPrecision: Double? { fraud.precision }
    public var fraudRecall: Double? { fraud.recall }
}

/// What a threshold said about a run.
public struct ThresholdVerdict: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Comparable, Codable {
        case passed, inconclusive, failed
        public static func < (lhs: Outcome, rhs: Outcome) -> Bool {
            let order: [Outcome] = [.passed, .inconclusive, .failed]
            return order.firstIndex(of: lhs)! < order.firstIndex(of: rhs)!
        }
    }

    public var threshold: String
    public var outcome: Outcome
    /// The measured value with its interval.
    public var observed: String
    /// Why: the bound that decided, or how many more samples are needed.
    public var detail: String

    public init(threshold: String, outcome: Outcome, observed: String, detail: String) {
        self.threshold = threshold
        self.outcome = outcome
        self.observed = observed
        self.detail = detail
    }
}

public struct ThresholdSyntaxError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
