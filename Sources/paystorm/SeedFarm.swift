import ArgumentParser
import Foundation
import PaystormScenario
import PaystormStatistics

/// Runs one scenario over a range of seeds, one child process per seed,
/// `jobs` at a time, then merges the per-seed reports: each seed is one
/// independent unit, combined with t-intervals.
struct SeedFarm {
    var scenario: Scenario
    var file: String
    var seeds: ClosedRange<UInt64>
    var jobs: Int
    var out: String
    var scratch: String?
    var quiet: Bool

    func run(checkExpectation: Bool) throws {
        let progress = ProgressBar(label: "\(scenario.name) seeds \(seeds.lowerBound)-\(seeds.upperBound)", quiet: quiet)
        let shared: [String] = ["--out", out, "--quiet"] + (scratch.map { ["--scratch", $0] } ?? [])
        let outcomes = try ChildProcesses.run(try ChildProcesses.currentExecutable(),
                                              seeds.map { (seed: UInt64) -> [String] in ["run", file, "--seed", String(seed)] + shared },
                                              jobs: jobs) { finished in progress.update(Double(finished) / Double(seeds.count)) }
        progress.finish()

        var documents: [ReportDocument] = []
        var verdicts: [ExitStatus] = []
        for (seed, outcome) in zip(seeds, outcomes) {
            let path = (out as NSString).appendingPathComponent("\(scenario.name)-\(seed)/report.json")
            guard case .exited(let code) = outcome.termination else {
                FileHandle.standardError.write(Data("error: seed \(seed): \(outcome.explanation)\n".utf8))
                throw ExitCode(1)
            }
            guard let data = FileManager.default.contents(atPath: path), let document = try? ReportWriter.decode(data) else {
                FileHandle.standardError.write(Data("error: seed \(seed) wrote no report (exit \(code))\n".utf8))
                throw ExitCode(code == 0 ? 1 : code)
            }
            guard let status = ExitStatus(rawValue: document.verdict.exitCode) else {
                FileHandle.standardError.write(Data("error: seed \(seed): \(path) has exit code \(document.verdict.exitCode), which is no verdict\n".utf8))
                throw ExitCode(1)
            }
            documents.append(document)
            verdicts.append(status)
        }
        let merged = try FarmSummary(scenario: scenario, documents: documents)
        let directory = (out as NSString).appendingPathComponent("\(scenario.name)-seeds-\(seeds.lowerBound)-\(seeds.upperBound)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(merged.markdown.utf8).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("summary.md")))
        print(merged.headline)
        if !quiet { print(merged.markdown) }
        let judged = checkExpectation ? zip(verdicts, documents).map { $0.checked(asExpected: $1.verdict.asExpected) } : verdicts
        for (seed, code) in zip(seeds, judged) where code == .passedUnexpectedly {
            FileHandle.standardError.write(Data("error: seed \(seed) passed, but \(file) documents exit \(scenario.expectedExit ?? 0) (expect: fail)\n".utf8))
        }
        let worst = ExitStatus.worst(judged)
        if worst != .passed { throw ExitCode(worst.rawValue) }
    }
}

/// Per-seed results merged: each seed is one independent unit.
struct FarmSummary {
    var headline: String
    var markdown: String

    init(scenario: Scenario, documents: [ReportDocument]) throws {
        let count = documents.count
        let statuses = Dictionary(grouping: documents, by: \.verdict.status).mapValues(\.count)
        headline = "\(scenario.name): \(count) seeds — " + statuses.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        var lines = ["# \(scenario.name): seeds \(documents.first!.seed)–\(documents.last!.seed)", "", headline + ".", ""]
        lines.append("| seed | verdict | exit | availability | p99 latency | violations |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for d in documents {
            let p99 = d.latency.first { abs($0.percentile - 99) < 1e-9 }?.seconds
            lines.append("| \(d.seed) | \(d.verdict.status) | \(d.verdict.exitCode) | \(Threshold.percent(d.requests.availability)) | \(p99.map { String(format: "%.1f ms", $0 * 1_000) } ?? "—") | \(d.violations.count) |")
        }
        lines.append("")
        if count >= 2 {
            lines.append("Across seeds (each seed one unit; mean ± t·s/√m at 95%):")
            lines.append("")
            func interval(_ name: String, _ values: [Double], _ format: (Double) -> String) throws {
                let summary = try Summary(values)
                let (low, high) = try summary.confidenceInterval(0.95)
                lines.append("- \(name): \(format(summary.mean)) [\(format(low)), \(format(high))]")
            }
            try interval("availability", documents.map(\.requests.availability)) { Threshold.percent($0) }
            let p99s = documents.compactMap { $0.latency.first { abs($0.percentile - 99) < 1e-9 }?.seconds }
            if p99s.count == count { try interval("p99 latency", p99s) { String(format: "%.1f ms", $0 * 1_000) } }
            let ttt = documents.compactMap { $0.timeToTerminal.first { abs($0.percentile - 99) < 1e-9 }?.seconds }
            if ttt.count == count { try interval("p99 time to terminal", ttt) { String(format: "%.3f s", $0) } }
            lines.append("")
        }
        let failing = documents.filter { !$0.violations.isEmpty }
        for d in failing.prefix(10) {
            for v in d.violations.prefix(3) {
                lines.append("- seed \(d.seed): [\(v.invariant)] \(v.subject) at t=\(String(format: "%.3f", v.virtualSeconds)) s: \(v.detail) — replay with `paystorm run \(d.scenario.file) --seed \(d.seed)`")
            }
        }
        markdown = lines.joined(separator: "\n") + "\n"
    }
}
