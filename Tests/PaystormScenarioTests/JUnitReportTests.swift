import Foundation
import Testing
@testable import PaystormScenario
@testable import PaystormWorld

/// The JUnit test case for `name` in `junit`, from `<testcase` to its end.
func junitCase(_ junit: String, _ name: String) -> Substring? {
    guard let named = junit.range(of: " name=\"\(name)\"") else { return nil }
    let open = junit[..<named.lowerBound].range(of: "<testcase", options: .backwards)!.lowerBound
    let rest = junit[named.upperBound...]
    let end = rest.hasPrefix("/>") ? rest.index(rest.startIndex, offsetBy: 2) : rest.range(of: "</testcase>")!.upperBound
    return junit[open..<end]
}

/// A violation of `invariant` as a report keeps it.
func violation(_ invariant: String, kind: String = "safety", subject: String = "pay-1") -> ReportDocument.ViolationRecord {
    .init(kind: kind, invariant: invariant, subject: subject, virtualSeconds: 1, seed: 42, detail: "broken", trail: [])
}

@Suite("junit.xml: a test case per threshold and per invariant")
struct JUnitReportTests {
    @Test("every check the world can record has a test case, and a violation of it fails that case", arguments: Invariant.allCases)
    func everyCheckIsCovered(_ invariant: Invariant) throws {
        var document = sampleDocument()
        document.violations = [violation(invariant.rawValue)]
        let junit = ReportWriter.junit(document)
        let group = try #require(junitCase(junit, "invariant \(invariant.group.rawValue)"), "\(junit)")
        #expect(group.contains("<failure message=\"1 violation(s)\">"), "\(group)")
        // No test case of its own beside its group's.
        #expect(junit.components(separatedBy: "<testcase ").count - 1 == document.thresholds.count + Invariant.Group.allCases.count, "\(junit)")
        #expect(junit.contains("failures=\"2\""), "the failed threshold and this invariant")
    }

    @Test("a clean run has one passing test case per group of checks")
    func clean() throws {
        var document = sampleDocument()
        document.violations = []
        let junit = ReportWriter.junit(document)
        for group in Invariant.Group.allCases {
            let testCase = try #require(junitCase(junit, "invariant \(group.rawValue)"), "\(group)")
            #expect(testCase.hasSuffix("/>"), "\(testCase)")
        }
    }

    @Test("an invariant whose violations were crowded out of the kept ones still fails, with the total in its message")
    func crowdedOut() throws {
        var document = sampleDocument()
        document.violations = (0..<1_000).map { violation("one-charge", subject: "pay-\($0)") }
        document.violationCounts = .init(safety: ["one-charge": 4_000, "idempotent-create": 3], liveness: ["payment-terminal": 2])
        document.simulation.safetyViolationCount = 4_003
        let junit = ReportWriter.junit(document)
        let idempotency = try #require(junitCase(junit, "invariant idempotency"))
        #expect(idempotency.contains("<failure message=\"3 violation(s), 0 of them kept in report.json\">"), "\(idempotency)")
        let oneCharge = try #require(junitCase(junit, "invariant one-charge"))
        #expect(oneCharge.contains("<failure message=\"4000 violation(s), 1000 of them kept in report.json\">"), "\(oneCharge)")
        let terminal = try #require(junitCase(junit, "invariant payment-terminal"))
        #expect(terminal.contains("<failure message=\"2 violation(s), 0 of them kept in report.json\">"), "\(terminal)")
        #expect(junit.contains("failures=\"4\""), "the failed threshold and three invariants")
    }

    @Test("a report.json written before the per-check totals still reads, and its kept violations still fail")
    func olderReport() throws {
        var document = sampleDocument()
        document.violations = [violation("refund-amount")]
        document.violationCounts = nil
        let json = ReportWriter.json(document)
        #expect(!json.contains("violationCounts"), "the older shape, without the field")
        let decoded = try ReportWriter.decode(Data(json.utf8))
        #expect(decoded == document)
        #expect(decoded.violationCounts() == ["refund-amount": 1])
        #expect(try #require(junitCase(ReportWriter.junit(decoded), "invariant refunds")).contains("<failure message=\"1 violation(s)\">"))
    }
}
