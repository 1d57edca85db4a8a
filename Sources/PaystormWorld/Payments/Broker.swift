import DequeModule
import PaystormEngine
import PaystormKernel

/// A Kafka-like broker for the transaction topic: partitions by merchant id,
/// three consumer groups (ledger, wallet, notification) with committed
/// offsets, at-least-once delivery, heartbeats and a session timeout,
/// rebalancing with generations (commits from an old generation are
/// refused), a dead-letter topic per group, and retention that drops what
/// every group has committed.
final class Broker: SimActor {
    typealias Message = WorldMessage

    struct Partition {
        var log = Deque<TransactionEvent>()
        /// Offset of `log.first`.
        var base: Int64 = 0
        var end: Int64 { base + Int64(log.count) }
        var down = false
    }

    struct Cursor {
        var committed: Int64 = 0
        var nextToSend: Int64 = 0
        var owner = -1
        /// When the committed offset last moved or a batch was last sent.
        var progressedAt: Int64 = 0
    }

    unowned let world: World
    let model: BrokerModel
    private var partitions: [Partition]
    /// [group][partition]
    private var cursors: [[Cursor]]
    /// [group][member]: virtual time of the last heartbeat.
    private var heartbeats: [[Int64]]
    private var generation: [Int64]
    private var members: [[Int]]
    /// [group]: the dead-letter topic.
    private(set) var deadLetters: [[TransactionEvent]]
    private(set) var produced = 0
    /// Healing has begun replaying the dead-letter topics.
    private var replaying = false

    init(world: World) {
        self.world = world
        model = world.configuration.broker
        partitions = Array(repeating: Partition(), count: model.partitions)
        let groups = World.groups.count
        cursors = Array(repeating: Array(repeating: Cursor(), count: model.partitions), count: groups)
        heartbeats = Array(repeating: Array(repeating: 0, count: model.consumersPerGroup), count: groups)
        generation = Array(repeating: 0, count: groups)
        members = Array(repeating: [], count: groups)
        deadLetters = Array(repeating: [], count: groups)
    }

    /// Produced but not committed, summed over groups and partitions.
    var lag: Int {
        var total: Int64 = 0
        for group in cursors.indices {
            for partition in partitions.indices { total += partitions[partition].end - cursors[group][partition].committed }
        }
        return Int(total)
    }

    var deadLetterDepth: Int { deadLetters.reduce(0) { $0 + $1.count } }

