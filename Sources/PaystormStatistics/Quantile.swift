import CGSL

/// A quantile estimate with a distribution-free confidence interval.
public struct QuantileEstimate: Equatable, Sendable {
    /// The quantile asked for, in (0, 1): 0.99 for p99.
    public var probability: Double
    /// Point estimate (`gsl_stats_quantile_from_sorted_data`, linear interpolation).
    public var value: Double
    /// Lower end of the interval, or `nil` when too few samples lie below the quantile.
    public var lower: Double?
    /// Upper end of the interval, or `nil` when too few samples lie above it —
    /// then no claim "p(q) < x" can be made at this confidence.
    public var upper: Double?
    /// The confidence asked for, in (0, 1).
    public var confidence: Double
    /// The coverage the chosen order statistics actually give (≥ `confidence`
    /// when both ends exist).
    public var achievedCoverage: Double
}

/// A sample sorted once, from which quantiles and their order-statistic
/// confidence intervals are read.
public struct SortedSample: Sendable {
    /// The values in ascending order.
    public private(set) var values: [Double]

    /// Sorts `values` (`gsl_sort`). NaNs are rejected.
    /// - Complexity: O(n log n).
    public init(_ values: [Double]) throws {
        GSLRuntime.configure()
        if let index = values.firstIndex(where: { $0.isNaN }) {
            throw StatisticsError.invalidParameter(name: "values[\(index)]", value: "NaN", expected: "a number")
        }
        var sorted = values
        sorted.withUnsafeMutableBufferPointer { buffer in
            if let base = buffer.baseAddress { gsl_sort(base, 1, buffer.count) }
        }
        self.values = sorted
    }

    /// Wraps values the caller guarantees are already ascending.
    public init(alreadySorted values: [Double]) {
        precondition(zip(values, values.dropFirst()).allSatisfy { $0 <= $1 }, "values are not sorted")
        self.values = values
    }

    public var count: Int { values.count }

    /// The 0-based index of the nearest-rank `p`-quantile among `count`
    /// sorted values: ⌈p·count⌉ − 1, within the values. (Of 100 values, p99
    /// is the 99th, not the largest.)
    public static func nearestRankIndex(_ p: Double, count: Int) -> Int {
        min(count - 1, max(0, Int((p * Double(count)).rounded(.up)) - 1))
    }

    /// The quantile `p` in [0, 1] (`gsl_stats_quantile_from_sorted_data`).
    /// - Throws: when the sample is empty or `p` is outside [0, 1].
    public func quantile(_ p: Double) throws -> Double {
        guard !values.isEmpty else { throw StatisticsError.notEnoughSamples(required: 1, actual: 0) }
        guard p >= 0, p <= 1 else {
            throw StatisticsError.invalidParameter(name: "quantile", value: "\(p)", expected: "a probability in [0, 1]")
        }
        return values.withUnsafeBufferPointer {
            gsl_stats_quantile_from_sorted_data($0.baseAddress, 1, $0.count, p)
        }
    }

    /// The quantile `p` with a two-sided confidence interval from order
    /// statistics: ranks `l < u` chosen so that
    /// P(X₍l₎ ≤ ξₚ ≤ X₍u₎) = B(u−1) − B(l−1) ≥ confidence, B the Binomial(n, p) CDF.
    /// Needs no assumption about the distribution beyond independent samples.
    ///
    /// - Complexity: O(log n) binomial CDF evaluations.
    public func quantile(_ p: Double, confidence: Double) throws -> QuantileEstimate {
        guard confidence > 0, confidence < 1 else {
            throw StatisticsError.invalidParameter(name: "confidence", value: "\(confidence)", expected: "a value in (0, 1)")
        }
        guard p > 0, p < 1 else {
            throw StatisticsError.invalidParameter(name: "quantile", value: "\(p)", expected: "a probability in (0, 1)")
        }
        let value = try quantile(p)
        let n = values.count
        let tail = (1 - confidence) / 2
        // r = largest rank with B(r) ≤ tail; the lower end is X₍r+1₎ (1-based).
        let r = Self.largestIndex(upTo: n) { Binomial.cdf($0, trials: n, probability: p) <= tail }
        // s = smallest rank with B(s) ≥ 1 − tail; the upper end is X₍s+1₎.
        let s = Self.smallestIndex(upTo: n) { Binomial.cdf($0, trials: n, probability: p) >= 1 - tail }
        // The interval holds its own estimate: the estimate interpolates
        // between ranks, and in a sample's far tail it can fall below X₍r+1₎.
        // Widening to it only raises the coverage.
        let lower: Double? = r.map { min(values[$0], value) }      // X₍r+1₎ is values[r]
        let upper: Double? = (s < n) ? max(values[s], value) : nil // X₍s+1₎ is values[s]
        let coverageHigh = s < n ? Binomial.cdf(s, trials: n, probability: p) : 1
        let coverageLow = r.map { Binomial.cdf($0, trials: n, probability: p) } ?? 0
        return QuantileEstimate(
            probability: p, value: value, lower: lower, upper: upper,
            confidence: confidence, achievedCoverage: coverageHigh - coverageLow)
    }

