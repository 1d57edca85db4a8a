import Foundation
import Testing
@testable import PaystormScenario

@Suite("A report set is replaced whole or not at all")
struct ReportFileSetTests {
    /// A fresh, empty directory for one test.
    func scratch(_ name: String) throws -> String {
        let directory = NSTemporaryDirectory() + "paystorm-fileset-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    func contents(_ directory: String, _ name: String) throws -> String {
        try String(contentsOfFile: (directory as NSString).appendingPathComponent(name), encoding: .utf8)
    }

    /// Temporaries left in `directory`, other than `except`.
    func leftovers(_ directory: String, except: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".partial") && $0 != except }
    }

    @Test("a write that fails part-way (no space left) leaves no temporary of its own either")
    func writeFailsPartWay() throws {
        let directory = try scratch("full")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let old = sampleDocument()
        try ReportWriter.write(old, to: directory)
        // Its temporary name leads to a device that is always full: opened, then ENOSPC.
        try FileManager.default.createSymbolicLink(atPath: directory + "/report.md.partial", withDestinationPath: "/dev/full")
        #expect(throws: ReportWriteError.self) { try ReportWriter.write(old, to: directory) }
        #expect(try leftovers(directory, except: "").isEmpty)
        #expect(try contents(directory, "report.json") == ReportWriter.json(old))
    }

    @Test("a run's reports: a file that cannot be written leaves the previous set, and no temporaries")
    func runReports() throws {
        let directory = try scratch("run")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let old = sampleDocument()
        try ReportWriter.write(old, to: directory)
        var new = old
        new.seed = 43
        // The last file's temporary name is taken by a directory: it cannot be written.
        let blocker = "junit.xml.partial"
        try FileManager.default.createDirectory(atPath: directory + "/" + blocker, withIntermediateDirectories: false)
        #expect(throws: ReportWriteError.self) { try ReportWriter.write(new, to: directory) }
        #expect(try contents(directory, "report.json") == ReportWriter.json(old))
        #expect(try contents(directory, "report.md") == ReportWriter.markdown(old))
        let left = try leftovers(directory, except: blocker)
        #expect(left.isEmpty, "\(left)")

        try FileManager.default.removeItem(atPath: directory + "/" + blocker)
        try ReportWriter.write(new, to: directory)
        #expect(try contents(directory, "report.json") == ReportWriter.json(new))
        #expect(try contents(directory, "junit.xml") == ReportWriter.junit(new))
        #expect(try leftovers(directory, except: "").isEmpty)
    }

    @Test("a sweep's reports: the same")
    func sweepReports() throws {
        let directory = try scratch("sweep")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let axis = Sweep.Axis(key: .rate, values: [100])
        func result(_ achieved: Double) -> SweepResult {
            let point = Sweep.Point(index: 0, settings: ["load.rate": 100], seed: 1, status: "passed", exitCode: 0, offeredPerSecond: 100,
                                    achievedPerSecond: achieved, p99Seconds: 0.2, p99LowerSeconds: nil, p99UpperSeconds: nil,
                                    meanLatencySeconds: 0.1, availabilityLowerBound: 0.99, violations: 0, thresholds: [])
            return SweepResult.merge(scenarioName: "s", scenarioHash: "h", axes: [axis], seeds: [1], points: [point])
        }
        try SweepReport.write(result(100), slo: nil, to: directory)
        let blocker = "sweep.html.partial"
        try FileManager.default.createDirectory(atPath: directory + "/" + blocker, withIntermediateDirectories: false)
        #expect(throws: ReportWriteError.self) { try SweepReport.write(result(50), slo: nil, to: directory) }
        #expect(try contents(directory, "sweep.json") == SweepReport.json(result(100)))
        #expect(try contents(directory, "sweep.csv") == SweepReport.csv(result(100)))
        #expect(try leftovers(directory, except: blocker).isEmpty)
    }

    @Test("a seed farm's summary: the old one stays when the new one cannot be written")
    func farmSummary() throws {
        let directory = try scratch("farm")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let scenario = try Scenario.parse(tinyScenario, file: "tiny.yaml")
        let old = try FarmSummary(scenario: scenario, documents: [sampleDocument()])
        try old.write(to: directory)
        var document = sampleDocument()
        document.seed = 7
        let new = try FarmSummary(scenario: scenario, documents: [document])
        try FileManager.default.createDirectory(atPath: directory + "/summary.md.partial", withIntermediateDirectories: false)
        #expect(throws: ReportWriteError.self) { try new.write(to: directory) }
        #expect(try contents(directory, "summary.md") == old.markdown)
    }
}
