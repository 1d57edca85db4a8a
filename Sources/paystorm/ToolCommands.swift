import ArgumentParser
import Foundation
import PaystormScenario
import PaystormWorld

/// Runs `scenario` with `world` and writes its reports under `out`, in
/// `directoryName` (by default the run's own, `<scenario>-<seed>`).
func runAndReport(_ scenario: Scenario, world: WorldConfiguration, out: String, scratch: String?, quiet: Bool,
                  directoryName: String? = nil) throws -> (run: ScenarioRun, directory: String) {
    var scenario = scenario
    scenario.world = world
    let progress = ProgressBar(label: "\(scenario.name) seed \(world.seed)", quiet: quiet)
    let run = try ScenarioRun.run(scenario, scratchDirectory: ScratchCleanup.registered(scratch ?? NSTemporaryDirectory()), progress: progress.update)
    progress.finish()
    let directory = (out as NSString).appendingPathComponent(directoryName ?? run.directoryName)
    try ReportWriter.write(run.document, to: directory)
    return (run, directory)
}

func readReport(_ path: String) throws -> ReportDocument {
    let file = path.hasSuffix(".json") ? path : (path as NSString).appendingPathComponent("report.json")
    guard let data = FileManager.default.contents(atPath: file) else {
        FileHandle.standardError.write(Data("error: cannot read \(file)\n".utf8))
        throw ExitCode(ExitStatus.badInput.rawValue)
    }
    do {
        return try ReportWriter.decode(data)
    } catch {
        FileHandle.standardError.write(Data("error: \(file) is not a Paystorm report: \(error)\n".utf8))
        throw ExitCode(ExitStatus.badInput.rawValue)
    }
}

