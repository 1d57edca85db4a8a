import CGSL

/// One-time GSL configuration shared by every entry point of this module.
///
/// GSL's default error handler calls `abort()`; a simulator that dies on a
/// convergence failure deep inside an incomplete-beta evaluation is useless to
/// a CI pipeline. Every public type here calls ``GSLRuntime/configure()``
/// before its first GSL call, so the handler is off before GSL can report an
/// error, and each call site checks the status or the result itself.
enum GSLRuntime {
    private static let configured: Bool = {
        _ = gsl_set_error_handler_off()
        return true
    }()

    /// Turns GSL's aborting error handler off (idempotent, thread-safe).
    @inline(__always)
    static func configure() {
        _ = configured
    }
}
