/// The run report as one HTML page, for an engineer checking whether a claim
/// such as "99.99 % available" holds and for a CI reader who wants the
/// verdict first. It is rendered from the `ReportDocument` alone.
public enum HTMLReport {
    /// Violations drawn in full. `report.json` keeps the first 1,000 of each
    /// kind in full and counts every one per invariant; the page counts them all.
    static let maximumViolations = 100
    /// Trail steps shown per violation, from the start of the trail.
    static let maximumTrailSteps = 1_000

    /// A self-contained HTML page (inline CSS and SVG, no scripts, no external resources).
    ///
    /// Deterministic: the same document gives a byte-identical page. Numbers
    /// are written with fixed rules, dictionaries in key order, and no clock
    /// is read. Every string from the document is escaped.
    /// - Complexity: O(n) in the document's size; the charts draw at most
    ///   `TimeSeriesChart.maximumPoints` points per series whatever the number of windows.
    public static func render(_ document: ReportDocument) -> String {
        var html = head(document)
        html += "<main>\n"
        html += header(document)
        html += section("Thresholds", thresholds(document))
        html += section("Key figures", keyFigures(document))
        html += section("Over time", charts(document))
        html += section("Violations", violations(document))
        html += section("PSPs and reconciliation", pspChart(document) + pspTable(document) + reconciliation(document))
        html += section("Fraud", fraudChart(document))
        html += section("Faults and buggify", faults(document) + buggify(document))
        html += section("Infrastructure", infrastructure(document))
        html += section("Independence", "<p>\(ReportFormat.escape(document.independence))</p>\n")
        html += footer(document)
        html += "</main>\n</body>\n</html>\n"
        return html
    }

    // MARK: Page frame

