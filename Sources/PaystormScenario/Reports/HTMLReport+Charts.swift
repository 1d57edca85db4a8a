import PaystormWorld

/// The report's charts, built from the document's per-window series.
extension HTMLReport {
    static func charts(_ document: ReportDocument) -> String {
        let windows = document.windows
        let starts = windows.map(\.startSeconds)
        let windowSeconds = windowLength(document)
        // Shaded where each fault really acted: healing cuts some short, and some never start.
        let bands = document.faults.filter(\.acted).map {
            TimeSeriesChart.Band(label: $0.label, fromSeconds: $0.atSeconds, toSeconds: $0.actedUntilSeconds)
        }
        let fallbackEnd = max(document.simulation.virtualSeconds, bands.map(\.toSeconds).filter(\.isFinite).max() ?? 0)
        // The requests' charts end with the requests: a healing phase of
        // minutes after a short load used to squeeze the load into the
        // first few percent of the axis. The backlogs span the whole run.
        let requestWindows = requestWindowCount(document)
        func chart(_ title: String, _ yTitle: String, _ series: [TimeSeriesChart.Series], ceiling: Double? = nil,
                   windowsShown: Int? = nil) -> String {
            let shown = windowsShown ?? windows.count
            var series = series
            for index in series.indices { series[index].values = Array(series[index].values.prefix(shown)) }
            return TimeSeriesChart(title: title, yTitle: yTitle, windowStartSeconds: Array(starts.prefix(shown)), windowSeconds: windowSeconds,
                                   series: series, bands: bands, fallbackEndSeconds: fallbackEnd,
                                   xTitle: document.isMeasured ? "wall time (s)" : "virtual time (s)", yCeiling: ceiling).render()
        }
        let requestSpan = requestWindows < windows.count
            ? " Drawn to \(ReportFormat.trimmed(starts[requestWindows - 1] + windowSeconds)) s, past the last request; the backlogs below span the whole run."
            : ""
        func perSecond(_ count: KeyPath<WorldMetrics.Window, Int>) -> [Double] {
            windows.map { Double($0[keyPath: count]) / windowSeconds }
        }
        func share(_ part: KeyPath<WorldMetrics.Window, Int>) -> [Double] {
            windows.map { window in
                let finished = window.answered + window.failed
                return finished > 0 ? Double(window[keyPath: part]) / Double(finished) * 100 : 0
            }
        }
        let palette = HTMLPalette.series
        let window = "window (\(ReportFormat.trimmed(windowSeconds)) s)"

        // Milliseconds read better until the worst window passes two seconds.
        let worstLatency = windows.map(\.latencyMaxSeconds).filter(\.isFinite).max() ?? 0
        let (latencyUnit, latencyScale) = worstLatency < 2 ? ("ms", 1_000.0) : ("s", 1.0)
        // A window in which no request was answered has no latency, not a latency of 0.
        func latency(_ seconds: KeyPath<WorldMetrics.Window, Double>) -> [Double?] {
            windows.map { $0.answered > 0 ? $0[keyPath: seconds] * latencyScale : nil }
        }
        var html = figure("Latency over time", "Per \(window): median, 99th percentile and worst request latency, measured from the intended send time. Shaded: faults. The lines break over windows in which no request was answered." + requestSpan,
                          chart("Latency p50, p99 and max per window", "latency (\(latencyUnit))", [
                              .init(name: "p50", color: palette[0], values: latency(\.latencyP50Seconds), reduction: .maximum),
                              .init(name: "p99", color: palette[1], values: latency(\.latencyP99Seconds), reduction: .maximum),
                              .init(name: "max", color: palette[6], values: latency(\.latencyMaxSeconds), reduction: .maximum, dashed: true),
                          ], windowsShown: requestWindows))
        // Offered dashed and drawn last: where the system keeps up the two lines coincide, and both stay visible.
        html += figure("Throughput: offered vs achieved", "Requests due per second (offered, open loop, dashed) against requests answered per second.",
                       chart("Offered and achieved throughput per window", "requests / s", [
                           .init(name: "achieved (answered)", color: palette[2], values: perSecond(\.answered), reduction: .mean),
                           .init(name: "offered", color: palette[0], values: perSecond(\.offered), reduction: .mean, dashed: true),
                       ], windowsShown: requestWindows))
        html += figure("Outcomes per window", "Requests finishing per second: answered, failed (5xx, timeout or throttled to the end) and, of those, throttled.",
                       chart("Answered, failed and throttled requests per window", "requests / s", [
                           .init(name: "answered", color: palette[2], values: perSecond(\.answered), reduction: .mean),
                           .init(name: "failed", color: palette[1], values: perSecond(\.failed), reduction: .mean),
                           .init(name: "throttled", color: palette[3], values: perSecond(\.throttled), reduction: .mean, dashed: true),
                       ], windowsShown: requestWindows))
        html += figure("Error rate per window", "Failed and throttled requests as a share of the requests that finished in the window (0 where none finished).",
                       chart("Error and throttle rate per window", "share of finished (%)", [
                           .init(name: "failed", color: palette[1], values: share(\.failed), reduction: .maximum),
                           .init(name: "throttled", color: palette[3], values: share(\.throttled), reduction: .maximum, dashed: true),
                       ], ceiling: 100, windowsShown: requestWindows))
        html += figure("Backlogs", "Sampled at each window's end: work queued on the replicas, consumer lag, outbox events not yet acknowledged, dead letters.",
                       chart("Queue depth, consumer lag, outbox backlog and dead letters", "items", [
                           .init(name: "replica queue depth", color: palette[0], values: windows.map { Double($0.replicaQueueDepth) }, reduction: .maximum),
                           .init(name: "consumer lag", color: palette[1], values: windows.map { Double($0.consumerLag) }, reduction: .maximum),
                           .init(name: "outbox backlog", color: palette[2], values: windows.map { Double($0.outboxBacklog) }, reduction: .maximum),
                           .init(name: "dead letters", color: palette[3], values: windows.map { Double($0.deadLetters) }, reduction: .maximum, dashed: true),
                       ]))
        return html
    }

