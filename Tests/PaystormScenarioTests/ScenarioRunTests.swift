import Foundation
import Testing
import PaystormStatistics
@testable import PaystormScenario
@testable import PaystormWorld

let tinyScenario = """
    name: tiny
    description: A small healthy world.
    seed: 3
    payments: 800
    load: { profile: constant, rate: 200 }
    clients: { users: 5000, merchants: 50 }
    healing: 70s
    thresholds:
      - "p(99) < 250ms"
      - "availability >= 99%"
      - "violations == 0"
      - "lost == 0"
    """

@Suite("Scenario runs: verdicts, exit codes and reports")
struct ScenarioRunTests {
    @Test("a healthy run passes; its reports are complete and byte-identical for the same seed")
    func reportsAreDeterministic() throws {
        let scenario = try Scenario.parse(tinyScenario, file: "tiny.yaml")
        let first = try ScenarioRun.run(scenario)
        #expect(first.status == .passed, "\(first.verdicts)")
        #expect(first.asExpected)
        let second = try ScenarioRun.run(scenario)
        let base = NSTemporaryDirectory() + "paystorm-reports-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let a = try ReportWriter.write(first.document, to: base + "/a")
        let b = try ReportWriter.write(second.document, to: base + "/b")
        for name in ReportWriter.files {
            let left = try Data(contentsOf: URL(fileURLWithPath: a + "/" + name))
            let right = try Data(contentsOf: URL(fileURLWithPath: b + "/" + name))
            #expect(!left.isEmpty && left == right, "\(name) differs between two runs of the same seed")
        }
        let document = try ReportWriter.decode(try Data(contentsOf: URL(fileURLWithPath: a + "/report.json")))
        #expect(document == first.document)
        #expect(document.schema == ReportDocument.schema)
        #expect(document.verdict.exitCode == 0 && document.thresholds.count == 4)
        let junit = try String(contentsOfFile: a + "/junit.xml", encoding: .utf8)
        #expect(junit.components(separatedBy: "<testcase ").count - 1 == 4 + ReportWriter.invariantNames.count)
        #expect(!junit.contains("<failure"))
        let csv = try String(contentsOfFile: a + "/timeseries.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.first.map(String.init) == ReportWriter.csvHeader)
        #expect(csv.count == document.windows.count + 1)
        // Another seed is another run.
        let other = try ScenarioRun.run(scenario, seed: 4)
        #expect(other.report.traceHash != first.report.traceHash)
    }

    @Test("a threshold that fails gives exit 2 and a JUnit failure")
    func thresholdFailure() throws {
        let scenario = try Scenario.parse(tinyScenario.replacingOccurrences(of: "p(99) < 250ms", with: "p(50) < 1ms"), file: "tiny.yaml")
        let run = try ScenarioRun.run(scenario)
        #expect(run.status == .thresholdFailed)
        #expect(run.status.rawValue == 2)
        #expect(run.verdicts[0].outcome == .failed)
        #expect(ReportWriter.junit(run.document).contains("<failure"))
    }

    @Test("too few samples for the confidence asked is inconclusive (exit 5), with the samples needed")
    func inconclusive() throws {
        let scenario = try Scenario.parse(tinyScenario.replacingOccurrences(of: "p(99) < 250ms", with: "p(99.99) < 10s")
            .replacingOccurrences(of: "availability >= 99%", with: "availability >= 99.99%"), file: "tiny.yaml")
        let run = try ScenarioRun.run(scenario)
        #expect(run.status == .inconclusive)
        #expect(run.verdicts[0].outcome == .inconclusive && run.verdicts[0].detail.contains("needs at least 36887 samples"),
                "\(run.verdicts[0].detail)")
        #expect(run.verdicts[1].outcome == .inconclusive && run.verdicts[1].detail.contains("more"))
    }

    /// The count an inconclusive percentile asks for is the count at which
    /// its upper bound first exists, for the interval the verdict reads.
    @Test("the samples a percentile threshold asks for are exactly enough for its upper bound",
          arguments: [0.5, 0.9, 0.99, 0.999, 0.9999])
    func samplesForQuantile(p: Double) throws {
        for confidence in [0.9, 0.95, 0.99] {
            let needed = Threshold.samplesForQuantile(p, confidence: confidence)
            func upperExists(_ n: Int) throws -> Bool {
                try SortedSample(alreadySorted: (0..<n).map(Double.init)).quantile(p, confidence: confidence).upper != nil
            }
            #expect(try upperExists(needed), "p\(p * 100) at \(confidence): \(needed) samples")
            #expect(try !upperExists(needed - 1), "p\(p * 100) at \(confidence): \(needed - 1) samples")
        }
    }

    /// One worker of 2 ms serves about 450 requests a second; offered
    /// 20,000 a second, nearly every answer comes after the load, while the
    /// queue drains. Those are not throughput.
    @Test("achieved throughput counts only what was answered during the load")
    func saturatedThroughput() throws {
        let scenario = try Scenario.parse("""
            name: burst
            seed: 1
            payments: 2000
            load: { profile: constant, rate: 20000 }
            service: { replicas: 1, workers: 1, api_service_median: 2ms }
            clients: { timeout: 30s }
            healing: 70s
            thresholds:
              - "throughput >= 10000"
            """, file: "burst.yaml")
        let run = try ScenarioRun.run(scenario)
        #expect(run.document.requests.answered > 1_900, "the answers came, later")
        #expect(run.document.requests.achievedPerSecond < 1_000, "\(run.document.requests.achievedPerSecond)/s")
        #expect(run.verdicts[0].outcome == .failed, "\(run.verdicts[0])")
    }