    /// Takes a partition down or brings it back. What waited is delivered by
    /// the broker's next tick, sent from the broker itself: the fault
    /// injector that calls this may not be the running actor at all (at
    /// healing it runs outside any).
    func setPartition(_ partition: Int, down: Bool) {
        partitions[partition].down = down
    }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        switch message {
        case let .produce(batch):
            // In order; stop at the first message whose partition is down. The
            // relay resends the rest from the acknowledged sequence.
            var through: Int64 = -1
            for message in batch.messages {
                let partition = world.partition(of: message.partitionKey)
                guard !partitions[partition].down else { break }
                partitions[partition].log.append(message.event)
                produced += 1
                world.published(message.event)
                through = message.sequence
            }
            if through >= 0 { world.network.send(.produceAck(through: through), to: sender, kernel: kernel) }
            deliverAll(kernel)
        case let .commit(group, partition, commitGeneration, offset, letters):
            let g = Int(group), p = Int(partition)
            let from = cursors[g][p].committed
            guard commitGeneration == generation[g], offset > from else { return }
            let through = min(offset, partitions[p].end)
            // Exactly once per offset: a commit may repeat letters of a range already committed.
            for letter in letters where letter.offset >= from && letter.offset < through {
                deadLetters[g].append(letter.event)
                world.metrics.brokerDeadLetters += 1
            }
            cursors[g][p].committed = through
            // A commit that overtook a redelivery (sent while the partition was down) must not leave the
            // next send behind the committed offset, below what retention may drop.
            cursors[g][p].nextToSend = max(cursors[g][p].nextToSend, through)
            cursors[g][p].progressedAt = kernel.now.nanoseconds
            deliver(group: g, partition: p, kernel)
        case let .heartbeat(group, member):
            let g = Int(group)
            heartbeats[g][Int(member)] = kernel.now.nanoseconds
            if !members[g].contains(Int(member)) { rebalance(group: g, kernel) }
        case let .joinGroup(group, member):
            // A (re)started member: whatever was in flight to its old self is gone.
            heartbeats[Int(group)][Int(member)] = kernel.now.nanoseconds
            rebalance(group: Int(group), kernel)
        case .heal:
            replaying = true
            _ = replayDeadLetters(kernel: kernel)
        case .brokerTick:
            // After the first replay, whatever reaches a dead-letter topic goes back at the next
            // tick: a commit still on its way, or an event refused because the one it depends on
            // was itself waiting in a dead-letter topic.
            if replaying { _ = replayDeadLetters(kernel: kernel) }
            let timeout = Int64(model.sessionTimeoutSeconds * 1e9)
            for group in members.indices where members[group].contains(where: { kernel.now.nanoseconds - heartbeats[group][$0] > timeout }) {
                rebalance(group: group, kernel)
            }
            redeliverStalled(now: kernel.now.nanoseconds)
            trim()
            deliverAll(kernel)
            kernel.setTimer(after: .milliseconds(100), .brokerTick)
        default:
            break
        }
    }

    /// Live members share the group's partitions round-robin; every partition
    /// whose owner changed is redelivered from its committed offset.
    private func rebalance(group: Int, _ kernel: SimulationKernel<WorldMessage>) {
        let timeout = Int64(model.sessionTimeoutSeconds * 1e9)
        members[group] = (0..<model.consumersPerGroup).filter {
            heartbeats[group][$0] > 0 && kernel.now.nanoseconds - heartbeats[group][$0] <= timeout
        }
        generation[group] += 1
        world.metrics.rebalances += 1
        for partition in partitions.indices {
            let owner = members[group].isEmpty ? -1 : members[group][partition % members[group].count]
            cursors[group][partition].owner = owner
            if cursors[group][partition].nextToSend > cursors[group][partition].committed {
                world.metrics.consumerRedeliveries += Int(cursors[group][partition].nextToSend - cursors[group][partition].committed)
            }
            cursors[group][partition].nextToSend = cursors[group][partition].committed
        }
        for partition in partitions.indices { deliver(group: group, partition: partition, kernel) }
    }

    private func deliverAll(_ kernel: SimulationKernel<WorldMessage>) {
        for group in cursors.indices {
            for partition in partitions.indices { deliver(group: group, partition: partition, kernel) }
        }
    }

    private func deliver(group: Int, partition: Int, _ kernel: SimulationKernel<WorldMessage>) {
        let cursor = cursors[group][partition]
        let log = partitions[partition]
        guard cursor.owner >= 0, !log.down else { return }
        let limit = min(log.end, cursor.committed + Int64(model.maxInFlightPerPartition))
        guard cursor.nextToSend < limit else { return }
        let first = cursor.nextToSend
        let events = Array(log.log[Int(first - log.base)..<Int(limit - log.base)])
        cursors[group][partition].nextToSend = limit
        cursors[group][partition].progressedAt = kernel.now.nanoseconds
        world.network.send(.deliver(DeliveryBatch(group: group, partition: partition, generation: generation[group],
                                                  firstOffset: first, committed: cursor.committed, events: events)),
                           to: world.consumers[group][cursor.owner], kernel: kernel)
    }

    /// A batch (or its commit) lost on the way: after `redeliveryTimeout`
    /// without progress, send again from the committed offset.
    private func redeliverStalled(now: Int64) {
        let timeout = Int64(model.redeliveryTimeoutSeconds * 1e9)
        for group in cursors.indices {
            for partition in partitions.indices {
                let cursor = cursors[group][partition]
                guard cursor.nextToSend > cursor.committed, now - cursor.progressedAt > timeout else { continue }
                world.metrics.consumerRedeliveries += Int(cursor.nextToSend - cursor.committed)
                cursors[group][partition].nextToSend = cursor.committed
            }
        }
    }

    /// Retention: drop what every group has committed.
    private func trim() {
        for partition in partitions.indices {
            let floor = cursors.map { $0[partition].committed }.min() ?? 0
            let drop = Int(floor - partitions[partition].base)
            if drop > 0 {
                partitions[partition].log.removeFirst(drop)
                partitions[partition].base = floor
            }
        }
    }

    /// Healing: the dead-letter topics go back to their groups' first live member.
    private func replayDeadLetters(kernel: SimulationKernel<WorldMessage>) -> Int {
        var replayed = 0
        for group in deadLetters.indices where !deadLetters[group].isEmpty {
            let member = members[group].first ?? 0
            world.network.send(.deliver(DeliveryBatch(group: group, partition: -1, generation: generation[group], firstOffset: 0,
                                                      committed: 0, events: deadLetters[group])),
                               to: world.consumers[group][member], kernel: kernel)
            replayed += deadLetters[group].count
            deadLetters[group].removeAll()
        }
        return replayed
    }
}
