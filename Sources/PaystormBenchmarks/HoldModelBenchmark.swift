import PaystormKernel
import PaystormStatistics

/// The classic hold model, the standard yardstick for an event list: `pending`
/// events wait; each delivery schedules one more at now + Exp(mean 1 s), so the
/// list size stays constant while the kernel pops and pushes.
///
/// It runs the whole kernel path — event list, slot storage, actor dispatch,
/// per-actor random stream, trace hash — not the heap alone.
public enum HoldModelBenchmark {
    public enum Tick: SimMessage {
        case tick
        @inlinable
        public func trace(into hasher: inout TraceHasher) { hasher.combine(UInt64(1)) }
    }

    final class HoldActor: SimActor {
        typealias Message = Tick
        var handled = 0

        @inline(__always)
        func receive(_ message: Tick, from sender: ActorAddress, kernel: SimulationKernel<Tick>) {
            handled += 1
            let delay = SimDuration(seconds: kernel.random.exponential(mean: 1.0))
            kernel.send(.tick, to: kernel.currentActor, after: delay)
        }
    }

    public struct Result: Sendable {
        public var pending: Int
        public var events: Int
        public var seconds: Double
        public var traceHash: String
        public var eventsPerSecond: Double { Double(events) / seconds }
    }

    /// Runs the model and times the event loop only (setup excluded).
    /// - Parameters:
    ///   - pending: events kept in the list (≥ 1).
    ///   - events: events to deliver after setup (≥ 1).
    ///   - actors: actors the events are spread over.
    public static func run(pending: Int, events: Int, actors actorCount: Int = 16, seed: UInt64 = 1) -> Result {
        precondition(pending >= 1 && events >= 1 && actorCount >= 1)
        let kernel = SimulationKernel<Tick>(
            configuration: KernelConfiguration(rootSeed: seed, maxPendingEvents: pending + actorCount + 16,
                                               defaultMailboxCapacity: pending + 1),
            expectedEvents: pending + 16)
        var addresses: [ActorAddress] = []
        for i in 0..<actorCount {
            addresses.append(kernel.spawn(HoldActor(), name: "hold.\(i)"))
        }
        let setup = RandomStream(rootSeed: seed, stream: "hold.setup")
        for i in 0..<pending {
            let at = SimInstant.zero + SimDuration(seconds: setup.exponential(mean: 1.0))
            kernel.inject(.tick, to: addresses[i % actorCount], at: at)
        }
        let clock = ContinuousClock()
        var delivered = 0
        let elapsed = clock.measure {
            while delivered < events, kernel.step() { delivered += 1 }
        }
        precondition(kernel.pendingEvents == pending, "hold model lost events: \(kernel.pendingEvents) != \(pending)")
        return Result(pending: pending, events: delivered, seconds: elapsed.seconds, traceHash: kernel.traceHash)
    }
}
