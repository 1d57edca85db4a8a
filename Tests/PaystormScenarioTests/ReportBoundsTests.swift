import Foundation
import Testing
import PaystormStatistics
@testable import PaystormScenario
@testable import PaystormWorld

/// A lower bound just under 99.99%: rounded to nearest it would read as the
/// proven 99.99% it is not.
let lowerBoundUnder9999 = 0.99989996

@Suite("Confidence bounds in the reports are rounded away from what they claim")
struct ReportBoundsTests {
    func document() -> ReportDocument {
        var document = sampleDocument()
        document.requests.availabilityLowerBound = lowerBoundUnder9999
        // 190.04 ms and 260.04 ms: to the nearest tenth 190.0 and 260.0.
        document.latency[1] = .init(percentile: 99, seconds: 0.210, lowerSeconds: 0.19096, upperSeconds: 0.26004)
        document.timeToTerminal[0] = .init(percentile: 50, seconds: 2.5, lowerSeconds: 2.4009, upperSeconds: 2.6001)
        return document
    }

    @Test("the rounding rules: a lower bound rounds down, an upper bound up, an estimate to nearest")
    func rules() {
        #expect(ReportFormat.percent(lowerBoundUnder9999) == "99.99%")
        #expect(ReportFormat.percent(lowerBoundUnder9999, rounding: .down) == "99.9899%")
        #expect(ReportFormat.percent(0.9999, rounding: .down) == "99.99%", "a value stored a hair below still reads as itself")
        #expect(Threshold.duration(0.26004) == "260.0 ms")
        #expect(Threshold.duration(0.26004, rounding: .up) == "260.1 ms")
        #expect(Threshold.duration(0.19096, rounding: .down) == "190.9 ms")
        #expect(Threshold.duration(0.21, rounding: .up) == "210.0 ms", "a value stored a hair above still reads as itself")
        #expect(Threshold.duration(2.6001, rounding: .up) == "2.601 s")
        #expect(Threshold.duration(2.4009, rounding: .down) == "2.400 s")
        #expect(ReportFormat.interval(0.19096, nil) == "[190.9 ms, —]")
    }

    @Test("report.html: the availability card and the percentile tables")
    func html() {
        let html = HTMLReport.render(document())
        #expect(html.contains("≥ 99.9899% at 99% confidence"))
        #expect(!html.contains("≥ 99.99%"))
        #expect(html.contains("<td class=\"num\">190.9 ms</td><td class=\"num\">260.1 ms</td>"))
        #expect(html.contains("<td class=\"num\">2.400 s</td><td class=\"num\">2.601 s</td>"))
    }

    @Test("report.md: \"at least\" and the interval columns")
    func markdown() {
        let markdown = ReportWriter.markdown(document())
        #expect(markdown.contains("at least 99.9899% at 99% confidence"), "\(markdown)")
        #expect(markdown.contains("| p99 | 210.0 ms | [190.9 ms, 260.1 ms] |"), "\(markdown)")
        #expect(markdown.contains("| 2.500 s | [2.400 s, 2.601 s] |"), "\(markdown)")
    }

    @Test("threshold verdicts: a latency interval and the bound that decided")
    func thresholdVerdicts() throws {
        // Every sample is a whole tenth of a millisecond and 0.004 ms: the upper
        // bound, 199.104 ms, would read 199.1 ms to the nearest tenth.
        let subject = BoundsSubject(sample: try SortedSample((1...2_000).map { Double($0) / 10_000 + 0.000_004 }))
        let verdict = try Threshold.parse("p(99) < 1s").judge(subject)
        #expect(verdict.observed == "198.0 ms [196.8 ms, 199.2 ms]")
        #expect(verdict.detail == "upper bound 199.2 ms at 99% confidence")
    }

    /// p(99) is over the answers only; p_all(99) counts each unanswered
    /// request as slower than any answer: 2% unanswered fails p_all(99)
    /// whatever the answers' speed, 0.5% can still pass.
    @Test("p_all(N) counts unanswered requests as slower than any answer")
    func latencyCountingUnanswered() throws {
        let fast = try SortedSample((1...20_000).map { Double($0) / 1_000_000 })  // all under 20 ms
        let answersOnly = try Threshold.parse("p(99) < 1s").judge(BoundsSubject(sample: fast, unanswered: 400))
        #expect(answersOnly.outcome == .passed)
        let failing = try Threshold.parse("p_all(99) < 1s").judge(BoundsSubject(sample: fast, unanswered: 400))
        #expect(failing.outcome == .failed, "\(failing)")
        #expect(failing.observed == "unanswered [unanswered, ?]" && failing.detail == "even the lower bound unanswered misses 1.000 s")
        let passing = try Threshold.parse("p_all(99) < 1s").judge(BoundsSubject(sample: fast, unanswered: 100))
        #expect(passing.outcome == .passed, "\(passing)")
        let none = try Threshold.parse("p_all(99) < 1s").judge(BoundsSubject(sample: fast, unanswered: 0))
        #expect(none == (try Threshold.parse("p_all(99) < 1s").judge(BoundsSubject(sample: fast))))
        #expect(none.outcome == .passed)
        // Near the share that decides, the interval reaches the unanswered ones.
        let close = try Threshold.parse("p_all(99) < 1s").judge(BoundsSubject(sample: fast, unanswered: 202))
        #expect(close.outcome == .inconclusive && close.detail.contains("may be unbounded"), "\(close)")
        #expect(throws: ThresholdSyntaxError.self) { try Threshold.parse("p_all(100) < 1s") }
    }

