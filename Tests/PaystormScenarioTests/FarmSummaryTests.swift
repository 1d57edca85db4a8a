import Testing
@testable import PaystormScenario

@Suite("A seed farm's summary across seeds")
struct FarmSummaryTests {
    /// One report per seed with these availabilities and p99 latencies.
    func summary(availability: [Double], p99Seconds: [Double]) throws -> String {
        let documents = zip(availability, p99Seconds).enumerated().map { index, figures in
            var document = sampleDocument(windows: 0)
            document.seed = UInt64(index + 1)
            document.requests.availability = figures.0
            document.latency[1].seconds = figures.1
            return document
        }
        return try FarmSummary(scenario: try Scenario.parse(tinyScenario, file: "tiny.yaml"), documents: documents).markdown
    }

    @Test("the interval stays within what the figure can be: availability in [0, 100%], latency at least 0")
    func clamped() throws {
        // Mean 99.9967%: the t-interval's half-width is about 0.014%, so its top would read 100.0111%.
        let high = try summary(availability: [1, 0.9999, 1], p99Seconds: [0.001, 0.5, 0.001])
        #expect(high.contains("- availability: 99.9967% [99.9823%, 100%]"), "\(high)")
        #expect(high.contains("- p99 latency: 167.3 ms [0.0 ms, "), "\(high)")
        let low = try summary(availability: [0, 0.0001, 0], p99Seconds: [0.2, 0.2, 0.2])
        #expect(low.contains("- availability: 0.0033% [0%, "), "\(low)")
    }
}