    private static func head(_ document: ReportDocument) -> String {
        let title = "Paystorm — \(document.scenario.name) — seed \(document.seed) — \(document.verdict.status)"
        // The policy forbids scripts and fetches outright: a page that escaping
        // ever failed on still could not run anything or call home.
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(ReportFormat.escape(title))</title>
            <style>
            \(HTMLPalette.stylesheet)
            </style>
            </head>
            <body>

            """
    }

    private static func header(_ document: ReportDocument) -> String {
        let scenario = document.scenario, verdict = document.verdict
        var html = "<header>\n<h1>\(ReportFormat.escape(scenario.name))</h1>\n"
        if !scenario.description.isEmpty {
            html += "<p class=\"description\">\(ReportFormat.escape(scenario.description))</p>\n"
        }
        let meta: [(String, String)] = [
            ("seed", String(document.seed)), ("scenario hash", scenario.hash), ("file", scenario.file),
            ("paystorm", document.paystormVersion), ("schema", document.schema),
            (document.isMeasured ? "wall time" : "virtual time", ReportFormat.seconds(document.simulation.virtualSeconds)),
            (document.isMeasured ? "requests" : "events", ReportFormat.count(document.simulation.events)),
            ("trace hash", document.simulation.traceHash),
        ]
        html += "<div class=\"meta\">" + meta.map { "<span><b>\(ReportFormat.escape($0.0))</b> <code>\(ReportFormat.escape($0.1))</code></span>" }.joined() + "</div>\n"

        let colour = HTMLPalette.verdict(verdict.status)
        html += "<div class=\"verdict\" style=\"background:\(colour)\">"
        html += "<span class=\"status\">\(ReportFormat.escape(verdict.status))</span><span class=\"exit\">exit code \(verdict.exitCode)</span>"
        html += "<div class=\"summary\">\(ReportFormat.escape(verdict.summary))</div></div>\n"

        var expected = "expected: \(scenario.expectation)"
        if scenario.expectation == "fail", let exit = scenario.expectedExit { expected += " with exit \(exit)" }
        let outcome = verdict.asExpected ? "ended as the scenario expected" : "did NOT end as the scenario expected"
        let expectationColour = verdict.asExpected ? HTMLPalette.pass : HTMLPalette.fail
        html += "<div class=\"expectation\" style=\"color:\(expectationColour);border-color:\(expectationColour)\">"
        html += "\(verdict.asExpected ? "✓" : "✗") \(ReportFormat.escape(outcome)) (\(ReportFormat.escape(expected)))</div>\n"
        return html + "</header>\n"
    }

    private static func footer(_ document: ReportDocument) -> String {
        "<footer>paystorm \(ReportFormat.escape(document.paystormVersion)) · \(ReportFormat.escape(document.schema)) · "
            + "scenario \(ReportFormat.escape(document.scenario.name)) · seed \(document.seed) · hash <code>\(ReportFormat.escape(document.scenario.hash))</code>. "
            + (document.isMeasured ? "Measured against a live server on wall time: another run gives other figures."
                                   : "The same scenario, seed and build give this page byte for byte.") + "</footer>\n"
    }

    // MARK: Sections

    private static func thresholds(_ document: ReportDocument) -> String {
        guard !document.thresholds.isEmpty else { return "<p class=\"muted\">This scenario declares no thresholds.</p>\n" }
        return table(["threshold", "outcome", "observed [interval]", "detail"], document.thresholds.map { verdict in
            [.code(verdict.threshold), .badge(verdict.outcome.rawValue), .text(verdict.observed), .text(verdict.detail)]
        })
    }

    private static func keyFigures(_ document: ReportDocument) -> String {
        let requests = document.requests, payments = document.payments
        let confidence = ReportFormat.percent(requests.confidence)
        var html = "<div class=\"cards\">\n"
        html += card("requests", ReportFormat.count(requests.total), "\(ReportFormat.count(requests.answered)) answered")
        html += card("availability", ReportFormat.percent(requests.availability),
                     "≥ \(ReportFormat.percent(requests.availabilityLowerBound, rounding: .down)) at \(confidence) confidence")
        html += card("offered rate", ReportFormat.rate(requests.offeredPerSecond), "due during the load phase")
        html += card("achieved rate", ReportFormat.rate(requests.achievedPerSecond), "answered during the load phase")
        if let completed = payments.completed {
            html += card("payments completed", ReportFormat.count(completed), "of \(ReportFormat.count(payments.created)) created")
        } else {
            html += card("payments created", ReportFormat.count(payments.created), "completed: not known to the load generator")
        }
        html += card("violations", ReportFormat.count(document.violationTotal),
                     "\(ReportFormat.count(document.safetyViolationTotal)) safety")
        html += "</div>\n"

        html += "<div class=\"columns\">\n<div>\n<h3>Requests</h3>\n"
        html += table(["", "count"], [
            ("total", requests.total), ("answered", requests.answered), ("client errors (4xx)", requests.clientErrors),
            ("server errors (5xx)", requests.serverErrors), ("timed out", requests.timedOut), ("throttled", requests.throttled),
            ("retries", requests.retries), ("unfinished at end", requests.unfinished),
        ].map { [.text($0.0), .count($0.1)] })
        html += "</div>\n<div>\n<h3>Payments</h3>\n"
        html += table(["", "count"], [
            ("started", payments.started), ("created", payments.created), ("completed", payments.completed),
            ("failed", payments.failed), ("not terminal at end", payments.notTerminalAtEnd),
            ("refunds requested", payments.refundsRequested), ("refunds accepted", payments.refundsAccepted),
        ].map { (name: String, value: Int?) in [.text(name), value.map { .count($0) } ?? .text("not known (measured run)")] })
        html += "</div>\n</div>\n<div class=\"columns\">\n<div>\n<h3>Latency (from intended send time)</h3>\n"
        html += quantiles(document.latency, confidence: confidence)
        html += "</div>\n<div>\n<h3>Time to terminal state</h3>\n"
        html += quantiles(document.timeToTerminal, confidence: confidence)
        return html + "</div>\n</div>\n"
    }

    private static func quantiles(_ quantiles: [ReportDocument.Quantile], confidence: String) -> String {
        guard !quantiles.isEmpty else { return "<p class=\"muted\">No samples.</p>\n" }
        return table(["percentile", "estimate", "lower", "upper"], quantiles.map { quantile in
            let upper: Cell = quantile.upperSeconds.map { .number(ReportFormat.duration($0, rounding: .up)) }
                ?? .html("<span class=\"muted\">\(ReportFormat.missing) needs more samples</span>", numeric: true)
            return [.text(ReportFormat.percentile(quantile.percentile)), .number(ReportFormat.duration(quantile.seconds)),
                    .number(ReportFormat.duration(quantile.lowerSeconds, rounding: .down)), upper]
        }) + "<p class=\"muted\">Order-statistic interval at \(ReportFormat.escape(confidence)) confidence.</p>\n"
    }

    private static func violations(_ document: ReportDocument) -> String {
        let total = max(document.violationTotal, document.violations.count)
        if document.isMeasured {
            return "<p class=\"muted\">Not checked here: a load run sees the answers only. <code>paystorm audit</code> checks every invariant on the server's database.</p>\n"
        }
        guard total > 0 else {
            return "<p class=\"clean\">✓ No violations: every safety invariant held and every liveness check passed.</p>\n"
        }
        var html = "<p>\(ReportFormat.count(total)) violation(s). Each names the seed that reproduces it.</p>\n"
        if document.violations.count < total {
            html += "<p class=\"muted\">The first \(ReportFormat.count(document.violations.count)) are kept in full in report.json; "
                + "every one is counted by invariant there (<code>violationCounts</code>).</p>\n"
        }
        for violation in document.violations.prefix(maximumViolations) {
            html += "<div class=\"violation\">\n<b>\(ReportFormat.escape(violation.kind))</b>: <code>\(ReportFormat.escape(violation.invariant))</code>\n<dl>"
            let fields: [(String, String)] = [
                ("subject", violation.subject),
                ("virtual time", ReportFormat.seconds(violation.virtualSeconds)), ("seed", String(violation.seed)), ("detail", violation.detail),
            ]
            html += fields.map { "<dt>\(ReportFormat.escape($0.0))</dt><dd>\(ReportFormat.escape($0.1))</dd>" }.joined()
            html += "</dl>\n<details><summary>trail (\(ReportFormat.count(violation.trail.count)) steps)</summary>\n<ol>\n"
            html += violation.trail.prefix(maximumTrailSteps).map { "<li>\(ReportFormat.escape($0))</li>\n" }.joined()
            html += "</ol>\n"
            if violation.trail.count > maximumTrailSteps {
                html += "<p class=\"muted\">\(ReportFormat.count(violation.trail.count - maximumTrailSteps)) more steps in report.json.</p>\n"
            }
            html += "</details>\n</div>\n"
        }
        if document.violations.count > maximumViolations {
            html += "<p class=\"muted\">\(ReportFormat.count(document.violations.count - maximumViolations)) more violations in report.json.</p>\n"
        }
        return html
    }

    private static func pspTable(_ document: ReportDocument) -> String {
        guard !document.psps.isEmpty else { return "" }
        let headers = ["PSP", "charges", "refunds", "status queries", "cancels", "received", "succeeded", "declined", "voided", "not found",
                       "transient", "rate-limited", "ambiguous", "unanswered", "webhooks sent"]
        func known(_ count: Int?) -> Cell { count.map(Cell.count) ?? .number(ReportFormat.missing) }
        return table(headers, document.psps.map { psp in
            [.code(psp.id)] + [psp.charges, psp.refunds, psp.statusQueries, psp.cancels].map(Cell.count)
                + [known(psp.received), .count(psp.succeeded), .count(psp.declined), known(psp.voided), known(psp.notFound)]
                + [psp.transientErrors, psp.rateLimited, psp.ambiguous, psp.unanswered, psp.webhooksSent].map(Cell.count)
        })
    }

    private static func reconciliation(_ document: ReportDocument) -> String {
        var html = "<h3>Reconciliation</h3>\n"
        guard !document.reconciliation.isEmpty else { return html + "<p class=\"muted\">No reconciliation ran.</p>\n" }
        let kinds = Set(document.reconciliation.flatMap(\.discrepancies.keys)).sorted()
        html += table(["PSP", "matched"] + kinds, document.reconciliation.map { entry in
            [.code(entry.psp), .count(entry.matched)] + kinds.map { .count(entry.discrepancies[$0] ?? 0) }
        })
        if kinds.isEmpty { html += "<p class=\"muted\">No discrepancies.</p>\n" }
        return html
    }

    private static func faults(_ document: ReportDocument) -> String {
        var html = "<h3>Faults</h3>\n"
        if document.faults.isEmpty {
            html += "<p class=\"muted\">No faults were injected.</p>\n"
        } else {
            // Where healing cut a fault short, it says so, and "lasting" is what it really lasted.
            let cut = document.faults.contains { $0.cutAtSeconds != nil }
            html += table(["fault", "from", "to", "lasting"] + (cut ? ["as run"] : []), document.faults.map { fault in
                [.text(fault.label), .number(ReportFormat.seconds(fault.atSeconds)), .number(ReportFormat.seconds(fault.endSeconds)),
                 .number(ReportFormat.seconds(max(0, fault.actedUntilSeconds - fault.atSeconds)))]
                    + (cut ? [.text(fault.cutNote ?? "as scheduled")] : [])
            })
        }
        return html
    }

    private static func buggify(_ document: ReportDocument) -> String {
        let enabled = Set(document.buggify.enabled)
        let sites = enabled.union(document.buggify.fired.keys).sorted()
        let heading = "<h3>Buggify sites</h3>\n"
        guard !sites.isEmpty else { return heading + "<p class=\"muted\">Buggify was off: no site enabled or fired.</p>\n" }
        return heading + table(["site", "enabled", "fired"], sites.map { site in
            [.code(site), .text(enabled.contains(site) ? "yes" : "no"), .count(document.buggify.fired[site] ?? 0)]
        })
    }

    private static func infrastructure(_ document: ReportDocument) -> String {
        let i = document.infrastructure
        let groups: [(String, [(String, Int)])] = [
            ("Gateway and replicas", [("unauthorized", i.gatewayUnauthorized), ("throttled", i.gatewayThrottled),
                                      ("unavailable", i.gatewayUnavailable), ("queue overflows", i.queueOverflows),
                                      ("lost in crashes", i.lostInCrashes), ("crashes", i.crashes), ("restarts", i.restarts)]),
            ("Broker and consumers", [("produced", i.brokerProduced), ("consumer redeliveries", i.consumerRedeliveries),
                                      ("rebalances", i.rebalances), ("dead letters", i.brokerDeadLetters)]),
            ("Webhooks and notifications", [("webhooks applied", i.webhooksApplied), ("webhooks rejected", i.webhooksRejected)]
                + (i.webhooksDropped.map { [("webhooks dropped (accept queue full)", $0)] } ?? []) + [
                                            ("notifications delivered", i.notificationsDelivered), ("notifications failed", i.notificationsFailed)]),
            ("Network", [("sent", i.networkSent), ("lost", i.networkLost), ("duplicated", i.networkDuplicated),
                         ("partitioned", i.networkPartitioned)]),
        ]
        var html = "<div class=\"columns\">\n"
        for (title, counters) in groups {
            html += "<div>\n<h3>\(ReportFormat.escape(title))</h3>\n" + table(["", "count"], counters.map { [.text($0.0), .count($0.1)] }) + "</div>\n"
        }
        return html + "</div>\n"
    }

    // MARK: Building blocks

    /// One table cell, already escaped.
    struct Cell {
        var html: String
        var numeric = false

        static func text(_ text: String) -> Cell { Cell(html: ReportFormat.escape(text)) }
        static func code(_ text: String) -> Cell { Cell(html: "<code>\(ReportFormat.escape(text))</code>") }
        static func number(_ text: String) -> Cell { Cell(html: ReportFormat.escape(text), numeric: true) }
        static func count(_ value: Int) -> Cell { number(ReportFormat.count(value)) }
        static func html(_ html: String, numeric: Bool) -> Cell { Cell(html: html, numeric: numeric) }
        static func badge(_ outcome: String) -> Cell {
            Cell(html: "<span class=\"badge\" style=\"background:\(HTMLPalette.verdict(outcome))\">\(ReportFormat.escape(outcome))</span>")
        }
    }

    /// A table whose header cells right-align over numeric columns.
    static func table(_ headers: [String], _ rows: [[Cell]]) -> String {
        let numeric = headers.indices.map { column in !rows.isEmpty && rows.allSatisfy { column < $0.count && $0[column].numeric } }
        var html = "<table>\n<thead><tr>"
        for (column, header) in headers.enumerated() {
            html += numeric[column] ? "<th class=\"num\">" : "<th>"
            html += ReportFormat.escape(header) + "</th>"
        }
        html += "</tr></thead>\n<tbody>\n"
        for row in rows {
            html += "<tr>" + row.map { "<td\($0.numeric ? " class=\"num\"" : "")>\($0.html)</td>" }.joined() + "</tr>\n"
        }
        return html + "</tbody>\n</table>\n"
    }

    private static func card(_ label: String, _ value: String, _ sub: String) -> String {
        "<div class=\"card\"><div class=\"label\">\(ReportFormat.escape(label))</div><div class=\"value\">\(ReportFormat.escape(value))</div>"
            + "<div class=\"sub\">\(ReportFormat.escape(sub))</div></div>\n"
    }

    private static func section(_ title: String, _ body: String) -> String {
        "<section>\n<h2>\(ReportFormat.escape(title))</h2>\n\(body)</section>\n"
    }
}
