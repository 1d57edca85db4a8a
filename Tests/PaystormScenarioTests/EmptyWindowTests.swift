import Foundation
import Testing
@testable import PaystormScenario
@testable import PaystormWorld

/// The sample run with windows 12–14 answering nothing: a full outage.
func outageDocument() -> ReportDocument {
    var document = sampleDocument()
    for index in 12...14 {
        document.windows[index].answered = 0
        document.windows[index].failed = 300
        document.windows[index].latencyP50Seconds = 0
        document.windows[index].latencyP99Seconds = 0
        document.windows[index].latencyMaxSeconds = 0
    }
    return document
}

@Suite("A window in which nothing was answered has no latency")
struct EmptyWindowTests {
    @Test("the latency chart breaks its lines over the outage instead of dropping to 0")
    func chart() throws {
        let html = HTMLReport.render(outageDocument())
        let start = try #require(html.range(of: "<svg "))
        let latencyChart = html[start.lowerBound ..< html.range(of: "</svg>", range: start.upperBound ..< html.endIndex)!.upperBound]
        let lines = latencyChart.matches(of: /<polyline [^>]*points="([^"]*)"/).map { $0.output.1.split(separator: " ") }
        // p50, p99 and max, each in two pieces: windows 0–11 and 15–29.
        #expect(lines.map(\.count) == [12, 15, 12, 15, 12, 15], "\(lines.map(\.count))")
        // No point sits on the time axis (latency 0).
        let axisY = try #require(latencyChart.firstMatch(of: /<line class="axis" x1="76.0" y1="([0-9.]+)" x2="1100.0"/)).output.1
        #expect(lines.joined().allSatisfy { !$0.hasSuffix(",\(axisY)") }, "a point at latency 0")
        #expect(html.contains("The lines break over windows in which no request was answered."))
    }

    @Test("the error-rate chart of a window that failed whole tops out at 100%, not the headroom above it")
    func errorRateCeiling() throws {
        let html = HTMLReport.render(outageDocument())
        let title = try #require(html.range(of: "Error and throttle rate per window"))
        let chart = html[title.lowerBound ..< html.range(of: "</svg>", range: title.upperBound ..< html.endIndex)!.upperBound]
        let ticks = chart.matches(of: /class="tick"[^>]*>([0-9.]+)</).map { String($0.output.1) }
        #expect(ticks.contains("100") && !ticks.contains("150"), "\(ticks)")
    }

    @Test("runs of values between gaps")
    func runs() {
        #expect(TimeSeriesChart.runs([1, nil, 2, 3, nil, nil, 4]) == [0..<1, 2..<4, 6..<7])
        #expect(TimeSeriesChart.runs([nil, nil]).isEmpty)
        #expect(TimeSeriesChart.runs([]).isEmpty)
    }

    @Test("timeseries.csv leaves the outage's latency cells empty")
    func csv() throws {
        let rows = ReportWriter.csv(outageDocument()).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let header = rows[0].map(String.init)
        let latency = ["latency_p50_s", "latency_p99_s", "latency_max_s"].map { header.firstIndex(of: $0)! }
        for index in 12...14 {
            #expect(latency.map { rows[index + 1][$0] } == ["", "", ""], "\(rows[index + 1])")
        }
        #expect(latency.map { rows[1][$0] } == ["0.042000", "0.210000", "0.380000"], "a window with answers keeps its latency")
        #expect(rows.allSatisfy { $0.count == header.count })
    }
}
