import Foundation

/// Escaping and number formatting for the HTML report. Every figure goes
/// through one of these so the page is byte-identical for the same document:
/// fixed decimal places (`%f` is locale-independent), digit grouping done by
/// hand, and a non-finite value never reaches the page as "nan" or "inf".
enum ReportFormat {
    /// Text safe inside an element or a double- or single-quoted attribute.
    /// - Complexity: O(n) in the length of `text`.
    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// What the page shows where a figure does not exist or is not a number.
    static let missing = "—"

    /// `value` with `digits` decimal places; "—" if it is not finite.
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return missing }
        let text = String(format: "%.\(max(0, min(digits, 9)))f", value)
        // "-0.0" would differ from "0.0" only by the sign of a rounding.
        return text.hasPrefix("-") && text.dropFirst().allSatisfy({ $0 == "0" || $0 == "." }) ? String(text.dropFirst()) : text
    }

    /// An SVG coordinate: one decimal place, and 0 for anything not finite,
    /// so a degenerate series draws flat instead of writing NaN into a path.
    static func coordinate(_ value: Double) -> String {
        fixed(value.isFinite ? value : 0, 1)
    }

    /// A count with thousands separators: 1,234,567.
    static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (offset, digit) in digits.enumerated() {
            if offset > 0 && (digits.count - offset) % 3 == 0 { grouped += "," }
            grouped.append(digit)
        }
        return value < 0 ? "-" + grouped : grouped
    }

    /// A fraction as a percentage with up to four decimals, trailing zeros
    /// dropped (the thresholds' own rule): 0.99991 → "99.991%". A confidence
    /// bound passes `.down` (lower) or `.up` (upper), so it never claims more
    /// than was shown: a lower bound of 0.99989996 reads 99.9899%, not 99.99%.
    static func percent(_ fraction: Double?, rounding: FloatingPointRoundingRule = .toNearestOrAwayFromZero) -> String {
        guard let fraction, fraction.isFinite else { return missing }
        return Threshold.percent(fraction, rounding: rounding)
    }

    /// A share that is a ratio of counts, not a claim to many nines
    /// (precision, recall): to one decimal, "60.3%".
    static func share(_ fraction: Double?) -> String {
        guard let fraction, fraction.isFinite else { return missing }
        return String(format: "%.1f%%", fraction * 100)
    }

    /// Seconds as "12.3 ms" below a second and "1.234 s" above (the thresholds'
    /// own rule); a confidence bound rounds `.down` (lower) or `.up` (upper).
    static func duration(_ seconds: Double?, rounding: FloatingPointRoundingRule = .toNearestOrAwayFromZero) -> String {
        guard let seconds, seconds.isFinite else { return missing }
        return Threshold.duration(seconds, rounding: rounding)
    }

    /// A confidence interval as "[lower, upper]", each end rounded away from
    /// the estimate; a missing end is "—".
    static func interval(_ lowerSeconds: Double?, _ upperSeconds: Double?) -> String {
        "[\(duration(lowerSeconds, rounding: .down)), \(duration(upperSeconds, rounding: .up))]"
    }

    /// A percentile's name: 50 → "p50", 99.99 → "p99.99".
    static func percentile(_ percent: Double) -> String {
        var text = fixed(percent, 4)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return "p" + text
    }

    /// A per-second rate: "1,234.5/s".
    static func rate(_ perSecond: Double) -> String {
        guard perSecond.isFinite else { return missing }
        guard perSecond >= 0 else { return fixed(perSecond, 1) + "/s" }
        let tenths = fixed(perSecond, 1)
        guard let dot = tenths.firstIndex(of: "."), let whole = Int(tenths[..<dot]) else { return tenths + "/s" }
        return count(whole) + tenths[dot...] + "/s"
    }

    /// Up to three decimals, trailing zeros dropped: 1.0 → "1", 0.25 → "0.25".
    static func trimmed(_ value: Double) -> String {
        var text = fixed(value, 3)
        guard text.contains(".") else { return text }
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    /// Virtual seconds to the millisecond, "14.250 s": a violation's time
    /// is read against the trail, so it is never rounded coarser than that.
    static func seconds(_ value: Double) -> String {
        guard value.isFinite else { return missing }
        return fixed(value, 3) + " s"
    }
}
