import PaystormEngine
import PaystormKernel

/// Moves transaction events from the engine's outbox to the broker: polls
/// after its cursor, produces a batch, and acknowledges in the outbox what
/// the broker acknowledged. A lost produce or acknowledgement is resent from
/// the durable cursor, so the broker sees every event at least once.
final class OutboxRelay: SimActor {
    typealias Message = WorldMessage

    unowned let world: World
    private var engine: PaymentEngine
    private var cursor: Int64 = 0
    /// The last sequence of the batch in flight to the broker.
    private var inFlightThrough: Int64?
    static let batchSize = 500
    /// Polls every 10 ms while events flow, backing off to 200 ms while the outbox is empty.
    static let pollInterval = SimDuration.milliseconds(10)
    static let idlePollInterval = SimDuration.milliseconds(200)
    private var interval = OutboxRelay.pollInterval
    static let produceTimeout = SimDuration.seconds(1)

    init(world: World) {
        self.world = world
        engine = world.makeEngine()
    }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        switch message {
        case .relayPoll:
            if inFlightThrough == nil {
                let found = poll(kernel)
                interval = found ? Self.pollInterval : min(Self.idlePollInterval, interval * 2)
            }
            kernel.setTimer(after: interval, .relayPoll)
        case let .produceAck(through):
            guard through > cursor else { return }
            if world.buggify.fires(.relayCrashBeforeAcknowledge) {
                kernel.scheduleRestart(of: kernel.currentActor, at: kernel.now + .seconds(1))
                kernel.crash(kernel.currentActor)
                return
            }
            do {
                try engine.acknowledgeOutbox(through: through)
            } catch {
                world.checker.record(.engineError, "relay", "\(error)")
                return
            }
            cursor = through
            if let last = inFlightThrough, through >= last { inFlightThrough = nil }
            poll(kernel)
        case let .relayTimeout(through):
            // No (complete) acknowledgement: resend from the cursor.
            if inFlightThrough == through { inFlightThrough = nil }
        default:
            break
        }
    }

    func crashed() { inFlightThrough = nil }

    func restarted(kernel: SimulationKernel<WorldMessage>) {
        engine = world.makeEngine()
        cursor = (try? engine.outboxCursor()) ?? 0
        kernel.setTimer(after: Self.pollInterval, .relayPoll)
    }

    /// - Returns: whether there was anything to publish.
    @discardableResult
    private func poll(_ kernel: SimulationKernel<WorldMessage>) -> Bool {
        guard inFlightThrough == nil else { return true }
        let messages: [OutboxMessage]
        do {
            messages = try engine.pollOutbox(after: cursor, limit: Self.batchSize)
        } catch {
            world.checker.record(.engineError, "relay", "\(error)")
            return false
        }
        _ = engine.takeEffects()  // the publish effects: performed right here
        guard let last = messages.last else { return false }
        inFlightThrough = last.sequence
        world.network.send(.produce(ProduceBatch(messages: messages)), to: world.broker, kernel: kernel)
        kernel.setTimer(after: Self.produceTimeout, .relayTimeout(through: last.sequence))
        return true
    }
}
