import Testing
@testable import PaystormStatistics

@Suite("Universal Scalability Law fit (gsl_multifit_nlinear)")
struct UniversalScalabilityTests {
    /// Synthetic throughput from known parameters, with ±`noise` relative deterministic jitter.
    func synthetic(_ truth: UniversalScalability, levels: [Double], noise: Double, seed: UInt64) -> [Double] {
        let stream = RandomStream(seed: seed)
        return levels.map { truth.throughput(at: $0) * (1 + noise * (2 * stream.uniform() - 1)) }
    }

    @Test("recovers known parameters from noiseless data exactly, and the peak N* = √((1−σ)/κ)")
    func exactRecovery() throws {
        let truth = UniversalScalability(lambda: 1_000, sigma: 0.05, kappa: 0.002)
        let levels: [Double] = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64]
        let fit = try UniversalScalability.fit(concurrency: levels, throughput: levels.map(truth.throughput(at:)))
        #expect(abs(fit.lambda - 1_000) < 1e-6)
        #expect(abs(fit.sigma - 0.05) < 1e-9)
        #expect(abs(fit.kappa - 0.002) < 1e-10)
        #expect(abs(fit.peakConcurrency! - (0.95 / 0.002).squareRoot()) < 1e-6)
    }

    @Test("with 2% noise, every parameter lands within three standard errors of the truth", arguments: 1...5)
    func noisyRecovery(seed: UInt64) throws {
        let truth = UniversalScalability(lambda: 800, sigma: 0.08, kappa: 0.0015)
        let levels = (1...40).map(Double.init)
        let fit = try UniversalScalability.fit(concurrency: levels, throughput: synthetic(truth, levels: levels, noise: 0.02, seed: seed))
        #expect(fit.lambdaError > 0 && fit.sigmaError > 0 && fit.kappaError > 0)
        #expect(abs(fit.lambda - truth.lambda) < 3 * fit.lambdaError + 1e-9, "λ \(fit.lambda) ± \(fit.lambdaError)")
        #expect(abs(fit.sigma - truth.sigma) < 3 * fit.sigmaError + 1e-9, "σ \(fit.sigma) ± \(fit.sigmaError)")
        #expect(abs(fit.kappa - truth.kappa) < 3 * fit.kappaError + 1e-12, "κ \(fit.kappa) ± \(fit.kappaError)")
        #expect(fit.points == 40 && fit.iterations > 0)
    }

    @Test("linear scaling has no peak; bad input names what is wrong")
    func edges() throws {
        let linear = UniversalScalability(lambda: 10, sigma: 0, kappa: 0)
        #expect(linear.peakConcurrency == nil)
        #expect(throws: StatisticsError.self) { try UniversalScalability.fit(concurrency: [1, 2, 3], throughput: [1, 2, 3]) }
        #expect(throws: StatisticsError.self) { try UniversalScalability.fit(concurrency: [1, 2, 3, 4], throughput: [1, 2, 0, 4]) }
        #expect(throws: StatisticsError.self) { try UniversalScalability.fit(concurrency: [1, 2, 3, 4], throughput: [1, 2, 3]) }
    }
}
