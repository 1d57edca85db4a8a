/// An array that grows at its end in fixed chunks of `1 << chunkShift`
/// elements, for a simulation's per-payment state that lives as long as the
/// run.
///
/// `Array` doubles its storage as it grows: up to half of what it reserved
/// sits idle, and while it grows the old and the new storage are both held.
/// For ten million 32-byte records that is 256 MiB reserved for 160 MiB, and
/// a moment with 384 MiB. Here growing never copies what is held, and at most
/// one chunk is partly empty.
public struct ChunkedArray<Element>: RandomAccessCollection, MutableCollection {
    public let chunkShift: Int
    @usableFromInline var chunks: [[Element]] = []
    public var count: Int { _count }
    @usableFromInline var _count = 0

    /// - Parameter chunkShift: each chunk holds `1 << chunkShift` elements.
    /// - Precondition: `0 < chunkShift < 31`.
    public init(chunkShift: Int = 16) {
        precondition(chunkShift > 0 && chunkShift < 31, "chunk shift must be in 1..<31, got \(chunkShift)")
        self.chunkShift = chunkShift
    }

    /// Elements the chunks have room for: never more than one chunk beyond ``count``.
    public var reservedCount: Int { chunks.reduce(0) { $0 + $1.capacity } }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    @inlinable var mask: Int { (1 << chunkShift) - 1 }

    @inlinable
    public subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < count, "index \(position) out of 0..<\(count)")
            return chunks[position >> chunkShift][position & mask]
        }
        set {
            precondition(position >= 0 && position < count, "index \(position) out of 0..<\(count)")
            chunks[position >> chunkShift][position & mask] = newValue
        }
    }

    /// Appends `element`, starting a new chunk when the last is full.
    @inlinable
    public mutating func append(_ element: Element) {
        if _count & mask == 0 {
            var chunk: [Element] = []
            chunk.reserveCapacity(1 << chunkShift)
            chunks.append(chunk)
        }
        chunks[chunks.count - 1].append(element)
        _count += 1
    }

    /// Grows by whole chunks of `filler` until `index` is a valid position
    /// (nothing if it already is): a dense table indexed by number.
    @inlinable
    public mutating func extend(toInclude index: Int, with filler: Element) {
        precondition(index >= 0, "negative index \(index)")
        while index >= count {
            if count & mask == 0 {
                chunks.append([Element](repeating: filler, count: 1 << chunkShift))
                _count += 1 << chunkShift
            } else {
                append(filler)
            }
        }
    }
}
