import Foundation
import PaystormStatistics

/// A seed farm's per-seed results merged (`summary.md`): latency with each
/// seed one independent unit (t-intervals across seeds); availability from
/// every seed's requests together (Clopper–Pearson), beside the seeds' range.
public struct FarmSummary {
    public var headline: String
    public var markdown: String

    /// - Precondition: `documents` is not empty, one per seed in seed order.
    /// - Complexity: O(n) in the number of documents and their violations.
    public init(scenario: Scenario, documents: [ReportDocument]) throws {
        precondition(!documents.isEmpty, "a seed farm summary needs at least one seed's report")
        let count = documents.count
        let statuses = Dictionary(grouping: documents, by: \.verdict.status).mapValues(\.count)
        headline = "\(scenario.name): \(count) seeds — " + statuses.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        var lines = ["# \(scenario.name): seeds \(documents.first!.seed)–\(documents.last!.seed)", "", headline + ".", ""]
        lines.append("| seed | verdict | exit | availability | p99 latency | violations |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for d in documents {
            let p99 = d.latency.first { abs($0.percentile - 99) < 1e-9 }?.seconds
            lines.append("| \(d.seed) | \(d.verdict.status) | \(d.verdict.exitCode) | \(Threshold.percent(d.requests.availability)) | \(p99.map { ReportFormat.duration($0) } ?? "—") | \(d.violationTotal) |")
        }
        lines.append("")
        if count >= 2 {
            lines.append("Across seeds (latency: each seed one unit, mean ± t·s/√m at 95%):")
            lines.append("")
            // The interval's ends round away from the mean, so it never claims
            // more than the data; and they stay within what the figure can be
            // (a t-interval is symmetric: around 99.99% it reaches past 100%).
            func interval(_ name: String, _ values: [Double], within possible: ClosedRange<Double>,
                          _ format: (Double, FloatingPointRoundingRule) -> String) throws {
                let summary = try Summary(values)
                let (low, high) = try summary.confidenceInterval(0.95)
                func clamp(_ value: Double) -> Double { min(max(value, possible.lowerBound), possible.upperBound) }
                lines.append("- \(name): \(format(summary.mean, .toNearestOrAwayFromZero)) [\(format(clamp(low), .down)), \(format(clamp(high), .up))]")
            }
            // Availability is a count of failures among requests: a t-interval
            // of per-seed rates has no width when no seed failed, and would
            // claim 100%. The claim is read from all the seeds' requests
            // together, as `claim` reads a run's, with the seeds' spread beside it.
            let requests = documents.reduce(0) { $0 + $1.requests.total }
            let answered = documents.reduce(0) { $0 + $1.requests.answered }
            if requests > 0 {
                let confidence = documents[0].requests.confidence
                let lower = try Availability.lowerBound(failures: requests - answered, requests: requests, confidence: confidence)
                let rates = documents.map(\.requests.availability)
                lines.append("- availability: \(Threshold.percent(Double(answered) / Double(requests))) of \(requests) requests"
                    + " (seeds \(Threshold.percent(rates.min()!, rounding: .down)) to \(Threshold.percent(rates.max()!, rounding: .up)));"
                    + " at least \(Threshold.percent(lower, rounding: .down)) at \(Threshold.percent(confidence)) confidence"
                    + " (one-sided Clopper–Pearson over every seed's requests together)")
            }
            let p99s = documents.compactMap { $0.latency.first { abs($0.percentile - 99) < 1e-9 }?.seconds }
            if p99s.count == count {
                try interval("p99 latency", p99s, within: 0...(.infinity)) { ReportFormat.duration($0, rounding: $1) }
            }
            let ttt = documents.compactMap { $0.timeToTerminal.first { abs($0.percentile - 99) < 1e-9 }?.seconds }
            if ttt.count == count { try interval("p99 time to terminal", ttt, within: 0...(.infinity)) { ReportFormat.duration($0, rounding: $1) } }
            lines.append("")
        }
        let failing = documents.filter { $0.violationTotal > 0 }
        for d in failing.prefix(10) {
            for v in d.violations.prefix(3) {
                lines.append("- seed \(d.seed): [\(v.invariant)] \(v.subject) at t=\(String(format: "%.3f", v.virtualSeconds)) s: \(v.detail) — replay with `paystorm run \(d.scenario.file) --seed \(d.seed)`")
            }
        }
        markdown = lines.joined(separator: "\n") + "\n"
    }

    /// Writes `summary.md` into `directory` under a temporary name, then
    /// renames it over the previous one: a reader sees the old summary or
    /// the new one, never part of one.
    public func write(to directory: String) throws {
        try ReportFileSet.replace([("summary.md", markdown)], in: directory)
    }
}
