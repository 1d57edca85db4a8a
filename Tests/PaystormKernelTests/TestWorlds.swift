import PaystormKernel
import PaystormStatistics

/// A message carrying one integer, traced by value.
enum Note: SimMessage {
    case value(Int)
    case tick(Int)

    func trace(into hasher: inout TraceHasher) {
        switch self {
        case let .value(v): hasher.combine(UInt64(1)); hasher.combine(v)
        case let .tick(v): hasher.combine(UInt64(2)); hasher.combine(v)
        }
    }
}

/// Records what it receives, with time and sender.
final class Recorder: SimActor {
    typealias Message = Note
    var log: [(time: Int64, note: Note, from: ActorAddress)] = []
    var crashes = 0
    var restarts = 0
    var onReceive: ((Note, ActorAddress, SimulationKernel<Note>) -> Void)?

    func receive(_ message: Note, from sender: ActorAddress, kernel: SimulationKernel<Note>) {
        log.append((kernel.now.nanoseconds, message, sender))
        onReceive?(message, sender, kernel)
    }

    func crashed() {
        crashes += 1
        log.removeAll()
    }

    func restarted(kernel: SimulationKernel<Note>) {
        restarts += 1
    }

    var values: [Int] {
        log.map { if case let .value(v) = $0.note { return v } else { return -1 } }
    }
}

/// A gossip world: each peer forwards tokens to random peers after random
/// delays, arms and sometimes cancels timers, and one peer crashes and
/// restarts. Non-trivial enough that any nondeterminism shows in the hash.
final class GossipPeer: SimActor {
    typealias Message = Note
    var peers: [ActorAddress] = []
    var pendingTimer: TimerHandle = .none
    var received = 0

    func receive(_ message: Note, from sender: ActorAddress, kernel: SimulationKernel<Note>) {
        received += 1
        switch message {
        case let .value(hops):
            guard hops > 0 else { return }
            let random = kernel.random
            let fanout = 1 + random.uniformInt(below: 2)
            for _ in 0..<fanout where random.bernoulli(0.55) {
                let peer = peers[random.uniformInt(below: peers.count)]
                kernel.send(.value(hops - 1), to: peer, after: SimDuration(seconds: random.lognormal(median: 0.002, sigma: 0.8)))
            }
            if random.bernoulli(0.3) {
                kernel.cancel(pendingTimer)
                pendingTimer = kernel.setTimer(after: SimDuration(seconds: random.exponential(mean: 0.01)), .tick(hops))
            }
        case .tick:
            pendingTimer = .none
        }
    }

    func crashed() { pendingTimer = .none }
}

struct GossipOutcome: Equatable {
    var traceHash: String
    var counters: KernelCounters
    var received: [Int]
    var finalTime: Int64
}

func runGossip(seed: UInt64, peers count: Int = 40, tokens: Int = 300, hops: Int = 12) -> GossipOutcome {
    let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: seed))
    let peers = (0..<count).map { _ in GossipPeer() }
    let addresses = peers.enumerated().map { kernel.spawn($0.element, name: "peer.\($0.offset)") }
    for peer in peers { peer.peers = addresses }
    let setup = RandomStream(rootSeed: seed, stream: "setup")
    for _ in 0..<tokens {
        let at = SimInstant.zero + SimDuration(seconds: setup.exponential(mean: 0.05))
        kernel.inject(.value(hops), to: addresses[setup.uniformInt(below: count)], at: at)
    }
    kernel.scheduleCrash(of: addresses[3], at: .zero + .milliseconds(40))
    kernel.scheduleRestart(of: addresses[3], at: .zero + .milliseconds(90))
    kernel.runUntilIdle(maxEvents: 10_000_000)
    return GossipOutcome(traceHash: kernel.traceHash, counters: kernel.counters,
                         received: peers.map(\.received), finalTime: kernel.now.nanoseconds)
}
