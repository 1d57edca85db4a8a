import Foundation
import Testing
@testable import PaystormScenario
@testable import PaystormWorld

@Suite("Swarm, shrink and compare")
struct SwarmTests {
    @Test("each seed draws its own valid faults and knobs, the same every time")
    func swarmIsDeterministic() throws {
        let base = try Scenario.parse(tinyScenario, file: "tiny.yaml").world
        for seed in UInt64(1)...20 {
            let world = Swarm.configure(base, seed: seed)
            try world.validate()
            #expect(!world.faults.isEmpty && world.buggify.enabled)
            #expect(Swarm.configure(base, seed: seed).faults == world.faults)
        }
        #expect(Swarm.configure(base, seed: 1).faults != Swarm.configure(base, seed: 2).faults)
    }

    @Test("ddmin finds the two faults that together cause a failure, and renders them as scenario YAML")
    func shrinkerFindsTheCause() throws {
        let faults = (0..<9).map { ScheduledFault(atSeconds: Double($0), durationSeconds: 1, kind: .replicaCrash(replica: $0 % 3)) }
        let cause = [faults[2], faults[7]]
        let (minimal, runs, proven) = Shrinker.shrink(faults) { subset in cause.allSatisfy(subset.contains) }
        #expect(minimal == cause && proven)
        #expect(runs < 40)
        // A budget spent before the search ends says so, and a search that ends on its last allowed run does not.
        let cut = Shrinker.shrink(faults, runLimit: 3) { subset in cause.allSatisfy(subset.contains) }
        #expect(!cut.proven && cut.runs == 3 && cut.minimal.count > 2)
        #expect(Shrinker.shrink(faults, runLimit: runs) { subset in cause.allSatisfy(subset.contains) }.proven)
        #expect(!Shrinker.shrink(faults, runLimit: runs - 1) { subset in cause.allSatisfy(subset.contains) }.proven)
        let yaml = Shrinker.yaml(minimal)
        let scenario = try Scenario.parse("name: s\npayments: 100\nload: {rate: 5}\n" + yaml, file: "s.yaml")
        #expect(scenario.world.faults == cause)
    }

    @Test("a shrunk swarm run written as a scenario is that run: seed, faults and drawn knobs in place of the file's own")
    func shrunkScenarioRepeatsTheRun() throws {
        let original = "# a comment kept\n" + tinyScenario.replacingOccurrences(of: "seed: 3\n", with: "") + "\nseed: 99\nfaults:\n  - { at: 1s, for: 2s, kind: replica_crash, replica: 0 }\n"
            + "buggify: { enabled: false }\nnetwork:\n  loss_rate: 0\n"
        let base = try Scenario.parse(original, file: "tiny.yaml").world
        var world = Swarm.configure(base, seed: 7)
        world.faults = Array(world.faults.dropFirst())
        let text = Shrinker.scenarioText(original, world: world, swarm: true)
        #expect(text.hasPrefix("# a comment kept\n"))
        let written = try Scenario.parse(text, file: "tiny-7-shrunk.yaml").world
        #expect(written.seed == 7 && written.faults == world.faults)
        #expect(written.buggify.enabled && written.buggify.fireProbability == world.buggify.fireProbability)
        #expect(written.network.lossRate == world.network.lossRate && written.network.duplicationRate == world.network.duplicationRate)
        // Run as it is, the file makes the shrunk run: the same trace.
        #expect(try PaymentsWorld.run(written).traceHash == PaymentsWorld.run(world).traceHash)
        // Without the swarm's knobs, only the seed and faults are replaced; the file's own settings stay.
        let plain = try Scenario.parse(Shrinker.scenarioText(original, world: world, swarm: false), file: "t.yaml").world
        #expect(plain.seed == 7 && plain.faults == world.faults && !plain.buggify.enabled)
        // Other layouts of the same file: Windows line ends, a list at its key's column, quoted keys.
        for layout in [original.replacingOccurrences(of: "\n", with: "\r\n"),
                       original.replacingOccurrences(of: "faults:\n  - ", with: "faults:\n- "),
                       original.replacingOccurrences(of: "seed: 99", with: "\"seed\": 99").replacingOccurrences(of: "\nfaults:", with: "\n'faults':")] {
            let written = try Scenario.parse(Shrinker.scenarioText(layout, world: world, swarm: true), file: "t.yaml").world
            #expect(written.seed == 7 && written.faults == world.faults, "\(layout)")
        }
    }

