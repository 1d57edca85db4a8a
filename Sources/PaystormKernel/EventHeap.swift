/// The kernel's event list: an implicit 4-ary min-heap of event keys ordered
/// by `(time, sequence)`.
///
/// swift-collections' `Heap` is a min-max heap; its `trickleDownMin` was half
/// of the hold model's time (measured with `paystorm bench kernel`). The kernel
/// never needs the maximum, and a 4-ary heap with hole-based sifting touches
/// half the levels of a binary heap with children on one cache line.
@usableFromInline
struct EventHeap {
    @usableFromInline var keys: [EventKey] = []

    @inlinable
    init(minimumCapacity: Int) {
        keys.reserveCapacity(minimumCapacity)
    }

    @inlinable var count: Int { keys.count }
    @inlinable var isEmpty: Bool { keys.isEmpty }
    @inlinable var min: EventKey? { keys.first }

    /// - Complexity: O(log₄ n).
    @inlinable
    mutating func insert(_ key: EventKey) {
        keys.append(key)
        keys.withUnsafeMutableBufferPointer { buffer in
            var hole = buffer.count - 1
            while hole > 0 {
                let parent = (hole - 1) >> 2
                let parentKey = buffer[parent]
                guard key < parentKey else { break }
                buffer[hole] = parentKey
                hole = parent
            }
            buffer[hole] = key
        }
    }

    /// - Complexity: O(4 log₄ n) comparisons.
    @inlinable
    mutating func popMin() -> EventKey? {
        guard let last = keys.popLast() else { return nil }
        guard !keys.isEmpty else { return last }
        return keys.withUnsafeMutableBufferPointer { buffer in
            let top = buffer[0]
            let count = buffer.count
            var hole = 0
            while true {
                let first = 4 * hole + 1
                guard first < count else { break }
                var best = first
                var bestKey = buffer[first]
                let end = Swift.min(first + 4, count)
                var child = first + 1
                while child < end {
                    // Written for conditional moves: the winner among random
                    // times is unpredictable, a branch here mispredicts often.
                    let candidate = buffer[child]
                    let less = candidate < bestKey
                    best = less ? child : best
                    bestKey = less ? candidate : bestKey
                    child += 1
                }
                guard bestKey < last else { break }
                buffer[hole] = bestKey
                hole = best
            }
            buffer[hole] = last
            return top
        }
    }
}

/// One entry of the event list, 16 bytes so that a node's four children share
/// a cache line. `packed` holds the event's sequence number (high 36 bits) and
/// its payload slot (low 28 bits); sequence numbers are unique, so comparing
/// `(time, packed)` orders events by `(time, sequence)`, and the slot table
/// recognises a stale entry (a cancelled timer) by its sequence number.
@usableFromInline
struct EventKey: Comparable {
    @usableFromInline static let slotBits: UInt64 = 28
    @usableFromInline static let slotMask: UInt64 = (1 << slotBits) - 1
    /// Largest number of events that can be pending at once.
    @usableFromInline static let maxSlots = Int(slotMask)
    /// Largest sequence number: 2³⁶ ≈ 6.9·10¹⁰ events per run.
    @usableFromInline static let maxSequence: UInt64 = (1 << (64 - slotBits)) - 1

    /// time (high 64 bits, never negative) | sequence | slot: one unsigned
    /// comparison orders by (time, sequence) without a branch.
    @usableFromInline var raw: UInt128

    @inlinable
    init(time: Int64, sequence: UInt64, slot: Int32) {
        let low = sequence << Self.slotBits | UInt64(slot)
        raw = UInt128(UInt64(bitPattern: time)) << 64 | UInt128(low)
    }

    @inlinable var time: Int64 { Int64(bitPattern: UInt64(truncatingIfNeeded: raw >> 64)) }
    @inlinable var packed: UInt64 { UInt64(truncatingIfNeeded: raw) }
    @inlinable var sequence: UInt64 { packed >> Self.slotBits }
    @inlinable var slot: Int32 { Int32(truncatingIfNeeded: packed & Self.slotMask) }

    @inlinable @inline(__always)
    static func < (lhs: EventKey, rhs: EventKey) -> Bool { lhs.raw < rhs.raw }

    @inlinable @inline(__always)
    static func == (lhs: EventKey, rhs: EventKey) -> Bool { lhs.raw == rhs.raw }
}
