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
    /// Set between ``takeMin()`` and ``settle()``: the root has been handed
    /// out but is still in `keys[0]`, so the next insert can replace it with
    /// one sift-down instead of a pop plus a push (the hold operation).
    @usableFromInline var rootIsVacant = false

    @inlinable
    init(minimumCapacity: Int) {
        keys.reserveCapacity(minimumCapacity)
    }

    @inlinable var count: Int { keys.count - (rootIsVacant ? 1 : 0) }
    @inlinable var isEmpty: Bool { count == 0 }

    /// The earliest key. - Complexity: O(1).
    @inlinable var min: EventKey? {
        guard rootIsVacant else { return keys.first }
        // The root is vacant: the minimum is among its children.
        var best: EventKey?
        var child = 1
        while child < Swift.min(5, keys.count) {
            if best == nil || keys[child] < best! { best = keys[child] }
            child += 1
        }
        return best
    }

    /// - Complexity: O(log₄ n).
    @inlinable
    mutating func insert(_ key: EventKey) {
        if rootIsVacant {
            rootIsVacant = false
            siftDown(from: 0, placing: key)
            return
        }
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

    /// Hands out the earliest key and leaves its place vacant until the next
    /// ``insert(_:)`` fills it or ``settle()`` closes it.
    /// - Precondition: no key is already taken.
    @inlinable
    mutating func takeMin() -> EventKey? {
        assert(!rootIsVacant, "takeMin() twice without settle()")
        guard let first = keys.first else { return nil }
        rootIsVacant = true
        return first
    }

    /// Closes a vacancy left by ``takeMin()`` that no insert filled.
    @inlinable
    mutating func settle() {
        guard rootIsVacant else { return }
        rootIsVacant = false
        let last = keys.removeLast()
        if !keys.isEmpty { siftDown(from: 0, placing: last) }
    }

    /// Removes and returns the earliest key. - Complexity: O(4 log₄ n) comparisons.
    @inlinable
    mutating func popMin() -> EventKey? {
        guard let first = takeMin() else { return nil }
        settle()
        return first
    }

    /// Moves `key` into the hole at `start` and sifts it down.
    @inlinable
    mutating func siftDown(from start: Int, placing key: EventKey) {
        keys.withUnsafeMutableBufferPointer { buffer in
            let count = buffer.count
            var hole = start
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
                guard bestKey < key else { break }
                buffer[hole] = bestKey
                hole = best
            }
            buffer[hole] = key
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
