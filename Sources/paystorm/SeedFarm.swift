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
        // A child that dies writes no report: the one a previous run left must not stand in for it.
        for seed in seeds where FileManager.default.fileExists(atPath: reportPath(seed)) {
            do {
                try FileManager.default.removeItem(atPath: reportPath(seed))
            } catch {
                FileHandle.standardError.write(Data("error: cannot remove the previous run's \(reportPath(seed)): \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
        }
        let outcomes = try ChildProcesses.run(try ChildProcesses.currentExecutable(),
                                              seeds.map { (seed: UInt64) -> [String] in ["run", file, "--seed", String(seed)] + shared },
                                              jobs: jobs) { finished in progress.update(Double(finished) / Double(seeds.count)) }
        progress.finish()

        var documents: [ReportDocument] = []
        var verdicts: [ExitStatus] = []
        var failures: [SeedFailure] = []
        for (seed, outcome) in zip(seeds, outcomes) {
            do {
                let (document, status) = try verdict(seed: seed, outcome: outcome)
                documents.append(document)
                verdicts.append(status)
            } catch {
                failures.append(error)
            }
        }
        guard failures.isEmpty else {
            for failure in failures { FileHandle.standardError.write(Data("error: \(failure.message)\n".utf8)) }
            FileHandle.standardError.write(Data("error: \(failures.count) of \(seeds.count) seed(s) ended without a verdict; nothing was merged\n".utf8))
            throw ExitCode(1)
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

    /// Why one seed has no verdict, naming the seed.
    struct SeedFailure: Error {
        var message: String
    }

    func reportPath(_ seed: UInt64) -> String {
        (out as NSString).appendingPathComponent("\(scenario.name)-\(seed)/report.json")
    }

    /// The verdict seed `seed`'s run reached: its child exited with a verdict's
    /// code and wrote a report of this scenario and seed that says the same.
    func verdict(seed: UInt64, outcome: ChildOutcome) throws(SeedFailure) -> (ReportDocument, ExitStatus) {
        guard case .exited(let code) = outcome.termination, let status = ExitStatus(rawValue: code), status.isVerdict else {
            throw SeedFailure(message: "seed \(seed): the run \(outcome.explanation)")
        }
        let path = reportPath(seed)
        guard let data = FileManager.default.contents(atPath: path), let document = try? ReportWriter.decode(data) else {
            throw SeedFailure(message: "seed \(seed): the run exited \(code) but wrote no readable report at \(path)")
        }
        guard document.seed == seed && document.scenario.hash == scenario.hash else {
            throw SeedFailure(message: "seed \(seed): \(path) is from seed \(document.seed) of scenario hash \(document.scenario.hash), not from this run (hash \(scenario.hash))")
        }
        guard document.verdict.exitCode == code else {
            throw SeedFailure(message: "seed \(seed): the run exited \(code) but \(path) says exit \(document.verdict.exitCode)")
        }
        return (document, status)
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
