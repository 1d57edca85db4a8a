/// Finds given card numbers anywhere inside stored values: in the bytes of
/// text and blobs, and in the decimal digits of integers and of reals that
/// hold an integer — an engine that stored a number as an integer, or in a
/// blob, leaks it as surely as one that wrote it into a text column.
///
/// A number is found where its digits appear as a substring, as `instr`
/// would find them, so inside a longer run of digits as well. A substring
/// equal to a string of digits lies inside a run of digits, so only the runs
/// are looked at: each window of a run as long as some number is read as an
/// integer (a rolling value, one multiply per byte) and looked up.
///
/// Nearly every window is no number searched for (every timestamp has a few):
/// a bitset of the numbers' low 12 bits turns most of them away before the
/// dictionary is asked. With a world's sample of at most 64 cards, about
/// one window in 64 gets past it.
///
/// - Complexity: O(bytes × lengths) per value, for the distinct lengths of
///   the numbers (one, for a world's 16-digit cards).
struct CardNumberSearch {
    /// The digits of the numbers searched for, in the order given;
    /// ``search(_:into:)`` reports indices into this list.
    let numbers: [String]
    /// Per length of number, each number of that length by its value, and
    /// the bitset of their values' low bits (``Self/filterBits``).
    private var byLength: [(length: Int, indices: [UInt64: [Int]], filter: [UInt64])] = []
    /// Bits of the prefilter: a value's low 12 bits pick one.
    static let filterBits: UInt64 = 4_096
    private let shortest: Int

    /// `numbers` as clients wrote them: the digits of each are searched for
    /// (the engine takes a number written with spaces or dashes); one that is
    /// not 12 to 19 digits then is no card number and is left out.
    init(_ numbers: [String]) {
        self.numbers = numbers.compactMap { written in
            let digits = String(written.unicodeScalars.filter { $0 != " " && $0 != "-" })
            return (12...19).contains(digits.utf8.count) && digits.utf8.allSatisfy(Self.isDigit) ? digits : nil
        }
        var tables: [Int: [UInt64: [Int]]] = [:]
        for (index, number) in self.numbers.enumerated() {
            tables[number.utf8.count, default: [:]][UInt64(number)!, default: []].append(index)
        }
        byLength = tables.keys.sorted().map { length in
            var filter = [UInt64](repeating: 0, count: Int(Self.filterBits / 64))
            for value in tables[length]!.keys { filter[Self.filterWord(value)] |= Self.filterBit(value) }
            return (length, tables[length]!, filter)
        }
        shortest = byLength.first?.length ?? Int.max
    }

    /// Adds to `found` the index of every number whose digits appear in `bytes`.
    func search(_ bytes: UnsafeRawBufferPointer, into found: inout Set<Int>) {
        var start = 0
        let count = bytes.count
        while start < count {
            guard Self.isDigit(bytes[start]) else {
                start += 1
                continue
            }
            var end = start + 1
            while end < count && Self.isDigit(bytes[end]) { end += 1 }
            if end - start >= shortest { searchRun(bytes, start, end, into: &found) }
            start = end
        }
    }

    /// Adds to `found` every number whose digits appear in the decimal form of `value`.
    func search(_ value: Int64, into found: inout Set<Int>) {
        let magnitude = value.magnitude
        // Int64's magnitude has at most 19 digits.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buffer in
            var remaining = magnitude
            var first = buffer.count
            repeat {
                first -= 1
                buffer[first] = 0x30 + UInt8(remaining % 10)
                remaining /= 10
            } while remaining > 0
            guard buffer.count - first >= shortest else { return }
            search(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[first...]), into: &found)
        }
    }

    /// A real is searched when it holds an integer exactly (a 16-digit card
    /// below 2⁵³ does); any other real has a fraction and is no card number.
    func search(_ value: Double, into found: inout Set<Int>) {
        guard value.isFinite, value == value.rounded(), value.magnitude < 9.2e18 else { return }
        search(Int64(value), into: &found)
    }

    private func searchRun(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int, into found: inout Set<Int>) {
        for (length, indices, filter) in byLength where length <= end - start {
            var window: UInt64 = 0
            var power: UInt64 = 1
            for offset in 0..<length {
                window = window * 10 + UInt64(bytes[start + offset] &- 0x30)
                if offset > 0 { power *= 10 }
            }
            var position = start
            while true {
                if filter[Self.filterWord(window)] & Self.filterBit(window) != 0, let hits = indices[window] { found.formUnion(hits) }
                let next = position + length
                guard next < end else { break }
                window = (window - UInt64(bytes[position] &- 0x30) * power) * 10 + UInt64(bytes[next] &- 0x30)
                position += 1
            }
        }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
    private static func filterWord(_ value: UInt64) -> Int { Int((value & (filterBits - 1)) >> 6) }
    private static func filterBit(_ value: UInt64) -> UInt64 { 1 << (value & 63) }
}
