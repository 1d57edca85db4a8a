import PaystormKernel
import PaystormStatistics

/// A small but complete simulated world on the kernel: an open-loop client
/// population, a few servers with worker pools and bounded queues, lognormal
/// network and service times, and one server crash and restart in the middle.
///
/// It exists to exercise every kernel feature end to end (messages, timers,
/// cancellation, crash, restart, bounded queues, per-actor streams, trace
/// hash) and the statistics module, until the payments world replaces it.
public enum QueueingDemo {
    public struct Configuration: Sendable {
        public var seed: UInt64 = 1
        public var requests: Int = 200_000
        public var ratePerSecond: Double = 2_000
        public var servers: Int = 4
        public var workersPerServer: Int = 8
        public var queueCapacity: Int = 200
        public var serviceMedianSeconds: Double = 0.010
        public var serviceSigma: Double = 0.6
        public var networkMedianSeconds: Double = 0.001
        public var networkSigma: Double = 0.3
        public var timeoutSeconds: Double = 1.0
        /// Crash server 0 at this fraction of the expected run time, restart it at the second.
        public var crashWindow: (start: Double, end: Double)? = (0.4, 0.5)
        public var confidence: Double = 0.95

        public init() {}

        /// Checks every field; the message names the field and what was expected.
        public func validate() throws(DemoConfigurationError) {
            func require(_ ok: Bool, _ field: String, _ expected: String) throws(DemoConfigurationError) {
                if !ok { throw DemoConfigurationError(field: field, expected: expected) }
            }
            try require((1...50_000_000).contains(requests), "requests", "1...50000000")
            try require(ratePerSecond.isFinite && ratePerSecond > 0 && ratePerSecond <= 1e7, "rate", "a rate in (0, 10000000] per second")
            // Virtual time is kept in Int64 nanoseconds: a run must end well inside it.
            try require(Double(requests) / ratePerSecond <= 30 * 86_400, "rate",
                        "a rate at which the \(requests) requests take at most 30 days of virtual time (at least \(Double(requests) / (30 * 86_400)) per second)")
            try require((1...1000).contains(servers), "servers", "1...1000")
            try require((1...10_000).contains(workersPerServer), "workers", "1...10000")
            try require((1...10_000_000).contains(queueCapacity), "queue", "1...10000000")
            try require(serviceMedianSeconds > 0 && serviceMedianSeconds < 3600, "service-median", "seconds in (0, 3600)")
            try require(serviceSigma >= 0 && serviceSigma <= 5, "service-sigma", "0...5")
            try require(networkMedianSeconds > 0 && networkMedianSeconds < 60, "network-median", "seconds in (0, 60)")
            try require(timeoutSeconds > 0 && timeoutSeconds <= 3600, "timeout", "seconds in (0, 3600]")
            try require(confidence > 0 && confidence < 1, "confidence", "a value in (0, 1)")
            if let window = crashWindow {
                try require(window.start >= 0 && window.start < window.end && window.end <= 1, "crash-window", "0 <= start < end <= 1")
            }
        }
    }

    /// What a run measured.
    public struct Report: Sendable {
        public var seed: UInt64
        public var sent: Int
        public var succeeded: Int
        public var rejected: Int
        public var timedOut: Int
        public var outstanding: Int
        public var latency: [QuantileEstimate]
        public var availabilityLowerBound: Double
        public var confidence: Double
        public var virtualSeconds: Double
        public var events: Int
        public var counters: KernelCounters
        public var queueOverflows: Int
        /// Requests queued or in service on a server when it crashed.
        public var lostInCrashes: Int
        public var traceHash: String
    }

    /// Runs the world to completion (every request answered or timed out).
    /// - Complexity: O(requests · log(pending events)).
    public static func run(_ configuration: Configuration) throws -> Report {
        try configuration.validate()
        let config = configuration
        let kernel = SimulationKernel<DemoMessage>(
            configuration: KernelConfiguration(rootSeed: config.seed, maxPendingEvents: 4_000_000),
            expectedEvents: 4096)
        let network = NetworkLatency(medianSeconds: config.networkMedianSeconds, sigma: config.networkSigma)
        var servers: [ActorAddress] = []
        var serverActors: [DemoServer] = []
        for index in 0..<config.servers {
            let server = DemoServer(
                workers: config.workersPerServer, queueCapacity: config.queueCapacity,
                serviceMedianSeconds: config.serviceMedianSeconds, serviceSigma: config.serviceSigma,
                networkLatency: network)
            serverActors.append(server)
            servers.append(kernel.spawn(server, name: "server.\(index)"))
        }
        let client = DemoClient(
            ratePerSecond: config.ratePerSecond, totalRequests: config.requests,
            timeout: SimDuration(seconds: config.timeoutSeconds), servers: servers, networkLatency: network)
        let clientAddress = kernel.spawn(client, name: "clients")
        kernel.inject(.arrival, to: clientAddress, at: .zero)

        let expectedSeconds = Double(config.requests) / config.ratePerSecond
        if let window = config.crashWindow {
            kernel.scheduleCrash(of: servers[0], at: .zero + SimDuration(seconds: expectedSeconds * window.start))
            kernel.scheduleRestart(of: servers[0], at: .zero + SimDuration(seconds: expectedSeconds * window.end))
        }

        // Bounded: each request costs at most a handful of events (arrival,
        // request, service, reply, timeout), so 16 per request is never reached.
        let eventBound = config.requests * 16 + 1_000
        let events = kernel.runUntilIdle(maxEvents: eventBound)
        precondition(kernel.pendingEvents == 0, "demo run hit its event bound of \(eventBound)")

        let sample = try SortedSample(client.latenciesSeconds)
        var latency: [QuantileEstimate] = []
        if sample.count > 0 {
            for p in [0.5, 0.9, 0.99, 0.999, 0.9999] {
                latency.append(try sample.quantile(p, confidence: config.confidence))
            }
        }
        let failures = client.sent - client.latenciesSeconds.count
        let availability = client.sent > 0
            ? try Availability.lowerBound(failures: failures, requests: client.sent, confidence: config.confidence)
            : 0
        return Report(
            seed: config.seed, sent: client.sent, succeeded: client.latenciesSeconds.count,
            rejected: client.rejected, timedOut: client.timedOut, outstanding: client.outstanding,
            latency: latency, availabilityLowerBound: availability, confidence: config.confidence,
            virtualSeconds: kernel.now.seconds, events: events, counters: kernel.counters,
            queueOverflows: serverActors.reduce(0) { $0 + $1.queueOverflows },
            lostInCrashes: serverActors.reduce(0) { $0 + $1.lostInCrashes }, traceHash: kernel.traceHash)
    }
}

/// A demo configuration field out of range.
public struct DemoConfigurationError: Error, CustomStringConvertible {
    public var field: String
    public var expected: String
    public var description: String { "invalid --\(field): expected \(expected)" }
}
