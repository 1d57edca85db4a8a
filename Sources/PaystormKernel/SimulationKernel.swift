import PaystormStatistics

/// The deterministic discrete-event kernel: virtual time, an event list
/// ordered by `(time, sequence)`, actors with bounded mailboxes that can crash
/// and restart, per-actor seeded random streams and a running trace hash.
///
/// One kernel runs on one thread; nothing here reads the clock, the system
/// RNG or iterates a hashed collection. Events at equal times run in the
/// order they were scheduled.
///
/// Message semantics: a message is stamped with its target's incarnation when
/// sent. A crash starts a new incarnation, so everything sent to the actor
/// before the crash and not yet delivered (its mailbox: requests on broken
/// connections) and all its timers are dropped. Messages sent while the actor
/// is down are delivered if it is up again when they arrive.
public final class SimulationKernel<Message: SimMessage> {
    // MARK: Event list

    @usableFromInline
    enum EventKind: UInt8 {
        case message, timer, crash, restart
    }

    /// Payload storage for one pending event; heap entries stay 16 bytes.
    @usableFromInline
    struct EventSlot {
        @usableFromInline var message: Message?
        @usableFromInline var target: Int32
        @usableFromInline var sender: Int32
        @usableFromInline var incarnation: UInt32
        /// Sequence number of the event held; a heap entry with another one is stale.
        @usableFromInline var sequence: UInt64
        @usableFromInline var kind: EventKind
        @usableFromInline var live: Bool

        @inlinable
        init(message: Message?, target: Int32, sender: Int32, incarnation: UInt32, sequence: UInt64, kind: EventKind, live: Bool) {
            self.message = message
            self.target = target
            self.sender = sender
            self.incarnation = incarnation
            self.sequence = sequence
            self.kind = kind
            self.live = live
        }
    }

    @usableFromInline var heap: EventHeap
    @usableFromInline var slots: [EventSlot] = []
    @usableFromInline var freeSlots: [Int32] = []
    @usableFromInline var nextSequence: UInt64 = 0
    /// Events that will still be delivered: the heap minus cancelled timers
    /// not yet surfaced. The `maxPendingEvents` bound applies to this.
    @usableFromInline var liveEvents = 0

    // MARK: Actors (indexed by address)

    @usableFromInline var actors: [any SimActor<Message>] = []
    @usableFromInline var names: [String] = []
    @usableFromInline var streams: [RandomStream] = []
    @usableFromInline var incarnations: [UInt32] = []
    @usableFromInline var isUp: [Bool] = []
    /// Actors a fault holds down: their scheduled restarts do not happen.
    @usableFromInline var heldDown: [Bool] = []
    @usableFromInline var pendingPerActor: [Int32] = []
    @usableFromInline var mailboxCapacities: [Int32] = []

    // MARK: State

    /// The configuration this kernel was built with.
    public let configuration: KernelConfiguration
    @usableFromInline var _now: SimInstant = .zero
    @usableFromInline var _currentActor: ActorAddress = .environment
    /// Current virtual time; never decreases.
    public var now: SimInstant { _now }
    /// The actor whose message is being handled, or `.environment` outside one.
    public var currentActor: ActorAddress { _currentActor }
    /// Counts of everything delivered, dropped and refused.
    @usableFromInline var _counters = KernelCounters()
    public var counters: KernelCounters { _counters }
    /// Running hash over every delivered and dropped event.
    @usableFromInline var trace = TraceHasher()

    /// The trace hash so far, as 16 hex digits.
    public var traceHash: String { trace.hexDigest }
    /// The trace hash so far.
    public var traceDigest: UInt64 { trace.digest }

    /// Events that will still be delivered (cancelled timers excluded).
    public var pendingEvents: Int { liveEvents }

    /// Creates an empty kernel.
    /// - Complexity: O(`expectedEvents`) to reserve storage.
    public init(configuration: KernelConfiguration, expectedEvents: Int = 1024) {
        precondition(configuration.maxPendingEvents <= EventKey.maxSlots,
                     "maxPendingEvents must be at most \(EventKey.maxSlots)")
        self.configuration = configuration
        let reserve = min(max(expectedEvents, 16), configuration.maxPendingEvents)
        heap = EventHeap(minimumCapacity: reserve)
        slots.reserveCapacity(reserve)
        freeSlots.reserveCapacity(reserve)
    }

    // MARK: Actors

