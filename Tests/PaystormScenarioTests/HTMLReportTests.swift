import Foundation
import Testing
@testable import PaystormScenario
@testable import PaystormWorld

/// A small run written by hand: 30 one-second windows with a PSP outage
/// from 10 s to 18 s, three thresholds (one of each outcome) and a safety
/// violation whose text tries to inject markup.
func sampleDocument(windows windowCount: Int = 30) -> ReportDocument {
    let windows = (0..<windowCount).map { index -> WorldMetrics.Window in
        let inFault = (10..<18).contains(index)
        var window = WorldMetrics.Window(startSeconds: Double(index))
        window.offered = 300
        window.answered = inFault ? 240 : 299
        window.failed = inFault ? 60 : 1
        window.throttled = inFault ? 25 : 0
        window.latencyP50Seconds = inFault ? 0.180 : 0.042
        window.latencyP99Seconds = inFault ? 1.400 : 0.210
        window.latencyMaxSeconds = inFault ? 1.950 : 0.380
        window.terminal = 290
        window.replicaQueueDepth = inFault ? 120 + index : 4
        window.consumerLag = inFault ? 800 : 12
        window.outboxBacklog = inFault ? 300 : 3
        window.deadLetters = index >= 12 ? 2 : 0
        window.pspCalls = 310
        return window
    }
    return ReportDocument(
        schema: ReportDocument.schema, paystormVersion: paystormVersion,
        scenario: .init(name: "checkout-peak & <outage>", description: "Black-Friday peak with a 8 s \"psp-a\" outage.",
                        hash: "9f2c1ab3e4d5", file: "checkout-peak.yaml", expectation: "pass", expectedExit: nil),
        seed: 42,
        verdict: .init(status: "invariant-violated", exitCode: 3, summary: "1 safety invariant violation(s)", asExpected: false),
        thresholds: [
            ThresholdVerdict(threshold: "p(99) < 2s", outcome: .passed, observed: "210.0 ms [190.0 ms, 260.0 ms]",
                             detail: "upper bound 260.0 ms at 99% confidence"),
            ThresholdVerdict(threshold: "availability >= 99.99%", outcome: .failed, observed: "97.8% [97.6%, 98%] (196 of 9000 failed)",
                             detail: "even the bound 98% misses 99.99%"),
            ThresholdVerdict(threshold: "p(99.99) < 1s", outcome: .inconclusive, observed: "1.950 s [1.400 s, ?]",
                             detail: "inconclusive: needs at least 46050 samples for an upper bound (has 8804)"),
        ],
        requests: .init(total: 9_000, answered: 8_804, clientErrors: 12, serverErrors: 150, timedOut: 46, throttled: 200, retries: 410,
                        unfinished: 0, offeredPerSecond: 300, achievedPerSecond: 293.47, availability: 0.978222,
                        availabilityLowerBound: 0.975311, confidence: 0.99),
        latency: [
            .init(percentile: 50, seconds: 0.042, lowerSeconds: 0.041, upperSeconds: 0.043),
            .init(percentile: 99, seconds: 0.210, lowerSeconds: 0.190, upperSeconds: 0.260),
            .init(percentile: 99.99, seconds: 1.950, lowerSeconds: 1.400, upperSeconds: nil),
        ],
        timeToTerminal: [
            .init(percentile: 50, seconds: 2.5, lowerSeconds: 2.4, upperSeconds: 2.6),
            .init(percentile: 99, seconds: 31.0, lowerSeconds: 29.0, upperSeconds: nil),
        ],
        payments: .init(started: 9_000, created: 8_950, completed: 8_700, failed: 250, notTerminalAtEnd: 0,
                        refundsRequested: 120, refundsAccepted: 118),
        psps: [
            .init(id: "psp-a", charges: 4_600, refunds: 60, statusQueries: 210, cancels: 4, succeeded: 4_100, declined: 180,
                  transientErrors: 90, rateLimited: 40, ambiguous: 7, unanswered: 380, webhooksSent: 4_300),
            .init(id: "psp-b", charges: 4_350, refunds: 58, statusQueries: 12, cancels: 0, succeeded: 4_150, declined: 170,
                  transientErrors: 20, rateLimited: 0, ambiguous: 1, unanswered: 0, webhooksSent: 4_320),
        ],
        fraud: .init(truePositives: 41, falsePositives: 9, falseNegatives: 6, trueNegatives: 8_894, precision: 0.82, recall: 41.0 / 47.0),
        infrastructure: .init(webhooksApplied: 8_500, webhooksRejected: 3, queueOverflows: 0, lostInCrashes: 2,
                              gatewayUnauthorized: 12, gatewayThrottled: 200, gatewayUnavailable: 31, brokerProduced: 26_000,
                              consumerRedeliveries: 140, rebalances: 2, brokerDeadLetters: 2, notificationsDelivered: 8_600,
                              notificationsFailed: 5, networkSent: 120_000, networkLost: 310, networkDuplicated: 44,
                              networkPartitioned: 0, crashes: 1, restarts: 1),
        reconciliation: [
            .init(psp: "psp-b", matched: 4_150, discrepancies: [:]),
            .init(psp: "psp-a", matched: 4_095, discrepancies: ["missing-in-ledger": 3, "amount-mismatch": 1]),
        ],
        faults: [
            .init(label: "psp-a outage", atSeconds: 10, endSeconds: 18),
            .init(label: "broker partition", atSeconds: 12, endSeconds: 16),
            .init(label: "replica-2 crash", atSeconds: 14, endSeconds: 14.5),
        ],
        buggify: .init(enabled: ["outbox.delay", "consumer.crash-before-commit"], fired: ["outbox.delay": 17, "webhook.duplicate": 2]),
        violations: [
            .init(kind: "safety", invariant: "ledger-balanced", subject: "payment pay_<0042>", virtualSeconds: 14.25, seed: 42,
                  detail: "debits 1000 != credits 900 & \"EUR\"",
                  trail: ["t=14.000 create pay_0042 1000 EUR", "t=14.100 <script>alert('x')</script>", "t=14.250 capture posted twice"]),
        ],
        windows: windows,
        simulation: .init(virtualSeconds: Double(windowCount), loadEndSeconds: Double(windowCount), events: 1_234_567,
                          traceHash: "c0ffee00", safetyViolationCount: 1),
        independence: "One seed is one run; requests are treated as independent trials.")
}

