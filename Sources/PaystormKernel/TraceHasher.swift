/// A running 64-bit hash of everything a simulation delivers, in order.
///
/// Two runs with the same scenario, seed and build must end with the same
/// trace hash; the first event where they differ is where determinism broke.
/// Deliberately not `Hasher`, which is randomly seeded per process.
public struct TraceHasher: Sendable {
    @usableFromInline static let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    @usableFromInline static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F

    /// The running state; read ``digest`` for the finished value.
    @usableFromInline var state: UInt64

    @inlinable
    public init(seed: UInt64 = 0x2705_3F1A_57C0_FFEE) { state = seed }

    /// Folds one 64-bit word in (an xxHash64 round).
    @inlinable @inline(__always)
    public mutating func combine(_ word: UInt64) {
        let mixed = state ^ (word &* Self.prime2)
        state = ((mixed << 31) | (mixed >> 33)) &* Self.prime1
    }

    @inlinable @inline(__always)
    public mutating func combine(_ word: Int64) { combine(UInt64(bitPattern: word)) }

    @inlinable @inline(__always)
    public mutating func combine(_ word: Int) { combine(UInt64(bitPattern: Int64(word))) }

    @inlinable @inline(__always)
    public mutating func combine(_ word: Int32) { combine(UInt64(bitPattern: Int64(word))) }

    @inlinable @inline(__always)
    public mutating func combine(_ flag: Bool) { combine(flag ? UInt64(1) : 0) }

    /// Folds a string's UTF-8 bytes and its length in.
    @inlinable
    public mutating func combine(_ text: String) {
        var word: UInt64 = 0
        var filled = 0
        for byte in text.utf8 {
            word = (word << 8) | UInt64(byte)
            filled += 1
            if filled == 8 { combine(word); word = 0; filled = 0 }
        }
        combine(word)
        combine(text.utf8.count)
    }

    /// The finished hash, with a final avalanche.
    public var digest: UInt64 {
        var z = state
        z = (z ^ (z >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        z = (z ^ (z >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        return z ^ (z >> 33)
    }

    /// ``digest`` as 16 lowercase hex digits.
    public var hexDigest: String {
        let hex = String(digest, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
