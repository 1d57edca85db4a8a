import PaystormEngine
import PaystormKernel
import PaystormStatistics

/// What the world measured, per request, per PSP and per time window.
/// Latencies are measured from the intended send time (open loop: no
/// coordinated omission).
public final class WorldMetrics {
    /// One window of virtual time.
    public struct Window: Sendable, Equatable, Codable {
        public var startSeconds: Double

        public init(startSeconds: Double) {
            self.startSeconds = startSeconds
        }
        /// Requests whose first attempt was due in the window (offered load).
        public var offered = 0
        /// Requests finished in the window with an answer (achieved load).
        public var answered = 0
        /// Requests finished in the window without one (5xx, timeout, throttled to the end).
        public var failed = 0
        public var throttled = 0
        public var latencyP50Seconds = 0.0
        public var latencyP99Seconds = 0.0
        public var latencyMaxSeconds = 0.0
        /// Payments that reached a terminal state in the window.
        public var terminal = 0
        /// Work queued or in service on all replicas, at the window's end.
        public var replicaQueueDepth = 0
        /// Events produced but not committed, summed over consumer groups.
        public var consumerLag = 0
        /// Outbox events not yet acknowledged by the broker.
        public var outboxBacklog = 0
        /// Dead-letter topic and table depth.
        public var deadLetters = 0
        /// PSP calls made in the window.
        public var pspCalls = 0
    }

    /// What one PSP saw and answered. The calls (charges, refunds, status
    /// queries, cancels) are counted as the engine sends them; `received`
    /// as they reach the PSP (network losses excluded, duplicates
    /// included). Every received call gets exactly one outcome — succeeded,
    /// declined, voided, not found, transient error, rate-limited,
    /// ambiguous or unanswered — once the PSP has processed it.
    public struct PSPCounters: Sendable, Equatable {
        public var id: String
        public var charges = 0, refunds = 0, statusQueries = 0, cancels = 0
        public var received = 0
        /// Answered with success (an ambiguous call is not counted here).
        public var succeeded = 0
        public var declined = 0, transientErrors = 0, rateLimited = 0
        /// Answered "void": a cancel that voided the key, or a later call with a voided key.
        public var voided = 0
        /// A status query for a key the PSP never saw (the call never landed).
        public var notFound = 0
        /// Charged or refunded, reply lost.
        public var ambiguous = 0
        /// Dropped during an outage.
        public var unanswered = 0
        public var webhooksSent = 0

        /// The received calls that have an outcome.
        public var outcomes: Int {
            succeeded + declined + voided + notFound + transientErrors + rateLimited + ambiguous + unanswered
        }
    }

    /// Fraud screening scored against who really was a fraudster.
    public struct FraudConfusion: Sendable, Equatable {
        public var truePositives = 0, falsePositives = 0, falseNegatives = 0, trueNegatives = 0
        public var precision: Double? {
            truePositives + falsePositives == 0 ? nil : Double(truePositives) / Double(truePositives + falsePositives)
        }
        public var recall: Double? {
            truePositives + falseNegatives == 0 ? nil : Double(truePositives) / Double(truePositives + falseNegatives)
        }
    }

    let windowNanoseconds: Int64
    public private(set) var windows: [Window] = []
    private var windowLatencies: [Double] = []
    /// End-to-end latency of every finished request with an answer, seconds
    /// (every sample is kept: the reports' quantiles and their confidence
    /// intervals are read from the exact sample).
    var latencies = ChunkedArray<Float>()
    /// Creation to terminal state, seconds.
    var timeToTerminal = ChunkedArray<Float>()
    public internal(set) var psp: [PSPCounters]
    public internal(set) var fraud = FraudConfusion()

