import Foundation
import Testing
@testable import PaystormScenario
@testable import PaystormWorld

@Suite("Capacity sweeps: grids, knees, shards")
struct SweepTests {
    @Test("axes: ranges, steps, factors and durations; bad specs are refused with the reason")
    func axes() throws {
        #expect(try Sweep.Axis.parse("load.rate=200..1000:200").values == [200, 400, 600, 800, 1000])
        #expect(try Sweep.Axis.parse("service.replicas=1..8x2").values == [1, 2, 4, 8])
        #expect(try Sweep.Axis.parse("psp.latency_median=100ms..300ms:100ms").values.map { ($0 * 1000).rounded() } == [100, 200, 300])
        #expect(try Sweep.Axis.parse("service.workers=3..3").values == [3])
        // Without a step, FROM..TO is its two ends, whatever the distance between them.
        #expect(try Sweep.Axis.parse("load.rate=0.5..0.9").values == [0.5, 0.9])
        #expect(try Sweep.Axis.parse("psp.latency_median=100ms..150ms").values.map { ($0 * 1000).rounded() } == [100, 150])
        #expect(try Sweep.Axis.parse("service.replicas=1..8").values == [1, 8])
        // A factor's values are rounded to whole numbers for a whole-number key.
        #expect(try Sweep.Axis.parse("service.replicas=1..8x1.5").values == [1, 2, 3, 5, 8])
        #expect(throws: SweepError("service.replicas takes whole numbers; 1.5 is not one")) { try Sweep.Axis.parse("service.replicas=1.5..3") }
        for bad in ["load.rates=1..2", "load.rate=5..1", "load.rate=0..10:5", "load.rate=1..10:0", "load.rate", "service.replicas=1..4x1",
                    "service.replicas=1.5..3", "service.workers=1..4:0.5", "payments=100..200.5"] {
            #expect(throws: SweepError.self, "\(bad)") { try Sweep.Axis.parse(bad) }
        }
        do {
            _ = try Sweep.Axis.parse("load.rates=1..2")
        } catch {
            #expect(error.message.contains("unknown sweep key \"load.rates\"") && error.message.contains("load.rate"))
        }
        let grid = Sweep.grid([try Sweep.Axis.parse("load.rate=1..3:1"), try Sweep.Axis.parse("service.replicas=1..2")], seeds: 1...2)
        #expect(grid.count == 12 && Set(grid.map(\.index)).count == 6)
    }

    @Test("an integer axis out of Int's range is refused, naming the axis, instead of trapping when it is applied")
    func hugeIntegerAxis() throws {
        for text in ["payments=1..1e300", "service.replicas=1..1e19:1e18", "broker.partitions=1..2e19x10"] {
            let key = String(text.prefix { $0 != "=" })
            let error = #expect(throws: SweepError.self, "\(text)") { try Sweep.Axis.parse(text) }
            #expect(error?.message.hasPrefix("\(key): ") == true && error?.message.contains("too large") == true, "\(error?.message ?? "")")
        }
        #expect(throws: SweepError.self) { try Sweep.Axis.parse("load.rate=1..inf") }
        // The largest whole numbers Int holds still parse; the world's own validation judges them.
        #expect(try Sweep.Axis.parse("payments=1..1e18").values == [1, 1e18])
        let cli = CLITests()
        let scenario = try cli.temporaryFile("tiny.yaml", tinyScenario)
        let refused = try cli.paystorm(["sweep", scenario, "--vary", "payments=1..1e300", "--out", cli.scratch + "/huge", "--quiet"])
        #expect(refused.status == 64, "\(refused.error)")
        #expect(refused.error.contains("payments: 1e300 is too large"), "\(refused.error)")
    }

    func knee(replicas: Int, pspLatency: Double) throws -> SweepResult.Knee {
        var scenario = try Scenario.load(path: packageRoot + "/Scenarios/capacity.yaml")
        scenario.world.payments = 2_000
        scenario.world.service.replicas = replicas
        for index in scenario.world.psps.indices { scenario.world.psps[index].latencyMedianSeconds = pspLatency }
        let axis = try Sweep.Axis.parse("load.rate=300..1500:300")
        let points = try Sweep.grid([axis], seeds: 1...1).map { try Sweep.run(scenario, index: $0.index, settings: $0.settings, seed: $0.seed) }
        let result = SweepResult.merge(scenarioName: scenario.name, scenarioHash: scenario.hash, axes: [axis], seeds: [1], points: points)
        return try #require(result.knees.first)
    }

