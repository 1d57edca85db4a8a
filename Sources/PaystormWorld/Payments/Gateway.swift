import PaystormKernel

/// The API gateway: checks API keys (401), rate-limits with a token bucket
/// (429), health-checks the replicas and spreads requests and PSP webhooks
/// round-robin over the healthy ones (503 when none is).
final class Gateway: SimActor {
    typealias Message = WorldMessage

    unowned let world: World
    let model: GatewayModel
    private var tokens: Double
    private var refilledAt: Int64 = 0
    private var round: Int64 = 0
    private var lastReply: [Int64]
    private var nextReplica = 0
    private(set) var unauthorized = 0
    private(set) var throttled = 0
    private(set) var unavailable = 0

    init(world: World) {
        self.world = world
        model = world.configuration.gateway
        tokens = model.burst
        lastReply = Array(repeating: 0, count: world.configuration.service.replicas)
    }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        switch message {
        case let .apiRequest(request):
            guard request.apiKeyValid else {
                unauthorized += 1
                reply(request, .error(status: 401, message: "invalid API key"), kernel)
                return
            }
            refill(now: kernel.now.nanoseconds)
            guard tokens >= 1 else {
                throttled += 1
                reply(request, .error(status: 429, message: "rate limited; retry after 1 s"), kernel)
                return
            }
            tokens -= 1
            guard let replica = pickReplica() else {
                unavailable += 1
                reply(request, .error(status: 503, message: "no healthy replica"), kernel)
                return
            }
            world.network.send(message, to: replica, kernel: kernel)
        case .webhook:
            // A PSP that gets no 2xx retries later; here the webhook is simply lost.
            if let replica = pickReplica() { world.network.send(message, to: replica, kernel: kernel) }
        case .healthTick:
            round += 1
            for replica in world.replicas { world.network.send(.healthCheck(round: round), to: replica, kernel: kernel) }
            kernel.setTimer(after: SimDuration(seconds: model.healthCheckIntervalSeconds), .healthTick)
        case let .healthReply(replica, replyRound):
            lastReply[Int(replica)] = max(lastReply[Int(replica)], replyRound)
        default:
            break
        }
    }

    /// Healthy: answered one of the last two health checks (all are, before the first).
    private func healthy(_ index: Int) -> Bool { round <= 2 || lastReply[index] >= round - 2 }

    private func pickReplica() -> ActorAddress? {
        let count = world.replicas.count
        for step in 0..<count {
            let index = (nextReplica + step) % count
            if healthy(index) {
                nextReplica = (index + 1) % count
                return world.replicas[index]
            }
        }
        return nil
    }

    private func refill(now: Int64) {
        tokens = min(model.burst, tokens + Double(now - refilledAt) / 1e9 * model.rateLimitPerSecond)
        refilledAt = now
    }

    private func reply(_ request: APIRequest, _ reply: APIReply, _ kernel: SimulationKernel<WorldMessage>) {
        world.network.send(.apiReply(requestID: request.requestID, attempt: request.attempt, reply: reply), to: request.client, kernel: kernel)
    }
}
