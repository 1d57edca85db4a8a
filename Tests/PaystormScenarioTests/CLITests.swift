import Foundation
import Testing
import PaystormScenario

/// The `paystorm` executable as CI meets it: exit codes and messages.
@Suite("CLI: exit codes and messages")
final class CLITests {
    /// This test's scratch files (each test runs on its own instance), removed after it.
    let scratch = NSTemporaryDirectory() + "paystorm-cli-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"

    deinit { try? FileManager.default.removeItem(atPath: scratch) }

    struct Outcome {
        var status: Int32
        var output: String
        var error: String
    }

    static let executable = packageRoot + "/.build/debug/paystorm"

    func paystorm(_ arguments: [String], timeoutSeconds: Double? = nil) throws -> Outcome {
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable), "build the executable first (swift build --build-tests)")
        return try launch(Self.executable, arguments, timeoutSeconds: timeoutSeconds)
    }

    /// A `paystorm serve` (or other long-running command) started in the
    /// background, once its standard error has said `ready` (or it ended).
    final class Running {
        let process = Process()
        private let reader: FileHandle
        /// Its standard error: up to `ready` once started, all of it once stopped.
        private(set) var log: String

        init(_ arguments: [String], ready: String) throws {
            process.executableURL = URL(fileURLWithPath: CLITests.executable)
            process.arguments = arguments
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            reader = err.fileHandleForReading
            var text = ""
            while !text.contains(ready) {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            log = text
        }

        /// SIGTERM, then waits for it to end; returns its whole standard error.
        @discardableResult
        func stop() -> String {
            if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            log += String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return log
        }

        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    /// Files in the scratch directory whose names start with `prefix`.
    func scratchFiles(_ prefix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []).filter { $0.hasPrefix(prefix) }.sorted()
    }

    /// - Parameter timeoutSeconds: a process still running then is killed
    ///   (its status is then SIGKILL's), so that a command that should have
    ///   refused to start and serves instead fails the test, not hangs it.
    func launch(_ executable: String, _ arguments: [String], timeoutSeconds: Double? = nil) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["CI"] = "true"
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        if let timeoutSeconds {
            DispatchQueue.global().asyncAfter(deadline: .now() + timeoutSeconds) { [process] in
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let error = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
                       error: String(decoding: error, as: UTF8.self))
    }

    func temporaryFile(_ name: String, _ text: String) throws -> String {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let path = scratch + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Its webhook client used to be left to its deinit, which stops a
    /// process with a fatal error (and left a backtracer behind in CI).
    @Test("psp-sandbox stops cleanly on SIGTERM")
    func sandboxStopsCleanly() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable), "build the executable first (swift build --build-tests)")
        let sandbox = try Running(["psp-sandbox", "--port", "0", "--webhook-url", "http://127.0.0.1:9/webhook"], ready: " on http://")
        #expect(sandbox.log.contains(" on http://"), "\(sandbox.log)")
        let log = sandbox.stop()
        #expect(sandbox.process.terminationReason == .exit && sandbox.process.terminationStatus == 0, "\(log)")
        #expect(!log.contains("Fatal error"), "\(log)")
    }

    @Test("validate: 0 for the shipped scenarios, 64 with file:line:column for a bad one")
    func validate() throws {
        let shipped = try paystorm(["validate"] + ScenarioFileTests.shipped)
        #expect(shipped.status == 0, "\(shipped.error)")
        let bad = try temporaryFile("bad.yaml", "name: x\npayments: 10\nload: {rate: 5}\nservice: {replicas: zero}\n")
        let result = try paystorm(["validate", bad])
        #expect(result.status == 64)
        #expect(result.error.contains("bad.yaml:4:") && result.error.contains("service.replicas: expected a whole number"))
        #expect(!result.error.contains("Fatal") && !result.error.contains("backtrace"))
    }

    @Test("run: 0 when it passes, 2 when a threshold fails, 0 again with --check-expectation on a documented failure")
    func runExitCodes() throws {
        let out = scratch + "/reports"
        let passing = try temporaryFile("tiny.yaml", tinyScenario)
        let pass = try paystorm(["run", passing, "--out", out, "--quiet"])
        #expect(pass.status == 0, "\(pass.output) \(pass.error)")
        for file in ["report.json", "report.md", "report.html", "timeseries.csv", "junit.xml"] {
            #expect(FileManager.default.fileExists(atPath: out + "/tiny-3/" + file), "\(file)")
        }
        let failingText = tinyScenario.replacingOccurrences(of: "p(99) < 250ms", with: "p(50) < 1ms")
        let failing = try temporaryFile("failing.yaml", failingText)
        let fail = try paystorm(["run", failing, "--out", out, "--quiet"])
        #expect(fail.status == 2, "\(fail.output)")
        #expect(fail.output.contains("threshold-failed"))
        let documented = try temporaryFile("documented.yaml", "expect: fail\nexpect_exit: 2\n" + failingText)
        #expect(try paystorm(["run", documented, "--out", out, "--quiet", "--check-expectation"]).status == 0)
    }

    @Test("an output or scratch place that cannot be used is refused before the run, naming it (exit 64)")
    func unusableDirectories() throws {
        let scenario = try temporaryFile("tiny.yaml", tinyScenario)
        let file = try temporaryFile("a-file", "")
        let outIsFile = try paystorm(["run", scenario, "--out", file, "--quiet"])
        #expect(outIsFile.status == 64 && outIsFile.error.contains("--out \(file): is a file, not a directory"), "\(outIsFile.error)")
        let noScratch = try paystorm(["run", scenario, "--scratch", scratch + "/none", "--quiet"])
        #expect(noScratch.status == 64 && noScratch.error.contains("--scratch \(scratch)/none: no such directory"), "\(noScratch.error)")
        let directory = try paystorm(["run", scratch, "--quiet"])
        #expect(directory.status == 64 && directory.error.contains("is a directory, not a scenario file"), "\(directory.error)")
        // A report's replay without --scenario looks in Scenarios/ and says what to pass when the file is not there.
        let out = scratch + "/elsewhere"
        #expect(try paystorm(["run", scenario, "--out", out, "--quiet"]).status == 0)
        let lost = try paystorm(["replay", out + "/tiny-3"])
        #expect(lost.status == 64 && lost.error.contains("which is not at Scenarios/tiny.yaml; pass it with --scenario PATH"), "\(lost.error)")
    }

    @Test("what a command cannot do is refused before it starts: unmeasurable load thresholds, a measured run's replay, runs too short or too long")
    func refusedUpFront() throws {
        // Nothing listens on port 9: each is refused before any connection.
        for threshold in ["violations == 0", "lost == 0", "terminal_p(99) < 5s", "fraud_recall >= 90%"] {
            let load = try paystorm(["load", "http://127.0.0.1:9", "--rate", "1", "--duration", "1", "--threshold", threshold])
            #expect(load.status == 64 && load.error.contains("paystorm audit"), "\(threshold): \(load.error)")
        }
        var document = sampleDocument()
        document.simulation.traceHash = ReportDocument.measuredTraceHash
        let measured = scratch + "/measured"
        _ = try ReportWriter.write(document, to: measured)
        let replay = try paystorm(["replay", measured])
        #expect(replay.status == 64 && replay.error.contains("a live server cannot be replayed"), "\(replay.error)")
        let world = try paystorm(["bench", "world", "--payments", "2000"])
        #expect(world.status == 64 && world.error.contains("20000...100000000"), "\(world.error)")
        let mix = try paystorm(["load", "http://127.0.0.1:9", "--rate", "1", "--duration", "1", "--mix", "payments=1,payments=2"])
        #expect(mix.status == 64 && mix.error.contains("payments is given twice"), "\(mix.error)")
        let store = try paystorm(["bench", "store", "--store", scratch + "/no/such/dir/x.sqlite"])
        #expect(store.status == 64 && store.error.contains("no directory"), "\(store.error)")
        // Two rounds: the median is their mean, not the better one.
        let kernel = try paystorm(["bench", "kernel", "--pending", "1000", "--events", "200000", "--repeats", "2"])
        let line = try #require(kernel.output.firstMatch(of: /best=(\d+) events\/s median=(\d+) events\/s/), "\(kernel.output)")
        let rounds = kernel.output.matches(of: /round \d: 200000 events in ([0-9.]+) s/).compactMap { Double($0.output.1) }.map { 200_000 / $0 }
        #expect(rounds.count == 2)
        let (best, median) = (Double(line.output.1)!, Double(line.output.2)!)
        if let slower = rounds.min(), let faster = rounds.max() {
            // The printed seconds are rounded to the millisecond: about 0.2% of a round.
            #expect(median >= slower * 0.995 && median <= (slower + faster) / 2 * 1.005, "\(kernel.output)")
            if faster > slower * 1.005 { #expect(median < best, "\(kernel.output)") }
        }
        let demo = try paystorm(["demo", "--requests", "100", "--rate", "1e-9"])
        #expect(demo.status == 64 && demo.error.contains("30 days of virtual time"), "\(demo.status) \(demo.error)")
    }

    @Test("a seed farm runs every seed and merges them; replay re-runs a report and matches its trace")
    func farmAndReplay() throws {
        let out = scratch + "/farm"
        let scenario = try temporaryFile("tiny.yaml", tinyScenario)
        let farm = try paystorm(["run", scenario, "--seeds", "5-6", "--jobs", "2", "--out", out, "--quiet"])
        #expect(farm.status == 0, "\(farm.output) \(farm.error)")
        #expect(farm.output.contains("2 seeds — 2 passed"))
        for seed in [5, 6] { #expect(FileManager.default.fileExists(atPath: "\(out)/tiny-\(seed)/report.json")) }
        #expect(FileManager.default.fileExists(atPath: "\(out)/tiny-seeds-5-6/summary.md"))
        let replay = try paystorm(["replay", "\(out)/tiny-5", "--scenario", scenario, "--out", out + "/replay"])
        #expect(replay.status == 0, "\(replay.output) \(replay.error)")
        #expect(replay.output.contains("matches"))
        let other = try temporaryFile("other.yaml", tinyScenario + "\n# edited\n")
        let refused = try paystorm(["replay", "\(out)/tiny-5", "--scenario", other])
        #expect(refused.status == 64 && refused.error.contains("hash"))
    }

    @Test("--check-expectation: a documented failure that does not happen exits 6, one that fails otherwise keeps its code, in a farm too")
    func checkExpectationMismatch() throws {
        let out = scratch + "/expectation"
        let unexpectedPass = try temporaryFile("passes.yaml", "expect: fail\nexpect_exit: 2\n" + tinyScenario)
        let single = try paystorm(["run", unexpectedPass, "--out", out, "--quiet", "--check-expectation"])
        #expect(single.output.contains("passed (exit 0)"), "\(single.output)")
        #expect(single.status == 6)
        #expect(single.error.contains("passes.yaml documents exit 2 (expect: fail), but the run passed"), "\(single.error)")
        let farm = try paystorm(["run", unexpectedPass, "--seeds", "5-6", "--jobs", "2", "--out", out, "--quiet", "--check-expectation"])
        #expect(farm.output.contains("2 seeds — 2 passed"), "\(farm.output) \(farm.error)")
        #expect(farm.status == 6)
        #expect(farm.error.contains("seed 5 passed") && farm.error.contains("seed 6 passed"), "\(farm.error)")
        // Documented as an invariant violation, but a threshold fails: the run's own code.
        let failingText = tinyScenario.replacingOccurrences(of: "p(99) < 250ms", with: "p(50) < 1ms")
        let otherFailure = try temporaryFile("other-failure.yaml", "expect: fail\nexpect_exit: 3\n" + failingText)
        #expect(try paystorm(["run", otherFailure, "--out", out, "--quiet", "--check-expectation"]).status == 2)
        let documented = try temporaryFile("documented.yaml", "expect: fail\nexpect_exit: 2\n" + failingText)
        let documentedFarm = try paystorm(["run", documented, "--seeds", "5-6", "--jobs", "2", "--out", out, "--quiet", "--check-expectation"])
        #expect(documentedFarm.status == 0, "\(documentedFarm.output) \(documentedFarm.error)")
    }

    @Test("a seed farm finds its own executable when paystorm was started by name from PATH")
    func farmFromPath() throws {
        let scenario = try temporaryFile("tiny.yaml", tinyScenario)
        let directory = (Self.executable as NSString).deletingLastPathComponent
        let farm = try launch("/usr/bin/env", ["PATH=\(directory):/usr/bin:/bin", "paystorm",
                                               "run", scenario, "--seeds", "5-5", "--jobs", "1", "--out", scratch + "/path", "--quiet"])
        #expect(farm.status == 0, "\(farm.output) \(farm.error)")
        #expect(farm.output.contains("1 seeds — 1 passed"))
    }

    @Test("a seed farm whose runs end without a verdict exits 1, names each seed and its error, and never uses an earlier run's reports")
    func farmChildFails() throws {
        let out = scratch + "/stale"
        let scenario = try temporaryFile("tiny.yaml", tinyScenario)
        let first = try paystorm(["run", scenario, "--seeds", "5-6", "--jobs", "2", "--out", out, "--quiet"])
        #expect(first.status == 0, "\(first.output) \(first.error)")
        // Every seed's run now fails before it writes a report; the first farm's reports are still there.
        // The scratch directory exists (a missing one is refused before anything runs), but its path is
        // so long that no database file fits in it.
        var deep = scratch + "/deep"
        while deep.utf8.count < Int(PATH_MAX) - 40 { deep += "/" + String(repeating: "d", count: min(200, Int(PATH_MAX) - 41 - deep.utf8.count)) }
        try FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
        let broken = try paystorm(["run", scenario, "--seeds", "5-6", "--jobs", "2", "--out", out, "--quiet", "--scratch", deep])
        #expect(broken.status == 1, "\(broken.output) \(broken.error)")
        #expect(!broken.output.contains("passed"), "\(broken.output)")
        for seed in [5, 6] { #expect(broken.error.contains("seed \(seed): the run exited 1"), "\(broken.error)") }
        #expect(broken.error.contains("unable to open database"), "the child's own error is shown")
        #expect(!FileManager.default.fileExists(atPath: out + "/tiny-5/report.json"), "the earlier run's report is gone")
    }

    /// Seed 1 fails its throughput threshold (2); seed 2 has too few samples
    /// for its p(99.9) threshold (5).
    static let mixedVerdicts = """
        name: mix
        seed: 1
        payments: 330
        load: { profile: constant, rate: 100 }
        healing: 70s
        thresholds:
          - "throughput > 100"
          - "p(99.9) < 10s"
        """

    @Test("a seed farm and fuzz exit with their worst seed by severity: a failed threshold (2) outranks an inconclusive seed (5)")
    func farmWorstBySeverity() throws {
        let scenario = try temporaryFile("mix.yaml", Self.mixedVerdicts)
        let farm = try paystorm(["run", scenario, "--seeds", "1-2", "--jobs", "2", "--out", scratch + "/mix", "--quiet"])
        #expect(farm.output.contains("2 seeds — 1 inconclusive, 1 threshold-failed"), "\(farm.output) \(farm.error)")
        #expect(farm.status == 2)
        // Fuzz picks its worst seed the same way: its seed 2 draws an inconclusive run, seed 3 a failed threshold.
        let fuzz = try paystorm(["fuzz", scenario, "--seeds", "2-3", "--out", scratch + "/mix-fuzz", "--quiet"])
        #expect(fuzz.output.contains("seed 2: inconclusive") && fuzz.output.contains("seed 3: threshold-failed"), "\(fuzz.output)")
        #expect(fuzz.status == 2)
    }

    @Test("a fuzz report replays with its swarm faults, without being told it came from fuzz")
    func replayFuzzReport() throws {
        let scenario = try temporaryFile("tiny.yaml", tinyScenario)
        let fuzz = try paystorm(["fuzz", scenario, "--seeds", "4-4", "--out", scratch + "/fz", "--quiet"])
        #expect([0, 2, 3, 4, 5].contains(fuzz.status), "\(fuzz.output) \(fuzz.error)")
        // Its reports are apart from `run`'s of the same seed, which they used to overwrite.
        #expect(FileManager.default.fileExists(atPath: scratch + "/fz/tiny-fuzz-4/report.json"))
        #expect(!FileManager.default.fileExists(atPath: scratch + "/fz/tiny-4"))
        if fuzz.status != 0 { #expect(fuzz.output.contains("report: \(scratch)/fz/tiny-fuzz-4; reproduce: paystorm fuzz \(scenario) --seeds 4-4 --out \(scratch)/fz"), "\(fuzz.output)") }
        let replay = try paystorm(["replay", scratch + "/fz/tiny-fuzz-4", "--scenario", scenario, "--out", scratch + "/fz-replay"])
        #expect(replay.output.contains("replaying them") && replay.output.contains("matches"), "\(replay.output) \(replay.error)")
        #expect(replay.status == fuzz.status)
    }

    @Test("bad options and unreadable files are bad input (64)")
    func badInput() throws {
        #expect(try paystorm(["run", "/nonexistent.yaml"]).status == 64)
        #expect(try paystorm(["run", "x.yaml", "--jobs", "0"]).status == 64)
        #expect(try paystorm(["run", "x.yaml", "--seeds", "9-3"]).status == 64)
        #expect(try paystorm(["claim", "--availability", "120"]).status == 64)
        #expect(try paystorm(["compare", "/nonexistent", "/nonexistent"]).status == 64)
        // A schedule of 86.4 billion requests used to be built in memory before the first was sent.
        let huge = try paystorm(["load", "http://127.0.0.1:9", "--rate", "1000000", "--duration", "86400"], timeoutSeconds: 20)
        #expect(huge.status == 64 && huge.error.contains("the schedule is kept in memory, at most 20000000 a run"), "\(huge.error)")
    }

    @Test("a negative number given to an option reaches that option's own check, which names what it expects")
    func negativeOptionValues() throws {
        let cases: [(arguments: [String], message: String)] = [
            (["bench", "engine", "--payments", "-5"], "--payments must be in 1...50000000, got -5"),
            (["load", "http://127.0.0.1:9", "--rate", "-2.5", "--duration", "1"], "--rate: expected requests per second in (0, 1000000], found -2.5"),
            (["claim", "--availability", "99.9", "--failures", "-1"], "--failures"),
            (["bench", "server", "--rates", "-5,10"], "--rates"),
            (["run", packageRoot + "/Scenarios/baseline.yaml", "--seed", "-1"], "The value '-1' is invalid for '--seed <seed>'"),
        ]
        for (arguments, message) in cases {
            let outcome = try paystorm(arguments)
            #expect(outcome.status == 64, "\(arguments): \(outcome.error)")
            #expect(outcome.error.contains(message), "\(arguments): \(outcome.error)")
            #expect(!outcome.error.contains("Missing value"), "\(arguments): \(outcome.error)")
        }
    }

    /// A run stopped by Ctrl-C used to leave its scratch database behind:
    /// at the reference size, gigabytes in the temporary directory.
    @Test("an interrupted bench world removes its scratch database and ends by the signal")
    func interruptedWorldRemovesScratch() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable), "build the executable first (swift build --build-tests)")
        let directory = scratch + "/world-scratch"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["bench", "world", "--payments", "20000", "--scratch", directory]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        var waited = 0.0
        while (try FileManager.default.contentsOfDirectory(atPath: directory)).isEmpty && waited < 60 && process.isRunning {
            Thread.sleep(forTimeInterval: 0.1)
            waited += 0.1
        }
        try #require(!(try FileManager.default.contentsOfDirectory(atPath: directory)).isEmpty, "the run never made its scratch database")
        kill(process.processIdentifier, SIGINT)
        waited = 0
        while process.isRunning && waited < 20 {
            Thread.sleep(forTimeInterval: 0.1)
            waited += 0.1
        }
        #expect(!process.isRunning)
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGINT)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == [])
    }

    @Test("bench --store: an empty path or an unusable place is refused up front (64), naming it")
    func benchStorePaths() throws {
        let empty = try paystorm(["bench", "engine", "--payments", "10", "--store", ""])
        #expect(empty.status == 64 && empty.error.contains("--store: give the path of a new database file"), "\(empty.error)")
        let file = try temporaryFile("plain", "x")
        let underFile = try paystorm(["bench", "store", "--rows", "10", "--store", file + "/bench.db"])
        #expect(underFile.status == 64 && underFile.error.contains("no directory \(file) to make it in"), "\(underFile.error)")
    }

    @Test("bench engine --runs: each run, then the median, best and worst; the SQL is the same in every run")
    func benchEngineRuns() throws {
        let result = try paystorm(["bench", "engine", "--payments", "300", "--batch", "100", "--runs", "3"])
        #expect(result.status == 0, "\(result.output) \(result.error)")
        for number in 1...3 { #expect(result.output.contains("run \(number) of 3: engine lifecycles (:memory:): 300 payments")) }
        #expect(result.output.contains("payments/s over 3 runs: median "))
        #expect(result.output.contains("checked: 300 journal entries") && result.output.contains("no invariant violations"))
        #expect(try paystorm(["bench", "engine", "--runs", "0"]).error.contains("--runs must be in 1...1000"))
    }

    @Test("bench server --runs: each run on its own server and database, then each rate's median, best and worst")
    func benchServerRuns() throws {
        let kept = scratch + "/bench-server-runs"
        let result = try paystorm(["bench", "server", "--rates", "50", "--duration", "1", "--warmup", "0", "--runs", "2", "--keep", kept])
        #expect(result.status == 0, "\(result.output) \(result.error)")
        for number in 1...2 {
            #expect(result.output.contains("run \(number) of 2\nbench server: durable POST /payments"), "\(result.output)")
            #expect(FileManager.default.fileExists(atPath: "\(kept)/run-\(number)/bench.sqlite"), "run \(number) had a database of its own")
        }
        // Each run's p50, as printed, and the summary's: the median of two is their mean, best the lower, worst the higher.
        let parts = result.output.components(separatedBy: "over 2 runs, the median (best and worst, each figure's own):\n")
        try #require(parts.count == 2, "\(result.output)")
        let perRun = parts[0].matches(of: /latency p50 ([0-9.]+) ms/).compactMap { Double($0.output.1) }
        try #require(perRun.count == 2, "\(parts[0])")
        let summary = parts[1]
        #expect(summary.hasPrefix("  offered 50/s: accepted "), "\(summary)")
        let p50 = try #require(summary.firstMatch(of: /; p50 ([0-9.]+) ms \(best ([0-9.]+), worst ([0-9.]+)\)/), "\(summary)")
        let (median, best, worst) = (Double(p50.output.1)!, Double(p50.output.2)!, Double(p50.output.3)!)
        #expect(abs(median - (perRun[0] + perRun[1]) / 2) <= 0.011, "the median of two runs is their mean: \(p50.output.0) from \(perRun)")
        #expect(best == perRun.min() && worst == perRun.max(), "\(p50.output.0) from \(perRun)")
        #expect(summary.firstMatch(of: /; p99 [0-9.]+ ms \(best [0-9.]+, worst [0-9.]+\)/) != nil, "\(summary)")
        // The kept databases are the generator's payments: a second run into them would only replay.
        let again = try paystorm(["bench", "server", "--rates", "50", "--duration", "1", "--runs", "2", "--keep", kept])
        #expect(again.status == 64 && again.error.contains("run-1/bench.sqlite exists from an earlier run"), "\(again.error)")
        #expect(try paystorm(["bench", "server", "--runs", "0"]).error.contains("--runs must be in 1...100, got 0"))
    }

    @Test("server mode: bad options and an unreachable server are bad input (64), with a message that names them")
    func serverBadInput() throws {
        let port = try paystorm(["serve", "--port", "99999"])
        #expect(port.status == 64)
        #expect(port.error.contains("--port"))
        // Under the usage of the command that was given, not of `paystorm` itself.
        #expect(port.error.contains("Usage: paystorm serve"))
        #expect(try paystorm(["bench", "server", "--rates", "100,0"]).error.contains("Usage: paystorm bench server"))
        #expect(try paystorm(["serve", "--psps", ","]).status == 64)
        #expect(try paystorm(["serve", "--database", "/nonexistent/dir/p.sqlite", "--port", "0"]).status == 64)
        // Negative was silently "off", and a tiny rate trapped on the first 429. (The database
        // cannot open, so that a server that took the option would not keep running.)
        for (option, value) in [("--rate-limit", "-1"), ("--rate-limit", "nan"), ("--reconcile-every", "-5"), ("--reconcile-every", "1e300"),
                                ("--witness-every", "-1"), ("--witness-every", "0.5")] {
            let refused = try paystorm(["serve", "\(option)=\(value)", "--database", "/nonexistent/dir/p.sqlite", "--port", "0"])
            #expect(refused.status == 64 && refused.error.contains("\(option): expected"), "\(option) \(value): \(refused.error)")
        }
        // The development webhook secrets are public: not off loopback, and a secrets file must be complete.
        let exposed = try paystorm(["serve", "--host", "0.0.0.0", "--port", "0", "--database", "/nonexistent/dir/p.sqlite"])
        #expect(exposed.status == 64 && exposed.error.contains("--webhook-secrets FILE"), "\(exposed.error)")
        let partial = try temporaryFile("secrets.txt", "stripe whsec_3f9c1e7a52d84b06\nnotifications ntf_5e0a7c3b9d1f2468\n")
        let incomplete = try paystorm(["serve", "--webhook-secrets", partial, "--port", "0", "--database", "/nonexistent/dir/p.sqlite"])
        #expect(incomplete.status == 64 && incomplete.error.contains("no secret for PSP paypal"), "\(incomplete.error)")
        let strangers = try temporaryFile("other-secrets.txt", "adyen whsec_3f9c1e7a52d84b06\n")
        #expect(try paystorm(["psp-sandbox", "--webhook-secrets", strangers, "--port", "0"]).error.contains("names none of the sandbox's PSPs"))
        // So are the development API keys and admin key.
        let complete = try temporaryFile("all-secrets.txt",
                                         "stripe whsec_3f9c1e7a52d84b06\npaypal whsec_8a1d4c7e2b5f9036\nnotifications ntf_5e0a7c3b9d1f2468\n")
        let openKeys = try paystorm(["serve", "--host", "0.0.0.0", "--webhook-secrets", complete, "--port", "0", "--database", "/nonexistent/dir/p.sqlite"])
        #expect(openKeys.status == 64 && openKeys.error.contains("give --api-keys FILE"), "\(openKeys.error)")
        let keys = try temporaryFile("keys.txt", "m-1 sk_live_0c4f8a2d6e1b9375\n")
        let openAdmin = try paystorm(["serve", "--host", "0.0.0.0", "--webhook-secrets", complete, "--api-keys", keys, "--port", "0",
                                      "--database", "/nonexistent/dir/p.sqlite"])
        #expect(openAdmin.status == 64 && openAdmin.error.contains("give --admin-key"), "\(openAdmin.error)")
        #expect(try paystorm(["psp-sandbox", "--ambiguous-rate", "2"]).status == 64)
        #expect(try paystorm(["psp-sandbox", "--profile", "fancy"]).status == 64)
        #expect(try paystorm(["load", "localhost:8080", "--rate", "10", "--duration", "1"]).status == 64)
        #expect(try paystorm(["load", "http://127.0.0.1:8080", "--rate", "0", "--duration", "1"]).status == 64)
        let mix = try paystorm(["load", "http://127.0.0.1:8080", "--rate", "10", "--duration", "1", "--mix", "payments=x"])
        #expect(mix.status == 64)
        #expect(mix.error.contains("--mix") && mix.error.contains("Usage: paystorm load"), "refused before any request, under load's usage")
        #expect(try paystorm(["load", "http://127.0.0.1:8080", "--rate", "10", "--duration", "1", "--threshold", "p(99)<"]).error.contains("Usage: paystorm load"))
        let dead = try paystorm(["load", "http://127.0.0.1:1", "--rate", "5", "--duration", "1", "--out", scratch + "/dead-load"])
        #expect(dead.status == 64, "a server that is not there is not a measurement")
        #expect(dead.error.contains("cannot reach"))
        #expect(!dead.error.contains("Usage:"), "a problem met while running is one line, not a usage screen")
        #expect(try paystorm(["audit", "--database", "/nonexistent.sqlite"]).status == 64)
    }

    /// Two servers on one database both ran the outbox relay, the consumers
    /// and recovery on it; the second logged UNIQUE constraint failures.
    @Test("serve refuses a database another serve holds, and a port in use, with 64 and a message naming it; writing nothing")
    func serveRefusesWhatIsTaken() throws {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let database = scratch + "/held.sqlite"
        let first = try Running(["serve", "--port", "0", "--database", database, "--psp-url", "http://127.0.0.1:9"], ready: "listening on")
        defer { first.stop() }
        let address = try #require(first.log.firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/), "\(first.log)")
        let port = String(address.1)
        let second = try paystorm(["serve", "--port", "0", "--database", database, "--psp-url", "http://127.0.0.1:9"], timeoutSeconds: 20)
        #expect(second.status == 64, "\(second.error)")
        #expect(second.error.contains(database) && second.error.contains("another paystorm serve"), "\(second.error)")
        // Through another path to the same file, too.
        let relative = try paystorm(["serve", "--port", "0", "--database", scratch + "/./held.sqlite", "--psp-url", "http://127.0.0.1:9"],
                                    timeoutSeconds: 20)
        #expect(relative.status == 64, "\(relative.error)")
        let link = scratch + "/link.sqlite"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: database)
        let linked = try paystorm(["serve", "--port", "0", "--database", link, "--psp-url", "http://127.0.0.1:9"], timeoutSeconds: 20)
        #expect(linked.status == 64 && linked.error.contains("another paystorm serve"), "\(linked.error)")
        let taken = try paystorm(["serve", "--port", port, "--database", scratch + "/fresh.sqlite", "--psp-url", "http://127.0.0.1:9"],
                                 timeoutSeconds: 20)
        #expect(taken.status == 64, "\(taken.error)")
        #expect(taken.error.contains("cannot listen on 127.0.0.1:\(port)") && taken.error.contains("choose another --port or --host"),
                "\(taken.error)")
        #expect(!taken.error.contains("bind(descriptor"), "\(taken.error)")
        #expect(scratchFiles("fresh").isEmpty, "a refused start wrote \(scratchFiles("fresh"))")
        first.stop()
        #expect(first.process.terminationStatus == 0)
    }

    @Test("serve and psp-sandbox refuse bad configuration at start with 64, writing nothing")
    func serveRefusesBadConfiguration() throws {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        func refused(_ arguments: [String], _ words: [String], file: Int = #line) throws {
            var arguments = arguments
            // No sandbox: a server that took the option would start and serve (until the timeout).
            if arguments.first == "serve" && !arguments.contains("--psp-url") { arguments += ["--psp-url", "http://127.0.0.1:9"] }
            let outcome = try paystorm(arguments, timeoutSeconds: 20)
            #expect(outcome.status == 64, "\(arguments) (line \(file)): status \(outcome.status), \(outcome.error)")
            for word in words { #expect(outcome.error.contains(word), "\(arguments) (line \(file)): \(outcome.error)") }
        }
        let database = scratch + "/config.sqlite"
        let admin = try temporaryFile("admin-keys.txt", "m1 sk_live_0c4f8a2d6e1b9375\nm2 sk_admin_dev\n")
        try refused(["serve", "--port", "0", "--database", database, "--api-keys", admin], ["admin-keys.txt:2", "admin key"])
        let empty = try temporaryFile("no-keys.txt", "# no keys yet\n\n")
        try refused(["serve", "--port", "0", "--database", database, "--api-keys", empty], ["no-keys.txt", "no keys"])
        try refused(["serve", "--port", "0", "--database", database, "--psps", "stripe,stripe"], ["--psps", "stripe", "more than once"])
        try FileManager.default.createDirectory(atPath: scratch + "/adir", withIntermediateDirectories: true)
        try refused(["serve", "--port", "0", "--database", scratch + "/adir"], ["--database", "directory"])
        try refused(["serve", "--port", "0", "--database", database, "--notify-url", "ftp://x"], ["--notify-url", "ftp://x", "http://"])
        try refused(["serve", "--port", "0", "--database", database, "--psp-url", "notaurl"], ["--psp-url", "notaurl", "http://"])
        #expect(scratchFiles("config").isEmpty && scratchFiles("adir.").isEmpty, "a refused start wrote \(scratchFiles("config") + scratchFiles("adir."))")
        try refused(["psp-sandbox", "--port", "0", "--webhook-url", "notaurl"], ["--webhook-url", "notaurl"])
        let onlyNotifications = try temporaryFile("notify-only.txt", "notifications ntf_5e0a7c3b9d1f2468\n")
        try refused(["psp-sandbox", "--port", "0", "--webhook-secrets", onlyNotifications], ["--webhook-secrets", "names none"])
        let help = try paystorm(["psp-sandbox", "--help"])
        #expect(help.output.contains("default, ideal"), "the help names the profiles --profile takes: \(help.output)")
        #expect(!help.output.contains("stripe,paypal (the simulator"), "\(help.output)")
    }

    @Test("claim: the requests a 99.99% claim needs, and what a run proves")
    func claim() throws {
        let result = try paystorm(["claim", "--availability", "99.99", "--confidence", "95", "--requests", "10000"])
        #expect(result.status == 0)
        #expect(result.output.contains("29956 requests"))
        #expect(result.output.contains("does not prove"))
    }
}
