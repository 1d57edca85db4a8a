import Testing
@testable import PaystormScenario

@Suite("A measured run's windows count outcomes as the simulator's do")
struct LoadMeasurementTests {
    @Test("a throttled request is failed and, of those, throttled: every request finishes answered or failed")
    func throttledIsFailed() {
        let statuses = [201, 400, 429, 429, 503, 0]
        let requests = statuses.enumerated().map { index, status in
            LoadMeasurement.Request(dueSeconds: 0.1 * Double(index), latencySeconds: 0.01, status: status, kind: .payment)
        }
        let measurement = LoadMeasurement(target: "http://x", description: "throttled", seed: 1, durationSeconds: 1, elapsedSeconds: 1,
                                          maximumSendLagSeconds: 0, acknowledgedPayments: 1, requests: requests)
        let document = measurement.document(thresholds: [])
        let window = document.windows[0]
        #expect(document.windows.count == 1)
        #expect(window.offered == 6 && window.answered == 2)
        #expect(window.failed == 4 && window.throttled == 2, "\(window)")
        #expect(window.answered + window.failed == window.offered)
        #expect(document.requests.total - document.requests.answered == window.failed)
    }

    /// A load generator sees answers, not what became of the payments: it
    /// must not print zeros that read as measurements, nor a replay hint that
    /// cannot work for a run against a live server.
    @Test("a measured run reports what it saw (refunds asked and accepted, not reads) and says what it cannot know")
    func reportsWhatItKnows() {
        let requests: [LoadMeasurement.Request] = [
            .init(dueSeconds: 0.1, latencySeconds: 0.01, status: 201, kind: .payment),
            .init(dueSeconds: 0.2, latencySeconds: 0.01, status: 201, kind: .refund),
            .init(dueSeconds: 0.3, latencySeconds: 0.01, status: 409, kind: .refund),
            .init(dueSeconds: 0.4, latencySeconds: 0.01, status: 200, kind: .read),
            .init(dueSeconds: 0.5, latencySeconds: 0.01, status: 200, kind: .read),
            .init(dueSeconds: 0.6, latencySeconds: 0.01, status: 200, kind: .read),
        ]
        let measurement = LoadMeasurement(target: "http://127.0.0.1:8080", description: "mixed", seed: 1, durationSeconds: 1, elapsedSeconds: 1,
                                          maximumSendLagSeconds: 0, acknowledgedPayments: 1, requests: requests)
        let document = measurement.document(thresholds: [])
        let payments = document.payments
        #expect(payments.started == 1 && payments.created == 1)
        #expect(payments.refundsRequested == 2, "reads are not refunds")
        #expect(payments.refundsAccepted == 1)
        #expect(payments.completed == nil && payments.failed == nil && payments.notTerminalAtEnd == nil, "\(payments)")
        let markdown = ReportWriter.markdown(document)
        #expect(!markdown.contains("paystorm replay"), "a measured run cannot be replayed")
        #expect(!markdown.contains("0 completed") && markdown.contains("not known to the load generator"), "\(markdown)")
        let html = HTMLReport.render(document)
        #expect(!html.contains("paystorm replay"))
        #expect(html.contains("not known"), "the HTML report says so too")
    }
}

@Suite("A measured run's reports and comparisons claim only what it measured")
struct MeasuredReportTests {
    /// The sample run as `paystorm load` would report it: measured, no latency where nothing was answered.
    func measured() -> ReportDocument {
        var document = sampleDocument()
        document.simulation.traceHash = ReportDocument.measuredTraceHash
        document.timeToTerminal = []
        return document
    }

    @Test("no invariant is said to hold, nor given a JUnit case, and the time is wall time")
    func reportsSayWhatWasNotChecked() {
        let document = measured()
        let markdown = ReportWriter.markdown(document)
        #expect(markdown.contains("Not checked here: a load run sees the answers only") && !markdown.contains("every safety invariant held"))
        #expect(markdown.contains("s of wall time") && !markdown.contains("virtual time"))
        let junit = ReportWriter.junit(document)
        #expect(!junit.contains(".invariants\""), "\(junit)")
        let html = HTMLReport.render(document)
        #expect(html.contains("Not checked here") && !html.contains("No violations: every safety invariant held"))
        #expect(html.contains("wall time (s)") && !html.contains("virtual time (s)") && !html.contains("byte for byte"))
        // A simulated run says all of it as before.
        #expect(ReportWriter.markdown(sampleDocument()).contains("safety violation(s)"))
        #expect(ReportWriter.junit(sampleDocument()).contains(".invariants\""))
    }

    @Test("compare reads n/a for a side without the figure, never a 0 that looks measured")
    func compareSaysNotAvailable() throws {
        var unanswered = sampleDocument()
        unanswered.latency = []
        let rows = Comparison.compare(sampleDocument(), unanswered)
        let p50 = try #require(rows.first { $0.metric == "latency p50" })
        #expect(p50.b == "n/a" && p50.change == "—" && p50.pValue == nil, "\(p50)")
        let measuredRows = Comparison.compare(sampleDocument(), measured())
        for metric in ["retries", "consumer lag", "violations", "time to terminal p99"] {
            let row = try #require(measuredRows.first { $0.metric == metric })
            #expect(row.a != "n/a" || metric == "time to terminal p99", "\(row)")
            #expect(row.b == "n/a" && row.change == "—", "\(row)")
        }
        #expect(measuredRows.first { $0.metric == "latency p50" }?.b != "n/a")
    }
}
