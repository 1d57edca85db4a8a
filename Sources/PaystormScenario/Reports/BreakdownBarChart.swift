/// Horizontal bars in groups — one group per PSP, one bar per outcome — on
/// a shared count axis, each bar labelled with its category and its count so
/// a category of 3 next to one of 300,000 is still read, not guessed.
struct BreakdownBarChart {
    struct Category {
        var name: String
        var color: String
    }

    struct Group {
        var label: String
        /// One count per category, in the categories' order.
        var counts: [Int]
    }

    /// Groups beyond this are left to the table below the chart.
    static let maximumGroups = 24

    var title: String
    var xTitle: String
    var categories: [Category]
    var groups: [Group]

    private let width = 1120.0
    private let labelRight = 150.0, plotLeft = 262.0, plotRight = 1020.0
    private let barHeight = 13.0, barGap = 3.0, groupGap = 14.0, plotTop = 44.0

    /// The chart as an `<svg>` element.
    /// - Complexity: O(groups × categories).
    func render() -> String {
        let drawn = Array(groups.prefix(Self.maximumGroups))
        let groupHeight = Double(categories.count) * (barHeight + barGap) + groupGap
        let plotBottom = plotTop + max(1, Double(drawn.count)) * groupHeight
        var canvas = SVGCanvas(width: width, height: plotBottom + 48)
        let axis = ChartAxis(maximum: Double(drawn.flatMap(\.counts).max() ?? 0), targetTicks: 8)
        let plotWidth = plotRight - plotLeft
        func x(_ value: Double) -> Double { plotLeft + axis.scaled(value, length: plotWidth) }

        for tick in axis.ticks {
            canvas.line(x1: x(tick), y1: plotTop - 4, x2: x(tick), y2: plotBottom, className: tick == 0 ? "axis" : "grid")
            canvas.text(axis.label(tick), x: x(tick), y: plotBottom + 16, anchor: "middle", className: "tick")
        }
        canvas.text(xTitle, x: (plotLeft + plotRight) / 2, y: plotBottom + 38, anchor: "middle", className: "axis-title")

        for (groupIndex, group) in drawn.enumerated() {
            let groupTop = plotTop + Double(groupIndex) * groupHeight
            canvas.text(group.label, x: labelRight, y: groupTop + barHeight, anchor: "end", className: "group-label")
            for (index, category) in categories.enumerated() {
                let count = index < group.counts.count ? group.counts[index] : 0
                let top = groupTop + Double(index) * (barHeight + barGap)
                canvas.text(category.name, x: plotLeft - 8, y: top + barHeight - 3, anchor: "end", className: "tick")
                let length = x(Double(count)) - plotLeft
                // A non-zero count always shows a sliver, however long its neighbours.
                let shown = count > 0 ? max(1.5, length) : 0
                canvas.rect(x: plotLeft, y: top, width: shown, height: barHeight, fill: category.color,
                            title: "\(group.label) \(category.name): \(ReportFormat.count(count))")
                canvas.text(ReportFormat.count(count), x: plotLeft + shown + 5, y: top + barHeight - 3, className: "value")
            }
        }
        if drawn.isEmpty {
            canvas.text("no PSPs in this run", x: (plotLeft + plotRight) / 2, y: plotTop + 20, anchor: "middle", className: "empty")
        }
        canvas.legend(categories.map { (name: $0.name, color: $0.color, band: false) }, x: plotLeft, y: 22)
        if groups.count > drawn.count {
            canvas.text("first \(drawn.count) of \(groups.count) shown; all are in the table", x: plotRight, y: 22,
                        anchor: "end", className: "note")
        }
        return canvas.svg(title: title)
    }
}
