import Foundation
import Testing
@testable import PaystormScenario
@testable import PaystormWorld

/// The package root, from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

func scenarioError(_ text: String) -> ScenarioError? {
    do {
        _ = try Scenario.parse(text, file: "test.yaml")
        return nil
    } catch {
        return error
    }
}

@Suite("Scenario files: every shipped one is valid; bad input is named by line and column")
struct ScenarioFileTests {
    static let shipped: [String] = {
        let directory = packageRoot + "/Scenarios"
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".yaml") }.sorted().map { directory + "/" + $0 }
    }()

    @Test("at least 12 scenarios ship, each valid, each with thresholds and a description")
    func shippedScenarios() throws {
        #expect(Self.shipped.count >= 12)
        for path in Self.shipped {
            let scenario = try Scenario.load(path: path)
            #expect(!scenario.thresholds.isEmpty, "\(path)")
            #expect(!scenario.description.isEmpty, "\(path)")
            #expect(scenario.name == URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent, "\(path)")
            if scenario.expectation == .fail { #expect(scenario.expectedExit != nil) }
        }
    }

    @Test("the JSON Schema is valid JSON and names every key the reader accepts")
    func schemaMatchesReader() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: packageRoot + "/Scenarios/scenario.schema.json"))
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let properties = try #require(schema["properties"] as? [String: Any])
        #expect(Set(properties.keys) == Set(Scenario.topKeys))
        #expect(schema["additionalProperties"] as? Bool == false)
        let defs = try #require(schema["$defs"] as? [String: Any])
        let fault = try #require(defs["fault"] as? [String: Any])
        let kinds = try #require(fault["oneOf"] as? [[String: Any]]).compactMap {
            (($0["properties"] as? [String: Any])?["kind"] as? [String: Any])?["const"] as? String
        }
        #expect(Set(kinds) == Set(Scenario.faultKinds))
    }

    @Test("a scenario's fields reach the world")
    func fieldsReachTheWorld() throws {
        let scenario = try Scenario.parse("""
            name: t
            payments: 500
            seed: 9
            load: { profile: spike, base: 100, peak: 400, at: 5s, for: 2s }
            clients: { timeout: 250ms, refund_share: 10% }
            psps:
              - { id: a, latency_median: 80ms, ambiguous_rate: 1% }
              - { id: b, like: paypal }
            faults:
              - { at: 2s, for: 30s, kind: psp_brownout, psp: a, latency_factor: 4, error_rate: 0.2 }
            thresholds: ["p(99.9) < 1.5s", "availability >= 99.95%"]
            """, file: "t.yaml")
        #expect(scenario.world.seed == 9)
        #expect(scenario.world.load == .spike(base: 100, peak: 400, atSeconds: 5, forSeconds: 2))
        #expect(scenario.world.clients.timeoutSeconds == 0.25)
        #expect(abs(scenario.world.clients.refundShare - 0.1) < 1e-12)
        #expect(scenario.world.psps.map(\.id) == ["a", "b"])
        #expect(abs(scenario.world.psps[0].latencyMedianSeconds - 0.08) < 1e-12)
        #expect(scenario.world.psps[1].webhookDelayMedianSeconds == PSPProfile.paypalLike.webhookDelayMedianSeconds)
        #expect(scenario.world.faults == [ScheduledFault(atSeconds: 2, durationSeconds: 30, kind: .pspBrownout(psp: "a", latencyFactor: 4, errorRate: 0.2))])
        #expect(scenario.thresholds.count == 2 && scenario.thresholds[1].metric == .availability)
        guard case let .latency(p) = scenario.thresholds[0].metric else { Issue.record("not a latency threshold"); return }
        #expect(abs(p - 0.999) < 1e-12)
        #expect(abs(scenario.thresholds[1].value - 0.9995) < 1e-12)
    }

    @Test("bad input: each error names the file, line, column and what was expected")
    func badInput() throws {
        let unknown = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nclinets: {users: 4}\n"))
        #expect(unknown.line == 4 && unknown.column == 1)
        #expect(unknown.message.contains("unknown key \"clinets\"") && unknown.message.contains("did you mean \"clients\""))
        #expect(unknown.description.hasPrefix("test.yaml:4:1: "))

        let type = try #require(scenarioError("name: x\npayments: ten\nload: {rate: 5}\n"))
        #expect(type.line == 2 && type.column == 11 && type.message.contains("expected a whole number"))

        let malformed = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5\n"))
        #expect(malformed.line != nil && malformed.message.hasPrefix("malformed YAML"))

        let range = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nfaults:\n  - {at: 1s, kind: replica_crash, replica: 7}\n"))
        #expect(range.line == 5 && range.column == 44 && range.message.contains("faults[0].replica") && range.message.contains("0...2"))

        // Each fault kind takes its own keys: another kind's would be ignored, and the fault not be the one meant.
        let foreign = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nfaults:\n  - {at: 1s, for: 2s, kind: consumer_crash, group: ledger, replica: 1}\n"))
        #expect(foreign.line == 5 && foreign.message.contains("\"replica\" does not apply to a consumer_crash fault, which takes: at, for, kind, group, index"), "\(foreign)")
        let outageRate = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nfaults:\n  - {at: 1s, for: 2s, kind: psp_outage, psp: stripe, error_rate: 50%}\n"))
        #expect(outageRate.message.contains("\"error_rate\" does not apply to a psp_outage fault"), "\(outageRate)")
        // A fault that holds a state needs to last.
        let endless = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nfaults:\n  - {at: 1s, kind: psp_outage, psp: stripe}\n"))
        #expect(endless.message.contains("a psp_outage fault needs \"for\""), "\(endless)")
        let instant = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nfaults:\n  - {at: 1s, for: 0s, kind: partition, from: replica, to: psp}\n"))
        #expect(instant.message.contains("a duration above 0"), "\(instant)")
        // A crash may be straight back up.
        #expect(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nfaults:\n  - {at: 1s, kind: replica_crash, replica: 1}\n") == nil)
        // Clocks a retention apart (added up where skews overlap) would read idempotency records as expired.
        let skew = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nfaults:\n  - {at: 1s, for: 9s, kind: clock_skew, replica: 0, offset: 43200}\n"
            + "  - {at: 2s, for: 5s, kind: clock_skew, replica: 1, offset: -43200}\n"))
        #expect(skew.line == 5 && skew.message.contains("faults[0].offset") && skew.message.contains("replica 0's is 86400 s ahead"), "\(skew)")
        // One replica a retention ahead of its own clock before the skew; every replica at once; a skew that ends and
        // leaves another ahead of where the clock stood.
        for faults in ["  - {at: 1s, for: 9s, kind: clock_skew, replica: 0, offset: 86400}\n",
                       "  - {at: 1s, for: 9s, kind: clock_skew, replica: 0, offset: 86400}\n  - {at: 1s, for: 9s, kind: clock_skew, replica: 1, offset: 86400}\n",
                       "  - {at: 1s, for: 9s, kind: clock_skew, replica: 1, offset: 86400}\n  - {at: 1s, for: 4s, kind: clock_skew, replica: 1, offset: -86400}\n"] {
            let text = "name: x\npayments: 200\nload: {rate: 5}\nservice: {replicas: 2}\nfaults:\n" + faults
            #expect(scenarioError(text)?.message.contains("86400 s ahead") == true, "\(faults)")
            #expect(scenarioError(text.replacingOccurrences(of: "86400", with: "86399")) == nil, "just under the retention: \(faults)")
        }
        #expect(scenarioError("name: x\npayments: 200\nload: {rate: 5}\nfaults:\n  - {at: 1s, for: 9s, kind: clock_skew, replica: 0, offset: 43200}\n"
            + "  - {at: 20s, for: 5s, kind: clock_skew, replica: 1, offset: -43200}\n") == nil, "skews that never overlap")
        // A rate off by a few decimal places, or windows too small, are refused before any of the run.
        let slow = try #require(scenarioError("name: x\npayments: 1000\nload: {rate: 0.0001}\n"))
        #expect(slow.line == 3 && slow.message.contains("within 2592000 s (30 days)"), "\(slow)")
        let windows = try #require(scenarioError("name: x\npayments: 2000\nload: {rate: 100}\nwindow: 1ms\n"))
        #expect(windows.message.contains("at most 100000 metrics windows"), "\(windows)")
        let healing = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nhealing: 5s\n"))
        #expect(healing.message.contains("at least 66 s"), "\(healing)")

        // A seed is any UInt64, as --seed takes it.
        #expect(try Scenario.parse("name: x\nseed: 18446744073709551615\npayments: 10\nload: {rate: 5}\n", file: "t.yaml").world.seed == UInt64.max)
        #expect(scenarioError("name: x\nseed: -1\npayments: 10\nload: {rate: 5}\n")?.message.contains("a whole number in 0...18446744073709551615") == true)

        let threshold = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nthresholds: [\"p(99) < 2\"]\n"))
        #expect(threshold.line == 4 && threshold.message.contains("needs a unit"))

        let missing = try #require(scenarioError("name: x\nload: {rate: 5}\n"))
        #expect(missing.message.contains("missing required key \"payments\""))

        let profile = try #require(scenarioError("name: x\npayments: 10\nload: {profile: ramp, from: 1, to: 5, rate: 3, over: 1s}\n"))
        #expect(profile.message.contains("not a field of the ramp profile"))

        let percent = try #require(scenarioError("name: x\npayments: 10\nload: {rate: 5}\nclients: {refund_share: 140%}\n"))
        #expect(percent.line == 4 && percent.message.contains("percentage"))

        let expectFail = try #require(scenarioError("name: x\nexpect: fail\npayments: 10\nload: {rate: 5}\n"))
        #expect(expectFail.message.contains("expect_exit"))
        // expect_exit names a failing code, and only for a scenario built to fail.
        let exitWithoutFail = try #require(scenarioError("name: x\nexpect_exit: 3\npayments: 10\nload: {rate: 5}\n"))
        #expect(exitWithoutFail.line == 2 && exitWithoutFail.message.contains("only with expect: fail"), "\(exitWithoutFail)")
        let exitOne = try #require(scenarioError("name: x\nexpect: fail\nexpect_exit: 1\npayments: 10\nload: {rate: 5}\n"))
        #expect(exitOne.line == 3 && exitOne.message.contains("2...5"), "\(exitOne)")

        #expect(scenarioError("")?.message.contains("empty") == true)
        #expect(scenarioError("- just\n- a list\n")?.message.contains("expected a mapping") == true)
        var unreadableError: ScenarioError?
        do { _ = try Scenario.load(path: "/nonexistent/x.yaml") } catch { unreadableError = error }
        let unreadable = try #require(unreadableError)
        #expect(unreadable.file == "/nonexistent/x.yaml" && unreadable.message.contains("cannot read"))
    }

    @Test("threshold syntax: every metric, and errors that say what is expected")
    func thresholdSyntax() throws {
        #expect(try Threshold.parse("p(99) < 2s").metric == .latency(percentile: 0.99))
        #expect(try Threshold.parse("terminal_p(99.99) <= 30s").value == 30)
        #expect(abs(try Threshold.parse("availability >= 99.99%").value - 0.9999) < 1e-12)
        #expect(try Threshold.parse("error_rate < 0.5%").comparison == .less)
        #expect(try Threshold.parse("violations == 0").metric == .violations)
        #expect(try Threshold.parse("lost == 0").metric == .lost)
        #expect(try Threshold.parse("fraud_recall > 50%").metric == .fraudRecall)
        #expect(throws: ThresholdSyntaxError.self) { try Threshold.parse("p(99) 2s") }
        #expect(throws: ThresholdSyntaxError.self) { try Threshold.parse("p(100) < 2s") }
        #expect(throws: ThresholdSyntaxError.self) { try Threshold.parse("latency < 2s") }
        #expect(throws: ThresholdSyntaxError.self) { try Threshold.parse("availability >= 120%") }
    }
}
