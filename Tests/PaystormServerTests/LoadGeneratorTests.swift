import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import PaystormEngine
import Testing
@testable import PaystormServer

@Suite("Load generator: open loop, bounded connections")
struct LoadGeneratorTests {
    /// Requests inside a handler now, and the most at once.
    final class Concurrency: Sendable {
        private let state = Mutex((now: 0, peak: 0, served: 0))
        func enter() { state.withLock { $0.now += 1; $0.peak = max($0.peak, $0.now); $0.served += 1 } }
        func leave() { state.withLock { $0.now -= 1 } }
        var peak: Int { state.withLock { $0.peak } }
        var served: Int { state.withLock { $0.served } }
    }

    @Test("each user's card is 4000, the user in 11 digits and a Luhn check digit, as the engine's card check reads it")
    func cards() throws {
        /// The first form of the function: through `String(format:)`.
        func reference(_ user: Int) -> String {
            var digits = Array("4000" + String(format: "%011d", user)).map { Int(String($0))! }
            var sum = 0
            for (position, digit) in digits.reversed().enumerated() {
                let doubled = position % 2 == 0 ? digit * 2 : digit
                sum += doubled > 9 ? doubled - 9 : doubled
            }
            digits.append((10 - sum % 10) % 10)
            return digits.map(String.init).joined()
        }
        #expect(LoadGenerator.card(user: 0) == "4000000000000002")
        var random = SystemRandomNumberGenerator()
        // The reference's `%011d` reads a 32-bit number: compared below 2^31 only.
        let users = Array(0..<2_000) + (0..<2_000).map { _ in Int.random(in: 0..<100_000_000_000, using: &random) } + [99_999_999_999]
        for user in users {
            let card = LoadGenerator.card(user: user)
            if user < Int(Int32.max) { #expect(card == reference(user), "user \(user)") }
            #expect(card.hasPrefix("4000") && card.count == 16 && Int(card.dropFirst(4).prefix(11)) == user, "user \(user): \(card)")
            #expect(throws: Never.self, "user \(user): \(card)") {
                try CardDetails(number: card, expiry: "12/39", cvv: "123", currentYear: 2026, currentMonth: 11)
            }
        }
    }

    @Test("at most --connections requests are out at once; the rest wait in order, and one that waits half its timeout is never sent")
    func boundedConnections() async throws {
        let concurrency = Concurrency()
        let router = Router()
        router.post("/payments") { _, _ -> Response in
            concurrency.enter()
            defer { concurrency.leave() }
            try await Task.sleep(for: .milliseconds(100))
            return Response(status: .created, body: .init(byteBuffer: ByteBuffer(string: #"{"payment_id":"pay-1"}"#)))
        }
        let app = Application(router: router)
        try await app.test(.live) { client in
            // 50 requests in one second against two connections that take
            // 100 ms a request (20/s): the backlog outgrows the 250 ms a
            // request may wait for a connection.
            var options = LoadGenerator.Options(url: "http://127.0.0.1:\(try #require(client.port))", rate: 50, durationSeconds: 1)
            options.connections = 2
            options.timeoutSeconds = 0.5
            options.poisson = false
            let result = try await LoadGenerator.run(options)
            #expect(result.samples.count == 49 || result.samples.count == 50)
            // The HTTP client's own pool would open a throwaway connection per
            // request past its limit: the server would see more than two at once.
            #expect(concurrency.peak <= 2, "the server saw \(concurrency.peak) requests at once")
            let answered = result.samples.filter { $0.status == 201 }.count
            #expect(result.unsent > 0, "the backlog never made a request wait half its timeout")
            #expect(answered > 0 && answered <= concurrency.served)
            #expect(concurrency.served == result.samples.count - result.unsent, "every request sent reached the server, and no other")
            #expect(answered + result.unsent <= result.samples.count)
            #expect(result.acknowledged.count == answered)
            // Every unanswered request is a sample with no status, its latency at least the wait it gave up after.
            for sample in result.samples where sample.status == 0 {
                #expect(sample.latencyNanoseconds >= 250_000_000 - 5_000_000, "\(sample)")
            }
        }
    }

    @Test("an answer that comes past the request's timeout is a timeout, however late the deadline sweep runs")
    func lateAnswersTimeOut() async throws {
        let router = Router()
        router.post("/payments") { _, _ -> Response in
            Response(status: .created, body: .init(byteBuffer: ByteBuffer(string: #"{"payment_id":"pay-1"}"#)))
        }
        let app = Application(router: router)
        try await app.test(.live) { client in
            // 0.8 ms: below a loopback round trip here, and far below the sweep's 20 ms.
            var options = LoadGenerator.Options(url: "http://127.0.0.1:\(try #require(client.port))", rate: 100, durationSeconds: 0.5)
            options.timeoutSeconds = 0.0008
            options.poisson = false
            let result = try await LoadGenerator.run(options)
            #expect(!result.samples.isEmpty)
            for sample in result.samples where sample.status != 0 {
                #expect(sample.latencyNanoseconds <= 800_000, "answered after its timeout: \(sample)")
            }
            #expect(result.acknowledged.count == result.samples.filter { $0.status == 201 }.count)
        }
    }

    @Test("the gate hands a freed connection to the oldest waiter within its deadline and tells expired ones so")
    func gateOrder() {
        var gate = LoadGenerator.ConnectionGate(limit: 1)
        let taken = gate.acquire(0, deadline: 0)
        #expect(taken, "a free connection is taken at once, whatever the deadline")
        let waits = [gate.acquire(1, deadline: 50),  // its deadline has passed by the time a connection frees
                     gate.acquire(2, deadline: .max), gate.acquire(3, deadline: .max)]
        #expect(waits == [false, false, false])
        #expect(gate.waiting.count == 3)
        let first = gate.release(now: 100)
        #expect(first.next == 2 && first.expired == [1])
        #expect(gate.waiting.count == 1, "the third still waits: the patient one holds the connection")
        let second = gate.release(now: 200)
        #expect(second.next == 3 && second.expired.isEmpty)
        let third = gate.release(now: 300)
        #expect(third.next == nil && third.expired.isEmpty)
        #expect(gate.free == 1)
        let again = gate.acquire(4, deadline: 0), full = gate.acquire(5, deadline: .max)
        #expect(again)
        #expect(!full, "one connection, and it is taken")
    }
}

extension LoadGeneratorTests {
    @Test("the payment id is read from an answer's bytes; none without the field or its closing quote")
    func paymentIDFromTheAnswer() {
        #expect(LoadGenerator.paymentIDField(ByteBuffer(string: #"{"amount":"10.50","payment_id":"pay-42","status":"processing"}"#)) == "pay-42")
        #expect(LoadGenerator.paymentIDField(ByteBuffer(string: #"{"payment_id":""}"#)) == "")
        #expect(LoadGenerator.paymentIDField(ByteBuffer(string: #"{"refund_id":"re-1"}"#)) == nil)
        #expect(LoadGenerator.paymentIDField(ByteBuffer(string: #"{"payment_id":"pay-4"#)) == nil)
        #expect(LoadGenerator.paymentIDField(ByteBuffer()) == nil)
    }
}
