import CGSL
import Foundation

/// The binomial distribution's CDF, robust for the sample sizes a simulator
/// produces (n up to 10⁹).
///
/// `gsl_cdf_binomial_P` returns NaN or 0 for large `n` (its incomplete-beta
/// continued fraction does not converge), so this evaluates the regularised
/// incomplete beta with `gsl_sf_beta_inc_e`, checks its status, and falls back
/// to summing probability terms in log space around the mean when GSL fails.
public enum Binomial {
    /// P(X ≤ k) for X ~ Binomial(n, p).
    ///
    /// - Complexity: O(1) when GSL converges, else O(√(n·p·(1−p))) terms.
    public static func cdf(_ k: Int, trials n: Int, probability p: Double) -> Double {
        GSLRuntime.configure()
        precondition(n >= 0, "binomial trials must be >= 0, got \(n)")
        precondition(p >= 0 && p <= 1, "binomial probability must be in [0, 1], got \(p)")
        if k < 0 { return 0 }
        if k >= n { return 1 }
        if p == 0 { return 1 }
        if p == 1 { return 0 }
        // P(X > k) = I_p(k + 1, n − k) keeps p exact (1 − p would round away
        // the digits of a failure rate near 10⁻⁶); 1 − that is accurate while
        // the CDF is not tiny. Deep in the lower tail use
        // P(X ≤ k) = I_{1−p}(n − k, k + 1) directly instead.
        var upper = gsl_sf_result()
        if gsl_sf_beta_inc_e(Double(k + 1), Double(n - k), p, &upper) == GSL_SUCCESS,
           upper.val.isFinite, upper.val >= 0, upper.val <= 1, 1 - upper.val >= 1e-6 {
            return 1 - upper.val
        }
        var lower = gsl_sf_result()
        if gsl_sf_beta_inc_e(Double(n - k), Double(k + 1), 1 - p, &lower) == GSL_SUCCESS,
           lower.val.isFinite, lower.val >= 0, lower.val <= 1 {
            return lower.val
        }
        return cdfBySummation(k, trials: n, probability: p)
    }

    /// ln P(X = j), exact through `lnΓ`.
    static func logPMF(_ j: Int, trials n: Int, probability p: Double) -> Double {
        var logChoose: Double
        var choose = gsl_sf_result()
        if n <= Int(UInt32.max), gsl_sf_lnchoose_e(UInt32(n), UInt32(j), &choose) == GSL_SUCCESS {
            logChoose = choose.val
        } else {
            logChoose = lgamma(Double(n) + 1) - lgamma(Double(j) + 1) - lgamma(Double(n - j) + 1)
        }
        return logChoose + Double(j) * log(p) + Double(n - j) * log1p(-p)
    }

    /// Sums the side of the distribution that holds `k`, out to 40 standard
    /// deviations from the mean (beyond that the terms are below 1e-300).
    static func cdfBySummation(_ k: Int, trials n: Int, probability p: Double) -> Double {
        let mean = Double(n) * p
        let sd = (mean * (1 - p)).squareRoot()
        let span = Int((40 * sd).rounded(.up)) + 40
        let low = max(0, Int(mean) - span)
        let high = min(n, Int(mean) + span)
        if Double(k) < mean {
            guard k >= low else { return 0 }
            var sum = 0.0
            for j in low...k { sum += exp(logPMF(j, trials: n, probability: p)) }
            return min(1, sum)
        } else {
            guard k < high else { return 1 }
            var upper = 0.0
            for j in (k + 1)...high { upper += exp(logPMF(j, trials: n, probability: p)) }
            return max(0, 1 - upper)
        }
    }
}
