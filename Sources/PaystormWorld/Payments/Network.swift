import PaystormKernel
import PaystormStatistics

/// The links between actors: every message between two actors crosses one,
/// with lognormal latency, loss, duplication and partitions. Randomness comes
/// from the sending actor's stream, so a link's behaviour is part of its
/// sender's deterministic history.
final class Network {
    struct Partition {
        var from: String
        var to: String
        var oneWay: Bool
        var faultIndex: Int
    }

    struct Counters {
        var sent = 0
        var lost = 0
        var duplicated = 0
        var partitioned = 0
        var refused = 0
    }

    let model: NetworkModel
    private(set) var counters = Counters()
    private var partitions: [Partition] = []
    /// Names of the actors by address index (for partition prefixes).
    var names: [String] = []
    /// Faults stop during healing.
    var healed = false
    /// Per link (sender, receiver): when its last message arrives. Links are
    /// FIFO, like the connections they model: a message never overtakes an
    /// earlier one on the same link.
    private var lastArrival: [UInt64: Int64] = [:]

    init(model: NetworkModel) {
        self.model = model
    }

    func addPartition(from: String, to: String, oneWay: Bool, faultIndex: Int) {
        partitions.append(Partition(from: from, to: to, oneWay: oneWay, faultIndex: faultIndex))
    }

    func removePartition(faultIndex: Int) {
        partitions.removeAll { $0.faultIndex == faultIndex }
    }

    func clearFaults() {
        partitions.removeAll()
        healed = true
    }

    private func blocked(_ from: ActorAddress, _ to: ActorAddress) -> Bool {
        guard !partitions.isEmpty, from.index >= 0 else { return false }
        let a = names[Int(from.index)], b = names[Int(to.index)]
        for partition in partitions {
            if a.hasPrefix(partition.from) && b.hasPrefix(partition.to) { return true }
            if !partition.oneWay && a.hasPrefix(partition.to) && b.hasPrefix(partition.from) { return true }
        }
        return false
    }

    /// Sends `message` from the current actor to `target` across the link.
    func send(_ message: WorldMessage, to target: ActorAddress, kernel: SimulationKernel<WorldMessage>, extraDelay: Int64 = 0) {
        counters.sent += 1
        let from = kernel.currentActor
        if blocked(from, target) {
            counters.partitioned += 1
            return
        }
        let random = kernel.random
        if !healed && model.lossRate > 0 && random.bernoulli(model.lossRate) {
            counters.lost += 1
            return
        }
        let copies = !healed && model.duplicationRate > 0 && random.bernoulli(model.duplicationRate) ? 2 : 1
        if copies == 2 { counters.duplicated += 1 }
        let link = UInt64(UInt32(bitPattern: from.index)) << 32 | UInt64(UInt32(bitPattern: target.index))
        for _ in 0..<copies {
            let latency = random.lognormal(median: model.latencyMedianSeconds, sigma: model.latencySigma)
            let now = kernel.now.nanoseconds
            let arrival = max(now + extraDelay + Int64(latency * 1e9), lastArrival[link] ?? 0)
            lastArrival[link] = arrival
            if !kernel.send(message, to: target, after: SimDuration(nanoseconds: arrival - now)) { counters.refused += 1 }
        }
    }
}
