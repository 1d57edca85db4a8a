import Foundation
import PaystormWorld

/// Writes a run's reports into `Reports/<scenario>-<seed>/`: report.json,
/// report.md, report.html, timeseries.csv and junit.xml. The set replaces the
/// previous one as a whole (``ReportFileSet``): a failure while writing leaves the old set.
public enum ReportWriter {
    public static let files = ["report.json", "report.md", "report.html", "timeseries.csv", "junit.xml"]

    /// - Returns: the directory written.
    @discardableResult
    public static func write(_ document: ReportDocument, to directory: String) throws -> String {
        try ReportFileSet.replace([
            ("report.json", json(document)),
            ("report.md", markdown(document)),
            ("report.html", HTMLReport.render(document)),
            ("timeseries.csv", csv(document)),
            ("junit.xml", junit(document)),
        ], in: directory)
        return directory
    }

    // MARK: - JSON

    public static func json(_ document: ReportDocument) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        // Encoding plain structs of numbers and strings cannot fail.
        return String(decoding: try! encoder.encode(document), as: UTF8.self) + "\n"
    }

    public static func decode(_ data: Data) throws -> ReportDocument {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let document = try decoder.decode(ReportDocument.self, from: data)
        guard document.schema == ReportDocument.schema else {
            throw ReportReadError(message: "report schema \"\(document.schema)\" is not \(ReportDocument.schema)")
        }
        return document
    }

    // MARK: - Markdown

    static func seconds(_ value: Double?) -> String { ReportFormat.duration(value) }
    static func percent(_ value: Double?) -> String { ReportFormat.percent(value) }

    public static func markdown(_ d: ReportDocument) -> String {
        var lines: [String] = []
        lines.append("# \(d.scenario.name) — seed \(d.seed): \(d.verdict.status) (exit \(d.verdict.exitCode))")
        lines.append("")
        if !d.scenario.description.isEmpty { lines.append(d.scenario.description); lines.append("") }
        lines.append("\(d.verdict.summary).")
        lines.append("")
        if d.isMeasured {
            lines.append("Measured against `\(d.scenario.file)`, Paystorm \(d.paystormVersion): a run against a live server cannot be replayed; `paystorm load` with seed \(d.seed) offers the same schedule again.")
        } else {
            lines.append("Scenario `\(d.scenario.file)` (hash `\(d.scenario.hash)`), Paystorm \(d.paystormVersion), trace `\(d.simulation.traceHash)`. Replay: `paystorm replay <this report.json>` (it reads `Scenarios/\(d.scenario.file)`; for the file elsewhere, add `--scenario PATH`).")
        }
        lines.append("")
        if !d.thresholds.isEmpty {
            lines.append("## Thresholds")
            lines.append("")
            lines.append("| threshold | outcome | observed | why |")
            lines.append("| --- | --- | --- | --- |")
            for t in d.thresholds { lines.append("| `\(t.threshold)` | \(t.outcome.rawValue) | \(t.observed) | \(t.detail) |") }
            lines.append("")
        }
        lines.append("## Requests")
        lines.append("")
        let r = d.requests
        lines.append("\(r.total) requests: \(r.answered) answered (\(r.clientErrors) client errors), \(r.serverErrors) server errors, \(r.timedOut) timed out, \(r.throttled) throttled, \(r.unfinished) unfinished; \(r.retries) retries.")
        lines.append("Offered \(String(format: "%.1f", r.offeredPerSecond))/s, achieved \(String(format: "%.1f", r.achievedPerSecond))/s. Availability \(percent(r.availability)), at least \(ReportFormat.percent(r.availabilityLowerBound, rounding: .down)) at \(percent(r.confidence)) confidence.")
        lines.append("")
        lines.append("| percentile | latency | interval | time to terminal | interval |")
        lines.append("| --- | --- | --- | --- | --- |")
        // One row per percentile either list has: a run with no answered
        // request still has its payments' times to terminal, and the reverse.
        for percentile in Set((d.latency + d.timeToTerminal).map(\.percentile)).sorted() {
            let q = d.latency.first { $0.percentile == percentile }, t = d.timeToTerminal.first { $0.percentile == percentile }
            lines.append("| p\(String(format: "%g", percentile)) | \(seconds(q?.seconds)) | \(ReportFormat.interval(q?.lowerSeconds, q?.upperSeconds)) | \(seconds(t?.seconds)) | \(ReportFormat.interval(t?.lowerSeconds, t?.upperSeconds)) |")
        }
        lines.append("")
        lines.append("## Payments and PSPs")
        lines.append("")
        let p = d.payments
        if let completed = p.completed, let failed = p.failed, let notTerminal = p.notTerminalAtEnd {
            lines.append("\(p.started) started, \(p.created) created, \(completed) completed, \(failed) failed, \(notTerminal) not terminal after healing; \(p.refundsRequested) refunds requested, \(p.refundsAccepted) accepted.")
        } else {
            lines.append("\(p.started) started, \(p.created) created; how many completed or failed is not known to the load generator, which sees answers only (`paystorm audit` checks the server's database); \(p.refundsRequested) refunds requested, \(p.refundsAccepted) accepted.")
        }
        lines.append("")
        if !d.psps.isEmpty {
            lines.append("Calls as the engine sent them; received: as they reached the PSP (network losses out, duplicates in). Each received call has one outcome: succeeded (answered), declined, voided, not found (a status query for a key the PSP never saw), transient, rate-limited, ambiguous (money moved, reply lost) or unanswered (dropped in an outage).")
            lines.append("")
        }
        lines.append("| PSP | charges | refunds | status queries | voids | received | succeeded | declined | voided | not found | transient | rate-limited | ambiguous | unanswered | webhooks |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        func known(_ count: Int?) -> String { count.map(String.init) ?? ReportFormat.missing }
        for s in d.psps {
            lines.append("| \(s.id) | \(s.charges) | \(s.refunds) | \(s.statusQueries) | \(s.cancels) | \(known(s.received)) | \(s.succeeded) | \(s.declined) | \(known(s.voided)) | \(known(s.notFound)) | \(s.transientErrors) | \(s.rateLimited) | \(s.ambiguous) | \(s.unanswered) | \(s.webhooksSent) |")
        }
        lines.append("")
        let f = d.fraud
        lines.append("Fraud screening: precision \(ReportFormat.share(f.precision)), recall \(ReportFormat.share(f.recall)) (TP \(f.truePositives), FP \(f.falsePositives), FN \(f.falseNegatives), TN \(f.trueNegatives)).")
        lines.append("")
        for entry in d.reconciliation {
            let kinds = entry.discrepancies.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            lines.append("Reconciliation \(entry.psp): \(entry.matched) matched; \(kinds.isEmpty ? "no discrepancies" : kinds).")
        }
        lines.append("")
        lines.append("## Faults")
        lines.append("")
        if d.faults.isEmpty { lines.append("None scheduled.") }
        for fault in d.faults {
            let asRun = fault.cutNote.map { " (\($0))" } ?? ""
            lines.append("- \(fault.label): \(String(format: "%.1f", fault.atSeconds)) s – \(String(format: "%.1f", fault.endSeconds)) s\(asRun)")
        }
        if !d.buggify.enabled.isEmpty {
            let fired = d.buggify.fired.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            lines.append("- BUGGIFY sites enabled: \(d.buggify.enabled.joined(separator: ", ")); fired: \(fired.isEmpty ? "none" : fired)")
        }
        lines.append("")
        lines.append("## Invariants")
        lines.append("")
        if d.isMeasured {
            lines.append("Not checked here: a load run sees the answers only. `paystorm audit` checks every invariant on the server's database.")
        } else if d.violationTotal == 0 && d.violations.isEmpty {
            lines.append("No violations: every safety invariant held throughout, and every liveness check passed after healing.")
        } else {
            lines.append("\(d.safetyViolationTotal) safety violation(s), \(d.livenessViolationTotal) liveness.")
            if d.violations.count < d.violationTotal {
                lines.append("The first \(d.violations.count) are kept in full in report.json, every one counted by invariant (`violationCounts`).")
            }
            lines.append("")
            for v in d.violations.prefix(50) {
                lines.append("- **\(v.invariant)** (\(v.kind)) \(v.subject) at t=\(String(format: "%.3f", v.virtualSeconds)) s, seed \(v.seed): \(v.detail)")
                for step in v.trail { lines.append("  - \(step)") }
            }
        }
        lines.append("")
        let i = d.infrastructure
        lines.append("## Infrastructure")
        lines.append("")
        lines.append("Webhooks applied \(i.webhooksApplied), rejected \(i.webhooksRejected)" + (i.webhooksDropped.map { ", dropped by a full accept queue \($0)" } ?? "") + ". Broker: \(i.brokerProduced) produced, \(i.consumerRedeliveries) redelivered, \(i.rebalances) rebalances, \(i.brokerDeadLetters) dead letters. Notifications delivered \(i.notificationsDelivered), failed \(i.notificationsFailed). Network: \(i.networkSent) sent, \(i.networkLost) lost, \(i.networkDuplicated) duplicated, \(i.networkPartitioned) partitioned. Queue overflows \(i.queueOverflows), lost in crashes \(i.lostInCrashes); \(i.crashes) crashes, \(i.restarts) restarts. Gateway: \(i.gatewayUnauthorized) unauthorized, \(i.gatewayThrottled) throttled, \(i.gatewayUnavailable) unavailable.")
        lines.append("")
        lines.append("## Method")
        lines.append("")
        let (time, counted) = d.isMeasured ? ("wall time", "requests") : ("virtual time", "events")
        lines.append("\(String(format: "%.1f", d.simulation.virtualSeconds)) s of \(time) (load \(String(format: "%.1f", d.simulation.loadEndSeconds)) s), \(d.simulation.events) \(counted). \(d.independence)")
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - CSV

    public static let csvHeader = "start_s,offered,answered,failed,throttled,latency_p50_s,latency_p99_s,latency_max_s,terminal,replica_queue_depth,consumer_lag,outbox_backlog,dead_letters,psp_calls"

    /// One row per window. A window in which no request was answered has no
    /// latency: its three latency cells are empty, not 0.
    public static func csv(_ d: ReportDocument) -> String {
        var lines = [csvHeader]
        for w in d.windows {
            let latency = w.answered > 0 ? [w.latencyP50Seconds, w.latencyP99Seconds, w.latencyMaxSeconds].map { String(format: "%.6f", $0) } : ["", "", ""]
            lines.append(([String(format: "%.3f", w.startSeconds), "\(w.offered)", "\(w.answered)", "\(w.failed)", "\(w.throttled)"] + latency
                          + ["\(w.terminal)", "\(w.replicaQueueDepth)", "\(w.consumerLag)", "\(w.outboxBacklog)", "\(w.deadLetters)", "\(w.pspCalls)"])
                .joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - JUnit

    static func xml(_ text: String) -> String { ReportFormat.escape(text) }

    /// One test case per threshold and per invariant; an inconclusive
    /// threshold is `skipped`. An invariant's case fails when any violation
    /// of it was found, whether or not `violations` kept it in full.
    public static func junit(_ d: ReportDocument) -> String {
        let suite = xml("\(d.scenario.name)-\(d.seed)")
        var cases: [String] = []
        var failures = 0, skipped = 0
        for t in d.thresholds {
            let name = xml("threshold \(t.threshold)")
            switch t.outcome {
            case .passed:
                cases.append("    <testcase classname=\"\(suite).thresholds\" name=\"\(name)\"/>")
            case .failed:
                failures += 1
                cases.append("    <testcase classname=\"\(suite).thresholds\" name=\"\(name)\">\n      <failure message=\"\(xml(t.observed))\">\(xml(t.detail))</failure>\n    </testcase>")
            case .inconclusive:
                skipped += 1
                cases.append("    <testcase classname=\"\(suite).thresholds\" name=\"\(name)\">\n      <skipped message=\"\(xml(t.detail))\"/>\n    </testcase>")
            }
        }
        // Every violation found counts, not only the ones kept in full: an
        // invariant whose violations were all crowded out still fails.
        let counts = d.violationCounts()
        let known = Set(invariantNames.flatMap { [$0.name] + $0.aliases })
        let others = Set(counts.keys).union(d.violations.map(\.invariant)).subtracting(known).sorted().map { (name: $0, aliases: [String]()) }
        // A measured run checked no invariant: it has no test case to pass.
        for invariant in d.isMeasured ? [] : invariantNames + others {
            let names = Set([invariant.name] + invariant.aliases)
            let kept = d.violations.filter { names.contains($0.invariant) }
            let total = max(kept.count, names.reduce(0) { $0 + (counts[$1] ?? 0) })
            let name = xml("invariant \(invariant.name)")
            guard total > 0 else {
                cases.append("    <testcase classname=\"\(suite).invariants\" name=\"\(name)\"/>")
                continue
            }
            failures += 1
            let message = kept.count < total ? "\(total) violation(s), \(kept.count) of them kept in report.json" : "\(total) violation(s)"
            let body = kept.prefix(20).map { "\($0.subject) at t=\(String(format: "%.3f", $0.virtualSeconds)) s: \($0.detail)" }.joined(separator: "\n")
            cases.append("    <testcase classname=\"\(suite).invariants\" name=\"\(name)\">\n      <failure message=\"\(xml(message))\">\(xml(body))</failure>\n    </testcase>")
        }
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <testsuites name="paystorm" tests="\(cases.count)" failures="\(failures)" skipped="\(skipped)">
              <testsuite name="\(suite)" tests="\(cases.count)" failures="\(failures)" skipped="\(skipped)">
            \(cases.joined(separator: "\n"))
              </testsuite>
            </testsuites>

            """
    }

    /// The invariants a run checks, each with the checker's names for it,
    /// from the world's one table of checks: a check added there gets its
    /// test case here.
    static let invariantNames: [(name: String, aliases: [String])] = Invariant.Group.allCases.map { group in
        (group.rawValue, group.members.map(\.rawValue).filter { $0 != group.rawValue })
    }
}

public struct ReportReadError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
