import Testing
@testable import PaystormWorld

@Suite("World metrics: per-window latency")
struct WorldMetricsTests {
    /// Nearest rank, as `paystorm load` reports its windows: of 100 answers
    /// p99 is the 99th, not the slowest.
    @Test("a window's p50 and p99 are nearest ranks", arguments: [1, 2, 99, 100, 101, 200, 1_000])
    func windowPercentiles(count: Int) {
        let metrics = WorldMetrics(windowSeconds: 1, pspIDs: [])
        // Milliseconds 1...count, answered in reverse order within the first second.
        for millisecond in (1...count).reversed() {
            metrics.finished(at: 1_000, latencySeconds: Double(millisecond) / 1_000, answered: true, throttled: false)
        }
        metrics.closeWindow(at: 1_000_000_000, queueDepth: 0, lag: 0, outboxBacklog: 0, deadLetters: 0)
        func rank(_ p: Double) -> Double { (p * Double(count)).rounded(.up) / 1_000 }
        #expect(metrics.windows[0].latencyP50Seconds == rank(0.5))
        #expect(metrics.windows[0].latencyP99Seconds == rank(0.99))
        #expect(metrics.windows[0].latencyMaxSeconds == Double(count) / 1_000)
    }
}
