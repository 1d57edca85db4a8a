import ArgumentParser
import Foundation
import PaystormScenario

/// `i/n`: this process runs shard i of n (0-based).
struct Shard: ExpressibleByArgument {
    var index: Int
    var count: Int

    init?(argument: String) {
        let parts = argument.split(separator: "/")
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]), count >= 1, (0..<count).contains(index) else { return nil }
        self.index = index
        self.count = count
    }
}

/// What every shard of one sweep shares; `merge` refuses shards that differ.
struct SweepSpec: Codable, Equatable {
    var scenario: String
    var scenarioHash: String
    var axes: [Sweep.Axis]
    var seeds: [UInt64]
    var slo: Double?
}

/// One run of a sweep as its file in points/: the run and the hash of the
/// scenario it ran, so that `merge` takes only runs of the sweep it merges.
struct SweepPointFile: Codable {
    var scenarioHash: String
    var point: Sweep.Point
}

extension Paystorm.SweepCommand {
    /// Every core: `processes` children each run one shard, then the shards are merged.
    func runInParallel(processes: Int, seedRange: ClosedRange<UInt64>, directory: String) throws {
        let shardsRoot = (out as NSString).appendingPathComponent(".shards-\(getpid())")
        defer { try? FileManager.default.removeItem(atPath: shardsRoot) }
        let shared: [String] = ["sweep", file] + vary.flatMap { ["--vary", $0] }
            + ["--seeds", "\(seedRange.lowerBound)-\(seedRange.upperBound)", "--budget", String(budget), "--quiet"]
            + (scratch.map { ["--scratch", $0] } ?? [])
        let outcomes = try ChildProcesses.run(try ChildProcesses.currentExecutable(), (0..<processes).map { (index: Int) -> [String] in
            shared + ["--shard", "\(index)/\(processes)", "--out", (shardsRoot as NSString).appendingPathComponent(String(index))]
        }, jobs: processes)
        let failed = outcomes.enumerated().filter { $0.element.termination != .exited(0) }
        if !failed.isEmpty {
            for (index, outcome) in failed {
                FileHandle.standardError.write(Data("error: shard \(index)/\(processes) \(outcome.explanation)\n".utf8))
            }
            // A shard that refused its input (a grid point the world rejects) exits 64; a crash is an error.
            let refused = failed.allSatisfy { $0.element.termination == .exited(ExitStatus.badInput.rawValue) }
            throw ExitCode(refused ? ExitStatus.badInput.rawValue : 1)
        }
        let name = (directory as NSString).lastPathComponent
        let shards = (0..<processes).map { (shardsRoot as NSString).appendingPathComponent("\($0)/\(name)") }
        let result = try Paystorm.Merge.merge(shards, into: directory)
        // As a run in one process leaves them: the spec and one file per run, for a later merge.
        let points = (directory as NSString).appendingPathComponent("points")
        try? FileManager.default.removeItem(atPath: points)
        try FileManager.default.createDirectory(atPath: points, withIntermediateDirectories: true)
        for shard in shards {
            let shardPoints = (shard as NSString).appendingPathComponent("points")
            for file in try FileManager.default.contentsOfDirectory(atPath: shardPoints).sorted() {
                try FileManager.default.copyItem(atPath: (shardPoints as NSString).appendingPathComponent(file),
                                                 toPath: (points as NSString).appendingPathComponent(file))
            }
        }
        let spec = (directory as NSString).appendingPathComponent("spec.json")
        try? FileManager.default.removeItem(atPath: spec)
        try FileManager.default.copyItem(atPath: (shards[0] as NSString).appendingPathComponent("spec.json"), toPath: spec)
        try exitForBrokenInvariants(result)
    }
}