    public internal(set) var requests = 0
    public internal(set) var answered = 0
    /// Requests answered by the time the last one arrived (set then).
    public internal(set) var answeredDuringLoad: Int?
    public internal(set) var clientErrors = 0
    public internal(set) var throttledFinal = 0
    public internal(set) var serverErrors = 0
    public internal(set) var timedOut = 0
    public internal(set) var retries = 0
    public internal(set) var throttledReplies = 0
    public internal(set) var paymentsCreated = 0
    public internal(set) var paymentsCompleted = 0
    public internal(set) var paymentsFailed = 0
    public internal(set) var refundsRequested = 0
    public internal(set) var refundsAccepted = 0
    public internal(set) var webhooksApplied = 0
    public internal(set) var webhooksRejected = 0
    /// Webhooks a replica refused because its accept queue was full (also
    /// in ``queueOverflows``): lost, as a webhook the network lost is;
    /// status queries and reconciliation settle their payments.
    public internal(set) var webhooksDropped = 0
    public internal(set) var queueOverflows = 0
    public internal(set) var lostInCrashes = 0
    public internal(set) var consumerRedeliveries = 0
    public internal(set) var rebalances = 0
    public internal(set) var brokerDeadLetters = 0
    /// Events a consumer's engine refused, sent to the dead-letter topic.
    public internal(set) var consumerRefusals = 0
    public internal(set) var notificationsSent = 0
    public internal(set) var notificationsFailed = 0

    init(windowSeconds: Double, pspIDs: [String]) {
        windowNanoseconds = max(1, Int64(windowSeconds * 1e9))
        psp = pspIDs.map { PSPCounters(id: $0) }
    }

    private func window(at nanoseconds: Int64) -> Int {
        let index = Int(nanoseconds / windowNanoseconds)
        while windows.count <= index {
            windows.append(Window(startSeconds: Double(Int64(windows.count) * windowNanoseconds) / 1e9))
        }
        return index
    }

    func offered(at nanoseconds: Int64) { windows[window(at: nanoseconds)].offered += 1 }

    /// A request finished: answered (any reply that is not 5xx or a throttle) or not.
    func finished(at nanoseconds: Int64, latencySeconds: Double, answered ok: Bool, throttled: Bool) {
        let index = window(at: nanoseconds)
        requests += 1
        if ok {
            answered += 1
            windows[index].answered += 1
            latencies.append(Float(latencySeconds))
            windowLatencies.append(latencySeconds)
            openLatencyWindow = index
        } else {
            windows[index].failed += 1
            if throttled {
                windows[index].throttled += 1
                throttledFinal += 1
            }
        }
    }

    func terminal(at nanoseconds: Int64, afterSeconds: Double, completed: Bool) {
        windows[window(at: nanoseconds)].terminal += 1
        timeToTerminal.append(Float(afterSeconds))
        if completed { paymentsCompleted += 1 } else { paymentsFailed += 1 }
    }

    func pspCall(_ index: Int, _ operation: PSPRequest.Operation) {
        switch operation {
        case .charge: psp[index].charges += 1
        case .refund: psp[index].refunds += 1
        case .status: psp[index].statusQueries += 1
        case .cancel: psp[index].cancels += 1
        }
    }

    func pspCallCounted(at nanoseconds: Int64) { windows[window(at: nanoseconds)].pspCalls += 1 }

    /// The window whose answers wait to be closed, if any answers do.
    private(set) var openLatencyWindow: Int?

    /// Closes the window that ends at `nanoseconds` with the sampled gauges.
    func closeWindow(at nanoseconds: Int64, queueDepth: Int, lag: Int, outboxBacklog: Int, deadLetters: Int) {
        let index = window(at: max(0, nanoseconds - 1))
        windows[index].replicaQueueDepth = queueDepth
        windows[index].consumerLag = lag
        windows[index].outboxBacklog = outboxBacklog
        windows[index].deadLetters = deadLetters
        if !windowLatencies.isEmpty {
            windowLatencies.sort()
            windows[index].latencyP50Seconds = windowLatencies[SortedSample.nearestRankIndex(0.5, count: windowLatencies.count)]
            windows[index].latencyP99Seconds = windowLatencies[SortedSample.nearestRankIndex(0.99, count: windowLatencies.count)]
            windows[index].latencyMaxSeconds = windowLatencies.last!
            windowLatencies.removeAll(keepingCapacity: true)
            openLatencyWindow = nil
        }
    }
}
