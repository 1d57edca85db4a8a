/// Deterministic derivation of independent seeds from one root seed.
///
/// Streams are named, not numbered, so adding an actor to a world never shifts
/// the random numbers every other actor sees.
public enum SeedDerivation {
    /// SplitMix64's finaliser: a bijective 64-bit mixer with full avalanche.
    @inlinable
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// FNV-1a over the UTF-8 bytes of `name`: stable across processes and
    /// platforms (unlike `Hasher`, which is randomly seeded per process).
    public static func stableHash(_ name: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// The seed of stream `name` under `rootSeed`.
    public static func seed(root rootSeed: UInt64, stream name: String) -> UInt64 {
        mix(rootSeed ^ mix(stableHash(name)))
    }
}
