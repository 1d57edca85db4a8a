/// One-sided Clopper–Pearson bounds on a success rate (availability).
///
/// With `f` failures out of `n` requests, the lower bound `L` at confidence `c`
/// is the success rate at which seeing `f` or fewer failures has probability
/// `1 − c`: P(F ≤ f; n, 1 − L) = 1 − c. GSL 2.7.1's `gsl_cdf_beta_Pinv` returns
/// NaN for such parameters (n = 10⁵…10⁷, f = 1, 2, 5), so the bound is found by
/// bisection on the binomial CDF, which is monotone in the failure rate.
public enum Availability {
    /// The lower confidence bound on the success rate.
    ///
    /// - Parameters:
    ///   - failures: failed requests, `0...requests`.
    ///   - requests: all requests judged, `> 0`.
    ///   - confidence: in (0, 1), e.g. 0.95.
    /// - Complexity: about 1,100 binomial CDF evaluations at most.
    public static func lowerBound(failures: Int, requests: Int, confidence: Double) throws -> Double {
        try validate(failures: failures, requests: requests, confidence: confidence)
        return 1 - (try failureRateUpperBound(failures: failures, requests: requests, confidence: confidence))
    }

    /// The upper confidence bound on the failure rate: `1 − lowerBound`, kept
    /// separately because it carries the precision near 10⁻⁶.
    public static func failureRateUpperBound(failures: Int, requests: Int, confidence: Double) throws -> Double {
        try validate(failures: failures, requests: requests, confidence: confidence)
        if failures == requests { return 1 }
        let alpha = 1 - confidence
        // cdf(q) = P(F ≤ failures; n, q) falls from 1 at q = 0 to 0 at q = 1.
        var low = 0.0, high = 1.0
        for _ in 0..<1100 {
            let mid = (low + high) / 2
            if mid <= low || mid >= high { break }
            if Binomial.cdf(failures, trials: requests, probability: mid) > alpha {
                low = mid
            } else {
                high = mid
            }
        }
        return high
    }

    /// How many requests a claim "success rate ≥ `target` at `confidence`"
    /// needs when `failures` of them fail: the smallest `n` whose lower bound
    /// reaches `target`.
    ///
    /// - Returns: `n`, all requests including the failures.
    /// - Throws: for a target outside (0, 1), a confidence outside (0, 1), or
    ///   negative failures.
    /// - Complexity: O(log n) binomial CDF evaluations.
    public static func requiredRequests(target: Double, confidence: Double, failures: Int) throws -> Int {
        guard target > 0, target < 1 else {
            throw StatisticsError.invalidParameter(name: "target", value: "\(target)", expected: "a rate in (0, 1), e.g. 0.9999")
        }
        guard confidence > 0, confidence < 1 else {
            throw StatisticsError.invalidParameter(name: "confidence", value: "\(confidence)", expected: "a value in (0, 1), e.g. 0.95")
        }
        guard failures >= 0 else {
            throw StatisticsError.invalidParameter(name: "failures", value: "\(failures)", expected: ">= 0")
        }
        let alpha = 1 - confidence
        let q = 1 - target
        // The bound reaches the target exactly when P(F ≤ failures; n, q) ≤ α,
        // which falls monotonically as n grows.
        func enough(_ n: Int) -> Bool { Binomial.cdf(failures, trials: n, probability: q) <= alpha }
        var high = max(failures + 1, 1)
        while !enough(high) {
            guard high < Int.max / 4 else {
                throw StatisticsError.invalidParameter(name: "target", value: "\(target)", expected: "a claim reachable with fewer than 2^61 requests")
            }
            high *= 2
        }
        var low = high / 2  // !enough(low) unless low ≤ failures
        if low <= failures { low = failures }
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if enough(mid) { high = mid } else { low = mid }
        }
        return high
    }

    private static func validate(failures: Int, requests: Int, confidence: Double) throws {
        guard requests > 0 else {
            throw StatisticsError.invalidParameter(name: "requests", value: "\(requests)", expected: "at least 1 request")
        }
        guard failures >= 0, failures <= requests else {
            throw StatisticsError.invalidParameter(name: "failures", value: "\(failures)", expected: "0...\(requests)")
        }
        guard confidence > 0, confidence < 1 else {
            throw StatisticsError.invalidParameter(name: "confidence", value: "\(confidence)", expected: "a value in (0, 1), e.g. 0.95")
        }
    }
}