/// Every number written into an SVG attribute (coordinates, sizes, points).
func svgNumbers(_ html: String) -> [Substring] {
    let pattern = /\s(?:x|y|x1|y1|x2|y2|cx|cy|r|width|height|points|viewBox)="([^"]*)"/
    return html.matches(of: pattern).flatMap { $0.output.1.split(whereSeparator: { $0 == " " || $0 == "," }) }
}

/// Words such as "nan" or "inf" that a non-finite Double leaves when formatted.
func nonFiniteWords(_ html: String) -> [Substring] {
    html.split(whereSeparator: { !$0.isLetter }).filter { ["nan", "inf", "infinity"].contains($0.lowercased()) }
}

@Suite("HTML report: one self-contained, deterministic page")
struct HTMLReportTests {
    @Test("the page shows the verdict, every threshold, the fault and a chart per series")
    func content() {
        let document = sampleDocument()
        let html = HTMLReport.render(document)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("invariant-violated"))
        #expect(html.contains("exit code 3"))
        #expect(html.contains("did NOT end as the scenario expected"))
        #expect(html.contains("background:\(HTMLPalette.fail)"))
        for threshold in document.thresholds {
            #expect(html.contains(ReportFormat.escape(threshold.threshold)), "\(threshold.threshold)")
            #expect(html.contains(ReportFormat.escape(threshold.observed)), "\(threshold.observed)")
        }
        // latency, throughput, outcomes, error rate, backlogs, PSPs, fraud
        #expect(html.components(separatedBy: "<svg ").count - 1 == 7)
        // Offered is dashed and drawn over achieved: where they are equal, both show.
        let throughput = html.components(separatedBy: "<svg ")[2]
        let achieved = throughput.range(of: "<polyline class=\"series\" fill=\"none\" stroke=\"\(HTMLPalette.series[2])\" points=")
        let offered = throughput.range(of: "<polyline class=\"series\" fill=\"none\" stroke=\"\(HTMLPalette.series[0])\" stroke-dasharray=\"6 4\" points=")
        #expect(achieved != nil && offered != nil && achieved!.lowerBound < offered!.lowerBound, "\(throughput.prefix(3000))")
        #expect(html.contains(">psp-a outage</text>"))
        #expect(html.contains("needs more samples"))
        #expect(html.contains("9f2c1ab3e4d5"))
        #expect(html.contains("<details>"))
        // Reconciliation columns are the sorted union of discrepancy kinds.
        let amount = html.range(of: "<th class=\"num\">amount-mismatch</th>")
        let missing = html.range(of: "<th class=\"num\">missing-in-ledger</th>")
        #expect(amount != nil && missing != nil && amount!.lowerBound < missing!.lowerBound)
    }

    /// A 10 s load followed by 120 s of healing: the requests' charts used
    /// to spread over all 130 s, the load squeezed into the first 8%.
    @Test("the requests' charts end with the requests; the backlogs span the whole run")
    func requestChartsEndWithTheRequests() {
        var document = sampleDocument(windows: 130)
        for index in 10..<130 {
            document.windows[index].offered = 0
            document.windows[index].answered = 0
            document.windows[index].failed = 0
            document.windows[index].throttled = 0
        }
        document.simulation.loadEndSeconds = 10
        #expect(HTMLReport.requestWindowCount(document) == 11)
        let html = HTMLReport.render(document)
        #expect(html.contains("Drawn to 11 s, past the last request; the backlogs below span the whole run."))
        // Four request charts to 11 s (an axis that ends at its tick 12), the backlogs to 130 s (an axis to 140).
        func lastTimeTick(_ chart: String) -> Double? {
            chart.matches(of: /class="tick" x="[^"]*" y="[^"]*" text-anchor="middle">([0-9.]+)<\/text>/).compactMap { Double($0.output.1) }.max()
        }
        let charts = html.components(separatedBy: "<svg ").dropFirst()
        #expect(charts.prefix(4).map(lastTimeTick) == [12, 12, 12, 12])
        #expect(charts.dropFirst(4).first.flatMap(lastTimeTick) == 140)
        // A run whose requests fill it is drawn whole, with no note.
        #expect(HTMLReport.requestWindowCount(sampleDocument()) == 30)
        #expect(!HTMLReport.render(sampleDocument()).contains("Drawn to"))
    }

    /// Healing ends a fault that outlasts the load and skips one due after
    /// it began: the report lists each as scheduled and says what the run
    /// made of it — in the table, in report.md, and in the shaded bands.
    @Test("a fault cut short or never started by healing says so")
    func faultsAsRun() {
        let scheduled = [ScheduledFault(atSeconds: 10, durationSeconds: 100, kind: .pspOutage(psp: "psp-a")),
                         ScheduledFault(atSeconds: 12, durationSeconds: 2, kind: .brokerPartitionDown(partition: 1)),
                         ScheduledFault(atSeconds: 30, durationSeconds: 5, kind: .relayCrash)]
        let windows = [FaultWindow(startedSeconds: 10, endedSeconds: 25, endedByHealing: true), FaultWindow(startedSeconds: 12, endedSeconds: 14),
                       FaultWindow()]
        let faults = ReportDocument.faults(scheduled, windows: windows, healingBeganSeconds: 25)
        #expect(faults.map(\.cutAtSeconds) == [25, nil, 25])
        // A fault that ended on its own, at a time a hair off `at + for` (it
        // went through virtual nanoseconds), ran as scheduled.
        let onTime = ReportDocument.faults([ScheduledFault(atSeconds: 1.1, durationSeconds: 0.2, kind: .relayCrash)],
                                           windows: [FaultWindow(startedSeconds: 1.1, endedSeconds: 1.299_999_999)], healingBeganSeconds: 9)
        #expect(onTime[0].cutAtSeconds == nil)
        #expect(faults.map(\.acted) == [true, true, false])
        #expect(faults.map(\.scheduled) == ReportDocument.faults(scheduled), "the schedule is kept as it was")
        var document = sampleDocument()
        document.faults = faults
        let html = HTMLReport.render(document)
        #expect(html.contains("cut at 25 s: healing began"))
        #expect(html.contains("never acted: healing began at 25 s, before it was due"))
        #expect(html.contains(">\(scheduled[0].label)</text>") && !html.contains(">\(scheduled[2].label)</text>"),
                "only what acted is shaded on the charts")
        let markdown = ReportWriter.markdown(document)
        #expect(markdown.contains("- \(scheduled[0].label): 10.0 s – 110.0 s (cut at 25 s: healing began)"), "\(markdown)")
        #expect(markdown.contains("- \(scheduled[1].label): 12.0 s – 14.0 s\n"))
    }

    @Test("text from the document is escaped and the page carries no script or external resource")
    func escaping() {
        let html = HTMLReport.render(sampleDocument())
        #expect(html.contains("t=14.100 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
        #expect(html.contains("payment pay_&lt;0042&gt;"))
        #expect(html.contains("debits 1000 != credits 900 &amp; &quot;EUR&quot;"))
        #expect(html.contains("checkout-peak &amp; &lt;outage&gt;"))
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains("<outage>"))
        #expect(!html.contains("src=") && !html.contains("href=") && !html.contains("url("))
    }

    @Test("rendering is deterministic", arguments: [0, 1, 30, 10_000])
    func deterministic(windows: Int) {
        let document = sampleDocument(windows: windows)
        #expect(HTMLReport.render(document) == HTMLReport.render(document))
    }

    @Test("no NaN or infinity reaches the page, whatever the inputs", arguments: [0, 1, 30, 10_000])
    func finite(windows: Int) {
        var document = sampleDocument(windows: windows)
        let html = HTMLReport.render(document)
        #expect(nonFiniteWords(html).isEmpty)
        #expect(svgNumbers(html).allSatisfy { Double($0)?.isFinite == true })

        // All-zero series, and degenerate figures where the statistics had nothing to go on.
        document.windows = document.windows.map { WorldMetrics.Window(startSeconds: $0.startSeconds) }
        document.psps = document.psps.map {
            .init(id: $0.id, charges: 0, refunds: 0, statusQueries: 0, cancels: 0, succeeded: 0, declined: 0, transientErrors: 0,
                  rateLimited: 0, ambiguous: 0, unanswered: 0, webhooksSent: 0)
        }
        document.fraud = .init(truePositives: 0, falsePositives: 0, falseNegatives: 0, trueNegatives: 0, precision: nil, recall: nil)
        document.requests.availability = .nan
        document.requests.achievedPerSecond = .infinity
        document.latency[0].seconds = .nan
        document.faults.append(.init(label: "forever", atSeconds: 0.5, endSeconds: .infinity))
        let degenerate = HTMLReport.render(document)
        #expect(nonFiniteWords(degenerate).isEmpty, "\(nonFiniteWords(degenerate))")
        #expect(svgNumbers(degenerate).allSatisfy { Double($0)?.isFinite == true })
        #expect(degenerate.contains("n/a — nothing was flagged"))
        #expect(degenerate.contains("<title>forever: 0.500 s – —</title>"), "a fault still active at the end is shaded to the axis's end")
    }

    @Test("a run without windows still renders every section")
    func emptyWindows() {
        var document = sampleDocument(windows: 0)
        document.violations = []
        document.simulation.safetyViolationCount = 0
        document.thresholds = []
        document.psps = []
        let html = HTMLReport.render(document)
        #expect(html.hasSuffix("</html>\n"))
        #expect(html.components(separatedBy: "<svg ").count - 1 == 7)
        #expect(html.contains("no metrics windows were recorded"))
        #expect(html.contains("No violations"))
        #expect(html.contains("declares no thresholds"))
    }

    @Test("a long run draws at most 600 points a series and keeps each bucket's peak")
    func downsampling() {
        var document = sampleDocument(windows: 10_000)
        document.windows[7_777].latencyMaxSeconds = 9.5
        let html = HTMLReport.render(document)
        let polylines = html.matches(of: /<polyline [^>]*points="([^"]*)"/).map { $0.output.1.split(separator: " ").count }
        // latency 3, throughput 2, outcomes 3, error rate 2, backlogs 4
        #expect(polylines.count == 14)
        #expect(polylines.allSatisfy { $0 > 500 && $0 <= TimeSeriesChart.maximumPoints }, "\(polylines)")
        // The spike sets the latency axis: seconds, since the worst window passed 2 s, and reaching past 9.5.
        let latencyChart = html[html.range(of: "<svg ")!.lowerBound ..< html.range(of: "</svg>")!.upperBound]
        #expect(latencyChart.contains("latency (s)"))
        #expect(latencyChart.contains(">10</text>"))
        #expect(html.contains("10,000 windows, 17 per point"))

        let buckets = TimeSeriesChart.buckets(count: 10_000)
        #expect(buckets.count <= TimeSeriesChart.maximumPoints)
        #expect(buckets.first == 0..<17 && buckets.last?.upperBound == 10_000)
        #expect(TimeSeriesChart.buckets(count: 1) == [0..<1])
        #expect(TimeSeriesChart.buckets(count: 0).isEmpty)
        #expect(TimeSeriesChart.reduce([1, 5, 3], .maximum) == 5)
        #expect(TimeSeriesChart.reduce([1, 5, 3], .mean) == 3)
        #expect(TimeSeriesChart.reduce([], .mean) == 0)
    }

    @Test("a single window is drawn as points, not an invisible line")
    func singleWindow() {
        let html = HTMLReport.render(sampleDocument(windows: 1))
        #expect(html.contains("<circle "))
        #expect(!html.contains("no metrics windows were recorded"))
    }

    @Test("numbers follow fixed rules")
    func formatting() {
        #expect(ReportFormat.escape(#"<a href="x">&'"#) == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;")
        #expect(ReportFormat.count(0) == "0")
        #expect(ReportFormat.count(999) == "999")
        #expect(ReportFormat.count(1_234_567) == "1,234,567")
        #expect(ReportFormat.count(-1_000) == "-1,000")
        #expect(ReportFormat.percentile(99.99) == "p99.99")
        #expect(ReportFormat.percentile(50) == "p50")
        #expect(ReportFormat.rate(1_234.56) == "1,234.6/s")
        #expect(ReportFormat.fixed(-0.01, 1) == "0.0")
        #expect(ReportFormat.fixed(.nan, 1) == ReportFormat.missing)
        #expect(ReportFormat.coordinate(.infinity) == "0.0")
        #expect(ReportFormat.percent(0.99991) == "99.991%")
        #expect(ReportFormat.duration(nil) == ReportFormat.missing)

        let axis = ChartAxis(maximum: 0)
        #expect(axis.top == 1 && axis.ticks.first == 0 && axis.ticks.last == 1)
        #expect(ChartAxis(maximum: 380).top == 400)
        #expect(ChartAxis(maximum: 23_000).label(20_000) == "20k")
        #expect(ChartAxis(maximum: .nan).top == 1)
    }

    /// Writes the sample page where `PAYSTORM_HTML_SAMPLE` says (with
    /// `PAYSTORM_HTML_SAMPLE_WINDOWS` windows, 30 by default), for looking at
    /// in a browser; does nothing otherwise.
    @Test("the sample page can be written for a browser")
    func writeSample() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let path = environment["PAYSTORM_HTML_SAMPLE"] else { return }
        let windows = environment["PAYSTORM_HTML_SAMPLE_WINDOWS"].flatMap { Int($0) } ?? 30
        let html = HTMLReport.render(sampleDocument(windows: windows))
        try html.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == html)
    }
}
