import CGSL

/// The Universal Scalability Law: throughput at concurrency N is
/// X(N) = λN / (1 + σ(N−1) + κN(N−1)) — λ the throughput of one unit of
/// concurrency, σ contention (serialisation), κ coherency (crosstalk). Fitted
/// with GSL's trust-region nonlinear least squares (`gsl_multifit_nlinear`).
public struct UniversalScalability: Sendable, Equatable {
    public var lambda: Double
    public var sigma: Double
    public var kappa: Double
    /// Standard errors of λ, σ, κ (covariance scaled by the residual variance).
    public var lambdaError: Double
    public var sigmaError: Double
    public var kappaError: Double
    /// Σ residual², and the points fitted.
    public var chiSquared: Double
    public var points: Int
    public var iterations: Int

    public init(lambda: Double, sigma: Double, kappa: Double) {
        self.lambda = lambda
        self.sigma = sigma
        self.kappa = kappa
        lambdaError = 0
        sigmaError = 0
        kappaError = 0
        chiSquared = 0
        points = 0
        iterations = 0
    }

    /// Modelled throughput at concurrency `n`.
    public func throughput(at n: Double) -> Double {
        lambda * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))
    }

    /// The concurrency of peak throughput, N* = √((1−σ)/κ); `nil` when κ ≤ 0
    /// (throughput never turns down) or σ ≥ 1.
    public var peakConcurrency: Double? {
        guard kappa > 0, sigma < 1 else { return nil }
        return ((1 - sigma) / kappa).squareRoot()
    }

    /// Fits the law to measured (concurrency, throughput) points.
    /// - Throws: ``StatisticsError`` for fewer than 4 points, a non-positive or
    ///   non-finite value, or a fit GSL reports as failed.
    public static func fit(concurrency: [Double], throughput: [Double]) throws -> UniversalScalability {
        GSLRuntime.configure()
        guard concurrency.count == throughput.count else {
            throw StatisticsError.invalidParameter(name: "throughput", value: "\(throughput.count) values",
                                                   expected: "one per concurrency level (\(concurrency.count))")
        }
        guard concurrency.count >= 4 else {
            throw StatisticsError.invalidParameter(name: "points", value: "\(concurrency.count)", expected: "at least 4 (3 parameters and one degree of freedom)")
        }
        for (index, value) in concurrency.enumerated() where !(value.isFinite && value > 0) {
            throw StatisticsError.invalidParameter(name: "concurrency[\(index)]", value: "\(value)", expected: "a finite value > 0")
        }
        for (index, value) in throughput.enumerated() where !(value.isFinite && value > 0) {
            throw StatisticsError.invalidParameter(name: "throughput[\(index)]", value: "\(value)", expected: "a finite value > 0")
        }
        // Start from linear scaling at the smallest concurrency's rate, mild contention.
        let first = concurrency.indices.min { concurrency[$0] < concurrency[$1] }!
        var parameters = [throughput[first] / concurrency[first], 0.01, 0.0001]
        var covariance = [Double](repeating: 0, count: 9)
        var chiSquared = 0.0
        var iterations = 0
        let status = concurrency.withUnsafeBufferPointer { n in
            throughput.withUnsafeBufferPointer { x in
                paystorm_usl_fit(n.baseAddress, x.baseAddress, n.count, &parameters, &covariance, &chiSquared, &iterations)
            }
        }
        guard status == GSL_SUCCESS, parameters.allSatisfy(\.isFinite) else {
            throw StatisticsError.invalidParameter(name: "fit", value: "GSL status \(status)", expected: "a converging fit")
        }
        let dof = Double(concurrency.count - 3)
        let scale = max(chiSquared / dof, 0)
        var result = UniversalScalability(lambda: parameters[0], sigma: parameters[1], kappa: parameters[2])
        result.lambdaError = (covariance[0] * scale).squareRoot()
        result.sigmaError = (covariance[4] * scale).squareRoot()
        result.kappaError = (covariance[8] * scale).squareRoot()
        result.chiSquared = chiSquared
        result.points = concurrency.count
        result.iterations = iterations
        return result
    }
}
