import DequeModule
import PaystormEngine
import PaystormKernel

/// A member of one of the engine's consumer groups (ledger, wallet or
/// notification): applies delivered batches through the real engine in one
/// group commit, then commits the offsets. Everything it applies is
/// idempotent by event id, so redelivery after a crash or a rebalance
/// changes nothing. The notification member also performs the
/// notifications and their retries.
final class Consumer: SimActor {
    typealias Message = WorldMessage

    unowned let world: World
    let group: Int
    let member: Int
    let host: EngineHost
    private var batches = Deque<DeliveryBatch>()
    private var busy = false
    /// Per partition: the generation and the next offset this member expects.
    /// Batches can be lost or overtake each other on the link; a batch past a
    /// gap is dropped (the broker redelivers from the committed offset), so a
    /// commit never covers an event that was not applied.
    private var positions: [Int: (generation: Int64, next: Int64)] = [:]
    /// Per partition: the events this member sent to the dead-letter topic
    /// at offsets the broker had not committed when it last said. Each
    /// commit carries them, so the one the broker accepts moves them.
    private var letters: [Int: [DeadLetter]] = [:]
    static let heartbeatInterval = SimDuration.milliseconds(500)
    /// How often healing replays the notification dead letters after the first replay.
    static let deadLetterReplayInterval = SimDuration.seconds(10)

    init(world: World, group: Int, member: Int) {
        self.world = world
        self.group = group
        self.member = member
        name = "consumer.\(World.groups[group].rawValue).\(member)"
        host = EngineHost(world: world)
    }

