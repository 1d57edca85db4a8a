import Foundation
import Testing
@testable import PaystormScenario
@testable import PaystormWorld

/// A run whose 5,000 safety and 7 liveness violations were mostly only
/// counted: report.json keeps the first 1,000 safety ones in full.
func crowdedDocument() -> ReportDocument {
    var document = sampleDocument()
    document.violations = (0..<1_000).map { violation("one-charge", subject: "pay-\($0)") }
    document.violationCounts = .init(safety: ["one-charge": 4_990, "refund-amount": 10], liveness: ["payment-terminal": 7])
    document.simulation.safetyViolationCount = 5_000
    return document
}

@Suite("Violation counts are the run's totals, not the kept violations")
struct ViolationTotalsTests {
    @Test("the totals, and an older report without them")
    func totals() {
        let document = crowdedDocument()
        #expect(document.violationTotal == 5_007 && document.safetyViolationTotal == 5_000 && document.livenessViolationTotal == 7)
        var older = document
        older.violationCounts = nil
        older.violations.append(violation("payment-terminal", kind: "liveness"))
        #expect(older.violationTotal == 5_001, "the safety count from the simulation, the liveness ones kept")
    }

    @Test("report.html: the violations card and section count them all")
    func html() {
        let html = HTMLReport.render(crowdedDocument())
        #expect(html.contains("<div class=\"label\">violations</div><div class=\"value\">5,007</div><div class=\"sub\">5,000 safety</div>"))
        #expect(html.contains("<p>5,007 violation(s)."))
        #expect(html.contains("The first 1,000 are kept in full in report.json"))
        #expect(html.contains("900 more violations in report.json"))
    }

    @Test("report.md: the invariants section counts them all")
    func markdown() {
        let markdown = ReportWriter.markdown(crowdedDocument())
        #expect(markdown.contains("5000 safety violation(s), 7 liveness."), "\(markdown)")
        #expect(markdown.contains("The first 1000 are kept in full in report.json"), "\(markdown)")
        var onlyCounted = sampleDocument()
        onlyCounted.violations = []
        onlyCounted.violationCounts = .init(safety: [:], liveness: ["payment-terminal": 3])
        onlyCounted.simulation.safetyViolationCount = 0
        #expect(!ReportWriter.markdown(onlyCounted).contains("No violations"))
    }

    @Test("a seed farm's table and a comparison count them all")
    func farmAndCompare() throws {
        var clean = sampleDocument(windows: 0)
        clean.seed = 2
        clean.violations = []
        clean.violationCounts = .init(safety: [:], liveness: [:])
        clean.simulation.safetyViolationCount = 0
        let summary = try FarmSummary(scenario: try Scenario.parse(tinyScenario, file: "tiny.yaml"), documents: [crowdedDocument(), clean])
        #expect(summary.markdown.contains(" | 5007 |\n"), "\(summary.markdown)")
        #expect(summary.markdown.contains(" | 0 |\n"), "\(summary.markdown)")
        let row = try #require(Comparison.compare(crowdedDocument(), clean).first { $0.metric == "violations" })
        #expect(row.a == "5007" && row.b == "0", "\(row)")
    }
}
