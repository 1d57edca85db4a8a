/// A point in virtual time: nanoseconds since the start of a simulation.
///
/// Virtual time is an integer so that event order never depends on floating
/// point rounding; it advances only when the kernel delivers an event.
public struct SimInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    @inlinable
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    /// The start of every simulation.
    public static let zero = SimInstant(nanoseconds: 0)

    @inlinable
    public static func < (lhs: SimInstant, rhs: SimInstant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    @inlinable
    public static func + (lhs: SimInstant, rhs: SimDuration) -> SimInstant {
        SimInstant(nanoseconds: lhs.nanoseconds + rhs.nanoseconds)
    }

    @inlinable
    public static func - (lhs: SimInstant, rhs: SimInstant) -> SimDuration {
        SimDuration(nanoseconds: lhs.nanoseconds - rhs.nanoseconds)
    }

    /// Seconds since the start, for display only.
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    public var description: String { "t=\(SimDuration(nanoseconds: nanoseconds))" }
}

/// A span of virtual time in nanoseconds (like NIO's `TimeAmount`).
public struct SimDuration: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    @inlinable
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let zero = SimDuration(nanoseconds: 0)

    @inlinable public static func nanoseconds(_ n: Int64) -> SimDuration { SimDuration(nanoseconds: n) }
    @inlinable public static func microseconds(_ n: Int64) -> SimDuration { SimDuration(nanoseconds: n * 1_000) }
    @inlinable public static func milliseconds(_ n: Int64) -> SimDuration { SimDuration(nanoseconds: n * 1_000_000) }
    @inlinable public static func seconds(_ n: Int64) -> SimDuration { SimDuration(nanoseconds: n * 1_000_000_000) }

    /// Rounds a non-negative number of seconds (a sampled latency) to the
    /// nearest nanosecond; negative or non-finite input is clamped to zero.
    @inlinable
    public init(seconds s: Double) {
        guard s.isFinite, s > 0 else { self.nanoseconds = 0; return }
        // Round half up by truncation: `rounded()` is a libm call on the hot path.
        let ns = s * 1e9 + 0.5
        self.nanoseconds = ns >= 9.2e18 ? Int64.max / 2 : Int64(ns)
    }

    @inlinable
    public static func < (lhs: SimDuration, rhs: SimDuration) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    @inlinable
    public static func + (lhs: SimDuration, rhs: SimDuration) -> SimDuration {
        SimDuration(nanoseconds: lhs.nanoseconds + rhs.nanoseconds)
    }

    @inlinable
    public static func * (lhs: SimDuration, rhs: Int64) -> SimDuration {
        SimDuration(nanoseconds: lhs.nanoseconds * rhs)
    }

    /// Seconds, for display and statistics only.
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    /// Milliseconds, for display and statistics only.
    public var milliseconds: Double { Double(nanoseconds) / 1e6 }

    public var description: String {
        let ns = nanoseconds
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
        if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        if ns % 1_000 == 0 { return "\(ns / 1_000)us" }
        return "\(ns)ns"
    }
}
