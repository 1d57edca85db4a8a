import Foundation

/// A linear axis from zero to a "nice" top (a multiple of 1, 2 or 5 × 10ᵏ)
/// with about five ticks. A maximum that is zero, negative or not finite
/// gives the axis 0…1, so an all-zero series draws flat on the floor and
/// nothing divides by zero.
struct ChartAxis {
    var top: Double
    var step: Double
    /// Decimal places a tick label needs at this step.
    var decimals: Int
    /// Labels in thousands ("20k") or millions ("3M") once the numbers get long.
    var compact: Bool

    init(maximum: Double, targetTicks: Int = 5, compact: Bool = true) {
        let maximum = maximum.isFinite && maximum > 0 ? maximum : 1
        let raw = maximum / Double(max(1, targetTicks))
        let magnitude = pow(10, floor(log10(raw)))
        let residual = raw / magnitude
        let nice: Double = residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 5 ? 5 : 10
        step = nice * magnitude
        top = (maximum / step).rounded(.up) * step
        decimals = max(0, min(6, -Int(floor(log10(step) + 1e-9))))
        self.compact = compact
    }

    /// 0, step, 2·step, … top.
    var ticks: [Double] {
        let count = Int((top / step).rounded())
        return (0...max(0, count)).map { Double($0) * step }
    }

    /// The position of `value` on a span of `length` units, clamped to the axis.
    func scaled(_ value: Double, length: Double) -> Double {
        guard value.isFinite else { return 0 }
        return min(max(value, 0), top) / top * length
    }

    func label(_ value: Double) -> String {
        if compact && top >= 10_000_000 {
            return ReportFormat.trimmed(value / 1_000_000) + "M"
        }
        if compact && top >= 10_000 {
            return ReportFormat.trimmed(value / 1_000) + "k"
        }
        return ReportFormat.fixed(value, decimals)
    }
}
