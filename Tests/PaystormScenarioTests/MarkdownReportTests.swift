import Testing
@testable import PaystormScenario

@Suite("report.md")
struct MarkdownReportTests {
    @Test("time to terminal is listed even when no request was answered, and latency when no payment finished")
    func percentilesOfEitherList() {
        var document = sampleDocument()
        document.latency = []
        let markdown = ReportWriter.markdown(document)
        #expect(markdown.contains("| p50 | — | [—, —] | 2.500 s | [2.400 s, 2.600 s] |"), "\(markdown)")
        #expect(markdown.contains("| p99 | — | [—, —] | 31.000 s | [29.000 s, —] |"), "\(markdown)")

        document = sampleDocument()
        document.timeToTerminal = []
        let latencyOnly = ReportWriter.markdown(document)
        #expect(latencyOnly.contains("| p99.99 | 1.950 s | [1.400 s, —] | — | [—, —] |"), "\(latencyOnly)")
    }

    @Test("each row's two columns are the same percentile, whatever each list holds")
    func rowsMatchByPercentile() {
        var document = sampleDocument()
        document.latency.insert(.init(percentile: 90, seconds: 0.120, lowerSeconds: 0.110, upperSeconds: 0.130), at: 1)
        // Latency has p50, p90, p99, p99.99; time to terminal p50 and p99.
        let markdown = ReportWriter.markdown(document)
        #expect(markdown.contains("| p90 | 120.0 ms | [110.0 ms, 130.0 ms] | — | [—, —] |"), "\(markdown)")
        #expect(markdown.contains("| p99 | 210.0 ms | [190.0 ms, 260.0 ms] | 31.000 s | [29.000 s, —] |"), "\(markdown)")
    }
}
