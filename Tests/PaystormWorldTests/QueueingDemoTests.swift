import Testing
import PaystormKernel
@testable import PaystormWorld

@Suite("Queueing demo world")
struct QueueingDemoTests {
    func config(seed: UInt64, requests: Int = 20_000) -> QueueingDemo.Configuration {
        var config = QueueingDemo.Configuration()
        config.seed = seed
        config.requests = requests
        return config
    }

    @Test func sameSeedSameReport() throws {
        let a = try QueueingDemo.run(config(seed: 7))
        let b = try QueueingDemo.run(config(seed: 7))
        #expect(a.traceHash == b.traceHash)
        #expect(a.latency == b.latency)
        #expect(a.counters == b.counters)
    }

    /// Pinned across processes and builds; see KernelDeterminismTests.traceHashesArePinned.
    @Test func traceHashIsPinned() throws {
        #expect(try QueueingDemo.run(config(seed: 1)).traceHash == "5cf9a8c335db8ad2")
    }

    @Test func differentSeedsDifferentTraces() throws {
        var hashes = Set<String>()
        for seed in 1...10 as ClosedRange<UInt64> { hashes.insert(try QueueingDemo.run(config(seed: seed, requests: 2_000)).traceHash) }
        #expect(hashes.count == 10)
    }

    @Test func everyRequestIsAccountedFor() throws {
        let report = try QueueingDemo.run(config(seed: 3))
        #expect(report.sent == 20_000)
        #expect(report.succeeded + report.rejected + report.timedOut == report.sent)
        #expect(report.outstanding == 0)
    }

    @Test func theCrashCostsAvailability() throws {
        var calm = config(seed: 5)
        calm.crashWindow = nil
        let healthy = try QueueingDemo.run(calm)
        let crashed = try QueueingDemo.run(config(seed: 5))
        #expect(healthy.timedOut == 0)
        #expect(crashed.timedOut > 0)
        #expect(crashed.counters.crashes == 1 && crashed.counters.restarts == 1)
        #expect(crashed.lostInCrashes > 0 && healthy.lostInCrashes == 0)
        #expect(crashed.availabilityLowerBound < healthy.availabilityLowerBound)
    }

    @Test func overloadFillsQueuesAndIsCounted() throws {
        var overload = config(seed: 9)
        overload.crashWindow = nil
        overload.ratePerSecond = 20_000  // far above 4 servers × 8 workers / 10 ms ≈ 3,200/s
        overload.queueCapacity = 20
        let report = try QueueingDemo.run(overload)
        #expect(report.rejected > 0)
        #expect(report.queueOverflows == report.rejected)
    }

    @Test func percentilesAreOrderedWithIntervalsAroundThem() throws {
        // Service median 10 ms plus two network hops: p50 must exceed 10 ms;
        // 20,000 samples bound p50…p99.9 on both sides, but not p99.99.
        let report = try QueueingDemo.run(config(seed: 11))
        #expect(report.latency.map(\.probability) == [0.5, 0.9, 0.99, 0.999, 0.9999])
        #expect(report.latency[0].value > 0.010)
        for pair in zip(report.latency, report.latency.dropFirst()) { #expect(pair.0.value <= pair.1.value) }
        for q in report.latency.prefix(4) {
            let lower = try #require(q.lower)
            let upper = try #require(q.upper)
            #expect(lower <= q.value && q.value <= upper)
        }
        #expect(report.latency[4].upper == nil)
    }

    @Test func badConfigurationNamesTheField() {
        var bad = QueueingDemo.Configuration()
        bad.servers = 0
        #expect(throws: DemoConfigurationError.self) { try QueueingDemo.run(bad) }
        do {
            try bad.validate()
            Issue.record("servers = 0 must be refused")
        } catch {
            #expect(error.description == "invalid --servers: expected 1...1000")
        }
    }
}