    @Test("a bound beside its limit shows enough decimals to fall on its own side of it")
    func boundBesideItsLimit() throws {
        let under = try Threshold.parse("p(99) < 200ms").judge(BoundsSubject(sample: try SortedSample(Array(repeating: 0.19996, count: 2_000))))
        #expect(under.outcome == .passed)
        #expect(under.detail == "upper bound 199.96 ms at 99% confidence", "\(under.detail)")
        #expect(under.observed == "200.0 ms [199.9 ms, 199.96 ms]", "\(under.observed)")
        let over = try Threshold.parse("p(99) < 200ms").judge(BoundsSubject(sample: try SortedSample(Array(repeating: 0.20004, count: 2_000))))
        #expect(over.outcome == .failed)
        #expect(over.detail == "even the lower bound 200.04 ms misses 200.0 ms", "\(over.detail)")
        // Far from the limit, one decimal as before.
        let far = try Threshold.parse("p(99) < 1s").judge(BoundsSubject(sample: try SortedSample(Array(repeating: 0.19996, count: 2_000))))
        #expect(far.detail == "upper bound 200.0 ms at 99% confidence", "\(far.detail)")
    }

    @Test("a sweep's availability column and the bounds in sweep.csv")
    func sweep() {
        let point = Sweep.Point(index: 0, settings: ["load.rate": 100], seed: 1, status: "passed", exitCode: 0, offeredPerSecond: 100,
                                achievedPerSecond: 100, p99Seconds: 0.2, p99LowerSeconds: 0.1999996, p99UpperSeconds: 0.2000004,
                                meanLatencySeconds: 0.1, availabilityLowerBound: lowerBoundUnder9999, violations: 0, thresholds: [])
        let axis = Sweep.Axis(key: .rate, values: [100])
        let result = SweepResult.merge(scenarioName: "s", scenarioHash: "h", axes: [axis], seeds: [1], points: [point])
        #expect(SweepReport.markdown(result).contains("| 99.9899% |"))
        let row = SweepReport.csv(result).split(separator: "\n")[1].split(separator: ",", omittingEmptySubsequences: false)
        // p99_lower_s, p99_upper_s, …, availability_lower_bound
        #expect(row[8] == "0.199999" && row[9] == "0.200001", "\(row)")
        #expect(row[12] == "0.999899", "\(row)")
    }

    @Test("a seed farm's availability bound across seeds rounds down")
    func farm() throws {
        let failures = [9, 10, 7]
        let documents = failures.enumerated().map { index, failed in
            var document = sampleDocument(windows: 0)
            document.seed = UInt64(index + 1)
            document.requests.total = 100_000
            document.requests.answered = 100_000 - failed
            document.requests.availability = Double(100_000 - failed) / 100_000
            document.requests.confidence = 0.95
            return document
        }
        // 26 failures in 300,000: Clopper–Pearson at 95% gives 99.9879747%, which to the nearest would read 99.988%.
        let summary = try FarmSummary(scenario: try Scenario.parse(tinyScenario, file: "tiny.yaml"), documents: documents)
        #expect(summary.markdown.contains("- availability: 99.9913% of 300000 requests (seeds 99.99% to 99.993%); at least 99.9879% at 95%"),
                "\(summary.markdown)")
    }
}

/// A threshold subject with one latency sample (the answered requests),
/// `unanswered` more requests, and nothing else.
struct BoundsSubject: ThresholdSubject {
    var sample: SortedSample
    var unanswered = 0
    var confidence: Double { 0.99 }
    func latencyQuantile(_ p: Double) throws -> QuantileEstimate? { try sample.quantile(p, confidence: confidence) }
    func latencyQuantile(_ p: Double, countingUnanswered: Bool) throws -> QuantileEstimate? {
        countingUnanswered ? try sample.quantile(p, confidence: confidence, unboundedAbove: unanswered) : try latencyQuantile(p)
    }
    func timeToTerminalQuantile(_ p: Double) throws -> QuantileEstimate? { nil }
    var requests: Int { sample.count + unanswered }
    var outstandingAtEnd: Int { 0 }
    var answered: Int { sample.count }
    var answeredDuringLoad: Int { sample.count }
    var loadEndSeconds: Double { 1 }
    var violations: Int { 0 }
    var safetyViolationCount: Int { 0 }
    var livenessViolationCount: Int { 0 }
    var nonTerminalAtEnd: Int { 0 }
    var paymentsCompleted: Int { 0 }
    var paymentsFailed: Int { 0 }
    var fraudPrecision: Double? { nil }
    var fraudRecall: Double? { nil }
}