extension Paystorm {
    struct SweepCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sweep",
            abstract: "Run a scenario over a grid of parameters and seeds: the knee, and a Universal Scalability Law fit.",
            discussion: """
                --vary KEY=FROM..TO[:STEP|xFACTOR], repeatable (without STEP or FACTOR: FROM and TO); keys: \(Sweep.Key.allCases.map(\.rawValue).joined(separator: ", ")). \
                Every grid point runs every seed. Writes <out>/<scenario>-sweep/ with sweep.json, sweep.csv, sweep.md, \
                sweep.html and one file per run in points/. With --shard i/n only every n-th run (from i) is made and \
                no report is written: `paystorm merge` combines the shards' directories into the report a single run \
                gives. A grid larger than --budget runs is refused before anything runs.

                Exit codes: 0 when no run broke an invariant (failed thresholds and inconclusive runs past the \
                knee are what a sweep finds, not failures); 3 when any run violated a safety invariant; 4 when \
                any failed a liveness check and none violated safety; 64 for bad input. The failing runs are \
                named on standard error, after the reports are written. A --shard run exits 0 once its runs \
                are written: `merge` gives the verdict.
                """)

        @Argument(help: "The scenario file (YAML).") var file: String
        @Option(name: .customLong("vary"), help: "KEY=FROM..TO[:STEP|xFACTOR] (repeatable).") var vary: [String] = []
        @Option(help: "Seeds A-B (default: the scenario's seed).") var seeds: SeedRange?
        @Option(help: "Run only shard i of n (0-based), e.g. 0/4.") var shard: Shard?
        @Option(help: "Parallel processes (default: every core); each runs a shard, then they are merged.") var jobs: Int?
        @Option(help: "Most runs the grid may have.") var budget: Int = 500
        @Option(help: "Directory for reports.") var out: String = "Reports"
        @Option(help: "Directory for scratch databases.") var scratch: String?
        @Flag(help: "No progress bar.") var quiet = false

        func validate() throws {
            if let jobs, !(1...256).contains(jobs) { throw ValidationError("--jobs must be in 1...256, got \(jobs)") }
            guard budget >= 1 else { throw ValidationError("--budget must be at least 1, got \(budget)") }
        }

        func run() throws {
            let scenario = try loadScenario(file)
            try checkDirectories(out: out, scratch: scratch)
            let axes: [Sweep.Axis]
            do {
                axes = try vary.map { text throws(SweepError) in try Sweep.Axis.parse(text) }
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            guard !axes.isEmpty else {
                FileHandle.standardError.write(Data("error: give at least one --vary KEY=FROM..TO[:STEP|xFACTOR]\n".utf8))
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            if Set(axes.map(\.key)).count != axes.count {
                FileHandle.standardError.write(Data("error: each key may be varied once\n".utf8))
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            let seedRange = seeds?.seeds ?? scenario.world.seed...scenario.world.seed
            let grid = Sweep.grid(axes, seeds: seedRange)
            guard grid.count <= budget else {
                FileHandle.standardError.write(Data("error: the grid has \(grid.count) runs (\(grid.count / seedRange.count) points × \(seedRange.count) seeds), more than --budget \(budget)\n".utf8))
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            let directory = (out as NSString).appendingPathComponent("\(scenario.name)-sweep")
            let processes = min(jobs ?? ProcessInfo.processInfo.activeProcessorCount, grid.count)
            if shard == nil && processes > 1 {
                try runInParallel(processes: processes, seedRange: seedRange, directory: directory)
                return
            }
            let pointsDirectory = (directory as NSString).appendingPathComponent("points")
            try FileManager.default.createDirectory(atPath: pointsDirectory, withIntermediateDirectories: true)
            let spec = SweepSpec(scenario: scenario.name, scenarioHash: scenario.hash, axes: axes, seeds: Array(seedRange),
                                 slo: scenario.thresholds.first { $0.metric == .latency(percentile: 0.99) }?.value)
            try writeJSON(spec, to: (directory as NSString).appendingPathComponent("spec.json"))
            let mine = grid.enumerated().filter { shard == nil || $0.offset % shard!.count == shard!.index }.map(\.element)
            let progress = ProgressBar(label: "sweep \(scenario.name)", quiet: quiet)
            let scratchDirectory = ScratchCleanup.registered(scratch ?? NSTemporaryDirectory())
            var points: [Sweep.Point] = []
            for (done, run) in mine.enumerated() {
                let point: Sweep.Point
                do {
                    point = try Sweep.run(scenario, index: run.index, settings: run.settings, seed: run.seed,
                                          scratchDirectory: scratchDirectory)
                } catch let error as SweepError {
                    progress.finish()
                    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                    throw ExitCode(ExitStatus.badInput.rawValue)
                }
                try writeJSON(SweepPointFile(scenarioHash: scenario.hash, point: point),
                              to: (pointsDirectory as NSString).appendingPathComponent("\(point.index)-\(point.seed).json"))
                points.append(point)
                progress.update(Double(done + 1) / Double(mine.count))
            }
            progress.finish()
            if let shard {
                print("shard \(shard.index)/\(shard.count): \(points.count) of \(grid.count) runs written to \(pointsDirectory); combine with `paystorm merge`")
                return
            }
            let result = SweepResult.merge(scenarioName: scenario.name, scenarioHash: scenario.hash, axes: axes, seeds: Array(seedRange), points: points)
            try SweepReport.write(result, slo: spec.slo, to: directory)
            printSummary(result, directory: directory)
            try exitForBrokenInvariants(result)
        }
    }

    struct Merge: ParsableCommand {
        /// Writes the merged report and returns it; the caller gives the verdict.
        static func merge(_ directories: [String], into out: String?) throws -> SweepResult {
            var command = Merge()
            command.directories = directories
            command.out = out
            return try command.mergeAndReport()
        }

        static let configuration = CommandConfiguration(
            abstract: "Combine the shards of a sweep into the report a single run gives.",
            discussion: """
                Each DIR is a <scenario>-sweep directory written with --shard. Every run of the grid must be \
                present: only point files of the spec's scenario hash and of its grid count (others, left by \
                an earlier scenario version or grid, are ignored and listed), and a merge with runs missing is \
                refused, naming them. Exit codes as for `sweep`: 0, or 3 (a safety invariant violated) or 4 \
                (a liveness check failed) in any run, or 64 for bad input.
                """)

        @Argument(help: "Shard directories.") var directories: [String]
        @Option(help: "Where to write the merged report (default: the first directory).") var out: String?

        func validate() throws {
            guard !directories.isEmpty else { throw ValidationError("give at least one shard directory") }
        }

        func run() throws {
            try exitForBrokenInvariants(try mergeAndReport())
        }

        func mergeAndReport() throws -> SweepResult {
            var spec: SweepSpec?
            for directory in directories {
                guard let data = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent("spec.json")),
                      let shardSpec = try? JSONDecoder().decode(SweepSpec.self, from: data) else {
                    FileHandle.standardError.write(Data("error: \(directory) has no readable spec.json (not a sweep directory)\n".utf8))
                    throw ExitCode(ExitStatus.badInput.rawValue)
                }
                if let spec, spec != shardSpec {
                    FileHandle.standardError.write(Data("error: \(directory) is from a different sweep (scenario, axes or seeds differ)\n".utf8))
                    throw ExitCode(ExitStatus.badInput.rawValue)
                }
                spec = shardSpec
            }
            guard let spec else { preconditionFailure("validate() refuses an empty list of shard directories") }
            let grid = Sweep.grid(spec.axes, seeds: spec.seeds.first!...spec.seeds.last!)
            // A point file counts only as a run of this grid, with this grid's settings, of this scenario version:
            // a directory can hold leftovers of an earlier scenario or grid under the same names.
            var expected: [String: [String: Double]] = [:]
            for run in grid {
                expected["\(run.index)-\(run.seed)"] = Dictionary(uniqueKeysWithValues: run.settings.map { ($0.key.rawValue, $0.value) })
            }
            var points: [String: Sweep.Point] = [:]
            var ignored: [String] = []
            for directory in directories {
                let pointsDirectory = (directory as NSString).appendingPathComponent("points")
                for name in (try? FileManager.default.contentsOfDirectory(atPath: pointsDirectory))?.sorted() ?? [] where name.hasSuffix(".json") {
                    let path = (pointsDirectory as NSString).appendingPathComponent(name)
                    guard let data = FileManager.default.contents(atPath: path),
                          let file = try? JSONDecoder().decode(SweepPointFile.self, from: data) else {
                        ignored.append("\(path): not a point file this version of paystorm writes")
                        continue
                    }
                    guard file.scenarioHash == spec.scenarioHash else {
                        ignored.append("\(path): scenario hash \(file.scenarioHash), this sweep's is \(spec.scenarioHash)")
                        continue
                    }
                    let key = "\(file.point.index)-\(file.point.seed)"
                    guard let settings = expected[key], settings == file.point.settings else {
                        ignored.append("\(path): not a run of this sweep's grid")
                        continue
                    }
                    points[key] = file.point
                }
            }
            if !ignored.isEmpty {
                FileHandle.standardError.write(Data(("note: ignored \(ignored.count) point file(s) that are not runs of this sweep:\n"
                    + ignored.prefix(10).map { "  \($0)\n" }.joined() + (ignored.count > 10 ? "  …\n" : "")).utf8))
            }
            let missing = grid.filter { points["\($0.index)-\($0.seed)"] == nil }
            guard missing.isEmpty else {
                let named = missing.prefix(10).map { "point \($0.index) (\(Sweep.describe($0.settings))) seed \($0.seed)" }
                FileHandle.standardError.write(Data(("error: \(missing.count) of \(grid.count) run(s) missing: " + named.joined(separator: "; ")
                    + (missing.count > 10 ? "; …" : "") + ". Merge every shard of this sweep, or re-run the shards that make them.\n").utf8))
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            let result = SweepResult.merge(scenarioName: spec.scenario, scenarioHash: spec.scenarioHash, axes: spec.axes, seeds: spec.seeds,
                                           points: Array(points.values))
            let directory = out ?? directories[0]
            try SweepReport.write(result, slo: spec.slo, to: directory)
            printSummary(result, directory: directory)
            return result
        }
    }
}

func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic)
}