    @Test("the shipped capacity scenario's knee moves up with a second replica and down with a slower PSP")
    func kneeMoves() throws {
        let base = try knee(replicas: 1, pspLatency: 0.150)
        // One replica saturates inside the grid, and passes somewhere below.
        let saturated = try #require(base.firstFailingRate, "\(base.explanation)")
        let passing = try #require(base.lastPassingRate, "\(base.explanation)")
        let twoReplicas = try knee(replicas: 2, pspLatency: 0.150)
        #expect((twoReplicas.lastPassingRate ?? 0) >= saturated, "1 replica: \(base.explanation); 2 replicas: \(twoReplicas.explanation)")
        let slowPSP = try knee(replicas: 1, pspLatency: 0.900)
        #expect((slowPSP.lastPassingRate ?? 0) < passing, "150 ms: \(base.explanation); 900 ms: \(slowPSP.explanation)")
    }

    @Test("shards merged equal a single run, byte for byte; an incomplete merge is refused")
    func shardsMerge() throws {
        let cli = CLITests()
        let base = NSTemporaryDirectory() + "paystorm-sweep-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let scenario = try cli.temporaryFile("tiny.yaml", tinyScenario)
        let vary = ["--vary", "load.rate=100..200:100", "--vary", "service.replicas=1..2"]
        #expect(try cli.paystorm(["sweep", scenario] + vary + ["--out", base + "/single", "--quiet"]).status == 0)
        for shard in 0..<2 {
            let result = try cli.paystorm(["sweep", scenario] + vary + ["--shard", "\(shard)/2", "--out", base + "/shard\(shard)", "--quiet"])
            #expect(result.status == 0, "\(result.error)")
        }
        let incomplete = try cli.paystorm(["merge", base + "/shard0/tiny-sweep", "--out", base + "/partial"])
        #expect(incomplete.status == 64 && incomplete.error.contains("missing"))
        let merged = try cli.paystorm(["merge", base + "/shard0/tiny-sweep", base + "/shard1/tiny-sweep", "--out", base + "/merged"])
        #expect(merged.status == 0, "\(merged.error)")
        for name in ["sweep.json", "sweep.csv", "sweep.md", "sweep.html"] {
            let single = try Data(contentsOf: URL(fileURLWithPath: base + "/single/tiny-sweep/" + name))
            let combined = try Data(contentsOf: URL(fileURLWithPath: base + "/merged/" + name))
            #expect(!single.isEmpty && single == combined, "\(name) differs")
        }
        let result = try SweepReport.decode(try Data(contentsOf: URL(fileURLWithPath: base + "/merged/sweep.json")))
        #expect(result.points.count == 4 && result.knees.count == 2)
        // A sweep over two processes leaves what one process does: the spec and a file per run, so it merges again.
        #expect(try cli.paystorm(["sweep", scenario] + vary + ["--jobs", "2", "--out", base + "/parallel", "--quiet"]).status == 0)
        let parallel = base + "/parallel/tiny-sweep"
        #expect(FileManager.default.fileExists(atPath: parallel + "/spec.json"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: parallel + "/points").count == 4)
        #expect(try cli.paystorm(["merge", parallel, "--out", base + "/remerged"]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: base + "/remerged/sweep.json"))
                == Data(contentsOf: URL(fileURLWithPath: base + "/merged/sweep.json")))
        let over = try cli.paystorm(["sweep", scenario] + vary + ["--budget", "3"])
        #expect(over.status == 64 && over.error.contains("more than --budget 3"))
        let unknown = try cli.paystorm(["sweep", scenario, "--vary", "service.replica=1..2"])
        #expect(unknown.status == 64 && unknown.error.contains("unknown sweep key"))
    }

    @Test("merge takes only point files of its spec's scenario version and grid, and names the runs missing")
    func mergeRefusesLeftovers() throws {
        let cli = CLITests()
        let base = cli.scratch + "/leftovers"
        let first = try cli.temporaryFile("tiny.yaml", tinyScenario)
        let edited = try cli.temporaryFile("tiny-edited.yaml", tinyScenario + "\n# edited\n")
        let vary = ["--vary", "load.rate=100..200"]
        // Shard 1 of the first version, then shard 0 of the edited one, into one directory: its spec.json is the edited one's.
        #expect(try cli.paystorm(["sweep", first] + vary + ["--shard", "1/2", "--out", base, "--quiet"]).status == 0)
        #expect(try cli.paystorm(["sweep", edited] + vary + ["--shard", "0/2", "--out", base, "--quiet"]).status == 0)
        let otherVersion = try cli.paystorm(["merge", base + "/tiny-sweep", "--out", base + "/merged"])
        #expect(otherVersion.status == 64, "\(otherVersion.output) \(otherVersion.error)")
        #expect(otherVersion.error.contains("1 of 2 run(s) missing: point 1 (load.rate=200) seed 3"), "\(otherVersion.error)")
        #expect(otherVersion.error.contains("points/1-3.json: scenario hash"), "\(otherVersion.error)")
        #expect(!FileManager.default.fileExists(atPath: base + "/merged/sweep.json"))
        // Another grid into the same directory: its point 0 is load.rate=200, not the leftover's 100.
        #expect(try cli.paystorm(["sweep", edited, "--vary", "load.rate=200..300", "--shard", "1/2", "--out", base, "--quiet"]).status == 0)
        let otherGrid = try cli.paystorm(["merge", base + "/tiny-sweep", "--out", base + "/merged"])
        #expect(otherGrid.status == 64, "\(otherGrid.output) \(otherGrid.error)")
        #expect(otherGrid.error.contains("1 of 2 run(s) missing: point 0 (load.rate=200) seed 3"), "\(otherGrid.error)")
        #expect(otherGrid.error.contains("points/0-3.json: not a run of this sweep's grid"), "\(otherGrid.error)")
        // The missing run made, the merge completes.
        #expect(try cli.paystorm(["sweep", edited, "--vary", "load.rate=200..300", "--shard", "0/2", "--out", base, "--quiet"]).status == 0)
        let complete = try cli.paystorm(["merge", base + "/tiny-sweep", "--out", base + "/merged"])
        #expect(complete.status == 0, "\(complete.error)")
        let result = try SweepReport.decode(try Data(contentsOf: URL(fileURLWithPath: base + "/merged/sweep.json")))
        #expect(result.points.map { $0.settings["load.rate"] } == [200, 300])
    }

    @Test("a sweep passes past its knee but fails, naming the runs, when one broke an invariant")
    func brokenInvariantFailsTheSweep() throws {
        let cli = CLITests()
        let base = cli.scratch + "/verdict"
        let scenario = try cli.temporaryFile("tiny.yaml", tinyScenario)
        #expect(try cli.paystorm(["sweep", scenario, "--vary", "load.rate=100..200", "--out", base, "--quiet"]).status == 0)
        // The run at 200/s as a run that broke invariants leaves it: the merge's verdict reads the point files.
        let path = base + "/tiny-sweep/points/1-3.json"
        var file = try JSONDecoder().decode(SweepPointFileForTests.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        file.point.exitCode = ExitStatus.livenessFailed.rawValue
        file.point.status = ExitStatus.livenessFailed.label
        file.point.violations = 2
        try JSONEncoder().encode(file).write(to: URL(fileURLWithPath: path))
        let liveness = try cli.paystorm(["merge", base + "/tiny-sweep", "--out", base + "/liveness"])
        #expect(liveness.status == 4, "\(liveness.output) \(liveness.error)")
        #expect(liveness.error.contains("1 of 2 run(s) broke an invariant"), "\(liveness.error)")
        #expect(liveness.error.contains("point 1 (load.rate=200) seed 3: liveness-failed, 2 violation(s)"), "\(liveness.error)")
        // The reports are written all the same.
        #expect(FileManager.default.fileExists(atPath: base + "/liveness/sweep.json"))
        // A safety violation outranks it.
        let other = base + "/tiny-sweep/points/0-3.json"
        var safety = try JSONDecoder().decode(SweepPointFileForTests.self, from: Data(contentsOf: URL(fileURLWithPath: other)))
        safety.point.exitCode = ExitStatus.invariantViolated.rawValue
        safety.point.status = ExitStatus.invariantViolated.label
        try JSONEncoder().encode(safety).write(to: URL(fileURLWithPath: other))
        let both = try cli.paystorm(["merge", base + "/tiny-sweep", "--out", base + "/both"])
        #expect(both.status == 3 && both.error.contains("2 of 2 run(s) broke an invariant"), "\(both.error)")
    }
}

/// A sweep's point file as `paystorm sweep` writes it (the executable's `SweepPointFile`).
struct SweepPointFileForTests: Codable {
    var scenarioHash: String
    var point: Sweep.Point
}
