/// The address of an actor in one simulation: its index in the kernel.
public struct ActorAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var index: Int32

    @inlinable
    public init(index: Int32) { self.index = index }

    /// The sender of events injected from outside any actor (setup code, the
    /// fault timeline).
    public static let environment = ActorAddress(index: -1)

    @inlinable
    public static func < (lhs: ActorAddress, rhs: ActorAddress) -> Bool { lhs.index < rhs.index }

    public var description: String { index < 0 ? "@env" : "@\(index)" }
}

/// A message type of a simulated world: an enum switched on by its actors.
public protocol SimMessage {
    /// Folds the message's identity into the run's trace hash. Everything that
    /// can influence behaviour should go in; the cost is paid per event.
    func trace(into hasher: inout TraceHasher)
}

/// An actor-model actor: a state machine with an address, driven by one
/// kernel on one thread. Not a Swift `actor`.
///
/// The kernel delivers one message at a time; inside ``receive(_:from:kernel:)``
/// the actor may send messages, arm and cancel timers and draw from its own
/// random stream (`kernel.random`), all through the kernel.
public protocol SimActor<Message>: AnyObject {
    associatedtype Message: SimMessage

    /// Handles one message. Timers arrive here too, with `sender` equal to the
    /// actor's own address.
    func receive(_ message: Message, from sender: ActorAddress, kernel: SimulationKernel<Message>)

    /// The actor crashed: drop all in-memory state. Its pending messages and
    /// timers are already gone. Called by the kernel.
    func crashed()

    /// The actor restarted: rebuild state from durable storage and arm timers.
    func restarted(kernel: SimulationKernel<Message>)
}

extension SimActor {
    public func crashed() {}
    public func restarted(kernel: SimulationKernel<Message>) {}
}

/// A handle to an armed timer, for ``SimulationKernel/cancel(_:)``.
public struct TimerHandle: Hashable, Sendable {
    @usableFromInline var slot: Int32
    @usableFromInline var sequence: UInt64

    @inlinable
    init(slot: Int32, sequence: UInt64) {
        self.slot = slot
        self.sequence = sequence
    }

    /// A handle that refers to no timer (returned when a timer was refused
    /// because the event list was full). Cancelling it does nothing.
    public static let none = TimerHandle(slot: -1, sequence: 0)

    public var isNone: Bool { slot < 0 }
}
