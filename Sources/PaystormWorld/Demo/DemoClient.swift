import PaystormKernel
import PaystormStatistics

/// An open-loop client population: Poisson arrivals at a fixed rate, each
/// request sent to a uniformly chosen server with a timeout. Latency is
/// measured from the intended send time, so a slow server cannot slow the
/// arrivals down (no coordinated omission).
final class DemoClient: SimActor {
    typealias Message = DemoMessage

    struct InFlight {
        var sentAt: SimInstant
        var timeout: TimerHandle
    }

    let ratePerSecond: Double
    let totalRequests: Int
    let timeout: SimDuration
    let servers: [ActorAddress]
    let networkLatency: NetworkLatency

    private var nextID: Int64 = 0
    private var inFlight: [Int64: InFlight] = [:]  // looked up by id, never iterated
    private(set) var latenciesSeconds: [Double] = []
    private(set) var rejected = 0
    private(set) var timedOut = 0
    private(set) var lateReplies = 0

    init(ratePerSecond: Double, totalRequests: Int, timeout: SimDuration, servers: [ActorAddress], networkLatency: NetworkLatency) {
        self.ratePerSecond = ratePerSecond
        self.totalRequests = totalRequests
        self.timeout = timeout
        self.servers = servers
        self.networkLatency = networkLatency
        latenciesSeconds.reserveCapacity(totalRequests)
    }

    var sent: Int { Int(nextID) }

    func receive(_ message: DemoMessage, from sender: ActorAddress, kernel: SimulationKernel<DemoMessage>) {
        switch message {
        case .arrival:
            let id = nextID
            nextID += 1
            let server = servers[kernel.random.uniformInt(below: servers.count)]
            kernel.send(.request(id: id), to: server, after: networkLatency.sample(kernel.random))
            let timer = kernel.setTimer(after: timeout, .timeout(id: id))
            inFlight[id] = InFlight(sentAt: kernel.now, timeout: timer)
            if nextID < totalRequests {
                kernel.setTimer(after: SimDuration(seconds: kernel.random.exponential(mean: 1 / ratePerSecond)), .arrival)
            }
        case let .reply(id):
            guard let request = inFlight.removeValue(forKey: id) else { lateReplies += 1; return }
            kernel.cancel(request.timeout)
            latenciesSeconds.append((kernel.now - request.sentAt).seconds)
        case let .rejected(id):
            guard let request = inFlight.removeValue(forKey: id) else { lateReplies += 1; return }
            kernel.cancel(request.timeout)
            rejected += 1
        case let .timeout(id):
            guard inFlight.removeValue(forKey: id) != nil else { return }
            timedOut += 1
        case .request, .serviceDone:
            preconditionFailure("client received a server message: \(message)")
        }
    }

    var outstanding: Int { inFlight.count }
}