    /// Adds an actor under a unique, stable `name`; its random stream is
    /// derived from the root seed and the name, so adding other actors never
    /// changes the numbers it draws.
    @discardableResult
    public func spawn(_ actor: any SimActor<Message>, name: String, mailboxCapacity: Int? = nil) -> ActorAddress {
        precondition(!names.contains(name), "actor name '\(name)' is already taken")
        precondition(actors.count < Int32.max, "too many actors")
        let capacity = mailboxCapacity ?? configuration.defaultMailboxCapacity
        precondition(capacity > 0 && capacity <= Int32.max, "mailbox capacity must be in 1...\(Int32.max)")
        let address = ActorAddress(index: Int32(actors.count))
        actors.append(actor)
        names.append(name)
        streams.append(RandomStream(rootSeed: configuration.rootSeed, stream: name))
        incarnations.append(0)
        isUp.append(true)
        heldDown.append(false)
        pendingPerActor.append(0)
        mailboxCapacities.append(Int32(capacity))
        return address
    }

    /// Number of actors spawned.
    public var actorCount: Int { actors.count }

    /// The name an actor was spawned under.
    public func name(of address: ActorAddress) -> String { names[checked(address)] }

    /// Whether the actor is running (not crashed).
    public func isRunning(_ address: ActorAddress) -> Bool { isUp[checked(address)] }

    /// Messages and timers pending for the actor's current incarnation.
    public func mailboxDepth(of address: ActorAddress) -> Int { Int(pendingPerActor[checked(address)]) }

    /// The array index of `address`. - Precondition: an actor lives there.
    func checked(_ address: ActorAddress) -> Int {
        precondition(address.index >= 0 && Int(address.index) < actors.count,
                     "no actor at address \(address) (\(actors.count) spawned)")
        return Int(address.index)
    }

    /// The random stream of the actor being run.
    /// - Precondition: called from inside an actor's `receive` or `restarted`.
    @inlinable
    public var random: RandomStream {
        precondition(currentActor.index >= 0, "kernel.random is only available inside an actor")
        return streams[Int(currentActor.index)]
    }

    /// The random stream of any actor (for setup code).
    public func randomStream(of address: ActorAddress) -> RandomStream { streams[checked(address)] }

    // MARK: Sending

    /// Sends `message` from the current actor to `target`, delivered after
    /// `delay` (zero delivers after every event already scheduled for now).
    ///
    /// - Returns: `false` if refused because a bound was reached (counted).
    /// - Complexity: O(log n) in pending events.
    @inlinable @discardableResult
    public func send(_ message: Message, to target: ActorAddress, after delay: SimDuration = .zero) -> Bool {
        schedule(.message, message, target: target.index, sender: currentActor.index, at: now.nanoseconds &+ delay.nanoseconds) >= 0
    }

    /// Injects a message from outside any actor at absolute time `time`.
    @inlinable @discardableResult
    public func inject(_ message: Message, to target: ActorAddress, at time: SimInstant) -> Bool {
        schedule(.message, message, target: target.index, sender: ActorAddress.environment.index, at: time.nanoseconds) >= 0
    }

    /// Arms a timer for the current actor: `message` comes back to it after
    /// `delay` unless cancelled or the actor crashes first.
    ///
    /// - Returns: a handle for ``cancel(_:)``, or ``TimerHandle/none`` if the
    ///   timer was refused because a bound was reached (counted).
    @inlinable @discardableResult
    public func setTimer(after delay: SimDuration, _ message: Message) -> TimerHandle {
        precondition(currentActor.index >= 0, "timers belong to an actor: call setTimer from inside one")
        let slot = schedule(.timer, message, target: currentActor.index, sender: currentActor.index, at: now.nanoseconds &+ delay.nanoseconds)
        guard slot >= 0 else { return .none }
        return TimerHandle(slot: slot, sequence: slots[Int(slot)].sequence)
    }

    /// Cancels a timer if it has not fired; cancelling a fired, cancelled or
    /// ``TimerHandle/none`` timer does nothing.
    /// - Returns: whether a pending timer was cancelled.
    /// - Complexity: O(1); the heap entry is discarded when it surfaces.
    @inlinable @discardableResult
    public func cancel(_ timer: TimerHandle) -> Bool {
        guard timer.slot >= 0, Int(timer.slot) < slots.count else { return false }
        let entry = slots[Int(timer.slot)]
        guard entry.live, entry.sequence == timer.sequence, entry.kind == .timer else { return false }
        if entry.incarnation == incarnations[Int(entry.target)] {
            pendingPerActor[Int(entry.target)] -= 1
        }
        release(timer.slot)
        _counters.timersCancelled += 1
        return true
    }

