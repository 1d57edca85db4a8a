import DequeModule

/// A FIFO queue with a hard capacity; an enqueue beyond it is refused and
/// counted, never silent.
public struct BoundedQueue<Element> {
    @usableFromInline var storage: Deque<Element>

    /// Most elements held at once.
    public let capacity: Int
    /// Enqueues refused because the queue was full.
    public var overflowCount: Int { _overflowCount }
    /// The largest count ever held.
    public var highWaterMark: Int { _highWaterMark }
    @usableFromInline var _overflowCount: Int = 0
    @usableFromInline var _highWaterMark: Int = 0

    /// - Precondition: `capacity > 0`.
    public init(capacity: Int) {
        precondition(capacity > 0, "BoundedQueue capacity must be positive, got \(capacity)")
        self.capacity = capacity
        storage = Deque(minimumCapacity: min(capacity, 1024))
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }
    public var isFull: Bool { storage.count >= capacity }

    /// Appends `element` unless full.
    /// - Returns: `false` (and counts an overflow) when full.
    /// - Complexity: amortised O(1).
    @inlinable @discardableResult
    public mutating func enqueue(_ element: Element) -> Bool {
        guard storage.count < capacity else {
            _overflowCount += 1
            return false
        }
        storage.append(element)
        if storage.count > _highWaterMark { _highWaterMark = storage.count }
        return true
    }

    /// Removes and returns the oldest element. - Complexity: O(1).
    @inlinable
    public mutating func dequeue() -> Element? {
        storage.popFirst()
    }

    /// The oldest element, if any.
    public var first: Element? { storage.first }

    /// Drops every element (a crash); returns how many were dropped.
    @discardableResult
    public mutating func removeAll() -> Int {
        let dropped = storage.count
        storage.removeAll(keepingCapacity: true)
        return dropped
    }
}
