import Foundation

/// A sweep's reports: `sweep.json` (schema `paystorm.sweep/1`), `sweep.csv`,
/// `sweep.md` and a self-contained `sweep.html` with SVG charts — achieved
/// and p99 against offered load with the SLO line and the knee marked, and
/// the Universal Scalability Law curve through the points.
public enum SweepReport {
    /// Replaces the sweep's reports in `directory` as a set (``ReportFileSet``): a failure while writing leaves the old set.
    public static func write(_ result: SweepResult, slo: Double?, to directory: String) throws {
        try ReportFileSet.replace([("sweep.json", json(result)), ("sweep.csv", csv(result)), ("sweep.md", markdown(result)),
                                   ("sweep.html", html(result, slo: slo))], in: directory)
    }

    public static func json(_ result: SweepResult) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(result), as: UTF8.self) + "\n"
    }

    public static func decode(_ data: Data) throws -> SweepResult {
        let result = try JSONDecoder().decode(SweepResult.self, from: data)
        guard result.schema == SweepResult.schema else { throw SweepError("sweep schema \"\(result.schema)\" is not \(SweepResult.schema)") }
        return result
    }

    static func keys(_ result: SweepResult) -> [String] { result.axes.map(\.key.rawValue) }

    public static func csv(_ result: SweepResult) -> String {
        let keys = keys(result)
        var lines = [(["point"] + keys + ["seed", "status", "exit", "offered_per_s", "achieved_per_s", "p99_s", "p99_lower_s", "p99_upper_s",
                                          "mean_latency_s", "concurrency", "availability_lower_bound", "violations"]).joined(separator: ",")]
        // Confidence bounds round away from the estimate, as everywhere in the reports.
        func bound(_ value: Double, _ rule: FloatingPointRoundingRule) -> String {
            String(format: "%.6f", Threshold.rounded(value, decimals: 6, rule))
        }
        for p in result.points {
            var fields = ["\(p.index)"] + keys.map { YAMLValue.format(p.settings[$0] ?? 0) }
            fields += ["\(p.seed)", p.status, "\(p.exitCode)", String(format: "%.3f", p.offeredPerSecond), String(format: "%.3f", p.achievedPerSecond),
                       String(format: "%.6f", p.p99Seconds), p.p99LowerSeconds.map { bound($0, .down) } ?? "",
                       p.p99UpperSeconds.map { bound($0, .up) } ?? "", String(format: "%.6f", p.meanLatencySeconds),
                       String(format: "%.4f", p.concurrency), bound(p.availabilityLowerBound, .down), "\(p.violations)"]
            lines.append(fields.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func markdown(_ result: SweepResult) -> String {
        var lines = ["# Sweep of \(result.scenario) (hash `\(result.scenarioHash)`)", ""]
        lines.append("Axes: " + result.axes.map { "`\($0.key.rawValue)` ∈ {\($0.values.map(YAMLValue.format).joined(separator: ", "))}" }.joined(separator: "; ")
                     + "; seeds \(result.seeds.map(String.init).joined(separator: ", ")).")
        lines.append("")
        if !result.knees.isEmpty {
            lines.append("## Knee")
            lines.append("")
            for knee in result.knees {
                let at = knee.settings.sorted { $0.key < $1.key }.map { "\($0.key)=\(YAMLValue.format($0.value))" }.joined(separator: ", ")
                lines.append("- \(at.isEmpty ? "" : at + ": ")\(knee.explanation).")
            }
            lines.append("")
        }
        lines.append("## Universal Scalability Law")
        lines.append("")
        if let s = result.scalability {
            lines.append("X(N) = λN / (1 + σ(N−1) + κN(N−1)) fitted to the \(s.points) passing points, N from Little's law (achieved × mean latency):")
            lines.append("λ = \(String(format: "%.4g", s.lambda)) ± \(String(format: "%.2g", s.lambdaError)), σ = \(String(format: "%.4g", s.sigma)) ± \(String(format: "%.2g", s.sigmaError)), κ = \(String(format: "%.4g", s.kappa)) ± \(String(format: "%.2g", s.kappaError)); peak N* = \(s.peakConcurrency.map { String(format: "%.3g", $0) } ?? "none (κ ≤ 0)").")
        } else {
            lines.append(result.note ?? "no fit")
        }
        lines.append("")
        lines.append("## Points")
        lines.append("")
        let keys = keys(result)
        lines.append("| " + (keys + ["seed", "verdict", "offered/s", "achieved/s", "p99", "availability ≥"]).joined(separator: " | ") + " |")
        lines.append("|" + String(repeating: " --- |", count: keys.count + 6))
        for p in result.points {
            let values = keys.map { YAMLValue.format(p.settings[$0] ?? 0) }
            lines.append("| " + (values + ["\(p.seed)", p.status, String(format: "%.1f", p.offeredPerSecond), String(format: "%.1f", p.achievedPerSecond),
                                           String(format: "%.1f ms", p.p99Seconds * 1_000), Threshold.percent(p.availabilityLowerBound, rounding: .down)]).joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - HTML

    /// Series of (x, y) points keyed by the settings of the axes other than `load.rate`.
    static func series(_ result: SweepResult, y: (Sweep.Point) -> Double) -> [(name: String, points: [(Double, Double)])] {
        let others = result.axes.map(\.key.rawValue).filter { $0 != Sweep.Key.rate.rawValue }
        var groups: [String: [(Double, Double)]] = [:]
        for p in result.points {
            let name = others.map { "\($0)=\(YAMLValue.format(p.settings[$0] ?? 0))" }.joined(separator: ", ")
            groups[name.isEmpty ? "all" : name, default: []].append((p.offeredPerSecond, y(p)))
        }
        return groups.keys.sorted().map { ($0, groups[$0]!.sorted { $0.0 < $1.0 }) }
    }

    static func chart(title: String, xLabel: String, yLabel: String, series: [(name: String, points: [(Double, Double)])],
                      lines: Bool, horizontal: (value: Double, label: String)? = nil, verticals: [(Double, String)] = [],
                      curve: [(Double, Double)] = []) -> String {
        var canvas = SVGCanvas(width: 900, height: 340)
        let left = 70.0, right = 20.0, top = 40.0, bottom = 50.0
        let plotWidth = canvas.width - left - right, plotHeight = canvas.height - top - bottom
        let xs = series.flatMap { $0.points.map(\.0) } + verticals.map(\.0) + curve.map(\.0)
        let ys = series.flatMap { $0.points.map(\.1) } + [horizontal?.value ?? 0] + curve.map(\.1)
        let xAxis = ChartAxis(maximum: (xs.max() ?? 1) * 1.05), yAxis = ChartAxis(maximum: (ys.max() ?? 1) * 1.1)
        func px(_ x: Double) -> Double { left + xAxis.scaled(x, length: plotWidth) }
        func py(_ y: Double) -> Double { top + plotHeight - yAxis.scaled(y, length: plotHeight) }
        for tick in yAxis.ticks {
            canvas.line(x1: left, y1: py(tick), x2: left + plotWidth, y2: py(tick), className: "grid")
            canvas.text(yAxis.label(tick), x: left - 6, y: py(tick) + 4, anchor: "end")
        }
        for tick in xAxis.ticks {
            canvas.text(xAxis.label(tick), x: px(tick), y: top + plotHeight + 16, anchor: "middle")
        }
        canvas.line(x1: left, y1: top + plotHeight, x2: left + plotWidth, y2: top + plotHeight, className: "axis")
        canvas.line(x1: left, y1: top, x2: left, y2: top + plotHeight, className: "axis")
        canvas.text(xLabel, x: left + plotWidth / 2, y: canvas.height - 10, anchor: "middle", className: "axis-title")
        canvas.text(yLabel, x: 16, y: top + plotHeight / 2, anchor: "middle", className: "axis-title", rotated: true)
        if let horizontal {
            canvas.append("<line x1=\"\(ReportFormat.coordinate(left))\" y1=\"\(ReportFormat.coordinate(py(horizontal.value)))\" x2=\"\(ReportFormat.coordinate(left + plotWidth))\" y2=\"\(ReportFormat.coordinate(py(horizontal.value)))\" stroke=\"\(HTMLPalette.bad)\" stroke-dasharray=\"6 4\" stroke-width=\"1.5\"/>")
            canvas.text(horizontal.label, x: left + plotWidth - 4, y: py(horizontal.value) - 5, anchor: "end")
        }
        for (x, label) in verticals {
            canvas.append("<line x1=\"\(ReportFormat.coordinate(px(x)))\" y1=\"\(ReportFormat.coordinate(top))\" x2=\"\(ReportFormat.coordinate(px(x)))\" y2=\"\(ReportFormat.coordinate(top + plotHeight))\" stroke=\"\(HTMLPalette.fault)\" stroke-dasharray=\"4 3\" stroke-width=\"1.5\"/>")
            canvas.text(label, x: px(x) + 4, y: top + 12)
        }
        if curve.count > 1 {
            let path = curve.map { "\(ReportFormat.coordinate(px($0.0))),\(ReportFormat.coordinate(py($0.1)))" }.joined(separator: " ")
            canvas.append("<polyline points=\"\(path)\" fill=\"none\" stroke=\"#777777\" stroke-width=\"1.5\"/>")
        }
        for (index, entry) in series.enumerated() {
            let color = HTMLPalette.series[index % HTMLPalette.series.count]
            if lines && entry.points.count > 1 {
                let path = entry.points.map { "\(ReportFormat.coordinate(px($0.0))),\(ReportFormat.coordinate(py($0.1)))" }.joined(separator: " ")
                canvas.append("<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>")
            }
            for (x, y) in entry.points {
                canvas.append("<circle cx=\"\(ReportFormat.coordinate(px(x)))\" cy=\"\(ReportFormat.coordinate(py(y)))\" r=\"3.5\" fill=\"\(color)\"/>")
            }
        }
        var legend = series.enumerated().map { ($0.element.name, HTMLPalette.series[$0.offset % HTMLPalette.series.count], false) }
        if !curve.isEmpty { legend.append(("USL fit", "#777777", false)) }
        canvas.legend(legend, x: left, y: 20)
        return "<h3>\(ReportFormat.escape(title))</h3>\n" + canvas.svg(title: title)
    }

    public static func html(_ result: SweepResult, slo: Double?) -> String {
        let kneeMarks = result.knees.compactMap { knee -> (Double, String)? in
            guard let rate = knee.lastPassingRate else { return nil }
            return (rate, knee.firstFailingRate == nil ? "no knee up to \(YAMLValue.format(rate))/s" : "knee \(YAMLValue.format(rate))/s")
        }
        var body = "<h1>Sweep of \(ReportFormat.escape(result.scenario))</h1>\n"
        body += "<p class=\"meta\">scenario hash \(ReportFormat.escape(result.scenarioHash)) · Paystorm \(ReportFormat.escape(result.paystormVersion)) · \(result.points.count) runs · seeds \(result.seeds.map(String.init).joined(separator: ", "))</p>\n"
        for knee in result.knees {
            let at = knee.settings.sorted { $0.key < $1.key }.map { "\($0.key)=\(YAMLValue.format($0.value))" }.joined(separator: ", ")
            body += "<p><strong>Knee\(at.isEmpty ? "" : " (" + ReportFormat.escape(at) + ")")</strong>: \(ReportFormat.escape(knee.explanation)).</p>\n"
        }
        body += chart(title: "Achieved against offered load", xLabel: "offered (requests/s)", yLabel: "achieved (requests/s)",
                      series: series(result) { $0.achievedPerSecond }, lines: true, verticals: kneeMarks)
        body += chart(title: "p99 latency against offered load", xLabel: "offered (requests/s)", yLabel: "p99 latency (ms)",
                      series: series(result) { $0.p99Seconds * 1_000 }, lines: true,
                      horizontal: slo.map { ($0 * 1_000, "SLO p99 < \(ReportFormat.duration($0))") }, verticals: kneeMarks)
        if let s = result.scalability {
            let maxN = (result.points.map(\.concurrency).max() ?? 1) * 1.2
            let curve = (0...60).map { i -> (Double, Double) in
                let n = max(0.01, maxN * Double(i) / 60)
                return (n, s.lambda * n / (1 + s.sigma * (n - 1) + s.kappa * n * (n - 1)))
            }
            let points = [(name: "runs", points: result.points.map { ($0.concurrency, $0.achievedPerSecond) }.sorted { $0.0 < $1.0 })]
            body += chart(title: "Universal Scalability Law: throughput against concurrency", xLabel: "concurrency N (achieved × mean latency)",
                          yLabel: "throughput (requests/s)", series: points, lines: false, curve: curve)
            body += "<p>λ = \(String(format: "%.4g", s.lambda)) ± \(String(format: "%.2g", s.lambdaError)), σ = \(String(format: "%.4g", s.sigma)) ± \(String(format: "%.2g", s.sigmaError)), κ = \(String(format: "%.4g", s.kappa)) ± \(String(format: "%.2g", s.kappaError)); peak N* = \(s.peakConcurrency.map { String(format: "%.3g", $0) } ?? "none")</p>\n"
        } else if let note = result.note {
            body += "<p>\(ReportFormat.escape(note))</p>\n"
        }
        body += "<h2>Points</h2>\n<pre>\(ReportFormat.escape(csv(result)))</pre>\n"
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
            <title>Sweep of \(ReportFormat.escape(result.scenario))</title>
            <style>\(HTMLPalette.stylesheet)</style></head>
            <body><main>
            \(body)</main></body></html>

            """
    }
}