    /// 29,955 clean requests prove 99.98999…% at 95%, one short of 99.99%:
    /// rounded to nearest, the bound read as 99.99% beside "does not prove".
    @Test("a bound is shown rounded away from what it claims")
    func boundsRoundAwayFromTheClaim() throws {
        #expect(Threshold.percent(0.99989999, rounding: .down) == "99.9899%")
        #expect(Threshold.percent(0.9999, rounding: .down) == "99.99%")
        #expect(Threshold.percent(0.99990001, rounding: .up) == "99.9901%")
        #expect(Threshold.percent(0.9999, rounding: .up) == "99.99%")
        #expect(Threshold.percent(0.99989999) == "99.99%")
        let bound = try Availability.lowerBound(failures: 0, requests: 29_955, confidence: 0.95)
        #expect(bound < 0.9999 && Threshold.percent(bound, rounding: .down) == "99.9899%")
        let clean = LoadMeasurement(target: "http://x", description: "clean", seed: 1, durationSeconds: 100, elapsedSeconds: 100,
                                    maximumSendLagSeconds: 0, acknowledgedPayments: 0,
                                    requests: (0..<29_955).map { .init(dueSeconds: Double($0) / 300, latencySeconds: 0.01, status: 201, kind: .payment) })
        let verdict = try Threshold.parse("availability >= 99.99%").judge(clean)
        #expect(verdict.outcome == .inconclusive && verdict.observed.contains("[99.9899%,"), "\(verdict.observed)")
    }

    @Test("a safety violation gives exit 3 and names the invariant in JUnit")
    func invariantViolated() throws {
        var scenario = try Scenario.parse(tinyScenario, file: "tiny.yaml")
        scenario.world.sabotage = .doubleCharge
        let run = try ScenarioRun.run(scenario)
        #expect(run.status == .invariantViolated && run.status.rawValue == 3)
        let junit = ReportWriter.junit(run.document)
        #expect(junit.contains("name=\"invariant one-charge\">"))
        #expect(ReportWriter.markdown(run.document).contains("one-charge"))
        // The per-check totals reach report.json and add up to the run's count.
        let counts = try #require(run.document.violationCounts)
        #expect(counts.safety.values.reduce(0, +) == run.report.safetyViolationCount && counts.safety["one-charge", default: 0] > 0, "\(counts)")
    }

    @Test("a payment that never settles fails liveness: exit 4, with no safety violation")
    func livenessFailed() throws {
        var scenario = try Scenario.parse(tinyScenario, file: "tiny.yaml")
        scenario.world.sabotage = .stuckPayment
        let run = try ScenarioRun.run(scenario)
        #expect(run.status == .livenessFailed && run.status.rawValue == 4, "\(run.document.violations)")
        #expect(run.report.safetyViolationCount == 0)
        #expect(run.verdicts.first { $0.threshold == "lost == 0" }?.outcome == .failed)
        #expect(run.document.livenessViolationTotal == run.report.livenessViolationCount && run.report.livenessViolationCount > 0)
        #expect(run.document.violationCounts?.liveness["payment-terminal", default: 0] ?? 0 > 0, "\(String(describing: run.document.violationCounts))")
    }

    @Test("the worst of several outcomes goes by severity (3, 4, 2, 5), not by the exit code's number")
    func worstBySeverity() {
        #expect(ExitStatus.worst([.inconclusive, .thresholdFailed]) == .thresholdFailed)
        #expect(ExitStatus.worst([.livenessFailed, .inconclusive, .invariantViolated]) == .invariantViolated)
        #expect(ExitStatus.worst([.inconclusive, .livenessFailed, .thresholdFailed]) == .livenessFailed)
        #expect(ExitStatus.worst([.passed, .inconclusive]) == .inconclusive)
        #expect(ExitStatus.worst([]) == .passed)
        #expect(ExitStatus.worst([.inconclusive, .passedUnexpectedly]) == .passedUnexpectedly)
        #expect(ExitStatus.worst([.passedUnexpectedly, .thresholdFailed]) == .thresholdFailed)
    }

    @Test("--check-expectation's code: 0 only for a run that ended as documented, 6 for a documented failure that passed")
    func checkedAgainstExpectation() {
        #expect(ExitStatus.thresholdFailed.checked(asExpected: true) == .passed)
        #expect(ExitStatus.passed.checked(asExpected: true) == .passed)
        #expect(ExitStatus.passed.checked(asExpected: false) == .passedUnexpectedly)
        #expect(ExitStatus.passedUnexpectedly.rawValue == 6)
        #expect(ExitStatus.invariantViolated.checked(asExpected: false) == .invariantViolated)
        #expect(ExitStatus.thresholdFailed.checked(asExpected: false) == .thresholdFailed)
    }

    @Test("expect: fail scenarios count as expected only with their documented exit code")
    func expectedFailure() throws {
        let failing = tinyScenario.replacingOccurrences(of: "p(99) < 250ms", with: "p(50) < 1ms")
        let documented = try Scenario.parse("expect: fail\nexpect_exit: 2\n" + failing, file: "f.yaml")
        #expect(try ScenarioRun.run(documented).asExpected)
        let wrong = try Scenario.parse("expect: fail\nexpect_exit: 3\n" + failing, file: "f.yaml")
        #expect(try !ScenarioRun.run(wrong).asExpected)
    }
}
