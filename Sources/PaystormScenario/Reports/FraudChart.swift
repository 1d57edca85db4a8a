/// Fraud screening scored against the ground truth: the 2 × 2 confusion
/// matrix (cells shaded by their share of all screened payments, green where
/// the screen was right and red where it was wrong) beside precision and
/// recall bars on a 0–100 % axis.
struct FraudChart {
    var fraud: ReportDocument.Fraud

    private let width = 1120.0, height = 236.0
    private let matrixLeft = 200.0, matrixTop = 58.0, cellWidth = 170.0, cellHeight = 70.0
    private let barsLeft = 760.0, barsRight = 1080.0

    /// The chart as an `<svg>` element.
    func render() -> String {
        var canvas = SVGCanvas(width: width, height: height)
        let cells: [(row: Int, column: Int, count: Int, name: String, correct: Bool)] = [
            (0, 0, fraud.truePositives, "true positives", true),
            (0, 1, fraud.falseNegatives, "false negatives", false),
            (1, 0, fraud.falsePositives, "false positives", false),
            (1, 1, fraud.trueNegatives, "true negatives", true),
        ]
        let total = cells.reduce(0) { $0 + max(0, $1.count) }
        canvas.text("flagged", x: matrixLeft + cellWidth / 2, y: matrixTop - 10, anchor: "middle", className: "axis-title")
        canvas.text("not flagged", x: matrixLeft + cellWidth * 1.5, y: matrixTop - 10, anchor: "middle", className: "axis-title")
        canvas.text("actually fraud", x: matrixLeft - 10, y: matrixTop + cellHeight / 2 + 4, anchor: "end", className: "axis-title")
        canvas.text("actually legitimate", x: matrixLeft - 10, y: matrixTop + cellHeight * 1.5 + 4, anchor: "end", className: "axis-title")
        for cell in cells {
            let share = total > 0 ? Double(max(0, cell.count)) / Double(total) : 0
            let left = matrixLeft + Double(cell.column) * cellWidth, top = matrixTop + Double(cell.row) * cellHeight
            canvas.rect(x: left, y: top, width: cellWidth - 2, height: cellHeight - 2,
                        fill: cell.correct ? HTMLPalette.good : HTMLPalette.bad, opacity: 0.12 + 0.6 * share,
                        title: "\(cell.name): \(ReportFormat.count(cell.count))")
            canvas.text(ReportFormat.count(cell.count), x: left + cellWidth / 2, y: top + 32, anchor: "middle", className: "cell-value")
            canvas.text(cell.name, x: left + cellWidth / 2, y: top + 52, anchor: "middle", className: "tick")
        }
        canvas.text("confusion matrix (\(ReportFormat.count(total)) screened)", x: matrixLeft + cellWidth, y: matrixTop + cellHeight * 2 + 26,
                    anchor: "middle", className: "note")

        let axis = ChartAxis(maximum: 100, targetTicks: 5, compact: false)
        let barsWidth = barsRight - barsLeft
        let rows: [(name: String, value: Double?, color: String, missing: String)] = [
            ("precision", fraud.precision, HTMLPalette.series[0], "n/a — nothing was flagged"),
            ("recall", fraud.recall, HTMLPalette.series[1], "n/a — no fraud was present"),
        ]
        for tick in axis.ticks {
            let x = barsLeft + axis.scaled(tick, length: barsWidth)
            canvas.line(x1: x, y1: matrixTop - 4, x2: x, y2: matrixTop + 110, className: tick == 0 ? "axis" : "grid")
            canvas.text(axis.label(tick) + "%", x: x, y: matrixTop + 126, anchor: "middle", className: "tick")
        }
        for (index, row) in rows.enumerated() {
            let top = matrixTop + 14 + Double(index) * 50
            canvas.text(row.name, x: barsLeft - 10, y: top + 15, anchor: "end", className: "axis-title")
            guard let value = row.value, value.isFinite else {
                canvas.text(row.missing, x: barsLeft + 6, y: top + 15, className: "value")
                continue
            }
            let length = axis.scaled(value * 100, length: barsWidth)
            canvas.rect(x: barsLeft, y: top, width: length, height: 22, fill: row.color)
            let label = ReportFormat.share(value)
            let inside = length > 80
            canvas.text(label, x: inside ? barsLeft + length - 6 : barsLeft + length + 6, y: top + 15,
                        anchor: inside ? "end" : "start", className: inside ? "value-inverse" : "value")
        }
        canvas.legend([(name: "screen right", color: HTMLPalette.good, band: true), (name: "screen wrong", color: HTMLPalette.bad, band: true)],
                      x: matrixLeft, y: 18)
        return canvas.svg(title: "Fraud screening: confusion matrix, precision and recall")
    }
}
