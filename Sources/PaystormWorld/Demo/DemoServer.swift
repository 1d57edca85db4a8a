import PaystormKernel
import PaystormStatistics

/// A server with a fixed worker pool and a bounded wait queue; lognormal
/// service times. A crash loses the queue and the requests in service.
final class DemoServer: SimActor {
    typealias Message = DemoMessage

    struct Waiting {
        var id: Int64
        var client: ActorAddress
    }

    let workers: Int
    let serviceMedianSeconds: Double
    let serviceSigma: Double
    let networkLatency: NetworkLatency
    private var busy = 0
    private var queue: BoundedQueue<Waiting>
    private(set) var queueOverflows = 0
    /// Requests lost in crashes: queued or in service when the server died.
    private(set) var lostInCrashes = 0

    init(workers: Int, queueCapacity: Int, serviceMedianSeconds: Double, serviceSigma: Double, networkLatency: NetworkLatency) {
        self.workers = workers
        self.serviceMedianSeconds = serviceMedianSeconds
        self.serviceSigma = serviceSigma
        self.networkLatency = networkLatency
        self.queue = BoundedQueue(capacity: queueCapacity)
    }

    func receive(_ message: DemoMessage, from sender: ActorAddress, kernel: SimulationKernel<DemoMessage>) {
        switch message {
        case let .request(id):
            if busy < workers {
                start(id: id, client: sender, kernel: kernel)
            } else if !queue.enqueue(Waiting(id: id, client: sender)) {
                queueOverflows += 1
                kernel.send(.rejected(id: id), to: sender, after: networkLatency.sample(kernel.random))
            }
        case let .serviceDone(id, client):
            busy -= 1
            kernel.send(.reply(id: id), to: client, after: networkLatency.sample(kernel.random))
            if let next = queue.dequeue() {
                start(id: next.id, client: next.client, kernel: kernel)
            }
        case .arrival, .reply, .rejected, .timeout:
            preconditionFailure("server received a client message: \(message)")
        }
    }

    private func start(id: Int64, client: ActorAddress, kernel: SimulationKernel<DemoMessage>) {
        busy += 1
        let service = SimDuration(seconds: kernel.random.lognormal(median: serviceMedianSeconds, sigma: serviceSigma))
        kernel.setTimer(after: service, .serviceDone(id: id, client: client))
    }

    func crashed() {
        lostInCrashes += busy + queue.removeAll()
        busy = 0
    }
}

/// One-way network latency: lognormal around a median.
struct NetworkLatency {
    var medianSeconds: Double
    var sigma: Double

    func sample(_ random: PaystormStatistics.RandomStream) -> SimDuration {
        SimDuration(seconds: random.lognormal(median: medianSeconds, sigma: sigma))
    }
}
