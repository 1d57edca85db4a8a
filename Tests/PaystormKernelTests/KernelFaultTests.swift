import Testing
@testable import PaystormKernel

@Suite("Crash, restart, timers and bounds")
struct KernelFaultTests {
    @Test func crashDropsMailboxAndTimers() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let victim = Recorder()
        var armed: [TimerHandle] = []
        victim.onReceive = { note, _, kernel in
            if case .value(0) = note {
                armed.append(kernel.setTimer(after: .milliseconds(50), .tick(1)))
            }
        }
        let victimAddress = kernel.spawn(victim, name: "victim")
        let sender = Recorder()
        sender.onReceive = { note, _, kernel in
            if case let .value(v) = note { kernel.send(.value(v), to: victimAddress, after: .milliseconds(20)) }
        }
        let senderAddress = kernel.spawn(sender, name: "sender")

        kernel.inject(.value(0), to: victimAddress, at: .zero)                          // arms a timer for t=50ms
        kernel.inject(.value(100), to: senderAddress, at: .zero + .milliseconds(1))      // in victim's mailbox for t=21ms
        kernel.scheduleCrash(of: victimAddress, at: .zero + .milliseconds(10))
        kernel.inject(.value(200), to: senderAddress, at: .zero + .milliseconds(11))     // sent while down, arrives t=31ms (still down)
        kernel.scheduleRestart(of: victimAddress, at: .zero + .milliseconds(40))
        kernel.inject(.value(300), to: senderAddress, at: .zero + .milliseconds(30))     // sent while down, arrives t=50ms (up again)

        kernel.runUntilIdle(maxEvents: 100)

