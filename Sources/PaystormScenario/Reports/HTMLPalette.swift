/// The HTML report's colours and its one inline stylesheet. The series
/// colours are the Okabe–Ito set, distinguishable with the common forms of
/// colour blindness; the verdict colours follow CI convention.
enum HTMLPalette {
    static let pass = "#1a7f37"
    static let fail = "#cf222e"
    static let inconclusive = "#b7791f"
    static let good = "#1a7f37"
    static let bad = "#cf222e"
    static let fault = "#e69f00"
    static let series = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#56b4e9", "#e69f00", "#000000"]

    /// The colour of a verdict status or threshold outcome: passed is green,
    /// inconclusive amber, anything else (a failure or a violation) red.
    static func verdict(_ status: String) -> String {
        switch status {
        case "passed": return pass
        case "inconclusive": return inconclusive
        default: return fail
        }
    }

    static let stylesheet = """
        :root { color-scheme: light; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2328; background: #f6f8fa; }
        main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 48px; }
        h1 { font-size: 24px; margin: 0 0 4px; }
        h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
        h3 { font-size: 15px; margin: 18px 0 6px; }
        p { margin: 6px 0; }
        code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
        .description { color: #59636e; margin-bottom: 12px; }
        .meta { display: flex; flex-wrap: wrap; gap: 4px 22px; color: #424a53; font-size: 13px; }
        .meta b { color: #59636e; font-weight: 600; }
        .verdict { margin: 16px 0 8px; padding: 14px 18px; border-radius: 8px; color: #fff; }
        .verdict .status { font-size: 26px; font-weight: 700; letter-spacing: .02em; text-transform: uppercase; }
        .verdict .exit { font-size: 15px; opacity: .92; margin-left: 12px; }
        .verdict .summary { font-size: 15px; margin-top: 4px; }
        .expectation { display: inline-block; margin-top: 4px; padding: 3px 10px; border-radius: 12px; font-weight: 600; border: 2px solid; background: #fff; }
        .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600; font-size: 12px; }
        table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d0d7de; }
        th, td { text-align: left; padding: 5px 9px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
        th { background: #f0f3f6; font-weight: 600; font-size: 13px; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(165px, 1fr)); gap: 10px; }
        .card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 12px; }
        .card .label { color: #59636e; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
        .card .value { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
        .card .sub { color: #59636e; font-size: 12.5px; }
        .columns { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
        .figure { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 10px 4px; margin: 10px 0; }
        .figure h3 { margin: 2px 0 0 4px; }
        .figure .caption { color: #59636e; font-size: 12.5px; margin: 0 0 0 4px; }
        svg.chart { width: 100%; height: auto; display: block; }
        svg .tick { font-size: 11px; fill: #59636e; }
        svg .label, svg .value { font-size: 11px; fill: #1f2328; }
        svg .value-inverse { font-size: 12px; fill: #fff; font-weight: 600; }
        svg .legend { font-size: 12px; fill: #1f2328; }
        svg .note { font-size: 11px; fill: #59636e; font-style: italic; }
        svg .axis-title { font-size: 12px; fill: #424a53; }
        svg .group-label { font-size: 13px; font-weight: 600; fill: #1f2328; }
        svg .cell-value { font-size: 20px; font-weight: 650; fill: #1f2328; }
        svg .empty { font-size: 14px; fill: #8c959f; }
        svg .band-label { font-size: 11px; fill: #8a5a00; font-weight: 600; }
        svg .axis { stroke: #8c959f; stroke-width: 1; }
        svg .grid { stroke: #eaeef2; stroke-width: 1; }
        svg .series { stroke-width: 1.7; stroke-linejoin: round; }
        .violation { background: #fff; border: 1px solid #d0d7de; border-left: 4px solid #cf222e; border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
        .violation dl { display: grid; grid-template-columns: 130px 1fr; gap: 2px 10px; margin: 6px 0; }
        .violation dt { color: #59636e; }
        .violation dd { margin: 0; }
        details summary { cursor: pointer; color: #0969da; }
        details ol { margin: 6px 0; padding-left: 36px; max-height: 420px; overflow: auto; background: #f6f8fa; border-radius: 6px; }
        details li { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; white-space: pre-wrap; }
        .clean { background: #dafbe1; border: 1px solid #1a7f37; color: #116329; border-radius: 6px; padding: 8px 12px; font-weight: 600; }
        .muted { color: #59636e; }
        footer { margin-top: 36px; color: #59636e; font-size: 12.5px; }
        """
}
