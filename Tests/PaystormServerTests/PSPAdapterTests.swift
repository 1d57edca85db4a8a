import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import PaystormEngine
import Synchronization
import Testing
@testable import PaystormServer

@Suite("PSP adapter: a call that was never sent is safe to retry; PSP calls have connections of their own")
struct PSPAdapterTests {
    static func charge(_ baseURL: String) -> HTTPClientRequest {
        var http = HTTPClientRequest(url: "\(baseURL)/psp/stripe/charge")
        http.method = .POST
        http.headers.add(name: "Content-Type", value: "application/json")
        http.body = .bytes(ByteBuffer(string: PSPWire.Call(idempotencyKey: "pay-1:stripe", amountMinor: 1_050, currency: "USD").json()))
        return http
    }

    /// A port on 127.0.0.1 that nothing listens on: bound, then closed.
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound)
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test("a PSP on a closed port is a transient error, not an unknown outcome: the request was never written")
    func closedPortIsTransient() async throws {
        let clients = OutboundClients(pspConnections: 4, notificationConnections: 4)
        let adapter = HTTPPSPAdapter(baseURL: "http://127.0.0.1:\(try Self.closedPort())", client: clients.psp)
        let outcome = await adapter.send(Self.charge(adapter.baseURL))
        await clients.shutdown()
        guard case .transientError = outcome else {
            Issue.record("expected a transient error (nothing sent, safe to retry), got \(String(describing: outcome))")
            return
        }
    }

    @Test("errors that show the request unsent are transient; errors after it may have been sent stay unknown")
    func errorMeanings() {
        for unsent: any Error in [HTTPClientError.getConnectionFromPoolTimeout, HTTPClientError.connectTimeout,
                                  IOError(errnoCode: ECONNREFUSED, reason: "connect")] {
            guard case .transientError = HTTPPSPAdapter.outcome(of: unsent) else {
                Issue.record("\(unsent) fails a request before it is written: expected a transient error")
                continue
            }
        }
        for unknown: any Error in [HTTPClientError.readTimeout, HTTPClientError.remoteConnectionClosed, HTTPClientError.deadlineExceeded,
                                   HTTPClientError.cancelled, IOError(errnoCode: ECONNRESET, reason: "read"), CancellationError()] {
            #expect(HTTPPSPAdapter.outcome(of: unknown) == nil, "\(unknown) may come after the PSP took the request")
        }
    }

    @Test("an answer in another wire version, or in none, is an unknown outcome, reported once; the server will not start against such a PSP")
    func wireVersion() async throws {
        let router = Router()
        for (psp, version) in [("stripe", nil), ("paypal", "1"), ("adyen", PSPWire.version)] as [(String, String?)] {
            // A void answered as wire version 1 did: read as version 2, a declined card.
            router.post("/psp/\(psp)/charge") { _, _ in
                var response = PaystormAPI.json(200, PSPWire.Answer(outcome: "declined", reason: "canceled"))
                if let version { response.headers[PSPSandbox.versionField] = version }
                return response
            }
        }
        router.get("/health") { _, _ in HTTPResponse.Status.ok }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let clients = OutboundClients(pspConnections: 2, notificationConnections: 1)
            let reports = Mutex<[String]>([])
            let adapter = HTTPPSPAdapter(baseURL: base, client: clients.psp, onWireMismatch: { line in reports.withLock { $0.append(line) } })
            func charge(_ psp: String) async -> PSPOutcome? {
                var http = Self.charge(base)
                http.url = "\(base)/psp/\(psp)/charge"
                return await adapter.send(http)
            }
            #expect(await charge("stripe") == nil)
            #expect(await charge("paypal") == nil)
            #expect(await charge("adyen") == .declined(reason: "canceled"))
            #expect(reports.withLock { $0.count } == 1, "reported once")
            #expect(reports.withLock { $0.first?.contains("no wire version") } == true)
            do {
                try await PaymentServer.checkPSPWire(client: clients.psp, baseURL: base, log: { _ in })
                Issue.record("the server started against a PSP that states no wire version")
            } catch let error as ServerError {
                #expect(error.description.contains("--psp-url") && error.description.contains("same paystorm build"))
            }
            // A PSP not up yet is noted, not refused.
            let noted = Mutex(0)
            try await PaymentServer.checkPSPWire(client: clients.psp, baseURL: "http://127.0.0.1:\(try Self.closedPort())",
                                                 log: { _ in noted.withLock { $0 += 1 } })
            #expect(noted.withLock { $0 } == 1)
            await clients.shutdown()
        }
    }

    @Test("the sandbox states its wire version and refuses a call in another")
    func sandboxWireVersion() async throws {
        let sandbox = SandboxTests.sandbox()
        let app = Application(router: sandbox.router())
        try await app.test(.router) { client in
            let body = ByteBuffer(string: PSPWire.Call(idempotencyKey: "pay-1:stripe", amountMinor: 1_050, currency: "USD").json())
            try await client.execute(uri: "/psp/stripe/charge", method: .post, body: body) { response in
                #expect(response.status == .ok && response.headers[PSPSandbox.versionField] == PSPWire.version)
            }
            try await client.execute(uri: "/psp/stripe/charge", method: .post, headers: [PSPSandbox.versionField: "1"], body: body) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("wire_version"))
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.headers[PSPSandbox.versionField] == PSPWire.version)
            }
            try await client.execute(uri: "/psp/stripe/charge", method: .post, headers: [PSPSandbox.versionField: PSPWire.version], body: body) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test("a merchant endpoint on the PSP's host and port holding every notification connection leaves the PSP calls theirs")
    func notificationsHaveTheirOwnPool() async throws {
        let held = Mutex(0)
        let router = Router()
        router.post("/notifications") { _, _ -> HTTPResponse.Status in
            held.withLock { $0 += 1 }
            try await Task.sleep(for: .seconds(2))
            return .ok
        }
        router.post("/psp/stripe/charge") { _, _ in
            var response = PaystormAPI.json(200, PSPWire.Answer(outcome: "succeeded", reference: "ch_1"))
            response.headers[PSPSandbox.versionField] = PSPWire.version
            return response
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let clients = OutboundClients(pspConnections: 1, notificationConnections: 1)
            var notification = HTTPClientRequest(url: base + "/notifications")
            notification.method = .POST
            let delivery = Task { try await clients.notifications.execute(notification, timeout: .seconds(10)).status }
            #expect(await ServerFixture.eventually(10) { held.withLock { $0 } == 1 }, "the notification holds its connection")
            let outcome = await HTTPPSPAdapter(baseURL: base, client: clients.psp).send(Self.charge(base))
            #expect(outcome == .succeeded(pspReference: "ch_1"), "the PSP call waited for the notification's connection")
            #expect(try await delivery.value == .ok)
            await clients.shutdown()
        }
    }
}