func printSummary(_ result: SweepResult, directory: String) {
    for knee in result.knees {
        let at = knee.settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        print("knee\(at.isEmpty ? "" : " (\(at))"): \(knee.explanation)")
    }
    if let s = result.scalability {
        print(String(format: "USL: λ=%.4g±%.2g σ=%.4g±%.2g κ=%.4g±%.2g", s.lambda, s.lambdaError, s.sigma, s.sigmaError, s.kappa, s.kappaError)
              + (s.peakConcurrency.map { String(format: " peak N*=%.3g", $0) } ?? ""))
    }
    print("reports: \(directory)/sweep.html (and sweep.json, sweep.csv, sweep.md)")
}

/// A sweep's verdict for CI, after its reports are written. Failed thresholds
/// and too few samples past the knee are what a sweep is run to find, so
/// they pass; a broken invariant at any point is a bug in the design under
/// test, so the sweep exits with the worst such run's code (3 for safety,
/// else 4 for liveness) and names the runs.
func exitForBrokenInvariants(_ result: SweepResult) throws {
    let broken = result.points.filter {
        $0.exitCode == ExitStatus.invariantViolated.rawValue || $0.exitCode == ExitStatus.livenessFailed.rawValue
    }
    guard !broken.isEmpty else { return }
    let worst: ExitStatus = broken.contains { $0.exitCode == ExitStatus.invariantViolated.rawValue } ? .invariantViolated : .livenessFailed
    var lines = ["error: \(broken.count) of \(result.points.count) run(s) broke an invariant:"]
    for point in broken.prefix(10) {
        let status = ExitStatus(rawValue: point.exitCode)?.label ?? point.status
        lines.append("  point \(point.index) (\(Sweep.describe(point.settings))) seed \(point.seed): \(status), \(point.violations) violation(s)")
    }
    if broken.count > 10 { lines.append("  …") }
    lines.append("To see a run's violations and their trails, `paystorm run` the scenario with that point's settings and --seed.")
    FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    throw ExitCode(worst.rawValue)
}