    /// The shrunk file used to keep the original's description, which for
    /// a fault-free scenario said "no faults" above the faults it now lists.
    @Test("a shrunk scenario's description replaces the file's own and reads back exactly")
    func shrunkScenarioDescription() throws {
        let original = tinyScenario.replacingOccurrences(of: "description: A small healthy world.", with: "description: no faults at all")
        let world = try Scenario.parse(original, file: "tiny.yaml").world
        let description = #"Shrunk from a "tiny" file\1: 1 fault(s) that still give threshold-failed. The original: no faults at all"#
        let written = try Scenario.parse(Shrinker.scenarioText(original, world: world, swarm: false, description: description), file: "t.yaml")
        #expect(written.description == description)
        // A description over several lines (a block scalar in the file) reads back with its line ends and tabs.
        let lines = "Shrunk: 1 fault(s). The original: first line\n\tsecond \u{7} line\r\n"
        #expect(try Scenario.parse(Shrinker.scenarioText(original, world: world, swarm: false, description: lines), file: "t.yaml").description == lines)
        #expect(try Scenario.parse(Shrinker.scenarioText(original, world: world, swarm: false), file: "t.yaml").description == "no faults at all")
    }

    @Test("shrinking a real failing run keeps only the fault that breaks the SLO")
    func shrinkRealRun() throws {
        var scenario = try Scenario.parse(tinyScenario.replacingOccurrences(of: "p(99) < 250ms", with: "p(99.9) < 1s"), file: "tiny.yaml")
        scenario.world.faults = [
            ScheduledFault(atSeconds: 0.5, durationSeconds: 2, kind: .webhookStorm(psp: "stripe", count: 50)),
            ScheduledFault(atSeconds: 1, durationSeconds: 2, kind: .replicaCrash(replica: 0)),
            ScheduledFault(atSeconds: 1.5, durationSeconds: 1, kind: .clockSkew(replica: 1, offsetSeconds: 1)),
        ]
        let failing = ScenarioRun.judge(scenario, try PaymentsWorld.run(scenario.world))
        #expect(failing.status == .thresholdFailed, "\(failing.verdicts)")
        let (minimal, _, _) = try Shrinker.shrink(scenario.world.faults) { faults in
            var world = scenario.world
            world.faults = faults
            return ScenarioRun.judge(scenario, try PaymentsWorld.run(world)).status == .thresholdFailed
        }
        #expect(minimal == [scenario.world.faults[1]])
    }

    @Test("compare: a run against itself changes nothing; a slower run is significantly slower")
    func compare() throws {
        let scenario = try Scenario.parse(tinyScenario, file: "tiny.yaml")
        let fast = try ScenarioRun.run(scenario).document
        var slowScenario = scenario
        slowScenario.world.service.apiServiceMedianSeconds = 0.05
        let slow = try ScenarioRun.run(slowScenario).document
        let same = Comparison.compare(fast, fast)
        #expect(same.allSatisfy { !$0.significant })
        let rows = Comparison.compare(fast, slow)
        let p50 = try #require(rows.first { $0.metric == "latency p50" })
        #expect(p50.significant && p50.change.hasPrefix("+"))
    }

    /// Two runs offered different loads: the achieved rate differs by the
    /// load. compare shows both rates and says the loads differ.
    @Test("compare: runs offered different loads show the offered rate and a note")
    func compareDifferentLoads() throws {
        var scenario = try Scenario.parse(tinyScenario, file: "tiny.yaml")
        let base = try ScenarioRun.run(scenario).document
        #expect(Comparison.loadWarning(base, base) == nil)
        scenario.world.load = .constant(ratePerSecond: 2 * (base.requests.offeredPerSecond))
        let doubled = try ScenarioRun.run(scenario).document
        let offered = try #require(Comparison.compare(base, doubled).first { $0.metric == "offered rate" })
        #expect(offered.change.hasPrefix("+"), "\(offered)")
        let warning = try #require(Comparison.loadWarning(base, doubled))
        #expect(warning.contains(String(format: "%.1f/s", base.requests.offeredPerSecond)), "\(warning)")
    }

    /// The same run measured in 1 s and in 2 s windows: a 2 s window holds
    /// twice the answers, which is no change in rate.
    @Test("compare: windows of different lengths compare per second")
    func compareAcrossWindowLengths() throws {
        var scenario = try Scenario.parse(tinyScenario, file: "tiny.yaml")
        let short = try ScenarioRun.run(scenario).document
        scenario.world.windowSeconds = 2
        let long = try ScenarioRun.run(scenario).document
        #expect(short.requests.achievedPerSecond == long.requests.achievedPerSecond)
        let rate = try #require(Comparison.compare(short, long).first { $0.metric == "achieved rate" })
        #expect(!rate.significant, "p = \(rate.pValue.map { String($0) } ?? "none")")
    }
}
