import Testing
@testable import PaystormScenario

@Suite("A measured run's windows count outcomes as the simulator's do")
struct LoadMeasurementTests {
    @Test("a throttled request is failed and, of those, throttled: every request finishes answered or failed")
    func throttledIsFailed() {
        let statuses = [201, 400, 429, 429, 503, 0]
        let requests = statuses.enumerated().map { index, status in
            LoadMeasurement.Request(dueSeconds: 0.1 * Double(index), latencySeconds: 0.01, status: status, isPayment: true)
        }
        let measurement = LoadMeasurement(target: "http://x", description: "throttled", seed: 1, durationSeconds: 1, elapsedSeconds: 1,
                                          maximumSendLagSeconds: 0, acknowledgedPayments: 1, requests: requests)
        let document = measurement.document(thresholds: [])
        let window = document.windows[0]
        #expect(document.windows.count == 1)
        #expect(window.offered == 6 && window.answered == 2)
        #expect(window.failed == 4 && window.throttled == 2, "\(window)")
        #expect(window.answered + window.failed == window.offered)
        #expect(document.requests.total - document.requests.answered == window.failed)
    }
}
