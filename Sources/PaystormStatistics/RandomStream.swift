import CGSL
import Foundation

/// A seeded stream of random numbers: GSL's MT19937 generator and the
/// distributions a simulated world draws from.
///
/// Each actor owns its own stream derived from the run's root seed, so the
/// numbers an actor sees depend only on the seed and the order of its own draws.
/// Not thread-safe; a stream belongs to one simulation thread.
///
/// - Note: seeded through MT19937's `init_by_array` with the two halves of
///   the 64-bit seed, so streams differ whenever their seeds do.
public final class RandomStream {
    @usableFromInline
    let rng: UnsafeMutablePointer<gsl_rng>

    /// The 64-bit seed this stream was created from.
    public let seed: UInt64

    /// Creates a stream seeded with `seed`.
    public init(seed: UInt64) {
        GSLRuntime.configure()
        guard let rng = gsl_rng_alloc(paystorm_gsl_rng_mt19937()) else {
            preconditionFailure("gsl_rng_alloc failed: out of memory")
        }
        self.rng = rng
        self.seed = seed
        // All 64 bits select the stream (gsl_rng_set would keep 32, and
        // derived streams would collide at a few thousand actors).
        let keys: [UInt] = [UInt(seed & 0xFFFF_FFFF), UInt(seed >> 32)]
        let status = keys.withUnsafeBufferPointer { paystorm_mt19937_init_by_array(rng, $0.baseAddress, 2) }
        precondition(status == 0, "MT19937 seeding failed")
    }

    /// A stream seeded by MT19937's reference `init_by_array(keys)`; used to
    /// check the generator against the reference implementation's outputs.
    init(referenceKeys keys: [UInt32]) {
        GSLRuntime.configure()
        guard let rng = gsl_rng_alloc(paystorm_gsl_rng_mt19937()) else {
            preconditionFailure("gsl_rng_alloc failed: out of memory")
        }
        self.rng = rng
        self.seed = 0
        let wide = keys.map { UInt($0) }
        let status = wide.withUnsafeBufferPointer { paystorm_mt19937_init_by_array(rng, $0.baseAddress, Int32($0.count)) }
        precondition(status == 0, "MT19937 seeding failed")
    }

    /// The next raw 32-bit output (`gsl_rng_get`).
    @inlinable
    public func nextUInt32() -> UInt32 {
        UInt32(truncatingIfNeeded: gsl_rng_get(rng))
    }

    /// Creates the stream called `name` under `rootSeed`.
    public convenience init(rootSeed: UInt64, stream name: String) {
        self.init(seed: SeedDerivation.seed(root: rootSeed, stream: name))
    }

    deinit {
        gsl_rng_free(rng)
    }

    /// Uniform on [0, 1).
    @inlinable
    public func uniform() -> Double {
        gsl_rng_uniform(rng)
    }

    /// Uniform integer in `0..<bound`. - Precondition: `bound > 0`.
    @inlinable
    public func uniformInt(below bound: Int) -> Int {
        precondition(bound > 0, "uniformInt(below:) needs a positive bound, got \(bound)")
        if bound <= 0xFFFF_FFFF {
            return Int(gsl_rng_uniform_int(rng, UInt(bound)))
        }
        return min(bound - 1, Int(gsl_rng_uniform(rng) * Double(bound)))
    }

    /// Exponential with the given mean (`gsl_ran_exponential`).
    @inlinable
    public func exponential(mean: Double) -> Double {
        gsl_ran_exponential(rng, mean)
    }

    /// Lognormal with location `zeta` and scale `sigma` of the underlying
    /// normal (`gsl_ran_lognormal`); its median is `exp(zeta)`.
    @inlinable
    public func lognormal(zeta: Double, sigma: Double) -> Double {
        gsl_ran_lognormal(rng, zeta, sigma)
    }

    /// Lognormal given its median and the scale `sigma` of the underlying normal.
    @inlinable
    public func lognormal(median: Double, sigma: Double) -> Double {
        gsl_ran_lognormal(rng, log(median), sigma)
    }

    /// Pareto with shape `a` and scale (minimum) `b` (`gsl_ran_pareto`).
    @inlinable
    public func pareto(shape a: Double, scale b: Double) -> Double {
        gsl_ran_pareto(rng, a, b)
    }

    /// Weibull with scale `a` and shape `b` (`gsl_ran_weibull`).
    @inlinable
    public func weibull(scale a: Double, shape b: Double) -> Double {
        gsl_ran_weibull(rng, a, b)
    }

    /// Gamma with shape `a` and scale `b`; mean `a·b` (`gsl_ran_gamma`).
    @inlinable
    public func gamma(shape a: Double, scale b: Double) -> Double {
        gsl_ran_gamma(rng, a, b)
    }

    /// Normal with the given mean and standard deviation (`gsl_ran_gaussian`).
    @inlinable
    public func normal(mean: Double, standardDeviation: Double) -> Double {
        mean + gsl_ran_gaussian(rng, standardDeviation)
    }

    /// `true` with probability `p` (`gsl_ran_bernoulli`).
    @inlinable
    public func bernoulli(_ p: Double) -> Bool {
        gsl_ran_bernoulli(rng, p) == 1
    }
}