extension Paystorm {
    struct Fuzz: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Swarm mode: each seed draws its own faults and knobs, then runs.",
            discussion: """
                For every seed the scenario's world gets 1–4 random faults (outages, brownouts, \
                partitions, crashes, broker partitions, storms, clock skew), BUGGIFY with a random fire \
                rate, and sometimes lossy links. Each seed's reports go to <out>/<scenario>-fuzz-<seed>, \
                apart from `run`'s. A failing seed prints its report and the command that reproduces it; \
                `paystorm shrink FILE --seed N --fuzz` cuts its faults down. Exit code: the worst seed's \
                (3 invariant violated, then 4 liveness failed, 2 threshold failed, 5 inconclusive).
                """)

        @Argument(help: "The scenario file (YAML).") var file: String
        @Option(help: "Seeds A-B.") var seeds: SeedRange
        @Option(help: "Directory for reports (each seed's in <scenario>-fuzz-<seed>).") var out: String = "Reports"
        @Option(help: "Directory for the scratch database.") var scratch: String?
        @Flag(help: "Only failing seeds and the summary.") var quiet = false

        func run() throws {
            let scenario = try loadScenario(file)
            try checkDirectories(out: out, scratch: scratch)
            var worst = ExitStatus.passed
            var failing: [UInt64] = []
            for seed in seeds.seeds {
                let world = Swarm.configure(scenario.world, seed: seed)
                // Apart from `run`'s reports of the same seed, which a fuzzed run
                // would otherwise overwrite with one of different faults.
                let (result, directory) = try runAndReport(scenario, world: world, out: out, scratch: scratch, quiet: true,
                                                           directoryName: "\(scenario.name)-fuzz-\(seed)")
                worst = ExitStatus.worst([worst, result.status])
                if result.status != .passed { failing.append(seed) }
                if !quiet || result.status != .passed {
                    print("seed \(seed): \(result.status.label) (exit \(result.status.rawValue)), \(world.faults.count) fault(s), buggify \(result.report.buggifyEnabled.joined(separator: ",")) — \(result.document.verdict.summary)")
                }
                if result.status != .passed {
                    let outOption = out == "Reports" ? "" : " --out \(out)"
                    print("  report: \(directory); reproduce: paystorm fuzz \(file) --seeds \(seed)-\(seed)\(outOption); shrink: paystorm shrink \(file) --seed \(seed) --fuzz\(outOption)")
                }
            }
            print("fuzz \(scenario.name): \(seeds.seeds.count) seed(s), \(failing.count) failing\(failing.isEmpty ? "" : ": " + failing.map(String.init).joined(separator: ", "))")
            if worst != .passed { throw ExitCode(worst.rawValue) }
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-run exactly what a report names (scenario hash + seed + version) and check the trace.",
            discussion: """
                Reads REPORT (a report.json or its directory), finds the scenario file (--scenario, or \
                Scenarios/<file> beside the working directory), refuses it if its hash differs from the \
                report's, runs the same seed and compares trace hashes. Exit code: the run's; 1 if the \
                trace differs (the build or the scenario changed behaviour).
                """)

        @Argument(help: "A report.json, or the directory holding it.") var report: String
        @Option(help: "The scenario file (default: Scenarios/<file named in the report>).") var scenario: String?
        @Option(help: "Directory for the new reports.") var out: String = "Reports/replay"
        @Flag(help: "The report came from `paystorm fuzz`: draw the same swarm faults (found without it when the report's faults are the swarm's).") var fuzz = false

        func run() throws {
            let original = try readReport(report)
            guard !original.isMeasured else {
                FileHandle.standardError.write(Data(("error: \(report) is a measured run (paystorm load against \(original.scenario.file)): "
                    + "a live server cannot be replayed; `paystorm load` with --seed \(original.seed) offers the same schedule again\n").utf8))
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            let path = scenario ?? "Scenarios/\(original.scenario.file)"
            if scenario == nil && !FileManager.default.fileExists(atPath: path) {
                FileHandle.standardError.write(Data(("error: the report was made from \(original.scenario.file) (hash \(original.scenario.hash)), "
                    + "which is not at \(path); pass it with --scenario PATH\n").utf8))
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            try checkDirectories(out: out, scratch: nil)
            let loaded = try loadScenario(path)
            guard loaded.hash == original.scenario.hash else {
                FileHandle.standardError.write(Data("error: \(path) has hash \(loaded.hash) but the report was made from \(original.scenario.hash); pass the original file with --scenario\n".utf8))
                throw ExitCode(ExitStatus.badInput.rawValue)
            }
            if original.paystormVersion != paystormVersion {
                print("warning: the report was made by Paystorm \(original.paystormVersion), this is \(paystormVersion): the trace may differ")
            }
            var world = loaded.world
            world.seed = original.seed
            // A fuzz report lists the swarm's faults, not the scenario's: replay draws them again.
            let swarm = Swarm.configure(loaded.world, seed: original.seed)
            let scheduled = original.faults.map(\.scheduled)
            if fuzz || (ReportDocument.faults(world.faults) != scheduled && ReportDocument.faults(swarm.faults) == scheduled) {
                if !fuzz { print("the report's faults are those paystorm fuzz draws for seed \(original.seed): replaying them") }
                world = swarm
            }
            let (result, _) = try runAndReport(loaded, world: world, out: out, scratch: nil, quiet: false)
            let same = result.report.traceHash == original.simulation.traceHash
            print("replay \(loaded.name) seed \(original.seed): \(result.status.label) (exit \(result.status.rawValue)); trace \(result.report.traceHash) \(same ? "matches" : "DIFFERS from \(original.simulation.traceHash)")")
            if !same { throw ExitCode(1) }
            if result.status != .passed { throw ExitCode(result.status.rawValue) }
        }
    }

    struct Shrink: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cut a failing seed's fault schedule down to a minimal one that still fails (delta debugging).",
            discussion: """
                Runs the scenario with SEED, then re-runs it with subsets of its faults (ddmin), keeping \
                any subset under which the run still ends with the same exit code. Prints the minimal \
                fault list as YAML and writes <out>/<scenario>-<seed>-shrunk.yaml: the scenario with that \
                seed and those faults in place of its own (with --fuzz, also the BUGGIFY and network \
                settings the swarm drew for the seed), which `paystorm run` repeats as it is. If \
                --max-runs runs out first, the schedule printed is the smallest found, and says so.
                """)

        @Argument(help: "The scenario file (YAML).") var file: String
        @Option(help: "The failing seed.") var seed: UInt64
        @Flag(help: "The failure came from `paystorm fuzz`: start from that seed's swarm faults.") var fuzz = false
        @Option(help: "Most re-runs to spend.") var maxRuns: Int = 64
        @Option(help: "Directory for the shrunk scenario.") var out: String = "Reports"

        func validate() throws {
            guard (1...10_000).contains(maxRuns) else { throw ValidationError("--max-runs must be in 1...10000, got \(maxRuns)") }
        }

        func run() throws {
            let scenario = try loadScenario(file)
            try checkDirectories(out: out, scratch: nil)
            var world = fuzz ? Swarm.configure(scenario.world, seed: seed) : scenario.world
            world.seed = seed
            let first = ScenarioRun.judge(scenario, try PaymentsWorld.run(world))
            guard first.status != .passed else {
                print("seed \(seed) passes: nothing to shrink")
                return
            }
            print("seed \(seed): \(first.status.label) with \(world.faults.count) fault(s); shrinking…")
            let target = first.status
            let (minimal, runs, proven) = try Shrinker.shrink(world.faults, runLimit: maxRuns) { faults in
                var trial = world
                trial.faults = faults
                return ScenarioRun.judge(scenario, try PaymentsWorld.run(trial)).status == target
            }
            // ddmin stops at a schedule no cut shortens; a spent budget stops it anywhere.
            print((!proven ? "smallest schedule found before --max-runs \(maxRuns) ran out (not proven minimal; raise --max-runs to go on)"
                         : "minimal schedule after \(runs) run(s)")
                  + ": \(minimal.count) of \(world.faults.count) fault(s) still give \(target.label)"
                  + (fuzz ? ", with the BUGGIFY and network settings seed \(seed) drew:" : ":"))
            print(Shrinker.yaml(minimal), terminator: "")
            var shrunk = world
            shrunk.faults = minimal
            // The scenario with the shrunk run's seed, faults and drawn knobs in place of its own: run as it is, it fails the same way.
            let original = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            let description = "Shrunk from \(file) seed \(seed)\(fuzz ? " --fuzz" : ""): \(minimal.count) fault(s) that still give \(target.label)."
                + (scenario.description.isEmpty ? "" : " The original: \(scenario.description)")
            let text = "# paystorm shrink --seed \(seed)\(fuzz ? " --fuzz" : ""): \(file) with the shrunk run's seed and faults"
                + (fuzz ? " and the knobs the swarm drew" : "") + "; `paystorm run` it to see the \(target.label) run.\n"
                + Shrinker.scenarioText(original, world: shrunk, swarm: fuzz, description: description)
            let written = try Scenario.parse(text, file: file)
            guard written.description == description, written.world.seed == shrunk.seed, written.world.faults == shrunk.faults,
                  written.world.buggify.enabled == shrunk.buggify.enabled,
                  written.world.buggify.enableProbability == shrunk.buggify.enableProbability,
                  written.world.buggify.fireProbability == shrunk.buggify.fireProbability,
                  written.world.network.lossRate == shrunk.network.lossRate,
                  written.world.network.duplicationRate == shrunk.network.duplicationRate else {
                FileHandle.standardError.write(Data("error: the shrunk scenario would not read back as the shrunk run; nothing written\n".utf8))
                throw ExitCode(1)
            }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let path = (out as NSString).appendingPathComponent("\(scenario.name)-\(seed)-shrunk.yaml")
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            print("written: \(path) (`paystorm run \(path)` repeats the \(target.label) run)")
        }
    }

    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Two reports side by side, with a significance test per metric.",
            discussion: """
                A and B are report.json files (or their directories) — two scenarios, two seeds, or a \
                simulated run beside a measured one. Per-window values during the load are the units \
                of Welch's t-test; a metric without a per-window series is shown without a test.
                """)

        @Argument(help: "The first report.") var a: String
        @Argument(help: "The second report.") var b: String
        @Option(help: "Significance level.") var alpha: Double = 0.05

        func validate() throws {
            guard alpha > 0 && alpha < 0.5 else { throw ValidationError("--alpha must be in (0, 0.5), got \(alpha)") }
        }

        func run() throws {
            let left = try readReport(a), right = try readReport(b)
            for (side, document) in [("A", left), ("B", right)] {
                print("\(side): \(document.scenario.name) seed \(document.seed) (\(document.verdict.status))"
                      + (document.isMeasured ? ", measured against \(document.scenario.file) on wall time: what only the server sees reads n/a" : ""))
            }
            if let warning = Comparison.loadWarning(left, right) { print(warning) }
            print("")
            let rows = Comparison.compare(left, right, alpha: alpha)
            let width = (rows.map(\.metric.count).max() ?? 10) + 2
            print("metric".padding(toLength: width, withPad: " ", startingAt: 0) + "A".padding(toLength: 16, withPad: " ", startingAt: 0)
                  + "B".padding(toLength: 16, withPad: " ", startingAt: 0) + "change    Welch p")
            for row in rows {
                let p = row.pValue.map { String(format: "%.4f%@", $0, row.significant ? " *" : "") } ?? "—"
                print(row.metric.padding(toLength: width, withPad: " ", startingAt: 0) + row.a.padding(toLength: 16, withPad: " ", startingAt: 0)
                      + row.b.padding(toLength: 16, withPad: " ", startingAt: 0) + row.change.padding(toLength: 10, withPad: " ", startingAt: 0) + p)
            }
            print("\n* significant at α = \(alpha) (units: metrics windows during the load)")
        }
    }
}
