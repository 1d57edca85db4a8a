import CGSL
import Foundation

/// A weighted choice among `0..<weights.count` (`gsl_ran_discrete`, Walker's
/// alias method).
///
/// - Complexity: O(K) to build, O(1) per draw.
public final class DiscreteDistribution {
    private let table: UnsafeMutablePointer<gsl_ran_discrete_t>

    /// Number of outcomes.
    public let count: Int

    /// Builds the table. Weights need not sum to one.
    /// - Throws: ``StatisticsError/invalidParameter(name:value:expected:)`` when
    ///   there are no weights, a weight is negative or not finite, or all are zero.
    public init(weights: [Double]) throws {
        GSLRuntime.configure()
        guard !weights.isEmpty else {
            throw StatisticsError.invalidParameter(name: "weights.count", value: "0", expected: "at least one weight")
        }
        var total = 0.0
        for (index, weight) in weights.enumerated() {
            guard weight.isFinite, weight >= 0 else {
                throw StatisticsError.invalidParameter(
                    name: "weights[\(index)]", value: "\(weight)", expected: "a finite weight >= 0")
            }
            total += weight
        }
        guard total > 0 else {
            throw StatisticsError.invalidParameter(name: "sum(weights)", value: "\(total)", expected: "> 0")
        }
        guard let table = weights.withUnsafeBufferPointer({
            gsl_ran_discrete_preproc($0.count, $0.baseAddress)
        }) else {
            throw StatisticsError.gslFailure(function: "gsl_ran_discrete_preproc", status: GSL_EINVAL)
        }
        self.table = table
        self.count = weights.count
    }

    deinit {
        gsl_ran_discrete_free(table)
    }

    /// Draws an index in `0..<count`.
    @inline(__always)
    public func sample(_ stream: RandomStream) -> Int {
        Int(gsl_ran_discrete(stream.rng, table))
    }

    /// The probability of outcome `index` (`gsl_ran_discrete_pdf`).
    public func probability(of index: Int) -> Double {
        gsl_ran_discrete_pdf(index, table)
    }
}

/// Zipf's law over ranks `1...n`: P(k) ∝ 1 / k^s. GSL has no Zipf sampler, so
/// this is a ``DiscreteDistribution`` over the normalised weights.
///
/// - Complexity: O(n) to build, O(1) per draw. `n` is capped at 10⁷.
public final class ZipfDistribution {
    private let discrete: DiscreteDistribution

    /// Number of ranks.
    public let n: Int
    /// The exponent `s`.
    public let exponent: Double

    /// - Throws: when `n` is not in `1...10_000_000` or `s` is negative or not finite.
    public init(n: Int, exponent s: Double) throws {
        guard (1...10_000_000).contains(n) else {
            throw StatisticsError.invalidParameter(name: "n", value: "\(n)", expected: "1...10000000")
        }
        guard s.isFinite, s >= 0 else {
            throw StatisticsError.invalidParameter(name: "exponent", value: "\(s)", expected: "a finite value >= 0")
        }
        var weights = [Double](repeating: 0, count: n)
        for k in 0..<n {
            weights[k] = 1.0 / pow(Double(k + 1), s)
        }
        self.discrete = try DiscreteDistribution(weights: weights)
        self.n = n
        self.exponent = s
    }

    /// Draws a rank in `1...n`.
    @inline(__always)
    public func sample(_ stream: RandomStream) -> Int {
        discrete.sample(stream) + 1
    }

    /// P(rank = k) for `k` in `1...n`.
    public func probability(ofRank k: Int) -> Double {
        discrete.probability(of: k - 1)
    }
}