    /// As ``quantile(_:confidence:)`` over these values and `unbounded` more
    /// that are larger than any (requests never answered, whose latency is
    /// unbounded): the same order statistics over `count + unbounded`
    /// values, where a rank among the unbounded ones is `+infinity` — a
    /// point estimate or lower end up there says the quantile is
    /// unanswered, an upper end up there is `nil`.
    public func quantile(_ p: Double, confidence: Double, unboundedAbove unbounded: Int) throws -> QuantileEstimate {
        guard unbounded > 0 else { return try quantile(p, confidence: confidence) }
        guard confidence > 0, confidence < 1 else {
            throw StatisticsError.invalidParameter(name: "confidence", value: "\(confidence)", expected: "a value in (0, 1)")
        }
        guard p > 0, p < 1 else {
            throw StatisticsError.invalidParameter(name: "quantile", value: "\(p)", expected: "a probability in (0, 1)")
        }
        let known = values.count
        let n = known + unbounded
        func at(_ index: Int) -> Double { index < known ? values[index] : .infinity }
        // As gsl_stats_quantile_from_sorted_data: linear between the two values around p·(n − 1).
        let position = p * Double(n - 1)
        let below = Int(position.rounded(.down))
        let fraction = position - Double(below)
        let value = fraction == 0 || below + 1 >= n ? at(below)
            : at(below + 1).isInfinite ? .infinity : at(below) + fraction * (at(below + 1) - at(below))
        let tail = (1 - confidence) / 2
        let r = Self.largestIndex(upTo: n) { Binomial.cdf($0, trials: n, probability: p) <= tail }
        let s = Self.smallestIndex(upTo: n) { Binomial.cdf($0, trials: n, probability: p) >= 1 - tail }
        // As in quantile(_:confidence:), the interval holds its own estimate.
        let upper: Double? = s < known ? (value.isFinite ? max(values[s], value) : values[s]) : nil
        let coverageHigh = s < n ? Binomial.cdf(s, trials: n, probability: p) : 1
        let coverageLow = r.map { Binomial.cdf($0, trials: n, probability: p) } ?? 0
        return QuantileEstimate(probability: p, value: value, lower: r.map { min(at($0), value) }, upper: upper,
                                confidence: confidence, achievedCoverage: coverageHigh - coverageLow)
    }

    /// Largest `i` in `0..<n` with `predicate(i)`, for a predicate true on a
    /// prefix; `nil` when false at 0.
    static func largestIndex(upTo n: Int, _ predicate: (Int) -> Bool) -> Int? {
        guard n > 0, predicate(0) else { return nil }
        var low = 0, high = n  // predicate(low) holds; answer in [low, high)
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if predicate(mid) { low = mid } else { high = mid }
        }
        return low
    }

    /// Smallest `i` in `0...n` with `predicate(i)`, for a predicate true on a
    /// suffix; `n` when it holds nowhere below `n`.
    static func smallestIndex(upTo n: Int, _ predicate: (Int) -> Bool) -> Int {
        var low = -1, high = n  // predicate(high) treated as true
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if predicate(mid) { high = mid } else { low = mid }
        }
        return high
    }
}