    var consumer: EngineConsumer { World.groups[group] }
    /// Built once: every delivery names its consumer.
    let name: String

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        switch message {
        case let .deliver(batch):
            batches.append(batch)
            startWork(kernel)
        case .consumerWorkDone:
            busy = false
            if let batch = batches.popFirst() { apply(batch, kernel) }
            startWork(kernel)
        case .heartbeatTick:
            world.network.send(.heartbeat(group: Int32(group), member: Int32(member)), to: world.broker, kernel: kernel)
            kernel.setTimer(after: Self.heartbeatInterval, .heartbeatTick)
        case .heal:
            // The operator's replay of the dead letters, again every few
            // seconds to the end of healing: a sink that still fails
            // sometimes dead-letters a replayed notification anew, or one
            // of a payment that settled late in healing.
            if consumer == .notification {
                let now = host.now
                host.report(host.run(name, kernel) { engine throws(EngineError) in try engine.replayDeadLetters(limit: .max, now: now) }, name)
                kernel.setTimer(after: Self.deadLetterReplayInterval, .heal)
            }
        default:
            // PSP replies and timers too: a recovery re-arms every open attempt on whoever recovers.
            _ = host.handle(message, subject: name, kernel)
        }
    }

    func crashed() {
        world.forgetTimers(of: world.kernel.currentActor)
        batches.removeAll()
        busy = false
        positions.removeAll()
        letters.removeAll()
    }

    /// A new member: a fresh engine, recovery of the engine's timers, and a join (which rebalances the group).
    func restarted(kernel: SimulationKernel<WorldMessage>) {
        host.reset()
        let now = host.now
        host.report(host.run(name, kernel) { engine throws(EngineError) in try engine.recover(now: now) }, name)
        start(kernel)
    }

    func start(_ kernel: SimulationKernel<WorldMessage>) {
        world.network.send(.joinGroup(group: Int32(group), member: Int32(member)), to: world.broker, kernel: kernel)
        kernel.setTimer(after: Self.heartbeatInterval, .heartbeatTick)
    }

    private func startWork(_ kernel: SimulationKernel<WorldMessage>) {
        guard !busy, let batch = batches.first else { return }
        busy = true
        let perEvent = world.configuration.service.internalServiceMedianSeconds
        let seconds = kernel.random.lognormal(median: perEvent, sigma: world.configuration.service.serviceSigma) * Double(batch.events.count)
        kernel.setTimer(after: SimDuration(seconds: seconds), .consumerWorkDone)
    }

    private func apply(_ batch: DeliveryBatch, _ kernel: SimulationKernel<WorldMessage>) {
        var events = batch.events[...]
        var firstOffset = batch.firstOffset
        if batch.partition >= 0 {
            let end = batch.firstOffset + Int64(batch.events.count)
            let known = positions[batch.partition]
            if let known, known.generation > batch.generation { return }  // from before a rebalance
            let expected = known?.generation == batch.generation ? known!.next : batch.committed
            guard batch.firstOffset <= expected else { return }  // a gap before it: wait for the redelivery
            if known?.generation != batch.generation {
                // Everything from the committed offset comes again and is judged again.
                letters[batch.partition] = nil
            } else {
                letters[batch.partition]?.removeAll { $0.offset < batch.committed }
            }
            if end <= expected {
                // Nothing new (a duplicate, or a redelivery after a lost commit): confirm the commit.
                commit(batch.partition, generation: batch.generation, offset: expected, kernel)
                return
            }
            events = batch.events[Int(expected - batch.firstOffset)...]
            firstOffset = expected
            positions[batch.partition] = (batch.generation, end)
        }
        let now = host.now
        var refused: [DeadLetter] = []
        let consumer = self.consumer
        let world = self.world
        let replay = batch.partition < 0
        host.report(host.run(name, kernel) { engine throws(EngineError) in
            try engine.inBatch {
                for (offset, event) in zip(firstOffset..., events) {
                    if world.buggify.fires(.consumerPoisonMessage) {
                        refused.append(DeadLetter(offset: offset, event: event))
                        continue
                    }
                    if consumer == .notification && world.notificationEventsToDrop > 0 {
                        world.notificationEventsToDrop -= 1
                        continue
                    }
                    do {
                        try engine.consume(event, by: consumer, now: now)
                    } catch {
                        // A refusal leaves nothing behind (an event can come before the one it
                        // depends on once dead letters are replayed out of order): it goes to the
                        // dead-letter topic with the commit, and healing replays it. Refused again
                        // then, it is an error.
                        if replay {
                            world.checker.record(.engineError, event.paymentID, "\(consumer.rawValue) consumer: \(error)")
                        } else {
                            world.metrics.consumerRefusals += 1
                            refused.append(DeadLetter(offset: offset, event: event))
                        }
                    }
                }
            }
        }, name)
        if replay {
            // Faults (poison included) are suspended while dead letters are replayed.
            for letter in refused { world.checker.record(.engineError, letter.event.paymentID, "\(consumer.rawValue) consumer: dead letter poisoned again") }
            return
        }
        letters[batch.partition, default: []].append(contentsOf: refused)
        if world.buggify.fires(.consumerCrashBeforeOffsetCommit) {
            kernel.scheduleRestart(of: kernel.currentActor, at: kernel.now + .seconds(1))
            kernel.crash(kernel.currentActor)
            return
        }
        commit(batch.partition, generation: batch.generation, offset: batch.firstOffset + Int64(batch.events.count), kernel)
    }

    /// Commits through `offset`, with every dead letter of the partition not
    /// yet known to be committed (the broker takes each offset once).
    private func commit(_ partition: Int, generation: Int64, offset: Int64, _ kernel: SimulationKernel<WorldMessage>) {
        world.network.send(.commit(group: Int32(group), partition: Int32(partition), generation: generation, offset: offset,
                                   deadLetters: letters[partition] ?? []),
                           to: world.broker, kernel: kernel)
    }
}

/// Where notifications go: user devices and merchant webhook endpoints.
/// Fails now and then; the engine retries and dead-letters.
final class NotificationSink: SimActor {
    typealias Message = WorldMessage

    unowned let world: World
    private(set) var received = 0
    /// Merchant webhooks whose signature did not verify.
    private(set) var badSignatures = 0
    let verifier: PaymentEngine

    init(world: World) {
        self.world = world
        verifier = world.makeEngine()
    }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        guard case let .notify(notification, replyTo) = message else { return }
        received += 1
        if notification.recipient.hasPrefix("merchant:") {
            let merchant = String(notification.recipient.dropFirst("merchant:".count))
            if notification.signature != verifier.merchantSignature(notification.body, merchantID: merchant) {
                badSignatures += 1
                world.checker.record(.merchantWebhookSignature, merchant, "notification \(notification.notificationID) is not signed correctly")
            }
        }
        let success = !kernel.random.bernoulli(world.configuration.notificationFailureRate)
        world.network.send(.notifyResult(notificationID: notification.notificationID, success: success), to: replyTo, kernel: kernel)
    }
}
