import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
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
            PaystormAPI.json(200, PSPWire.Answer(outcome: "succeeded", reference: "ch_1"))
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