    /// Crashes `target` at absolute time `time` (a fault timeline entry).
    public func scheduleCrash(of target: ActorAddress, at time: SimInstant) {
        _ = scheduleControl(.crash, target: target, at: time)
    }

    /// Restarts `target` at absolute time `time`, unless it is held down
    /// then (see ``holdDown(_:_:)``).
    public func scheduleRestart(of target: ActorAddress, at time: SimInstant) {
        _ = scheduleControl(.restart, target: target, at: time)
    }

    /// Holds `target` down, or lets it go: while held, its scheduled
    /// restarts (an actor restarting itself a second after a crash) do not
    /// happen. A fault that keeps an actor down for a while holds it, so
    /// that a crash of its own in the meantime does not end the fault.
    /// ``restart(_:)`` itself is not refused.
    public func holdDown(_ target: ActorAddress, _ held: Bool) {
        heldDown[checked(target)] = held
    }

    /// Crashes `target` now: its mailbox and timers are dropped and it loses
    /// its in-memory state. Crashing a crashed actor does nothing.
    public func crash(_ target: ActorAddress) {
        let index = checked(target)
        guard isUp[index] else { return }
        isUp[index] = false
        incarnations[index] &+= 1
        pendingPerActor[index] = 0
        _counters.crashes += 1
        trace.combine(UInt64(0xC4A5))
        trace.combine(now.nanoseconds)
        trace.combine(target.index)
        let previous = currentActor
        _currentActor = target
        actors[index].crashed()
        _currentActor = previous
    }

    /// Restarts a crashed actor now; it rebuilds its state in `restarted`.
    /// Restarting a running actor does nothing.
    public func restart(_ target: ActorAddress) {
        let index = checked(target)
        guard !isUp[index] else { return }
        isUp[index] = true
        _counters.restarts += 1
        trace.combine(UInt64(0x4E57))
        trace.combine(now.nanoseconds)
        trace.combine(target.index)
        let previous = currentActor
        _currentActor = target
        actors[index].restarted(kernel: self)
        _currentActor = previous
    }

    // MARK: Running

    /// Delivers the next event.
    /// - Returns: `false` when no event is pending.
    /// - Complexity: amortised O(log n).
    @inlinable
    public func step() -> Bool {
        while let key = heap.takeMin() {
            let slotIndex = Int(key.slot)
            guard slots[slotIndex].live, slots[slotIndex].sequence == key.sequence else {
                heap.settle()
                continue  // a cancelled timer whose slot was released or reused
            }
            let entry = slots[slotIndex]
            release(key.slot)
            precondition(key.time >= now.nanoseconds, "virtual time went backwards")
            _now = SimInstant(nanoseconds: key.time)
            // The first event this delivery schedules takes the root's place.
            dispatch(entry)
            heap.settle()
            return true
        }
        return false
    }

    /// Runs events until none is pending, the next is after `deadline`, or
    /// `maxEvents` have been handled; then sets the clock to `deadline` if the
    /// list ran dry or the next event lies beyond it.
    ///
    /// - Returns: the number of events handled.
    @inlinable @discardableResult
    public func run(until deadline: SimInstant, maxEvents: Int = .max) -> Int {
        var handled = 0
        while handled < maxEvents, let next = nextLiveKey(), next.time <= deadline.nanoseconds {
            if step() { handled += 1 }
        }
        if handled < maxEvents, _now < deadline { _now = deadline }
        return handled
    }

    /// Runs events until none is pending or `maxEvents` have been handled;
    /// the clock stays at the last event's time.
    /// - Returns: the number of events handled.
    @inlinable @discardableResult
    public func runUntilIdle(maxEvents: Int) -> Int {
        var handled = 0
        while handled < maxEvents, step() { handled += 1 }
        return handled
    }

    /// The time of the earliest event that will be delivered, if any.
    public var nextEventTime: SimInstant? { nextLiveKey().map { SimInstant(nanoseconds: $0.time) } }

