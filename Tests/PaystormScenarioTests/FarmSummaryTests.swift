import Testing
@testable import PaystormScenario

@Suite("A seed farm's summary across seeds")
struct FarmSummaryTests {
    /// One report per seed with these failures among `requests` requests, and these p99 latencies.
    func summary(failures: [Int], requests: Int = 10_000, p99Seconds: [Double]) throws -> String {
        let documents = zip(failures, p99Seconds).enumerated().map { index, figures in
            var document = sampleDocument(windows: 0)
            document.seed = UInt64(index + 1)
            document.requests.total = requests
            document.requests.answered = requests - figures.0
            document.requests.availability = Double(requests - figures.0) / Double(requests)
            document.requests.confidence = 0.95
            document.latency[1].seconds = figures.1
            return document
        }
        return try FarmSummary(scenario: try Scenario.parse(tinyScenario, file: "tiny.yaml"), documents: documents).markdown
    }

    @Test("latency's interval stays within what the figure can be: at least 0")
    func clamped() throws {
        let summary = try summary(failures: [0, 1, 0], p99Seconds: [0.001, 0.5, 0.001])
        #expect(summary.contains("- p99 latency: 167.3 ms [0.0 ms, "), "\(summary)")
    }

    @Test("availability is claimed from every seed's requests together, never 100% from a finite run")
    func availabilityFromPooledRequests() throws {
        // No seed failed: a t-interval of the seeds' rates would read [100%, 100%].
        // 40,000 clean requests prove 0.05^(1/40000) = 99.99251% at 95%.
        let clean = try summary(failures: [0, 0, 0, 0], p99Seconds: [0.1, 0.1, 0.1, 0.1])
        #expect(clean.contains("- availability: 100% of 40000 requests (seeds 100% to 100%); at least 99.9925% at 95% confidence"), "\(clean)")
        // 1 failure in 30,000: 99.9967%, the seeds from 99.99% to 100%; Clopper–Pearson with one failure: 99.9842%.
        let one = try summary(failures: [0, 1, 0], p99Seconds: [0.1, 0.1, 0.1])
        #expect(one.contains("- availability: 99.9967% of 30000 requests (seeds 99.99% to 100%); at least 99.9841% at 95% confidence"), "\(one)")
        let none = try summary(failures: [10_000, 9_999, 10_000], p99Seconds: [0.2, 0.2, 0.2])
        #expect(none.contains("- availability: 0.0033% of 30000 requests (seeds 0% to 0.01%); at least 0.0001% at 95% confidence"), "\(none)")
    }
}
