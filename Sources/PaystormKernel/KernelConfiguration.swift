/// Limits and the root seed of one simulation. Every bound here is enforced
/// and its overflow counted in ``KernelCounters``.
public struct KernelConfiguration: Sendable {
    /// The seed every actor's random stream is derived from.
    public var rootSeed: UInt64
    /// Most events (messages, timers, control events) pending at once; a send
    /// beyond it is refused and counted in ``KernelCounters/eventListOverflows``.
    public var maxPendingEvents: Int
    /// Most messages and timers pending for one actor unless its spawn says
    /// otherwise; a send beyond it is refused and counted in
    /// ``KernelCounters/mailboxOverflows``.
    public var defaultMailboxCapacity: Int

    public init(rootSeed: UInt64, maxPendingEvents: Int = 4_000_000, defaultMailboxCapacity: Int = 1_000_000) {
        precondition(maxPendingEvents > 0, "maxPendingEvents must be positive")
        precondition(defaultMailboxCapacity > 0, "defaultMailboxCapacity must be positive")
        self.rootSeed = rootSeed
        self.maxPendingEvents = maxPendingEvents
        self.defaultMailboxCapacity = defaultMailboxCapacity
    }
}

/// What the kernel did and refused, for reports. Nothing is dropped silently.
public struct KernelCounters: Equatable, Sendable {
    /// Messages and timers handed to an actor.
    public var delivered: Int = 0
    /// Timers cancelled before they fired.
    public var timersCancelled: Int = 0
    /// Messages and timers lost because their target crashed before delivery
    /// (its mailbox and timers at the time of the crash).
    public var droppedByCrash: Int = 0
    /// Messages that arrived while their target was down.
    public var droppedWhileDown: Int = 0
    /// Sends refused because the target's mailbox was full.
    public var mailboxOverflows: Int = 0
    /// Sends refused because the event list held `maxPendingEvents`.
    public var eventListOverflows: Int = 0
    /// Sends and timers refused because the actor making them had crashed
    /// (it crashed inside its own `receive` and kept going).
    public var refusedFromCrashedActor: Int = 0
    /// Crashes and restarts performed.
    public var crashes: Int = 0
    public var restarts: Int = 0
}
