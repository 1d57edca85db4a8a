import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PaystormEngine
import PaystormWorld
import ServiceLifecycle
import Synchronization
import Testing
@testable import PaystormServer

extension SandboxTests {
    /// `sandbox` served on a free loopback port while `body` runs with its base URL.
    static func served<T>(_ sandbox: PSPSandbox, _ body: (String) async throws -> T) async throws -> T {
        let channel = try await PSPSandboxServer(sandbox: sandbox, host: "127.0.0.1", port: 0).bind().channel
        let base = "http://127.0.0.1:\(try #require(channel.localAddress?.port))"
        do {
            let result = try await body(base)
            try await channel.close()
            return result
        } catch {
            try? await channel.close()
            throw error
        }
    }

    struct Answer: CustomStringConvertible {
        var status: Int
        var headers: HTTPHeaders
        var body: String
        var description: String { "HTTP \(status) \(body)" }
    }

    static func send(_ method: HTTPMethod, _ url: String, headers: [String: String] = [:], body: String? = nil,
                     timeout: TimeAmount = .seconds(10)) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        return Answer(status: Int(response.status.code), headers: response.headers, body: text)
    }
}

@Suite("PSP sandbox over HTTP: routes, errors, latency on a timer, settlement reports")
struct SandboxServerTests {
    @Test("each wrong request gets a JSON error naming the problem, and the connection serves the next")
    func errors() async throws {
        try await SandboxTests.served(SandboxTests.sandbox()) { base in
            // (method, path, body, status, code, words of the message, field)
            let cases: [(HTTPMethod, String, String?, Int, String, String, String?)] = [
                (.GET, "/nowhere", nil, 404, "not_found", "no such endpoint: GET /nowhere", nil),
                (.POST, "/psp/stripe/charge/again", nil, 404, "not_found", "no such endpoint: POST /psp/stripe/charge/again", nil),
                (.POST, "/psp/adyen/charge", SandboxTests.call("pay-1:adyen").json(), 404, "not_found", "this sandbox runs paypal, stripe", nil),
                (.POST, "/psp/stripe/capture", SandboxTests.call("pay-1:stripe").json(), 404, "not_found", "operations are charge, refund, status and cancel", nil),
                (.POST, "/psp/stripe/settlement", nil, 405, "method_not_allowed", "POST is not served at /psp/stripe/settlement; GET is", nil),
                (.GET, "/psp/stripe/charge", nil, 405, "method_not_allowed", "GET is not served at /psp/stripe/charge", nil),
                (.DELETE, "/stats", nil, 405, "method_not_allowed", "DELETE is not served at /stats", nil),
                (.POST, "/psp/stripe/charge", "{\"amount_minor\": 5}", 400, "bad_request", "not a PSP call", nil),
                (.POST, "/psp/stripe/charge", "not json", 400, "bad_request", "not a PSP call", nil),
                (.POST, "/psp/stripe/charge", String(repeating: " ", count: PSPSandboxServer.bodyLimit + 1), 413, "body_too_large",
                 "the body is over 65536 bytes", nil),
                (.POST, "/notifications", String(repeating: "x", count: 200_000), 413, "body_too_large", "the body is over 65536 bytes", nil),
                (.GET, "/psp/stripe/settlement?from_ns=-1", nil, 400, "bad_request", "expected Unix nanoseconds >= 0, found \"-1\"", "from_ns"),
                (.GET, "/psp/stripe/settlement?to_ns=soon", nil, 400, "bad_request", "found \"soon\"", "to_ns"),
                (.GET, "/psp/adyen/settlement", nil, 404, "not_found", "no PSP adyen here", nil),
            ]
            for (method, path, body, status, code, words, field) in cases {
                let answer = try await SandboxTests.send(method, base + path, body: body)
                let error = try JSONDecoder().decode(APIWire.ErrorBody.self, from: Data(answer.body.utf8)).error
                #expect(answer.status == status && error.code == code && error.message.contains(words) && error.field == field,
                        "\(method) \(path): \(answer)")
                #expect(answer.headers.first(name: "Content-Type") == "application/json", "\(method) \(path)")
            }
            for (method, path, allow) in [(HTTPMethod.GET, "/psp/stripe/charge", "POST"), (.POST, "/psp/stripe/settlement", "GET"),
                                          (.PUT, "/health", "GET"), (.GET, "/notifications", "POST")] {
                let answer = try await SandboxTests.send(method, base + path)
                #expect(answer.status == 405 && answer.headers.first(name: "Allow") == allow, "\(method) \(path): \(answer)")
            }
            #expect(try await SandboxTests.send(.GET, base + "/health").status == 200, "still serving after every refusal")
        }
    }

    @Test("calls are charged once per key; settlement reports filter by time; stats and notifications answer")
    func routes() async throws {
        let sandbox = SandboxTests.sandbox()
        try await SandboxTests.served(sandbox) { base in
            for key in ["pay-1:stripe", "pay-1:stripe", "pay-2:stripe"] {
                let answer = try await SandboxTests.send(.POST, base + "/psp/stripe/charge", body: SandboxTests.call(key).json())
                #expect(answer.status == 200 && answer.body.contains("\"outcome\":\"succeeded\""), "\(answer)")
            }
            let status = try await SandboxTests.send(.POST, base + "/psp/stripe/status", body: SandboxTests.call("pay-3:stripe").json())
            #expect(status.body.contains("not_found"), "\(status)")
            let report = try await SandboxTests.send(.GET, base + "/psp/stripe/settlement")
            #expect(report.status == 200 && report.headers.first(name: "Content-Type") == "text/csv")
            let lines = report.body.split(separator: "\n")
            #expect(lines.count == 3 && lines.first == Substring(SettlementReportColumn.header), "\(report.body)")
            #expect(lines.dropFirst().map { $0.prefix { $0 != "," } } == ["pay-1:stripe", "pay-2:stripe"])
            let future = try await SandboxTests.send(.GET, base + "/psp/stripe/settlement?from_ns=\(Int64.max - 1)&from_ns=0")
            #expect(future.body.split(separator: "\n").count == 1, "the first from_ns counts: \(future.body)")
            let stats = try await SandboxTests.send(.GET, base + "/stats")
            let decoded = try JSONDecoder().decode(PSPSandbox.Stats.self, from: Data(stats.body.utf8))
            #expect(decoded.calls == 4 && decoded.captured == 2 && decoded.doubleCharged.isEmpty, "\(decoded)")
            let notified = try await SandboxTests.send(.POST, base + "/notifications", body: "{}")
            #expect(notified.status == 200 && sandbox.stats.notifications == 1)
        }
        let failing = PSPSandbox(profiles: [PSPProfile.stripeLike.ideal], webhookURL: nil, notificationFailureRate: 1, seed: 7, client: .shared)
        try await SandboxTests.served(failing) { base in
            let answer = try await SandboxTests.send(.POST, base + "/notifications", body: "{}")
            #expect(answer.status == 500 && answer.body.contains("merchant_down"), "\(answer)")
        }
    }

    /// The latency is a timer on the connection's event loop: a sleep in its
    /// place would hold every connection of that loop, and the last of 16
    /// calls of 500 ms on 2 loops would wait about 4 s. Each call times its
    /// own answer on a thread of its own, so a busy task pool (other suites
    /// can hold it for minutes) cannot stretch what is measured.
    @Test("an answer waits for the PSP's latency without holding other calls, and a caller that hangs up is let go")
    func latency() async throws {
        let sandbox = SandboxTests.sandbox {
            $0.latencyMedianSeconds = 0.5
            $0.latencySigma = 0
        }
        try await SandboxTests.served(sandbox) { base in
            let port = try #require(Int(base.split(separator: ":").last ?? ""))
            let clock = ContinuousClock()
            let one = clock.now
            #expect(try await SandboxTests.send(.POST, base + "/psp/stripe/charge", body: SandboxTests.call("pay-1:stripe").json()).status == 200)
            #expect(clock.now - one >= .milliseconds(500), "answered before the latency passed")
            let answers = try await withThrowingTaskGroup(of: (closed: Bool, seconds: Double, answer: String).self) { group in
                for index in 0..<16 {
                    let body = SandboxTests.call("pay-\(index + 10):stripe").json()
                    let request = "POST /psp/stripe/charge HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                        + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                    group.addTask { try await ConnectionTests.sendThenWaitForClose(request, port: port, giveUpAfterSeconds: 20) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(answers.count == 16 && answers.allSatisfy { $0.closed && $0.answer.hasPrefix("HTTP/1.1 200") }, "\(answers)")
            let slowest = answers.map(\.seconds).max() ?? 0
            #expect(slowest >= 0.5 && slowest < 3, "the calls' latencies ran one after another: the slowest took \(slowest) s")
            await #expect(throws: (any Error).self) {
                try await SandboxTests.send(.POST, base + "/psp/stripe/charge", body: SandboxTests.call("pay-99:stripe").json(), timeout: .milliseconds(250))
            }
            try await Task.sleep(for: .milliseconds(600))
            #expect(try await SandboxTests.send(.GET, base + "/health").status == 200)
            #expect(sandbox.stats.calls == 18, "the call whose caller hung up was still processed")
        }
    }

    @Test("a request the decoder cannot read gets a 400 and its connection closed; a plain one stays open")
    func unreadableRequestsCloseTheConnection() async throws {
        try await SandboxTests.served(SandboxTests.sandbox()) { base in
            let port = try #require(Int(base.split(separator: ":").last ?? ""))
            let garbage = try await ConnectionTests.sendThenWaitForClose("\u{16}\u{03}\u{01}\u{02}\u{00} not http\r\n\r\n",
                                                                       port: port, giveUpAfterSeconds: 5)
            #expect(garbage.answer.hasPrefix("HTTP/1.1 400") && garbage.closed, "\(garbage)")
            let plain = try await ConnectionTests.sendThenWaitForClose("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", port: port, giveUpAfterSeconds: 1)
            #expect(plain.answer.hasPrefix("HTTP/1.1 200") && !plain.closed, "\(plain)")
        }
    }

    @Test("a graceful shutdown stops taking connections and answers the calls in flight first")
    func shutdownDrains() async throws {
        let sandbox = SandboxTests.sandbox {
            $0.latencyMedianSeconds = 0.5
            $0.latencySigma = 0
        }
        let port = Mutex<Int?>(nil)
        let server = PSPSandboxServer(sandbox: sandbox, host: "127.0.0.1", port: 0) { bound in port.withLock { $0 = bound } }
        let group = ServiceGroup(configuration: .init(services: [server], logger: Logger(label: "paystorm-test")))
        let running = Task { try await group.run() }
        // Wide bounds: beside the other suites, this test's tasks may wait minutes to run at all.
        #expect(await ServerFixture.eventually(600) { port.withLock { $0 } != nil })
        let base = "http://127.0.0.1:\(try #require(port.withLock { $0 }))"
        #expect(try await SandboxTests.send(.GET, base + "/health").status == 200, "an idle kept-alive connection, closed by the drain")
        let clock = ContinuousClock()
        let sent = clock.now
        let call = Task { try await SandboxTests.send(.POST, base + "/psp/stripe/charge", body: SandboxTests.call("pay-1:stripe").json()) }
        #expect(await ServerFixture.eventually(600) { sandbox.stats.calls == 1 }, "the call is in, waiting out its latency")
        await group.triggerGracefulShutdown()
        try await running.value
        // The process of `psp-sandbox` ends when `run()` returns: it must not return before the answer is out.
        #expect(clock.now - sent >= .milliseconds(500), "returned with the call still waiting out its latency")
        let answer = try await call.value
        #expect(answer.status == 200 && answer.body.contains("succeeded"), "\(answer)")
        await #expect(throws: (any Error).self, "no longer listening") {
            try await SandboxTests.send(.GET, base + "/health", timeout: .seconds(2))
        }
    }
}
