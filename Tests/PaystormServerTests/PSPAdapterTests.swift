import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import PaystormEngine
import PaystormWorld
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
        let clients = OutboundClients(pspURL: nil, pspConnections: 4, notificationConnections: 4)
        let adapter = HTTPPSPAdapter(baseURL: "http://127.0.0.1:\(try Self.closedPort())", client: clients.psp)
        let outcome = await adapter.send(Self.charge(adapter.baseURL))
        await clients.shutdown()
        guard case .transientError = outcome else {
            Issue.record("expected a transient error (nothing sent, safe to retry), got \(String(describing: outcome))")
            return
        }
    }

    @Test("over the kept-alive connections too, a PSP on a closed port is a transient error")
    func closedPortIsTransientOverKeptAliveConnections() async throws {
        let base = "http://127.0.0.1:\(try Self.closedPort())"
        let clients = OutboundClients(pspURL: base, pspConnections: 4, notificationConnections: 4)
        let plain = try #require(clients.pspPlain)
        let adapter = HTTPPSPAdapter(baseURL: base, client: clients.psp, plain: plain)
        let outcome = try await adapter.send("/psp/stripe/charge", headers: [:], body: "{}", over: plain).get()
        await clients.shutdown()
        guard case .transientError = outcome else {
            Issue.record("expected a transient error (nothing sent, safe to retry), got \(String(describing: outcome))")
            return
        }
    }

    @Test("errors that show the request unsent are transient; errors after it may have been sent stay unknown")
    func errorMeanings() {
        for unsent: any Error in [HTTPClientError.getConnectionFromPoolTimeout, HTTPClientError.connectTimeout,
                                  IOError(errnoCode: ECONNREFUSED, reason: "connect"), KeepAliveHTTPClient.Failure.cannotConnect("refused"),
                                  KeepAliveHTTPClient.Failure.expiredWaiting] {
            guard case .transientError = HTTPPSPAdapter.outcome(of: unsent) else {
                Issue.record("\(unsent) fails a request before it is written: expected a transient error")
                continue
            }
        }
        for unknown: any Error in [HTTPClientError.readTimeout, HTTPClientError.remoteConnectionClosed, HTTPClientError.deadlineExceeded,
                                   HTTPClientError.cancelled, IOError(errnoCode: ECONNRESET, reason: "read"), CancellationError(),
                                   KeepAliveHTTPClient.Failure.timedOut, KeepAliveHTTPClient.Failure.connectionLost,
                                   KeepAliveHTTPClient.Failure.answerTooLarge] {
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
                if let version { response.headers[HTTPField.Name(PSPWire.versionHeader)!] = version }
                return response
            }
        }
        router.get("/health") { _, _ in HTTPResponse.Status.ok }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let clients = OutboundClients(pspURL: nil, pspConnections: 2, notificationConnections: 1)
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
            // The same answers over the server's kept-alive connections.
            let kept = OutboundClients(pspURL: base, pspConnections: 2, notificationConnections: 1)
            let plain = try #require(kept.pspPlain)
            let keptReports = Mutex<[String]>([])
            let keptAdapter = HTTPPSPAdapter(baseURL: base, client: kept.psp, plain: plain,
                                             onWireMismatch: { line in keptReports.withLock { $0.append(line) } })
            let call = PSPWire.Call(idempotencyKey: "pay-1:stripe", amountMinor: 1_050, currency: "USD").json()
            for (psp, expected) in [("stripe", nil), ("paypal", nil), ("adyen", PSPOutcome.declined(reason: "canceled"))] as [(String, PSPOutcome?)] {
                let outcome = try await keptAdapter.send("/psp/\(psp)/charge", headers: [:], body: call, over: plain).get()
                #expect(outcome == expected, "\(psp)")
            }
            #expect(keptReports.withLock { $0.count } == 1, "reported once")
            await kept.shutdown()
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

    /// The sandbox answers 404 `no PSP foo here` to every call for a PSP it
    /// does not serve: read as an unknown outcome, every payment routed there
    /// stayed `processing`, and nothing said why.
    @Test("a PSP the sandbox does not serve: the server will not start; a 404 at run time is not processed, and said once per PSP")
    func aPSPNotServedIsRefusedAndSaid() async throws {
        try await SandboxTests.served(SandboxTests.sandbox()) { base in
            let clients = OutboundClients(pspURL: nil, pspConnections: 2, notificationConnections: 1)
            try await PaymentServer.checkPSPWire(client: clients.psp, baseURL: base, pspIDs: ["stripe", "paypal"], log: { _ in })
            do {
                try await PaymentServer.checkPSPWire(client: clients.psp, baseURL: base, pspIDs: ["stripe", "foo"], log: { _ in })
                Issue.record("the server started against a sandbox that does not serve PSP foo")
            } catch let error as ServerError {
                #expect(error.description.contains("--psps") && error.description.contains("foo")
                        && error.description.contains("no PSP foo here"), "\(error)")
            }
            let reports = Mutex<[String]>([])
            let adapter = HTTPPSPAdapter(baseURL: base, client: clients.psp, onNotServed: { line in reports.withLock { $0.append(line) } })
            for _ in 0..<3 {
                var http = Self.charge(base)
                http.url = "\(base)/psp/foo/charge"
                http.headers.add(name: PSPWire.versionHeader, value: PSPWire.version)
                guard case let .transientError(text) = await adapter.send(http) else {
                    Issue.record("a 404 for the PSP's own path is a call not processed: expected a transient error")
                    continue
                }
                #expect(text.contains("404"), "\(text)")
            }
            #expect(reports.withLock { $0.count } == 1, "said once: \(reports.withLock { $0 })")
            #expect(reports.withLock { $0.first?.contains("foo") } == true)
            await clients.shutdown()
        }
    }

    @Test("the sandbox states its wire version and refuses a call in another")
    func sandboxWireVersion() async throws {
        try await SandboxTests.served(SandboxTests.sandbox()) { base in
            let body = PSPWire.Call(idempotencyKey: "pay-1:stripe", amountMinor: 1_050, currency: "USD").json()
            var answer = try await SandboxTests.send(.POST, base + "/psp/stripe/charge", body: body)
            #expect(answer.status == 200 && answer.headers.first(name: PSPWire.versionHeader) == PSPWire.version)
            answer = try await SandboxTests.send(.POST, base + "/psp/stripe/charge", headers: [PSPWire.versionHeader: "1"], body: body)
            #expect(answer.status == 400 && answer.body.contains("wire_version"), "\(answer)")
            answer = try await SandboxTests.send(.GET, base + "/health")
            #expect(answer.headers.first(name: PSPWire.versionHeader) == PSPWire.version)
            answer = try await SandboxTests.send(.POST, base + "/psp/stripe/charge", headers: [PSPWire.versionHeader: PSPWire.version], body: body)
            #expect(answer.status == 200)
        }
    }

    @Test("webhooks over the sandbox's own kept-alive connections arrive signed, twice when duplicated, and are counted")
    func sandboxWebhooksOverKeptAliveConnections() async throws {
        let received = Mutex<[(psp: String, timestamp: Int64, signature: String, body: String)]>([])
        let router = Router()
        router.post("/hooks/psp") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1 << 16)
            received.withLock {
                $0.append((request.headers[HTTPField.Name("X-Paystorm-PSP")!] ?? "",
                           Int64(request.headers[HTTPField.Name("X-Paystorm-Timestamp")!] ?? "") ?? 0,
                           request.headers[HTTPField.Name("X-Paystorm-Signature")!] ?? "", String(buffer: body)))
            }
            return .ok
        }
        let receiver = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await receiver.test(.live) { client in
            var profile = PSPProfile.stripeLike.ideal
            profile.webhookRate = 1
            profile.webhookLossRate = 0
            profile.webhookDuplicateRate = 1
            profile.webhookDelayMedianSeconds = 0.01
            let sandbox = PSPSandbox(profiles: [profile], webhookURL: "http://127.0.0.1:\(try #require(client.port))/hooks/psp",
                                     notificationFailureRate: 0, seed: 7, client: .shared, webhookConnections: 2)
            #expect(sandbox.webhookPlain != nil, "a plain http:// webhook URL gets the sandbox's own connections")
            let body = PSPWire.Call(idempotencyKey: "pay-1:stripe", amountMinor: 1_050, currency: "USD").json()
            try await SandboxTests.served(sandbox) { base in
                let answer = try await SandboxTests.send(.POST, base + "/psp/stripe/charge", body: body)
                #expect(answer.status == 200)
            }
            #expect(await ServerFixture.eventually(10) { sandbox.stats.webhooksSent == 2 }, "\(sandbox.stats)")
            let hooks = received.withLock { $0 }
            #expect(hooks.count == 2 && sandbox.stats.webhooksFailed == 0)
            let secret = try #require(sandbox.webhookSecrets.psps["stripe"])
            for hook in hooks {
                #expect(hook.psp == "stripe" && hook.body.contains("pay-1:stripe"))
                #expect(hook.signature == PaymentEngine.webhookSignature(body: hook.body, timestampSeconds: hook.timestamp, secret: secret))
            }
            await sandbox.shutdown()
        }
    }

    @Test("notifications over kept-alive connections: a 2xx is taken; a 500, a closed port or no answer is not")
    func notificationsOverKeptAliveConnections() async throws {
        let router = Router()
        router.post("/hooks/ok") { _, _ in HTTPResponse.Status.noContent }
        router.post("/hooks/broken") { _, _ in HTTPResponse.Status.internalServerError }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            for (path, taken) in [("/hooks/ok", true), ("/hooks/broken", false)] {
                let clients = OutboundClients(pspURL: nil, pspConnections: 1, notifyURL: base + path, notificationConnections: 2)
                let plain = try #require(clients.notificationsPlain)
                let notifier = HTTPNotifier(url: base + path, client: clients.notifications, plain: plain)
                #expect(try await notifier.post("{}", headers: [:], over: plain).get() == taken, "\(path)")
                await clients.shutdown()
            }
        }
        let closed = "http://127.0.0.1:\(try Self.closedPort())/hooks"
        let clients = OutboundClients(pspURL: nil, pspConnections: 1, notifyURL: closed, notificationConnections: 2)
        let plain = try #require(clients.notificationsPlain)
        #expect(try await HTTPNotifier(url: closed, client: clients.notifications, plain: plain).post("{}", headers: [:], over: plain).get() == false)
        await clients.shutdown()
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
            response.headers[HTTPField.Name(PSPWire.versionHeader)!] = PSPWire.version
            return response
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let clients = OutboundClients(pspURL: nil, pspConnections: 1, notificationConnections: 1)
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
