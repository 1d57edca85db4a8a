/// A line chart over virtual time, one value per metrics window, with the
/// scenario's fault windows shaded behind the lines.
///
/// A run of any length draws at most `maximumPoints` points per series:
/// consecutive windows are grouped into equal buckets and each bucket is
/// reduced to its maximum (for latencies and backlogs, where a peak must not
/// vanish) or its mean (for rates). The grouping depends only on the number
/// of windows, so the same document always draws the same chart.
struct TimeSeriesChart {
    enum Reduction { case maximum, mean }

    struct Series {
        var name: String
        var color: String
        /// One value per window; values that are not finite are drawn as 0.
        /// `nil` where the window has no value (no request was answered, so
        /// it has no latency): the line breaks there instead of dropping to 0.
        var values: [Double?]
        var reduction: Reduction
        var dashed = false
    }

    /// A shaded span of virtual time: a fault that was active.
    struct Band {
        var label: String
        var fromSeconds: Double
        var toSeconds: Double
    }

    static let maximumPoints = 600
    /// Below this many points each one also gets a dot, so a run of one or
    /// a few windows still shows something.
    static let markerLimit = 60

    var title: String
    /// The y axis's title, with its unit: "latency (ms)".
    var yTitle: String
    /// Each window's start, seconds of virtual time, ascending.
    var windowStartSeconds: [Double]
    var windowSeconds: Double
    var series: [Series]
    var bands: [Band]
    /// Where the time axis ends when there are no windows to say so.
    var fallbackEndSeconds: Double
    /// The time axis's title: virtual time for a simulated run, wall time for a measured one.
    var xTitle = "virtual time (s)"
    /// The most the values can be (100 for a share in percent): the headroom above a peak stops there.
    var yCeiling: Double?

    private let width = 1120.0, height = 344.0
    /// The legend sits above the plot and the fault labels between the two,
    /// so no line is ever drawn over a label.
    private let plotLeft = 76.0, plotRight = 1100.0, plotTop = 66.0, plotBottom = 296.0
    /// Room above the highest point, so a peak does not merge with the frame.
    private let headroom = 1.08

    /// The index ranges each drawn point stands for.
    /// - Complexity: O(n / bucket) ranges for n windows.
    static func buckets(count: Int, maximum: Int = maximumPoints) -> [Range<Int>] {
        guard count > 0 else { return [] }
        let size = (count + maximum - 1) / maximum
        return stride(from: 0, to: count, by: size).map { $0 ..< min(count, $0 + size) }
    }

    static func reduce(_ values: ArraySlice<Double>, _ reduction: Reduction) -> Double {
        var maximum = 0.0, sum = 0.0
        for value in values where value.isFinite {
            maximum = max(maximum, value)
            sum += value
        }
        switch reduction {
        case .maximum: return maximum
        case .mean: return values.isEmpty ? 0 : sum / Double(values.count)
        }
    }

