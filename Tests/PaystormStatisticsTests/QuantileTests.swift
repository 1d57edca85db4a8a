import Foundation
import Testing
@testable import PaystormStatistics

@Suite("Quantiles with order-statistic intervals")
struct QuantileTests {
    @Test func pointEstimatesMatchLinearInterpolation() throws {
        // numpy.quantile(1...100, p) (the same type-7 definition as GSL)
        let sample = try SortedSample((1...100).reversed().map(Double.init))
        #expect(try sample.quantile(0.5) == 50.5)
        #expect(abs(try sample.quantile(0.99) - 99.01) < 1e-12)
        #expect(abs(try sample.quantile(0.9) - 90.1) < 1e-12)
        #expect(try sample.quantile(0) == 1)
        #expect(try sample.quantile(1) == 100)
    }

    @Test func intervalRanksGiveTheRequestedCoverage() throws {
        let sample = try SortedSample((0..<10_000).map(Double.init))
        for p in [0.5, 0.9, 0.99, 0.999] {
            let estimate = try sample.quantile(p, confidence: 0.95)
            let lower = try #require(estimate.lower)
            let upper = try #require(estimate.upper)
            #expect(lower <= estimate.value && estimate.value <= upper)
            #expect(estimate.achievedCoverage >= 0.95)
            // Values equal their 0-based indices, so lower = X₍r+1₎ = r and
            // upper = X₍s+1₎ = s. Equal tails, each as tight as possible:
            // B(r) ≤ 2.5% < B(r+1) and B(s−1) < 97.5% ≤ B(s).
            let r = Int(lower), s = Int(upper)
            let n = 10_000
            func cdf(_ k: Int) -> Double { Binomial.cdf(k, trials: n, probability: p) }
            #expect(cdf(r) <= 0.025 && cdf(r + 1) > 0.025, "p=\(p) r=\(r)")
            #expect(cdf(s - 1) < 0.975 && cdf(s) >= 0.975, "p=\(p) s=\(s)")
        }
    }

    /// In a small sample's far tail the order-statistic interval's lower rank
    /// can sit above the interpolated estimate: of 1…10, p99.9 interpolates to
    /// 9.991 while the lower end's rank is the 10th value.
    @Test func theIntervalHoldsItsOwnEstimate() throws {
        let sample = try SortedSample((1...10).map(Double.init))
        let estimate = try sample.quantile(0.999, confidence: 0.95)
        #expect(abs(estimate.value - 9.991) < 1e-9)
        #expect(try #require(estimate.lower) <= estimate.value)
        for n in [10, 17, 100, 1_000] {
            let values = try SortedSample((1...n).map { pow(Double($0), 3) })
            for p in [0.5, 0.9, 0.99, 0.999, 0.9999] {
                let q = try values.quantile(p, confidence: 0.95)
                #expect((q.lower ?? -.infinity) <= q.value && q.value <= (q.upper ?? .infinity), "n \(n) p \(p): \(q)")
                let open = try values.quantile(p, confidence: 0.95, unboundedAbove: 1)
                #expect((open.lower ?? -.infinity) <= open.value, "n \(n) p \(p) with one unanswered: \(open)")
            }
        }
    }

    /// Values never observed (requests never answered) sit above every
    /// value: the same order statistics over them all, with the unbounded
    /// ranks at +infinity; none at all is the plain estimate.
    @Test func unboundedValuesAboveTakeTheTopRanks() throws {
        let sample = try SortedSample((0..<9_900).map(Double.init))
        let plain = try sample.quantile(0.5, confidence: 0.95)
        #expect(try sample.quantile(0.5, confidence: 0.95, unboundedAbove: 0) == plain)
        // As a sample of 10,000 whose top 100 are infinite: the median and its ranks are the full sample's.
        let full = try SortedSample((0..<10_000).map(Double.init))
        let withTop = try sample.quantile(0.5, confidence: 0.95, unboundedAbove: 100)
        let reference = try full.quantile(0.5, confidence: 0.95)
        #expect(withTop.value == reference.value && withTop.lower == reference.lower && withTop.upper == reference.upper)
        #expect(withTop.achievedCoverage == reference.achievedCoverage)
        // p99 of 10,000 with 100 unanswered: the point estimate interpolates toward an unanswered one.
        let p99 = try sample.quantile(0.99, confidence: 0.95, unboundedAbove: 100)
        #expect(p99.value == .infinity && p99.upper == nil && p99.lower.map { $0 < 9_900 } == true)
        // With 2% unanswered even the lower end of p99 is unanswered.
        let worse = try sample.quantile(0.99, confidence: 0.95, unboundedAbove: 300)
        #expect(worse.lower == .infinity && worse.upper == nil)
        // Nothing answered at all.
        #expect(try SortedSample([]).quantile(0.5, confidence: 0.95, unboundedAbove: 10).value == .infinity)
    }

