/// The pieces every report chart is drawn with: the root element, text,
/// and a legend. Everything is written as SVG attributes the page's inline
/// stylesheet styles by class, so a chart carries no fonts or colours of its
/// own beyond its series colours.
struct SVGCanvas {
    /// Drawn at this size in user units and scaled to the page's width: at a
    /// 1200 px window the labels render near their nominal 11–12 px.
    var width: Double
    var height: Double
    private(set) var body = ""

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    mutating func append(_ element: String) {
        body += element
        body += "\n"
    }

    /// `text` at (x, y), escaped; `anchor` is start, middle or end.
    mutating func text(_ text: String, x: Double, y: Double, anchor: String = "start", className: String = "label",
                       rotated: Bool = false) {
        let transform = rotated ? " transform=\"rotate(-90 \(ReportFormat.coordinate(x)) \(ReportFormat.coordinate(y)))\"" : ""
        append("<text class=\"\(className)\" x=\"\(ReportFormat.coordinate(x))\" y=\"\(ReportFormat.coordinate(y))\" text-anchor=\"\(anchor)\"\(transform)>\(ReportFormat.escape(text))</text>")
    }

    mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, className: String) {
        append("<line class=\"\(className)\" x1=\"\(ReportFormat.coordinate(x1))\" y1=\"\(ReportFormat.coordinate(y1))\" x2=\"\(ReportFormat.coordinate(x2))\" y2=\"\(ReportFormat.coordinate(y2))\"/>")
    }

    mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String, opacity: Double = 1, title: String? = nil,
                       className: String? = nil) {
        let classAttribute = className.map { " class=\"\($0)\"" } ?? ""
        let opacityAttribute = opacity < 1 ? " fill-opacity=\"\(ReportFormat.fixed(opacity, 2))\"" : ""
        let open = "<rect\(classAttribute) x=\"\(ReportFormat.coordinate(x))\" y=\"\(ReportFormat.coordinate(y))\" width=\"\(ReportFormat.coordinate(max(0, width)))\" height=\"\(ReportFormat.coordinate(max(0, height)))\" fill=\"\(fill)\"\(opacityAttribute)"
        if let title {
            append(open + "><title>\(ReportFormat.escape(title))</title></rect>")
        } else {
            append(open + "/>")
        }
    }

    /// A row of swatches and names starting at (x, y); names are measured at
    /// about 7 units a character, which is close enough for a legend.
    mutating func legend(_ entries: [(name: String, color: String, band: Bool)], x: Double, y: Double) {
        var cursor = x
        for entry in entries {
            if entry.band {
                rect(x: cursor, y: y - 9, width: 16, height: 12, fill: entry.color, opacity: 0.25)
            } else {
                rect(x: cursor, y: y - 5, width: 16, height: 4, fill: entry.color)
            }
            text(entry.name, x: cursor + 21, y: y + 1, className: "legend")
            cursor += 21 + Double(entry.name.count) * 7 + 18
        }
    }

    /// The finished element, labelled for screen readers with `title`.
    func svg(title: String) -> String {
        let size = "viewBox=\"0 0 \(ReportFormat.coordinate(width)) \(ReportFormat.coordinate(height))\""
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" \(size) role=\"img\" aria-label=\"\(ReportFormat.escape(title))\">\n"
            + "<title>\(ReportFormat.escape(title))</title>\n" + body + "</svg>\n"
    }
}
