import Testing
@testable import PaystormKernel

@Suite("Chunked array: per-payment state that grows without copying")
struct ChunkedArrayTests {
    @Test("appends across chunk boundaries read back in order, and elements can be replaced")
    func appendAndReplace() {
        var array = ChunkedArray<Int>(chunkShift: 3)
        for value in 0..<50 { array.append(value * 10) }
        #expect(array.count == 50)
        #expect(Array(array) == (0..<50).map { $0 * 10 })
        array[7] = -1
        array[8] = -2
        array[49] = -3
        #expect(array[6] == 60 && array[7] == -1 && array[8] == -2 && array[9] == 90 && array[49] == -3)
        #expect(array.reversed().first == -3)
    }

    @Test("extending to an index fills whole chunks with the filler and keeps what was there")
    func extendFillsDensely() {
        var array = ChunkedArray<UInt8>(chunkShift: 4)
        array.extend(toInclude: 0, with: 0)
        #expect(array.count == 16)
        array[3] = 7
        array.extend(toInclude: 15, with: 9)
        #expect(array.count == 16, "index 15 was already valid")
        array.extend(toInclude: 40, with: 0)
        #expect(array.count == 48)
        #expect(array[3] == 7)
        #expect(array.enumerated().allSatisfy { $0.offset == 3 ? $0.element == 7 : $0.element == 0 })
        // After appends that leave a chunk part full, extending completes it first.
        var mixed = ChunkedArray<Int>(chunkShift: 2)
        mixed.append(1)
        mixed.extend(toInclude: 5, with: 0)
        #expect(Array(mixed) == [1, 0, 0, 0, 0, 0, 0, 0])
    }

    /// `Array` would hold 2,048 elements' room for 1,100 (it doubles);
    /// chunks hold 1,120, plus what the allocator rounds each one up by.
    @Test("it reserves at most one chunk beyond what it holds, not double")
    func reservesOneChunkAtMost() {
        var array = ChunkedArray<Int64>(chunkShift: 5)
        for value in 0..<1_100 { array.append(Int64(value)) }
        let chunks = (1_100 + 31) / 32
        #expect(array.reservedCount >= 1_120)
        #expect(array.reservedCount <= 1_120 + chunks * 8, "\(array.reservedCount) elements' room for 1,100")
    }
}