    static func pspChart(_ document: ReportDocument) -> String {
        let palette = HTMLPalette.series
        let chart = BreakdownBarChart(
            title: "PSP outcomes by PSP", xTitle: "PSP calls",
            categories: [
                .init(name: "succeeded", color: palette[2]), .init(name: "declined", color: palette[0]),
                .init(name: "voided", color: palette[4]), .init(name: "not found", color: "#999999"),
                .init(name: "transient", color: palette[5]), .init(name: "rate-limited", color: palette[3]),
                .init(name: "ambiguous", color: palette[1]), .init(name: "unanswered", color: palette[6]),
            ],
            groups: document.psps.map {
                .init(label: $0.id, counts: [$0.succeeded, $0.declined, $0.voided ?? 0, $0.notFound ?? 0, $0.transientErrors, $0.rateLimited, $0.ambiguous, $0.unanswered])
            })
        return figure("PSP outcomes", "What each PSP did with each call that reached it: one outcome a call. Voided: the key voided at the engine's request, before a failover. "
                          + "Not found: a status query for a key the PSP never saw. Ambiguous: money moved, reply lost. Unanswered: dropped during an outage.", chart.render())
    }

    static func fraudChart(_ document: ReportDocument) -> String {
        figure("Fraud screening", "Flags scored against who really was a fraudster.", FraudChart(fraud: document.fraud).render())
    }

    /// How many windows the requests' charts show: through the last window
    /// with a request in it (offered, answered or failed) and the load's
    /// end, plus one; all of them unless that cuts off at least a quarter
    /// of the run.
    static func requestWindowCount(_ document: ReportDocument) -> Int {
        let windows = document.windows
        guard let lastActive = windows.lastIndex(where: { $0.offered + $0.answered + $0.failed > 0 }) else { return windows.count }
        let loadEnd = windows.lastIndex { $0.startSeconds < document.simulation.loadEndSeconds } ?? lastActive
        let count = min(windows.count, max(lastActive, loadEnd) + 2)
        return Double(count) <= 0.75 * Double(windows.count) ? count : windows.count
    }

    /// The metrics window's length: the gap between the first two windows,
    /// or for a single window the rest of the run (1 s if neither exists).
    static func windowLength(_ document: ReportDocument) -> Double {
        let windows = document.windows
        if windows.count >= 2 {
            let gap = windows[1].startSeconds - windows[0].startSeconds
            if gap.isFinite && gap > 0 { return gap }
        } else if let only = windows.first {
            let rest = document.simulation.virtualSeconds - only.startSeconds
            if rest.isFinite && rest > 0 { return rest }
        }
        return 1
    }

    private static func figure(_ title: String, _ caption: String, _ svg: String) -> String {
        "<div class=\"figure\"><h3>\(ReportFormat.escape(title))</h3><p class=\"caption\">\(ReportFormat.escape(caption))</p>\n\(svg)</div>\n"
    }
}
