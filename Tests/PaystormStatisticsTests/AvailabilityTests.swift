import Foundation
import Testing
@testable import PaystormStatistics

/// P(F ≤ k) for F ~ Binomial(n, q), summed term by term in log space with
/// Foundation's `lgamma`: a computation that shares no code with GSL.
private func independentFailureCDF(_ k: Int, n: Int, q: Double) -> Double {
    var sum = 0.0
    for j in 0...k {
        // ln C(n, j) = Σ ln(n − i) − ln j!, exact for small j (lgamma(n + 1)
        // would cost eight digits at n = 10⁷).
        var logChoose = -lgamma(Double(j + 1))
        for i in 0..<j { logChoose += log(Double(n - i)) }
        sum += exp(logChoose + Double(j) * log(q) + Double(n - j) * log1p(-q))
    }
    return sum
}

/// The Clopper–Pearson failure-rate upper bound by plain bisection on the
/// independent CDF.
private func independentFailureBound(failures k: Int, n: Int, confidence: Double) -> Double {
    var low = 0.0, high = 1.0
    for _ in 0..<200 {
        let mid = (low + high) / 2
        if independentFailureCDF(k, n: n, q: mid) > 1 - confidence { low = mid } else { high = mid }
    }
    return high
}

@Suite("Clopper–Pearson availability bounds")
struct AvailabilityTests {
    @Test("0…5 failures at n up to 10⁶ match an independent computation",
          arguments: [10, 1_000, 100_000, 1_000_000])
    func matchesIndependentComputation(n: Int) throws {
        for failures in 0...5 {
            for confidence in [0.9, 0.95, 0.99] {
                let bound = try Availability.failureRateUpperBound(failures: failures, requests: n, confidence: confidence)
                let expected = independentFailureBound(failures: failures, n: n, confidence: confidence)
                #expect(abs(bound - expected) <= 1e-9 * expected,
                        "n=\(n) failures=\(failures) confidence=\(confidence): \(bound) vs \(expected)")
            }
        }
    }

    /// Reference values: scipy.stats.beta.ppf(0.05, n − k, k + 1).
    @Test func matchesPublishedReferenceValues() throws {
        let references: [(n: Int, failures: Int, lower: Double)] = [
            (10, 0, 0.7411344491069477),
            (1_000, 3, 0.9922647552815206),
            (100_000, 1, 0.9999525622428261),
            (100_000, 2, 0.9999370434160391),
            (1_000_000, 0, 0.9999970042722136),
            (1_000_000, 1, 0.9999952561443618),
            (1_000_000, 2, 0.9999937042199007),
            (1_000_000, 5, 0.9999894869940706),
        ]
        for reference in references {
            let lower = try Availability.lowerBound(failures: reference.failures, requests: reference.n, confidence: 0.95)
            #expect(abs(lower - reference.lower) < 1e-12, "n=\(reference.n) k=\(reference.failures): \(lower)")
        }
    }

    /// The cases where GSL 2.7.1's gsl_cdf_beta_Pinv returns NaN.
    @Test func neverNaNWhereGSLInverseFails() throws {
        for (n, k) in [(100_000, 1), (100_000, 2), (1_000_000, 1), (1_000_000, 5), (10_000_000, 0), (10_000_000, 3)] {
            let bound = try Availability.failureRateUpperBound(failures: k, requests: n, confidence: 0.95)
            let expected = independentFailureBound(failures: k, n: n, confidence: 0.95)
            #expect(bound.isFinite && abs(bound - expected) <= 1e-9 * expected, "n=\(n) k=\(k) gave \(bound)")
        }
    }

    @Test func zeroFailuresHasClosedForm() throws {
        // With no failures the bound is α^(1/n).
        for n in [1, 7, 100, 29_956, 1_000_000] {
            let lower = try Availability.lowerBound(failures: 0, requests: n, confidence: 0.95)
            #expect(abs(lower - pow(0.05, 1 / Double(n))) < 1e-12)
        }
    }

    @Test func allFailuresGivesZero() throws {
        #expect(try Availability.lowerBound(failures: 10, requests: 10, confidence: 0.95) == 0)
    }

    @Test func requiredRequestsForFourNines() throws {
        // ln(0.05) / ln(0.9999) = 29955.8 → 29,956 clean requests.
        #expect(try Availability.requiredRequests(target: 0.9999, confidence: 0.95, failures: 0) == 29_956)
        for failures in 0...5 {
            let n = try Availability.requiredRequests(target: 0.9999, confidence: 0.95, failures: failures)
            #expect(try Availability.lowerBound(failures: failures, requests: n, confidence: 0.95) >= 0.9999)
            #expect(try Availability.lowerBound(failures: failures, requests: n - 1, confidence: 0.95) < 0.9999)
        }
    }

    @Test func moreFailuresNeedMoreRequests() throws {
        var previous = 0
        for failures in 0...5 {
            let n = try Availability.requiredRequests(target: 0.9999, confidence: 0.99, failures: failures)
            #expect(n > previous)
            previous = n
        }
    }

    @Test func rejectsBadInputWithNamedErrors() {
        #expect(throws: StatisticsError.invalidParameter(name: "requests", value: "0", expected: "at least 1 request")) {
            try Availability.lowerBound(failures: 0, requests: 0, confidence: 0.95)
        }
        #expect(StatisticsError.invalidParameter(name: "failures", value: "11", expected: "0...10").description
                == "invalid failures = 11: expected 0...10")
        #expect(throws: StatisticsError.self) { try Availability.lowerBound(failures: 11, requests: 10, confidence: 0.95) }
        #expect(throws: StatisticsError.self) { try Availability.lowerBound(failures: 1, requests: 10, confidence: 1.0) }
        #expect(throws: StatisticsError.self) { try Availability.requiredRequests(target: 1.0, confidence: 0.95, failures: 0) }
        #expect(throws: StatisticsError.self) { try Availability.requiredRequests(target: 0.99, confidence: 0.95, failures: -1) }
    }
}

@Suite("Binomial CDF")
struct BinomialTests {
    @Test func largeParametersWhereGSLReturnsNaN() {
        // scipy.stats.binom.cdf references; gsl_cdf_binomial_P gives NaN or 0 here.
        // Summing ~25,000 log-space terms at n = 10⁷ is good to about 1e-8.
        #expect(abs(Binomial.cdf(5_000_000, trials: 10_000_000, probability: 0.5) - 0.5001261566229462) < 1e-8)
        #expect(abs(Binomial.cdf(99_990, trials: 100_000, probability: 0.9999) - 0.5420765413843014) < 1e-9)
        #expect(abs(Binomial.cdf(9_999_000, trials: 10_000_000, probability: 0.9999) - 0.5042058749461784) < 1e-9)
    }

    @Test func summationFallbackAgreesWithGSL() {
        for (k, n, p) in [(3, 50, 0.1), (480, 1_000, 0.5), (9_990, 10_000, 0.999), (12, 100_000, 1e-4)] {
            let viaGSL = Binomial.cdf(k, trials: n, probability: p)
            let viaSum = Binomial.cdfBySummation(k, trials: n, probability: p)
            #expect(abs(viaGSL - viaSum) < 1e-10, "k=\(k) n=\(n) p=\(p)")
        }
    }

    @Test func edges() {
        #expect(Binomial.cdf(-1, trials: 10, probability: 0.5) == 0)
        #expect(Binomial.cdf(10, trials: 10, probability: 0.5) == 1)
        #expect(Binomial.cdf(0, trials: 10, probability: 0) == 1)
        #expect(Binomial.cdf(9, trials: 10, probability: 1) == 0)
    }
}
