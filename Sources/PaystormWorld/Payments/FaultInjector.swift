import PaystormKernel

/// Plays the fault timeline: each fault starts and ends by a message at its
/// virtual times. At healing every fault still active is ended.
final class FaultInjector: SimActor {
    typealias Message = WorldMessage

    unowned let world: World
    let faults: [ScheduledFault]
    private(set) var active: Set<Int> = []
    var replicaActors: [Replica] = []
    var pspActors: [PSP] = []
    var brokerActor: Broker!

    init(world: World) {
        self.world = world
        faults = world.configuration.faults
    }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        guard case let .fault(index, starting) = message else { return }
        apply(Int(index), starting: starting, kernel)
    }

    /// Ends every active fault (the healing phase begins).
    func endAll(_ kernel: SimulationKernel<WorldMessage>) {
        for index in active.sorted() {
            world.faultWindows[index].endedByHealing = true
            apply(index, starting: false, kernel)
        }
    }

    private func apply(_ index: Int, starting: Bool, _ kernel: SimulationKernel<WorldMessage>) {
        guard starting ? !world.healing && !active.contains(index) : active.contains(index) else { return }
        if starting { active.insert(index) } else { active.remove(index) }
        if starting { world.faultWindows[index].startedSeconds = kernel.now.seconds } else { world.faultWindows[index].endedSeconds = kernel.now.seconds }
        let fault = faults[index]
        // Faults on one target may overlap: its state follows every fault
        // still active on it, not the last one to start or end. (An outage,
        // crash or partition down names its target whole: another fault on
        // the same target is the same kind.)
        let still = active.sorted().map { faults[$0].kind }
        switch fault.kind {
        case let .pspOutage(psp):
            pspActors[world.pspIndexByID[psp]!].outage = still.contains(fault.kind)
        case let .pspBrownout(psp, _, _):
            let actor = pspActors[world.pspIndexByID[psp]!]
            let brownouts = still.compactMap { kind -> (factor: Double, errorRate: Double)? in
                if case let .pspBrownout(on, factor, errorRate) = kind, on == psp { (factor, errorRate) } else { nil }
            }
            actor.brownoutFactor = brownouts.map(\.factor).max() ?? 1
            actor.brownoutErrorRate = brownouts.map(\.errorRate).max() ?? 0
        case let .partition(from, to, oneWay):
            if starting {
                world.network.addPartition(from: from, to: to, oneWay: oneWay, faultIndex: index)
            } else {
                world.network.removePartition(faultIndex: index)
            }
        case let .replicaCrash(replica):
            hold(world.replicas[replica], down: still.contains(fault.kind), kernel)
        case let .brokerPartitionDown(partition):
            brokerActor.setPartition(partition, down: still.contains(fault.kind))
        case let .consumerCrash(group, member):
            let g = World.groups.firstIndex { $0.rawValue == group }!
            hold(world.consumers[g][member], down: still.contains(fault.kind), kernel)
        case let .webhookStorm(psp, count):
            if starting { pspActors[world.pspIndexByID[psp]!].storm(count: count, overSeconds: max(1, fault.durationSeconds), kernel: kernel) }
        case let .webhookForgery(psp, count):
            if starting { pspActors[world.pspIndexByID[psp]!].forge(count: count, overSeconds: max(1, fault.durationSeconds), kernel: kernel) }
        case let .clockSkew(replica, _):
            // Overlapping skews of one replica add up.
            let offsets = still.compactMap { kind -> Double? in
                if case let .clockSkew(on, offset) = kind, on == replica { offset } else { nil }
            }
            replicaActors[replica].host.skewNanoseconds = Int64(offsets.reduce(0, +) * 1e9)
        case .relayCrash:
            hold(world.relay, down: still.contains(fault.kind), kernel)
        }
    }

    /// Keeps `address` down while a fault holds it — a restart it had
    /// scheduled after a crash of its own then waits for the fault to end
    /// — and brings it back when none does.
    private func hold(_ address: ActorAddress, down: Bool, _ kernel: SimulationKernel<WorldMessage>) {
        kernel.holdDown(address, down)
        if !down {
            if !kernel.isRunning(address) { kernel.restart(address) }
        } else if kernel.isRunning(address) {
            kernel.crash(address)
        }
    }
}

/// Closes a metrics window every `windowSeconds`, sampling the gauges, and
/// runs the store audit on its cadence.
final class Monitor: SimActor {
    typealias Message = WorldMessage

    unowned let world: World
    var replicaActors: [Replica] = []
    var brokerActor: Broker!
    private var lastAudit: Int64 = 0
    private(set) var audits = 0

    init(world: World) {
        self.world = world
    }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        guard case .sample = message else { return }
        let now = kernel.now.nanoseconds
        closeWindow(at: now, kernel: kernel)
        let every = Int64(world.configuration.auditEverySeconds * 1e9)
        if every > 0 && now - lastAudit >= every {
            lastAudit = now
            audits += 1
            world.checker.audit(final: false)
        }
        kernel.setTimer(after: SimDuration(seconds: world.configuration.windowSeconds), .sample)
    }

    /// Closes the window that ends at `nanoseconds`, with the gauges as they are now.
    func closeWindow(at nanoseconds: Int64, kernel: SimulationKernel<WorldMessage>) {
        let depth = replicaActors.indices.reduce(0) { $0 + (kernel.isRunning(world.replicas[$1]) ? replicaActors[$1].depth : 0) }
        let (backlog, deadLetters) = world.storeGauges()
        world.metrics.closeWindow(at: nanoseconds, queueDepth: depth, lag: brokerActor.lag, outboxBacklog: backlog,
                                  deadLetters: brokerActor.deadLetterDepth + deadLetters)
    }

    /// Closes the window the run ends in, which no sample closed: without
    /// this, a run shorter than one window, or the last part of any run,
    /// would report its answers with no latency and no gauges.
    func closeLastWindow(kernel: SimulationKernel<WorldMessage>) {
        let now = kernel.now.nanoseconds, width = world.metrics.windowNanoseconds
        if let open = world.metrics.openLatencyWindow {
            // Answered in the window that begins at the run's last instant, after its sample: that window, not the one before.
            closeWindow(at: (Int64(open) + 1) * width, kernel: kernel)
        } else if now % width != 0 {
            closeWindow(at: now, kernel: kernel)
        }
    }
}
