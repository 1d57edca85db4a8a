import ArgumentParser
import Foundation
import PaystormScenario
import PaystormStatistics

/// Loads a scenario or exits 64 with the file, line and column of the problem.
func loadScenario(_ path: String) throws -> Scenario {
    do {
        return try Scenario.load(path: path)
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(ExitStatus.badInput.rawValue)
    }
}

/// Refuses, before anything runs, an `--out` that is a file or cannot be
/// made, and a `--scratch` that is not a writable directory (exit 64): found
/// after a run, either would cost the run.
func checkDirectories(out: String?, scratch: String?) throws {
    func refuse(_ message: String) throws -> Never {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        throw ExitCode(ExitStatus.badInput.rawValue)
    }
    var isDirectory: ObjCBool = false
    if let out {
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) {
            if !isDirectory.boolValue { try refuse("--out \(out): is a file, not a directory for the reports") }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            } catch {
                try refuse("--out \(out): cannot create the directory for the reports: \(reason(of: error))")
            }
        }
    }
    if let scratch {
        guard FileManager.default.fileExists(atPath: scratch, isDirectory: &isDirectory) else {
            try refuse("--scratch \(scratch): no such directory (the scratch database goes there; create it first)")
        }
        guard isDirectory.boolValue else { try refuse("--scratch \(scratch): is a file, not a directory") }
        guard FileManager.default.isWritableFile(atPath: scratch) else { try refuse("--scratch \(scratch): the directory is not writable") }
    }
}

/// What went wrong with a file operation, in words (not Foundation's error domain and number).
func reason(of error: Error) -> String {
    let error = error as NSError
    if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code))).lowercased()
    }
    if error.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(error.code))).lowercased() }
    switch error.code {
    case NSFileWriteNoPermissionError, NSFileReadNoPermissionError: return "permission denied"
    case NSFileWriteFileExistsError: return "a file is in the way"
    case NSFileNoSuchFileError, NSFileReadNoSuchFileError: return "no such file or directory"
    default: return error.localizedDescription
    }
}

/// A seed range `A-B` (or a single seed).
struct SeedRange: ExpressibleByArgument {
    var seeds: ClosedRange<UInt64>