    /// Discards cancelled timers from the top of the heap and returns the
    /// earliest live key, so deadlines are judged on events that will run.
    @inlinable
    func nextLiveKey() -> EventKey? {
        // During a delivery the root is vacant and popping is not allowed;
        // the answer may then be a cancelled timer, which is only early.
        guard !heap.rootIsVacant else { return heap.min }
        while let top = heap.min {
            if slots[Int(top.slot)].live && slots[Int(top.slot)].sequence == top.sequence { return top }
            _ = heap.popMin()
        }
        return nil
    }

    // MARK: Internals

    @inlinable @inline(__always)
    func dispatch(_ entry: EventSlot) {
        let index = Int(entry.target)
        switch entry.kind {
        case .message, .timer:
            if entry.incarnation != incarnations[index] {
                _counters.droppedByCrash += 1
                trace.combine(UInt64(0xD209))
                trace.combine(now.nanoseconds)
                trace.combine(entry.target)
                return
            }
            pendingPerActor[index] -= 1
            if !isUp[index] {
                _counters.droppedWhileDown += 1
                trace.combine(UInt64(0xD0D1))
                trace.combine(now.nanoseconds)
                trace.combine(entry.target)
                return
            }
            _counters.delivered += 1
            trace.combine(now.nanoseconds)
            trace.combine(Int64(entry.target) << 32 | Int64(UInt32(bitPattern: entry.sender)))
            let message = entry.message.unsafelyUnwrapped
            message.trace(into: &trace)
            _currentActor = ActorAddress(index: entry.target)
            actors[index].receive(message, from: ActorAddress(index: entry.sender), kernel: self)
            _currentActor = .environment
        case .crash:
            crash(ActorAddress(index: entry.target))
        case .restart:
            if !heldDown[Int(entry.target)] { restart(ActorAddress(index: entry.target)) }
        }
    }

    /// Allocates a slot and pushes the event; returns the slot or -1 if a
    /// bound refused it (counted).
    @inlinable
    func schedule(_ kind: EventKind, _ message: Message, target: Int32, sender: Int32, at time: Int64) -> Int32 {
        precondition(target >= 0 && Int(target) < actors.count, "no actor at address @\(target)")
        precondition(time >= now.nanoseconds, "cannot schedule an event in the past (\(time) < \(now.nanoseconds))")
        let index = Int(target)
        // A crashed process sends nothing: an actor that crashes inside its
        // own `receive` (a fault point) cannot leak effects past the crash.
        if sender >= 0, !isUp[Int(sender)] {
            _counters.refusedFromCrashedActor += 1
            return -1
        }
        guard liveEvents < configuration.maxPendingEvents else {
            _counters.eventListOverflows += 1
            return -1
        }
        guard pendingPerActor[index] < mailboxCapacities[index] else {
            _counters.mailboxOverflows += 1
            return -1
        }
        pendingPerActor[index] += 1
        return push(kind, message, target: target, sender: sender, incarnation: incarnations[index], time: time)
    }

    func scheduleControl(_ kind: EventKind, target: ActorAddress, at time: SimInstant) -> Int32 {
        precondition(target.index >= 0 && Int(target.index) < actors.count, "no actor at address \(target)")
        precondition(time >= now, "cannot schedule a fault in the past (\(time) < \(now))")
        // Control events are not bounded by mailboxes: a fault timeline must run.
        return push(kind, nil, target: target.index, sender: ActorAddress.environment.index, incarnation: 0, time: time.nanoseconds)
    }

    @inlinable @inline(__always)
    func push(_ kind: EventKind, _ message: Message?, target: Int32, sender: Int32, incarnation: UInt32, time: Int64) -> Int32 {
        let sequence = nextSequence
        precondition(sequence <= EventKey.maxSequence, "event sequence numbers exhausted")
        nextSequence &+= 1
        let entry = EventSlot(message: message, target: target, sender: sender,
                              incarnation: incarnation, sequence: sequence, kind: kind, live: true)
        let slot: Int32
        if let reused = freeSlots.popLast() {
            slot = reused
            slots[Int(slot)] = entry
        } else {
            precondition(slots.count < EventKey.maxSlots, "more than \(EventKey.maxSlots) events pending")
            slot = Int32(slots.count)
            slots.append(entry)
        }
        liveEvents += 1
        let key = EventKey(time: time, sequence: sequence, slot: slot)
        heap.insert(key)
        return slot
    }

    @inlinable @inline(__always)
    func release(_ slot: Int32) {
        slots[Int(slot)].live = false
        slots[Int(slot)].message = nil
        freeSlots.append(slot)
        liveEvents -= 1
    }
}