    /// The index ranges of `values` where each run of non-nil values lies.
    /// - Complexity: O(n).
    static func runs(_ values: [Double?]) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var start: Int?
        for (index, value) in values.enumerated() {
            if value == nil, let first = start {
                runs.append(first..<index)
                start = nil
            } else if value != nil, start == nil {
                start = index
            }
        }
        if let first = start { runs.append(first..<values.count) }
        return runs
    }

    /// The chart as an `<svg>` element.
    /// - Complexity: O(n) in the number of windows times series.
    func render() -> String {
        var canvas = SVGCanvas(width: width, height: height)
        let buckets = Self.buckets(count: windowStartSeconds.count)
        let span = windowSeconds.isFinite && windowSeconds > 0 ? windowSeconds : 1
        // A point sits mid-way through the windows it stands for.
        let xs: [Double] = buckets.map { range in
            (windowStartSeconds[range.lowerBound] + windowStartSeconds[range.upperBound - 1] + span) / 2
        }
        let ys: [[Double?]] = series.map { series in
            buckets.map { range in
                let clamped = range.clamped(to: series.values.indices)
                let present = series.values[clamped].compactMap { $0 }
                // A bucket of windows none of which has a value is a gap.
                return present.isEmpty && !clamped.isEmpty ? nil : Self.reduce(present[...], series.reduction)
            }
        }
        let endSeconds = windowStartSeconds.last.map { $0 + span } ?? fallbackEndSeconds
        let xAxis = ChartAxis(maximum: endSeconds, targetTicks: 10, compact: false)
        let peak = ys.joined().compactMap { $0 }.max() ?? 0
        let yAxis = ChartAxis(maximum: yCeiling.map { min(peak * headroom, max(peak, $0)) } ?? peak * headroom)
        let plotWidth = plotRight - plotLeft, plotHeight = plotBottom - plotTop
        func x(_ seconds: Double) -> Double { plotLeft + xAxis.scaled(seconds, length: plotWidth) }
        func y(_ value: Double) -> Double { plotBottom - yAxis.scaled(value, length: plotHeight) }

        for tick in yAxis.ticks {
            canvas.line(x1: plotLeft, y1: y(tick), x2: plotRight, y2: y(tick), className: tick == 0 ? "axis" : "grid")
            canvas.text(yAxis.label(tick), x: plotLeft - 8, y: y(tick) + 4, anchor: "end", className: "tick")
        }
        for tick in xAxis.ticks {
            canvas.line(x1: x(tick), y1: plotBottom, x2: x(tick), y2: plotBottom + 5, className: "axis")
            canvas.text(xAxis.label(tick), x: x(tick), y: plotBottom + 19, anchor: "middle", className: "tick")
        }
        canvas.line(x1: plotLeft, y1: plotTop, x2: plotLeft, y2: plotBottom, className: "axis")
        canvas.text(xTitle, x: (plotLeft + plotRight) / 2, y: height - 8, anchor: "middle", className: "axis-title")
        canvas.text(yTitle, x: 16, y: (plotTop + plotBottom) / 2, anchor: "middle", className: "axis-title", rotated: true)

        let bandsDrawn = drawBands(&canvas, axisEndSeconds: xAxis.top, x: x)
        for (index, series) in series.enumerated() {
            let dash = series.dashed ? " stroke-dasharray=\"6 4\"" : ""
            let markers = buckets.count <= Self.markerLimit
            // One line per run of points with a value; a point alone between gaps gets a dot, or it would not show.
            for run in Self.runs(ys[index]) {
                let points = run.map { "\(ReportFormat.coordinate(x(xs[$0]))),\(ReportFormat.coordinate(y(ys[index][$0]!)))" }
                if points.count > 1 {
                    canvas.append("<polyline class=\"series\" fill=\"none\" stroke=\"\(series.color)\"\(dash) points=\"\(points.joined(separator: " "))\"/>")
                }
                guard markers || points.count == 1 else { continue }
                for point in run {
                    canvas.append("<circle cx=\"\(ReportFormat.coordinate(x(xs[point])))\" cy=\"\(ReportFormat.coordinate(y(ys[index][point]!)))\" r=\"2.5\" fill=\"\(series.color)\"/>")
                }
            }
        }
        if windowStartSeconds.isEmpty {
            canvas.text("no metrics windows were recorded", x: (plotLeft + plotRight) / 2, y: (plotTop + plotBottom) / 2,
                        anchor: "middle", className: "empty")
        }

        var legend = series.map { (name: $0.name, color: $0.color, band: false) }
        if bandsDrawn > 0 { legend.append((name: "fault active", color: HTMLPalette.fault, band: true)) }
        var note = ""
        if buckets.count < windowStartSeconds.count {
            let size = buckets.first?.count ?? 1
            note = "\(ReportFormat.count(windowStartSeconds.count)) windows, \(size) per point"
        }
        canvas.legend(legend, x: plotLeft, y: 22)
        if !note.isEmpty { canvas.text(note, x: plotRight, y: 22, anchor: "end", className: "note") }
        return canvas.svg(title: title)
    }

    /// Fault windows: shaded spans, labelled just above the plot. Each label
    /// takes the first of three rows where it clears the labels before it,
    /// so overlapping faults stay legible; a fault still active at the end
    /// (an infinite end) is shaded to the axis's end.
    /// - Returns: how many bands were drawn.
    private func drawBands(_ canvas: inout SVGCanvas, axisEndSeconds: Double, x: (Double) -> Double) -> Int {
        let plotHeight = plotBottom - plotTop
        var drawn = 0
        var rowEnds = [-Double.infinity, -Double.infinity, -Double.infinity]
        for band in bands where band.fromSeconds.isFinite && !band.toSeconds.isNaN {
            // A fault that starts after the last window is listed in the faults table, not drawn at the edge.
            guard band.fromSeconds <= axisEndSeconds, band.toSeconds >= 0 else { continue }
            let toSeconds = min(max(band.fromSeconds, band.toSeconds), axisEndSeconds)
            let left = x(band.fromSeconds), right = x(toSeconds)
            let span = "\(band.label): \(ReportFormat.seconds(band.fromSeconds)) – \(ReportFormat.seconds(band.toSeconds))"
            canvas.rect(x: left, y: plotTop, width: max(2, right - left), height: plotHeight, fill: HTMLPalette.fault,
                        opacity: 0.18, title: span, className: "band")

            let labelWidth = Double(band.label.count) * 6.6
            let nearRight = left + 3 + labelWidth > plotRight
            let labelX = nearRight ? max(right, left + 2) - 3 : left + 3
            let extent = nearRight ? (labelX - labelWidth, labelX) : (labelX, labelX + labelWidth)
            let row = rowEnds.firstIndex { $0 + 6 < extent.0 } ?? rowEnds.indices.min { rowEnds[$0] < rowEnds[$1] }!
            rowEnds[row] = extent.1
            canvas.text(band.label, x: labelX, y: plotTop - 4 - Double(row) * 12, anchor: nearRight ? "end" : "start",
                        className: "band-label")
            drawn += 1
        }
        return drawn
    }
}
