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
}
