import ArgumentParser
import Foundation
import PaystormScenario

/// Runs one scenario over a range of seeds, one child process per seed,
/// `jobs` at a time, then merges the per-seed reports: each seed is one
/// independent unit, merged as `FarmSummary` says.
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
        try merged.write(to: directory)
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