        #expect(victim.crashes == 1 && victim.restarts == 1)
        // The pre-crash log was wiped by crashed(); after restart only 300 arrives,
        // and neither the timer armed before the crash nor message 100 survives.
        #expect(victim.values == [300])
        #expect(victim.log.first?.time == 50_000_000)
        #expect(kernel.counters.droppedByCrash == 2)   // message 100 and the timer
        #expect(kernel.counters.droppedWhileDown == 1) // message 200
        #expect(kernel.counters.crashes == 1 && kernel.counters.restarts == 1)
        #expect(kernel.cancel(armed[0]) == false)
        #expect(kernel.mailboxDepth(of: victimAddress) == 0)
    }

    /// An actor a fault holds down does not come back by a restart it had
    /// scheduled itself; it comes back when the fault lets it go.
    @Test func aHeldDownActorSkipsItsScheduledRestart() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let victim = Recorder()
        let address = kernel.spawn(victim, name: "victim")
        kernel.crash(address)
        kernel.holdDown(address, true)
        kernel.scheduleRestart(of: address, at: .zero + .milliseconds(5))
        kernel.runUntilIdle(maxEvents: 10)
        #expect(!kernel.isRunning(address) && victim.restarts == 0)
        kernel.holdDown(address, false)
        kernel.scheduleRestart(of: address, at: kernel.now + .milliseconds(5))
        kernel.runUntilIdle(maxEvents: 10)
        #expect(kernel.isRunning(address) && victim.restarts == 1)
    }

    /// A fault point: the actor crashes in the middle of handling a message
    /// (say, after the PSP call and before the commit). Nothing it does after
    /// that instant may take effect.
    @Test func anActorThatCrashesInsideReceiveHasNoFurtherEffects() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let sink = Recorder()
        let sinkAddress = kernel.spawn(sink, name: "sink")
        let worker = Recorder()
        worker.onReceive = { _, _, kernel in
            kernel.send(.value(1), to: sinkAddress)          // before the crash: delivered
            kernel.crash(kernel.currentActor)
            kernel.send(.value(2), to: sinkAddress)          // after: refused
            let timer = kernel.setTimer(after: .milliseconds(1), .tick(0))
            #expect(timer.isNone)
        }
        let workerAddress = kernel.spawn(worker, name: "worker")
        kernel.inject(.value(0), to: workerAddress, at: .zero)
        kernel.scheduleRestart(of: workerAddress, at: .zero + .milliseconds(5))
        kernel.runUntilIdle(maxEvents: 100)
        #expect(sink.values == [1])
        #expect(kernel.counters.refusedFromCrashedActor == 2)
        #expect(worker.restarts == 1 && worker.log.isEmpty)
    }

    @Test func crashingTwiceAndRestartingARunningActorAreNoOps() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let recorder = Recorder()
        let address = kernel.spawn(recorder, name: "r")
        kernel.restart(address)
        #expect(recorder.restarts == 0)
        kernel.crash(address)
        kernel.crash(address)
        #expect(recorder.crashes == 1)
        #expect(!kernel.isRunning(address))
        kernel.restart(address)
        #expect(kernel.isRunning(address) && recorder.restarts == 1)
    }

    @Test func cancelledTimersNeverFire() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let recorder = Recorder()
        var handles: [TimerHandle] = []
        recorder.onReceive = { note, _, kernel in
            guard case .value = note else { return }
            for i in 0..<10 { handles.append(kernel.setTimer(after: .milliseconds(Int64(i + 1)), .tick(i))) }
            for i in stride(from: 0, to: 10, by: 2) { #expect(kernel.cancel(handles[i])) }
            #expect(!kernel.cancel(handles[0]), "a second cancel reports nothing cancelled")
            #expect(!kernel.cancel(.none))
        }
        let address = kernel.spawn(recorder, name: "r")
        kernel.inject(.value(0), to: address, at: .zero)
        kernel.runUntilIdle(maxEvents: 100)
        let ticks = recorder.log.compactMap { if case let .tick(i) = $0.note { return i } else { return nil } }
        #expect(ticks == [1, 3, 5, 7, 9])
        #expect(kernel.counters.timersCancelled == 5)
        #expect(!kernel.cancel(handles[1]), "a fired timer cannot be cancelled")
    }

    @Test func staleHandleCannotCancelAReusedSlot() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let recorder = Recorder()
        var first: TimerHandle = .none
        recorder.onReceive = { note, _, kernel in
            switch note {
            case .value(0):
                first = kernel.setTimer(after: .milliseconds(1), .tick(0))
                kernel.cancel(first)
                kernel.setTimer(after: .milliseconds(2), .tick(1))  // reuses the slot
                #expect(!kernel.cancel(first))
            default: break
            }
        }
        let address = kernel.spawn(recorder, name: "r")
        kernel.inject(.value(0), to: address, at: .zero)
        kernel.runUntilIdle(maxEvents: 10)
        #expect(recorder.log.count == 2)  // the value and tick 1
    }

    @Test func runUntilStopsAtTheDeadlineEvenBehindACancelledTimer() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let recorder = Recorder()
        recorder.onReceive = { note, _, kernel in
            if case .value(0) = note {
                let early = kernel.setTimer(after: .milliseconds(5), .tick(5))
                kernel.setTimer(after: .milliseconds(20), .tick(20))
                kernel.cancel(early)
            }
        }
        let address = kernel.spawn(recorder, name: "r")
        kernel.inject(.value(0), to: address, at: .zero)
        kernel.run(until: .zero + .milliseconds(10))
        #expect(kernel.now == .zero + .milliseconds(10))
        #expect(recorder.log.count == 1, "the t=20ms timer must not run before t=10ms is over")
        #expect(kernel.nextEventTime == .zero + .milliseconds(20))
        kernel.inject(.value(1), to: address, at: .zero + .milliseconds(15))
        kernel.runUntilIdle(maxEvents: 10)
        #expect(recorder.log.map(\.time) == [0, 15_000_000, 20_000_000])
    }

    @Test func cancelledTimersDoNotCountAgainstTheEventBound() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1, maxPendingEvents: 10))
        let recorder = Recorder()
        var refused = 0
        recorder.onReceive = { _, _, kernel in
            for _ in 0..<100 {
                let timer = kernel.setTimer(after: .seconds(1), .tick(0))
                if timer.isNone { refused += 1 }
                kernel.cancel(timer)
            }
        }
        let address = kernel.spawn(recorder, name: "r")
        kernel.inject(.value(0), to: address, at: .zero)
        kernel.runUntilIdle(maxEvents: 10)
        #expect(refused == 0)
        #expect(kernel.counters.eventListOverflows == 0)
        #expect(kernel.pendingEvents == 0)
    }

    @Test func messagesSentWhileDownDieInASecondCrash() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let victim = Recorder()
        let address = kernel.spawn(victim, name: "victim")
        kernel.scheduleCrash(of: address, at: .zero + .milliseconds(1))
        kernel.run(until: .zero + .milliseconds(1))
        #expect(!kernel.isRunning(address))
        kernel.inject(.value(1), to: address, at: .zero + .milliseconds(2))   // sent and arriving while down
        kernel.inject(.value(2), to: address, at: .zero + .milliseconds(30))  // sent while down, arrives after a second crash
        kernel.scheduleRestart(of: address, at: .zero + .milliseconds(10))
        kernel.scheduleCrash(of: address, at: .zero + .milliseconds(20))
        kernel.scheduleRestart(of: address, at: .zero + .milliseconds(25))
        kernel.runUntilIdle(maxEvents: 20)
        #expect(victim.values.isEmpty)
        #expect(kernel.counters.droppedWhileDown == 1)
        #expect(kernel.counters.droppedByCrash == 1)
        #expect(kernel.counters.crashes == 2 && kernel.counters.restarts == 2)
    }

    @Test func mailboxBoundIsEnforcedAndCounted() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1))
        let recorder = Recorder()
        let address = kernel.spawn(recorder, name: "r", mailboxCapacity: 3)
        var accepted: [Bool] = []
        for i in 0..<5 { accepted.append(kernel.inject(.value(i), to: address, at: .zero + .milliseconds(1))) }
        #expect(accepted == [true, true, true, false, false])
        #expect(kernel.counters.mailboxOverflows == 2)
        #expect(kernel.mailboxDepth(of: address) == 3)
        kernel.runUntilIdle(maxEvents: 10)
        #expect(recorder.values == [0, 1, 2])
        #expect(kernel.inject(.value(9), to: address, at: kernel.now), "delivery frees mailbox space")
    }

    @Test func eventListBoundIsEnforcedAndCounted() {
        let kernel = SimulationKernel<Note>(configuration: KernelConfiguration(rootSeed: 1, maxPendingEvents: 4))
        let recorder = Recorder()
        var timer: TimerHandle?
        recorder.onReceive = { _, _, kernel in timer = kernel.setTimer(after: .seconds(1), .tick(0)) }
        let address = kernel.spawn(recorder, name: "r")
        for i in 0..<6 { kernel.inject(.value(i), to: address, at: .zero) }
        #expect(kernel.pendingEvents == 4)
        #expect(kernel.counters.eventListOverflows == 2)
        _ = kernel.step()  // delivers value 0, which arms a timer into the freed space
        #expect(timer?.isNone == false)
        _ = kernel.run(until: .zero)
        #expect(kernel.counters.eventListOverflows == 2)
    }

    @Test func boundedQueueCountsOverflow() {
        var queue = BoundedQueue<Int>(capacity: 3)
        let first = [queue.enqueue(1), queue.enqueue(2), queue.enqueue(3), queue.enqueue(4)]
        #expect(first == [true, true, true, false])
        #expect(queue.overflowCount == 1 && queue.isFull && queue.highWaterMark == 3)
        let head = queue.dequeue()
        #expect(head == 1)
        let accepted = queue.enqueue(5)
        #expect(accepted)
        let drained = [queue.dequeue(), queue.dequeue(), queue.dequeue(), queue.dequeue()]
        #expect(drained == [2, 3, 5, nil])
        queue.enqueue(6)
        let dropped = queue.removeAll()
        #expect(dropped == 1 && queue.isEmpty)
        #expect(queue.overflowCount == 1 && queue.highWaterMark == 3)
    }
}
