import CGSL

/// Mean, spread and a Student-t confidence interval of independent
/// observations — for example one metric measured once per seed.
public struct Summary: Equatable, Sendable {
    public var count: Int
    public var mean: Double
    /// Sample standard deviation (n − 1 denominator; `gsl_stats_sd`), 0 for one value.
    public var standardDeviation: Double

    /// - Throws: when `values` is empty or holds a non-finite value.
    public init(_ values: [Double]) throws {
        GSLRuntime.configure()
        guard !values.isEmpty else { throw StatisticsError.notEnoughSamples(required: 1, actual: 0) }
        if let index = values.firstIndex(where: { !$0.isFinite }) {
            throw StatisticsError.invalidParameter(name: "values[\(index)]", value: "\(values[index])", expected: "a finite number")
        }
        count = values.count
        let mean = values.withUnsafeBufferPointer { gsl_stats_mean($0.baseAddress, 1, $0.count) }
        self.mean = mean
        standardDeviation = values.count < 2 ? 0 : values.withUnsafeBufferPointer {
            gsl_stats_sd_m($0.baseAddress, 1, $0.count, mean)
        }
    }

    /// Standard error of the mean, s / √n.
    public var standardError: Double { standardDeviation / Double(count).squareRoot() }

    /// mean ± t(1 − α/2, n − 1) · s / √n (`gsl_cdf_tdist_Pinv`).
    /// - Throws: with fewer than two values, or a confidence outside (0, 1).
    public func confidenceInterval(_ confidence: Double) throws -> (lower: Double, upper: Double) {
        guard count >= 2 else { throw StatisticsError.notEnoughSamples(required: 2, actual: count) }
        guard confidence > 0, confidence < 1 else {
            throw StatisticsError.invalidParameter(name: "confidence", value: "\(confidence)", expected: "a value in (0, 1)")
        }
        let t = gsl_cdf_tdist_Pinv(1 - (1 - confidence) / 2, Double(count - 1))
        guard t.isFinite else { throw StatisticsError.gslFailure(function: "gsl_cdf_tdist_Pinv", status: GSL_EDOM) }
        let half = t * standardError
        return (mean - half, mean + half)
    }
}

/// Welch's unequal-variances t-test of two independent samples.
public struct WelchTest: Equatable, Sendable {
    /// t = (mean₁ − mean₂) / √(s₁²/n₁ + s₂²/n₂).
    public var t: Double
    /// Welch–Satterthwaite degrees of freedom.
    public var degreesOfFreedom: Double
    /// Two-sided p-value (`gsl_cdf_tdist_Q`).
    public var pValue: Double

    /// - Throws: when either sample has fewer than two values, or both have zero variance.
    public init(_ a: Summary, _ b: Summary) throws {
        GSLRuntime.configure()
        guard a.count >= 2 else { throw StatisticsError.notEnoughSamples(required: 2, actual: a.count) }
        guard b.count >= 2 else { throw StatisticsError.notEnoughSamples(required: 2, actual: b.count) }
        let va = a.standardDeviation * a.standardDeviation / Double(a.count)
        let vb = b.standardDeviation * b.standardDeviation / Double(b.count)
        guard va + vb > 0 else {
            throw StatisticsError.invalidParameter(name: "variance", value: "0", expected: "at least one sample with spread")
        }
        t = (a.mean - b.mean) / (va + vb).squareRoot()
        degreesOfFreedom = (va + vb) * (va + vb)
            / (va * va / Double(a.count - 1) + vb * vb / Double(b.count - 1))
        pValue = min(1, 2 * gsl_cdf_tdist_Q(abs(t), degreesOfFreedom))
    }

    /// Whether the means differ at significance level `alpha`.
    public func isSignificant(at alpha: Double = 0.05) -> Bool { pValue < alpha }
}