    @Test func medianIntervalMatchesTheTextbookRanks() throws {
        // n = 100, 95%: the classic distribution-free median interval is
        // X(40) … X(61) (1-based), coverage 0.9648.
        let sample = try SortedSample((1...100).map(Double.init))
        let estimate = try sample.quantile(0.5, confidence: 0.95)
        #expect(estimate.lower == 40)
        #expect(estimate.upper == 61)
        #expect(abs(estimate.achievedCoverage - 0.9648) < 1e-3)
    }

    @Test func tooFewSamplesLeaveTheUpperEndOpen() throws {
        // p99.99 from 1,000 samples: no order statistic bounds it from above.
        let sample = try SortedSample((0..<1_000).map(Double.init))
        let estimate = try sample.quantile(0.9999, confidence: 0.95)
        #expect(estimate.upper == nil)
        #expect(estimate.lower != nil)
        // With 100,000 samples it is bounded.
        let big = try SortedSample((0..<100_000).map(Double.init))
        #expect(try big.quantile(0.9999, confidence: 0.95).upper != nil)
    }

    @Test("coverage holds empirically across seeds", arguments: [0.5, 0.99])
    func empiricalCoverage(p: Double) throws {
        // Exponential(1): the true quantile is −ln(1 − p).
        let truth = -log1p(-p)
        var covered = 0
        let trials = 400
        for seed in 0..<trials {
            let stream = RandomStream(rootSeed: UInt64(seed), stream: "coverage")
            let sample = try SortedSample((0..<2_000).map { _ in stream.exponential(mean: 1) })
            let estimate = try sample.quantile(p, confidence: 0.9)
            if let lower = estimate.lower, let upper = estimate.upper, lower <= truth, truth <= upper { covered += 1 }
        }
        // 90% nominal; the binomial 99.9% band for 400 trials is about ±6%.
        #expect(Double(covered) / Double(trials) > 0.84)
    }

    @Test func rejectsBadInput() throws {
        #expect(throws: StatisticsError.self) { try SortedSample([1, .nan]) }
        #expect(throws: StatisticsError.notEnoughSamples(required: 1, actual: 0)) { try SortedSample([]).quantile(0.5) }
        let sample = try SortedSample([1, 2, 3])
        #expect(throws: StatisticsError.self) { try sample.quantile(1.5) }
        #expect(throws: StatisticsError.self) { try sample.quantile(0.5, confidence: 0) }
    }
}

@Suite("Summaries, t-intervals and Welch's test")
struct SummaryTests {
    let a = [12.1, 11.8, 12.5, 12.0, 11.9, 12.3, 12.2, 11.7]
    let b = [12.9, 13.1, 12.6, 13.4, 12.8, 13.0]

    @Test func meanSpreadAndInterval() throws {
        // References from numpy / scipy.stats.t.ppf(0.975, 7) = 2.3646.
        let summary = try Summary(a)
        #expect(abs(summary.mean - 12.0625) < 1e-12)
        #expect(abs(summary.standardDeviation - 0.26692695630078284) < 1e-12)
        let interval = try summary.confidenceInterval(0.95)
        #expect(abs(interval.lower - 11.839343479985606) < 1e-9)
        #expect(abs(interval.upper - 12.285656520014394) < 1e-9)
    }

    @Test func welchMatchesScipy() throws {
        // scipy.stats.ttest_ind(a, b, equal_var=False)
        let test = try WelchTest(try Summary(a), try Summary(b))
        #expect(abs(test.t - -6.187888642186879) < 1e-9)
        #expect(abs(test.degreesOfFreedom - 10.775512487155419) < 1e-9)
        #expect(abs(test.pValue - 7.471061812445014e-05) < 1e-10)
        #expect(test.isSignificant())
    }

    @Test func identicalSamplesAreNotSignificant() throws {
        let test = try WelchTest(try Summary(a), try Summary(a))
        #expect(test.t == 0)
        #expect(test.pValue == 1)
        #expect(!test.isSignificant())
    }

    @Test func rejectsDegenerateInput() throws {
        #expect(throws: StatisticsError.notEnoughSamples(required: 1, actual: 0)) { try Summary([]) }
        #expect(throws: StatisticsError.self) { try Summary([1, .infinity]) }
        #expect(throws: StatisticsError.notEnoughSamples(required: 2, actual: 1)) { try Summary([1]).confidenceInterval(0.95) }
        #expect(throws: StatisticsError.self) { try WelchTest(try Summary([1, 1]), try Summary([2, 2])) }
    }
}