    init?(argument: String) {
        let parts = argument.split(separator: "-", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let first = UInt64(parts[0]), let last = UInt64(parts.last!), first <= last,
              last - first < 1_000_000 else { return nil }
        seeds = first...last
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// A one-line progress bar on a terminal (never in CI or when piped).
final class ProgressBar {
    let enabled: Bool
    let label: String
    let clock = ContinuousClock()
    let start: ContinuousClock.Instant
    private var lastDrawn: ContinuousClock.Instant

    init(label: String, quiet: Bool) {
        enabled = !quiet && isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["CI"] == nil
        self.label = label
        start = clock.now
        lastDrawn = clock.now
    }

    func update(_ fraction: Double) {
        guard enabled else { return }
        let now = clock.now
        guard now - lastDrawn > .milliseconds(200) || fraction >= 1 else { return }
        lastDrawn = now
        let elapsed = Double((now - start).components.seconds) + Double((now - start).components.attoseconds) / 1e18
        let eta = fraction > 0.01 ? elapsed / fraction * (1 - fraction) : 0
        let width = 30
        let filled = Int(Double(width) * min(1, fraction))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(Int(fraction * 100))% payments started, \(Int(elapsed)) s, ETA \(Int(eta)) s   ".utf8))
    }

    /// Replaces the bar with a line saying what the run does now.
    func note(_ text: String) {
        guard enabled else { return }
        let elapsed = Double((clock.now - start).components.seconds)
        FileHandle.standardError.write(Data("\r\u{1B}[K\(label): \(text), \(Int(elapsed)) s so far".utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

extension Paystorm {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a scenario file and write its reports.",
            discussion: """
                Writes report.json, report.md, report.html, timeseries.csv and junit.xml to \
                <out>/<scenario>-<seed>/. Exit codes: 0 passed, 2 a threshold failed, 3 a safety \
                invariant was violated, 4 a liveness check failed after healing, 5 inconclusive (not \
                enough samples for the confidence asked), 64 bad input. With --check-expectation: 0 when \
                the run ends the way the scenario documents (expect: pass or fail), its own code when it \
                fails otherwise, 6 when it passes but the scenario documents a failure. With --seeds A-B \
                the seeds run in parallel processes (--jobs) and the exit code is the worst of them: 3, \
                then 4, 2, 6, 5; it is 1, with nothing merged, when a seed's run ended without a verdict \
                (killed by a signal, or an error), and the message names the seed and what its run said.
                """)

        @Argument(help: "The scenario file (YAML).") var file: String
        @Option(help: "Seed (default: the scenario's).") var seed: UInt64?
        @Option(help: "A seed farm: every seed from A to B.") var seeds: SeedRange?
        @Option(help: "Parallel processes for a seed farm (default: every core).") var jobs: Int?
        @Option(help: "Directory for reports.") var out: String = "Reports"
        @Option(help: "Directory for the scratch database (default: the system's temporary directory).") var scratch: String?
        @Flag(help: "Exit 0 when the run ends the way the scenario documents (expect: pass or fail); 6 when it passes but should have failed.") var checkExpectation = false
        @Flag(help: "No progress bar and only the verdict line.") var quiet = false

        func validate() throws {
            if seed != nil && seeds != nil { throw ValidationError("give either --seed or --seeds, not both") }
            if let jobs, !(1...256).contains(jobs) { throw ValidationError("--jobs must be in 1...256, got \(jobs)") }
        }

        func run() throws {
            let scenario = try loadScenario(file)
            try checkDirectories(out: out, scratch: scratch)
            if let seeds {
                try SeedFarm(scenario: scenario, file: file, seeds: seeds.seeds, jobs: jobs ?? ProcessInfo.processInfo.activeProcessorCount,
                             out: out, scratch: scratch, quiet: quiet).run(checkExpectation: checkExpectation)
                return
            }
            let progress = ProgressBar(label: scenario.name, quiet: quiet)
            let result = try ScenarioRun.run(scenario, seed: seed, scratchDirectory: ScratchCleanup.registered(scratch ?? NSTemporaryDirectory()),
                                              progress: progress.update)
            progress.finish()
            let directory = (out as NSString).appendingPathComponent(result.directoryName)
            let document = result.document
            try ReportWriter.write(document, to: directory)
            print("\(scenario.name) seed \(result.report.seed): \(document.verdict.status) (exit \(document.verdict.exitCode)) — \(document.verdict.summary)")
            if !quiet {
                for verdict in result.verdicts {
                    print("  \(verdict.outcome.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(verdict.threshold)  observed \(verdict.observed)  (\(verdict.detail))")
                }
                for violation in document.violations.prefix(10) {
                    print("  violation [\(violation.invariant)] \(violation.subject) at t=\(String(format: "%.3f", violation.virtualSeconds)) s: \(violation.detail)")
                }
                print("  reports: \(directory)/report.html (and report.json, report.md, timeseries.csv, junit.xml)")
            }
            let code = checkExpectation ? result.status.checked(asExpected: result.asExpected) : result.status
            if code == .passedUnexpectedly {
                FileHandle.standardError.write(Data("error: \(file) documents exit \(scenario.expectedExit ?? 0) (expect: fail), but the run passed\n".utf8))
            }
            if code != .passed { throw ExitCode(code.rawValue) }
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a scenario file without running it.",
            discussion: "Exit 0 when valid; 64 with the file, line, column and what was expected otherwise.")

        @Argument(help: "Scenario files (YAML).") var files: [String]

        func run() throws {
            var bad = false
            for file in files {
                do {
                    let scenario = try Scenario.load(path: file)
                    print("\(file): valid — \(scenario.name), \(scenario.world.payments) payments, \(scenario.world.faults.count) fault(s), \(scenario.thresholds.count) threshold(s), hash \(scenario.hash)")
                } catch {
                    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                    bad = true
                }
            }
            if bad { throw ExitCode(ExitStatus.badInput.rawValue) }
        }
    }

    struct Claim: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "How many requests an availability claim needs, or what a run proves.",
            discussion: """
                With --availability and --confidence: the requests needed to claim it when at most \
                --failures of them fail. Add --requests to get what a run of that many requests \
                with --failures failures proves (the Clopper–Pearson lower bound).
                """)

        @Option(help: "Claimed availability in percent, e.g. 99.99.") var availability: Double
        @Option(help: "Confidence in percent, e.g. 95.") var confidence: Double = 95
        @Option(help: "Failures allowed or observed.") var failures: Int = 0
        @Option(help: "Requests in a run (to judge what it proves).") var requests: Int?

        func validate() throws {
            guard availability > 0 && availability < 100 else { throw ValidationError("--availability must be a percentage in (0, 100), got \(availability)") }
            guard confidence > 0 && confidence < 100 else { throw ValidationError("--confidence must be a percentage in (0, 100), got \(confidence)") }
            guard failures >= 0 else { throw ValidationError("--failures must be >= 0, got \(failures)") }
            if let requests, requests <= failures { throw ValidationError("--requests must exceed --failures") }
        }

        func run() throws {
            let target = availability / 100, level = confidence / 100
            let needed = try Availability.requiredRequests(target: target, confidence: level, failures: failures)
            print("To claim \(availability)% availability at \(confidence)% confidence with \(failures) failure(s): \(needed) requests.")
            if let requests {
                let bound = try Availability.lowerBound(failures: failures, requests: requests, confidence: level)
                let verdict = bound >= target ? "proves" : "does not prove"
                print("A run of \(requests) requests with \(failures) failure(s) shows availability ≥ \(Threshold.percent(bound, rounding: .down)) at \(confidence)% confidence: it \(verdict) \(availability)%\(bound >= target ? "" : " (\(max(0, needed - requests)) more clean requests needed)").")
            }
        }
    }
}
