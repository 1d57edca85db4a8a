import Foundation
import HTTPTypes
import Hummingbird
import Logging
import HummingbirdTesting
import PaystormEngine
import Testing
@testable import PaystormServer

@Suite("HTTP API: the design's endpoints, auth, limits and errors")
struct APIRouteTests {
    static let merchant: HTTPFields = [.authorization: "Bearer sk_test_m1", .contentType: "application/json"]
    static let admin: HTTPFields = [.authorization: "Bearer sk_admin_dev"]

    /// Runs `body` against the API over a started runner, through Hummingbird's router.
    func withAPI(limiter: RateLimiter? = nil, configuration: EngineConfiguration = ServerFixture.configuration(),
                 _ body: @Sendable (any TestClientProtocol, EngineRunner) async throws -> Void) async throws {
        let directory = TemporaryDirectory()
        let runner = try ServerFixture.runner(in: directory, configuration: configuration)
        try runner.start()
        let api = ServerFixture.api(runner, limiter: limiter)
        let app = Application(router: api.router())
        try await app.test(.router) { client in try await body(client, runner) }
        await runner.stop()
        _ = directory
    }

    static func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
    }

    static func error(_ response: TestResponse) throws -> [String: Any] {
        try #require(try json(response)["error"] as? [String: Any], "no error object")
    }

    @Test("responses that skip the key conversion encode as they would with it")
    func wireNamedResponsesEncodeAsWithKeyConversion() throws {
        func same<T: Codable & WireNamed>(_ type: T.Type, _ json: String) throws {
            let value = try JSONDecoder().decode(T.self, from: Data(json.utf8))
            let fast = try PaystormAPI.wireEncoder.encode(value)
            #expect(String(decoding: fast, as: UTF8.self) == String(decoding: try PaystormAPI.encoder.encode(value), as: UTF8.self))
            // Every wire name read back and written again: a key spelt otherwise drops out.
            let written = try JSONSerialization.jsonObject(with: fast) as? NSDictionary
            #expect(written == (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? NSDictionary), "\(String(decoding: fast, as: UTF8.self))")
        }
        try same(APIWire.Payment.self, #"{"payment_id":"pay-1","status":"failed","merchant_id":"m1","user_id":"u1","amount":"1.00","currency":"USD","card":"411111******1111","psp":"stripe","failure_reason":"declined","refunded":"0.00","replayed":false}"#)
        try same(APIWire.Refund.self, #"{"refund_id":"ref-1","payment_id":"pay-1","status":"failed","amount":"1.00","currency":"USD","failure_reason":"declined","replayed":true}"#)
        try same(APIWire.WebhookResult.self, #"{"outcome":"applied"}"#)
        try same(APIWire.ErrorBody.self, #"{"error":{"code":"bad","message":"no","field":"amount"}}"#)
        try same(PSPWire.Answer.self, #"{"outcome":"declined","reference":"r","reason":"do_not_honor"}"#)
    }

    @Test("POST /payments: 201, then 200 with the same payment for the same key; a different body with that key is 422")
    func createAndReplay() async throws {
        try await withAPI { client, _ in
            let body = ByteBuffer(string: ServerFixture.paymentJSON(key: "r1"))
            let first = try await client.execute(uri: "/payments", method: .post, headers: Self.merchant, body: body)
            #expect(first.status == .created)
            let created = try Self.json(first)
            #expect(created["status"] as? String == "processing" || created["status"] as? String == "completed")
            #expect(created["card"] as? String == "411111******1111")
            #expect(created["amount"] as? String == "10.50")
            let again = try await client.execute(uri: "/payments", method: .post, headers: Self.merchant, body: body)
            #expect(again.status == .ok)
            #expect(try Self.json(again)["payment_id"] as? String == created["payment_id"] as? String)
            #expect(try Self.json(again)["replayed"] as? Bool == true)
            let changed = try await client.execute(uri: "/payments", method: .post, headers: Self.merchant,
                                                   body: ByteBuffer(string: ServerFixture.paymentJSON(key: "r1", amount: "11.00")))
            #expect(changed.status == .unprocessableContent)
            #expect(try Self.error(changed)["code"] as? String == "idempotency_key_reused")
        }
    }

    @Test("bad input is a 4xx that names the field; nothing is created")
    func badInput() async throws {
        try await withAPI { client, runner in
            let cases: [(String, HTTPResponse.Status, String?)] = [
                ("{not json", .badRequest, nil),
                ("[1,2]", .badRequest, nil),
                ("", .badRequest, nil),
                (ServerFixture.paymentJSON(key: "b1").replacingOccurrences(of: "\"10.50\"", with: "10.50"), .badRequest, "amount"),
                (ServerFixture.paymentJSON(key: "b2").replacingOccurrences(of: "\"user_id\"", with: "\"usr\""), .badRequest, "usr"),
                (ServerFixture.paymentJSON(key: "b3", amount: "10.505"), .unprocessableContent, "amount"),
                (ServerFixture.paymentJSON(key: "b4", amount: "-1"), .unprocessableContent, "amount"),
                (ServerFixture.paymentJSON(key: "b5", card: "4111111111111112"), .unprocessableContent, nil),
                (ServerFixture.paymentJSON(key: "b6").replacingOccurrences(of: "\"card\"", with: "\"crypto\""), .badRequest, "payment_method.type"),
                (ServerFixture.paymentJSON(key: "b7").replacingOccurrences(of: "\"cvv\":\"123\"", with: "\"cvv\":123"), .badRequest, "payment_method.details.cvv"),
                (ServerFixture.paymentJSON(key: "b8").replacingOccurrences(of: "12/39", with: "+1/39"), .unprocessableContent, nil),
                (ServerFixture.paymentJSON(key: "b11").replacingOccurrences(of: "\"amount\"", with: "\"amount\":\"0.01\",\"amount\""), .badRequest, "amount"),
            ]
            for (body, status, field) in cases {
                let response = try await client.execute(uri: "/payments", method: .post, headers: Self.merchant, body: ByteBuffer(string: body))
                #expect(response.status == status, "\(body) → \(response.status)")
                let error = try Self.error(response)
                #expect(!(error["message"] as? String ?? "").isEmpty)
                if let field { #expect(error["field"] as? String == field, "\(body) → \(error)") }
            }
            let huge = ServerFixture.paymentJSON(key: "huge").replacingOccurrences(of: "\"u1\"", with: "\"" + String(repeating: "x", count: 70_000) + "\"")
            let tooLarge = try await client.execute(uri: "/payments", method: .post, headers: Self.merchant, body: ByteBuffer(string: huge))
            #expect(tooLarge.status == .contentTooLarge)
            guard case let .success(.status(status)) = await runner.perform(.status) else { return }
            #expect(status.outboxRelayed == 0)
            let unknown = try await client.execute(uri: "/payments/pay-999", method: .get, headers: Self.merchant)
            #expect(unknown.status == .notFound)
            #expect(try Self.error(unknown)["code"] as? String == "payment_not_found")
            let route = try await client.execute(uri: "/nowhere", method: .get)
            #expect(route.status == .notFound)
            #expect(try Self.error(route)["code"] as? String == "not_found")
        }
    }

    @Test("auth: no key 401, unknown key 401, another merchant's payment 403 on create and 404 on read; ledger needs the admin key")
    func authentication() async throws {
        try await withAPI { client, _ in
            let body = ByteBuffer(string: ServerFixture.paymentJSON(key: "a1"))
            #expect(try await client.execute(uri: "/payments", method: .post, body: body).status == .unauthorized)
            #expect(try await client.execute(uri: "/payments", method: .post, headers: [.authorization: "Bearer nope"], body: body).status == .unauthorized)
            let other: HTTPFields = [.authorization: "Bearer sk_test_m2"]
            let forbidden = try await client.execute(uri: "/payments", method: .post, headers: other, body: body)
            #expect(forbidden.status == .forbidden)
            #expect(try Self.error(forbidden)["field"] as? String == "merchant_id")
            let created = try await client.execute(uri: "/payments", method: .post, headers: Self.merchant, body: body)
            let id = try #require(try Self.json(created)["payment_id"] as? String)
            #expect(try await client.execute(uri: "/payments/\(id)", method: .get, headers: other).status == .notFound)
            #expect(try await client.execute(uri: "/payments/\(id)", method: .get, headers: Self.merchant).status == .ok)
            #expect(try await client.execute(uri: "/ledger", method: .get, headers: Self.merchant).status == .forbidden)
            #expect(try await client.execute(uri: "/ledger", method: .get, headers: Self.admin).status == .ok)
            var adminJSON = Self.admin
            adminJSON[.contentType] = "application/json"
            #expect(try await client.execute(uri: "/payments", method: .post, headers: adminJSON, body: body).status == .forbidden,
                    "the admin key is not a merchant's")
            #expect(try await client.execute(uri: "/payments/\(id)", method: .get, headers: Self.admin).status == .forbidden)
            let inverted = try await client.execute(uri: "/ledger?from_ns=5&to_ns=1", method: .get, headers: Self.admin)
            #expect(try Self.error(inverted)["field"] as? String == "from_ns")
            let badLimit = try await client.execute(uri: "/ledger?limit=0", method: .get, headers: Self.admin)
            #expect(badLimit.status == .badRequest)
            #expect(try Self.error(badLimit)["field"] as? String == "limit")
            // Which of two limits, or what an empty account, is not guessed.
            for (query, field) in [("limit=5000&limit=1", "limit"), ("limit=1&limit=5000", "limit"), ("account=", "account"),
                                   ("account", "account"), ("transaction_id=", "transaction_id")] {
                let refused = try await client.execute(uri: "/ledger?\(query)", method: .get, headers: Self.admin)
                #expect(refused.status == .badRequest, "\(query)")
                #expect(try Self.error(refused)["field"] as? String == field, "\(query)")
            }
        }
    }

    @Test("auth: the scheme in any case; another scheme, two Authorization headers or a key no merchant id could follow is a 401 that says why")
    func authorizationHeaderForms() async throws {
        try await withAPI { client, _ in
            func headers(_ values: [String]) -> HTTPFields {
                var fields: HTTPFields = [.contentType: "application/json"]
                for value in values { fields.append(HTTPField(name: .authorization, value: value)) }
                return fields
            }
            // RFC 7235: the scheme is case-insensitive.
            for (index, scheme) in ["bearer", "BEARER", "Bearer"].enumerated() {
                let body = ByteBuffer(string: ServerFixture.paymentJSON(key: "case-\(index)"))
                let answered = try await client.execute(uri: "/payments", method: .post, headers: headers(["\(scheme) sk_test_m1"]), body: body)
                #expect(answered.status == .created, "\(scheme): \(String(buffer: answered.body))")
            }
            let body = ByteBuffer(string: ServerFixture.paymentJSON(key: "refused"))
            let cases: [([String], String)] = [
                (["Basic c2tfdGVzdF9tMTo="], "expected `Authorization: Bearer <api key>`, found scheme Basic"),
                (["sk_test_m1"], "expected `Authorization: Bearer <api key>`"),
                (["Bearer sk_test_m1", "Bearer bogus"], "more than one Authorization header"),
                (["Bearer sk_test_m1", "Bearer sk_test_m1"], "more than one Authorization header"),
                // Two headers joined by a proxy: not merchant "m1, Bearer bogus".
                (["Bearer sk_test_m1, Bearer bogus"], "unknown API key"),
                (["Bearer sk_test_m\u{E9}"], "unknown API key"),
            ]
            for (values, message) in cases {
                let refused = try await client.execute(uri: "/payments", method: .post, headers: headers(values), body: body)
                #expect(refused.status == .unauthorized, "\(values): \(refused.status)")
                let error = try Self.error(refused)
                #expect((error["message"] as? String)?.contains(message) == true, "\(values): \(error)")
                #expect(error["field"] as? String == "Authorization", "\(values): \(error)")
            }
        }
        let keys = APIKeys(adminKey: "sk_admin_dev", acceptsTestKeys: true)
        #expect(keys.principal(forKey: "sk_test_m-1") == .merchant("m-1"))
        for key in ["sk_test_m1, Bearer bogus", "sk_test_m 1", "sk_test_m\t1", "sk_test_caf\u{E9}", "sk_test_" + String(repeating: "m", count: 65)] {
            #expect(keys.principal(forKey: key) == nil, "\(key)")
        }
    }

    @Test("rate limit: over the bucket is 429 with Retry-After")
    func rateLimit() async throws {
        // One token per 1,000 s: the third request waits for the bucket to
        // refill, 1,000 s less what refilled since the first (measured here:
        // a loaded machine took 23 s between them).
        try await withAPI(limiter: RateLimiter(rate: 0.001, burst: 2)) { client, _ in
            var statuses: [HTTPResponse.Status] = []
            var retryAfter: String?
            let clock = ContinuousClock()
            let start = clock.now
            for _ in 0..<3 {
                let response = try await client.execute(uri: "/payments/pay-1", method: .get, headers: Self.merchant)
                statuses.append(response.status)
                if response.status == .tooManyRequests { retryAfter = response.headers[.retryAfter] }
            }
            #expect(statuses.prefix(2).allSatisfy { $0 != .tooManyRequests })
            #expect(statuses.last == .tooManyRequests)
            let elapsed = Int((clock.now - start).components.seconds) + 1
            #expect((1_000 - elapsed...1_000).contains(Int(retryAfter ?? "") ?? 0), "Retry-After \(retryAfter ?? "missing") after \(elapsed) s")
        }
    }

    @Test("rate limit: a tiny rate is a 429 with Retry-After capped at a day, not a trap converting the wait to an Int")
    func tinyRateLimit() async throws {
        try await withAPI(limiter: RateLimiter(rate: 1e-20, burst: 1)) { client, _ in
            _ = try await client.execute(uri: "/payments/pay-1", method: .get, headers: Self.merchant)
            let limited = try await client.execute(uri: "/payments/pay-1", method: .get, headers: Self.merchant)
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.retryAfter] == String(RateLimiter.maximumRetryAfterSeconds))
            #expect(try Self.error(limited)["message"] as? String == "more than 1e-20 requests per second for this API key; retry after 86400 s")
        }
        #expect(RateLimiter.retryAfterSeconds(.infinity) == RateLimiter.maximumRetryAfterSeconds)
        #expect(RateLimiter.retryAfterSeconds(.nan) == RateLimiter.maximumRetryAfterSeconds)
        #expect(RateLimiter.retryAfterSeconds(0.2) == 1)
        #expect(RateLimiter.retryAfterSeconds(2.5) == 3)
    }

    /// Creates payment pay-1; returns the body of a Stripe webhook that
    /// says it succeeded, and the Unix seconds to sign it at.
    static func webhookForNewPayment(_ client: any TestClientProtocol, key: String, event: String) async throws -> (body: String, now: Int64) {
        let created = try await client.execute(uri: "/payments", method: .post, headers: merchant,
                                               body: ByteBuffer(string: ServerFixture.paymentJSON(key: key)))
        #expect(created.status == .created)
        return (#"{"event_id":"\#(event)","type":"charge.succeeded","psp_reference":"pay-1:stripe"}"#, WallClock.nanoseconds() / 1_000_000_000)
    }

    /// The headers of a PSP's webhook.
    static func webhookHeaders(_ signature: String, _ timestamp: Int64, psp: String = "stripe") -> HTTPFields {
        var fields: HTTPFields = [.contentType: "application/json"]
        fields[HTTPFields.Element.Name("X-Paystorm-PSP")!] = psp
        fields[HTTPFields.Element.Name("X-Paystorm-Signature")!] = signature
        fields[HTTPFields.Element.Name("X-Paystorm-Timestamp")!] = String(timestamp)
        return fields
    }

    @Test("webhooks: a bad signature or stale timestamp is 400 and changes nothing; a good one is applied once")
    func webhooks() async throws {
        try await withAPI { client, _ in
            let (body, now) = try await Self.webhookForNewPayment(client, key: "w1", event: "evt-x")
            let secret = WebhookSecrets.development(pspIDs: ["stripe"]).psps["stripe"]!
            let good = PaymentEngine.webhookSignature(body: body, timestampSeconds: now, secret: secret)
            let forged = try await client.execute(uri: "/webhook", method: .post, headers: Self.webhookHeaders(String(repeating: "0", count: 64), now), body: ByteBuffer(string: body))
            #expect(forged.status == .badRequest)
            #expect(try Self.error(forged)["code"] as? String == "webhook_rejected")
            let stale = PaymentEngine.webhookSignature(body: body, timestampSeconds: now - 3_600, secret: secret)
            #expect(try await client.execute(uri: "/webhook", method: .post, headers: Self.webhookHeaders(stale, now - 3_600), body: ByteBuffer(string: body)).status == .badRequest)
            #expect(try await client.execute(uri: "/webhook", method: .post, headers: Self.webhookHeaders(good, now, psp: "acme"), body: ByteBuffer(string: body)).status == .badRequest)
            for extreme in [Int64.min, Int64.min + 1, Int64.max] {
                let response = try await client.execute(uri: "/webhook", method: .post, headers: Self.webhookHeaders("ab", extreme), body: ByteBuffer(string: body))
                #expect(response.status == .badRequest, "timestamp \(extreme) must be refused, not overflow")
            }
            let missing = try await client.execute(uri: "/webhook", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: body))
            #expect(missing.status == .badRequest)
            let first = try await client.execute(uri: "/webhook", method: .post, headers: Self.webhookHeaders(good, now), body: ByteBuffer(string: body))
            #expect(first.status == .ok)
            let again = try await client.execute(uri: "/webhook", method: .post, headers: Self.webhookHeaders(good, now), body: ByteBuffer(string: body))
            #expect(try Self.json(again)["outcome"] as? String == "duplicate")
        }
    }

    @Test("webhooks: a forged or stale one is refused on the request's thread, never queued for the engine")
    func badWebhooksNeverReachTheEngine() async throws {
        let directory = TemporaryDirectory()
        let runner = try ServerFixture.runner(in: directory)
        try runner.start()
        // A stopped runner answers every call it is given with 503 at once: a 400 shows the webhook never reached it.
        await runner.stop()
        let app = Application(router: ServerFixture.api(runner).router())
        try await app.test(.router) { client in
            let body = PSPWebhookPayload.settlementEventJSON(reference: "pay-1:stripe", type: .chargeSucceeded)
            let now = WallClock.nanoseconds() / 1_000_000_000
            let secret = WebhookSecrets.development(pspIDs: ["stripe"]).psps["stripe"]!
            let forged = try await client.execute(uri: "/webhook", method: .post, headers: Self.webhookHeaders(String(repeating: "0", count: 64), now),
                                                  body: ByteBuffer(string: body))
            #expect(forged.status == .badRequest)
            #expect(try Self.error(forged)["message"] as? String == "webhook rejected: signature does not match")
            let staleAt = now - 3_600
            let stale = try await client.execute(uri: "/webhook", method: .post,
                                                 headers: Self.webhookHeaders(PaymentEngine.webhookSignature(body: body, timestampSeconds: staleAt, secret: secret), staleAt),
                                                 body: ByteBuffer(string: body))
            #expect(stale.status == .badRequest)
            #expect(try Self.error(stale)["code"] as? String == "webhook_rejected")
            // A good one goes on to the engine, which has stopped.
            let good = try await client.execute(uri: "/webhook", method: .post,
                                                headers: Self.webhookHeaders(PaymentEngine.webhookSignature(body: body, timestampSeconds: now, secret: secret), now),
                                                body: ByteBuffer(string: body))
            #expect(good.status == .serviceUnavailable)
        }
    }

    @Test("webhook secrets: a server given its own rejects a webhook signed with the public development default")
    func configuredWebhookSecrets() async throws {
        let file = """
            # PSP webhook secrets, and the one merchant notifications are signed with
            stripe         whsec_3f9c1e7a52d84b06
            paypal\twhsec_8b2d4f6e1a9c7035
            notifications  ntf_5e0a7c3b9d1f2468   # rotated quarterly
            """
        var options = ServerOptions()
        options.host = "0.0.0.0"
        options.webhookSecrets = try WebhookSecrets.parse(file, file: "secrets.txt")
        let configuration = try options.engineConfiguration()
        #expect(configuration.psps.map(\.webhookSecret) == ["whsec_3f9c1e7a52d84b06", "whsec_8b2d4f6e1a9c7035"])
        #expect(configuration.merchantWebhookSecret == "ntf_5e0a7c3b9d1f2468")
        try await withAPI(configuration: configuration) { client, _ in
            let (body, now) = try await Self.webhookForNewPayment(client, key: "s1", event: "evt-s")
            let development = WebhookSecrets.development(pspIDs: ["stripe"]).psps["stripe"]!
            let forged = try await client.execute(uri: "/webhook", method: .post,
                headers: Self.webhookHeaders(PaymentEngine.webhookSignature(body: body, timestampSeconds: now, secret: development), now),
                body: ByteBuffer(string: body))
            #expect(forged.status == .badRequest, "a webhook signed with the public default was taken")
            #expect(try Self.error(forged)["code"] as? String == "webhook_rejected")
            let genuine = try await client.execute(uri: "/webhook", method: .post,
                headers: Self.webhookHeaders(PaymentEngine.webhookSignature(body: body, timestampSeconds: now, secret: "whsec_3f9c1e7a52d84b06"), now),
                body: ByteBuffer(string: body))
            #expect(genuine.status == .ok)
        }
    }

    @Test("webhook secrets: the development defaults only on loopback; a file must name every PSP and the notifications, with long secrets")
    func webhookSecretRules() throws {
        var options = ServerOptions()
        for host in ["127.0.0.1", "127.3.0.1", "localhost", "::1"] {
            options.host = host
            #expect(try options.engineConfiguration().psps.first?.webhookSecret == "whsec_stripe", "\(host)")
        }
        for host in ["0.0.0.0", "192.168.1.4", "::", "example.com"] {
            options.host = host
            #expect(throws: ServerError.self, "\(host)") { try options.engineConfiguration() }
        }
        // The development API and admin keys are public too.
        #expect(throws: ServerError.self) { try options.checkKeysFitHost() }
        options.acceptsTestKeys = false
        #expect(throws: ServerError.self) { try options.checkKeysFitHost() }
        options.adminKey = "sk_admin_6d2f0b8e41a7c953"
        try options.checkKeysFitHost()
        options.host = "127.0.0.1"
        options.acceptsTestKeys = true
        options.adminKey = ServerOptions.developmentAdminKey
        try options.checkKeysFitHost()
        options.host = "example.com"
        #expect(APIKeys.constantTimeEqual("sk_admin_dev", "sk_admin_dev") && !APIKeys.constantTimeEqual("sk_admin_dev", "sk_admin_deV")
                && !APIKeys.constantTimeEqual("sk_admin_dev", "sk_admin_de"))
        options.webhookSecrets = try WebhookSecrets.parse("stripe whsec_3f9c1e7a52d84b06\nnotifications ntf_5e0a7c3b9d1f2468\n", file: "s.txt")
        do {
            _ = try options.engineConfiguration()
            Issue.record("a file without paypal's secret was accepted")
        } catch {
            #expect(error.description.contains("paypal"))
        }
        // A file saved on Windows (CRLF, a byte-order mark) reads as the same secrets.
        let windows = try WebhookSecrets.parse("\u{FEFF}stripe whsec_3f9c1e7a52d84b06\r\npaypal whsec_8b2d4f6e1a9c7035\r\n"
                                               + "notifications ntf_5e0a7c3b9d1f2468\r\n", file: "s.txt")
        #expect(windows.psps == ["stripe": "whsec_3f9c1e7a52d84b06", "paypal": "whsec_8b2d4f6e1a9c7035"])
        #expect(windows.notifications == "ntf_5e0a7c3b9d1f2468")
        for (text, complaint) in [("stripe short", "at least 16"), ("stripe whsec_3f9c1e7a52d84b06\nstripe whsec_3f9c1e7a52d84b07", "second secret"),
                                  ("stripe", "1 fields")] {
            #expect(throws: APIWire.BadRequest.self) { try WebhookSecrets.parse(text, file: "s.txt") }
            do { _ = try WebhookSecrets.parse(text, file: "s.txt") } catch { #expect(error.description.contains(complaint), "\(error)") }
        }
    }

    @Test("refunds: 201, replay 200, more than captured 409; health answers")
    func refunds() async throws {
        try await withAPI { client, runner in
            let created = try await client.execute(uri: "/payments", method: .post, headers: Self.merchant,
                                                   body: ByteBuffer(string: ServerFixture.paymentJSON(key: "f1")))
            let id = try #require(try Self.json(created)["payment_id"] as? String)
            #expect(await ServerFixture.eventually {
                guard case let .success(.payment(view)) = await runner.perform(.payment(id: id, merchantID: "m1")) else { return false }
                return view.status == .completed
            })
            let refund = ByteBuffer(string: #"{"payment_id":"\#(id)","amount":"5.00","idempotency_key":"rf1"}"#)
            #expect(try await client.execute(uri: "/refunds", method: .post, headers: Self.merchant, body: refund).status == .created)
            #expect(try await client.execute(uri: "/refunds", method: .post, headers: Self.merchant, body: refund).status == .ok)
            let tooMuch = try await client.execute(uri: "/refunds", method: .post, headers: Self.merchant,
                                                   body: ByteBuffer(string: #"{"payment_id":"\#(id)","amount":"6.00","idempotency_key":"rf2"}"#))
            #expect(tooMuch.status == .conflict)
            #expect(try Self.error(tooMuch)["code"] as? String == "refund_exceeds_captured")
            let health = try await client.execute(uri: "/health", method: .get)
            #expect(health.status == .ok)
            #expect(try Self.json(health)["status"] as? String == "ok")
        }
    }
}

extension APIRouteTests {
    @Test("load shedding: while PSP calls wait too long for a connection, new payments are 503 overloaded with Retry-After; reads go on; then it recovers")
    func shedding() async throws {
        let directory = TemporaryDirectory()
        let psp = HoldingPSP()
        let runner = try ServerFixture.runner(in: directory, psp: psp, configuration: ServerFixture.patientConfiguration())
        runner.maximumOutbound = 1
        runner.sheddingWait = .milliseconds(50)
        try runner.start()
        let api = PaystormAPI(runner: runner, keys: APIKeys(adminKey: "sk_admin_dev", acceptsTestKeys: true), limiter: nil,
                              pspIDs: Set(ServerFixture.pspIDs))
        let app = Application(router: api.router())
        try await app.test(.router) { client in
            func pay(_ key: String, user: String) async throws -> TestResponse {
                try await client.execute(uri: "/payments", method: .post, headers: Self.merchant,
                                         body: ByteBuffer(string: ServerFixture.paymentJSON(key: key, user: user,
                                                                                            card: LoadGenerator.card(user: Int(user.dropFirst())!))))
            }
            // The first call holds the only connection; the second's call waits for it.
            let first = try await pay("s1", user: "u1")
            #expect(first.status == .created)
            #expect(try await pay("s2", user: "u2").status == .created)
            try await Task.sleep(for: .milliseconds(150))
            _ = try await client.execute(uri: "/health", method: .get)  // a turn of the engine thread notices the wait
            let shed = try await pay("s3", user: "u3")
            #expect(shed.status == .serviceUnavailable)
            #expect(shed.headers[.retryAfter] == "1")
            #expect(try Self.error(shed)["code"] as? String == "overloaded")
            // Reads are still served.
            let id = try #require(try Self.json(first)["payment_id"] as? String)
            #expect(try await client.execute(uri: "/payments/\(id)", method: .get, headers: Self.merchant).status == .ok)
            // The PSP answers, the queue empties, and payments are taken again.
            psp.release()
            let recovered = try await ServerFixture.eventually(60) {
                psp.release()
                return try await pay("s3", user: "u3").status == .created
            }
            #expect(recovered)
            guard case let .success(.status(status)) = await runner.perform(.status) else {
                Issue.record("no status")
                return
            }
            #expect(status.requestsShed >= 1)
        }
        psp.release()
        await runner.stop()
        _ = directory
    }
}

extension APIRouteTests {
    @Test("a flood of GET /health asks the engine thread a few times, not once a probe")
    func healthProbesShareTheEnginesAnswer() async throws {
        try await withAPI { client, runner in
            func engineCalls() async throws -> Int {
                guard case let .success(.status(status)) = await runner.perform(.status) else { throw ServerError("no status") }
                return status.calls
            }
            let before = try await engineCalls()
            let started = ContinuousClock.now
            let probes = 200
            let answers = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<probes { group.addTask { try await client.execute(uri: "/health", method: .get).status } }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            let elapsed = ContinuousClock.now - started
            // The engine calls since `before`: that status call itself, and the probes'.
            let asked = try await engineCalls() - before - 1
            #expect(answers.count == probes && answers.allSatisfy { $0 == .ok })
            // One call per quarter second at most, and one more for the edges.
            let bound = 2 + Int(elapsed / .milliseconds(250))
            #expect(asked >= 1 && asked <= bound, "\(asked) engine calls for \(probes) probes in \(elapsed)")
        }
    }
}

@Suite("The server's log handler")
struct LogHandlerTests {
    /// Hummingbird reads each request's id back from its logger's metadata
    /// (`context.id` unwraps it): a handler that dropped what was set would stop every request.
    @Test("it keeps each request's metadata for Hummingbird to read back, and the level it was given")
    func keepsMetadata() async throws {
        var logger = Logger(label: "paystorm-test") { RenderWhenLogged(label: $0) }
        logger.logLevel = .error
        #expect(logger.logLevel == .error)
        logger[metadataKey: "k"] = "v"
        #expect(logger[metadataKey: "k"] == "v")
        logger[metadataKey: "k"] = nil
        #expect(logger[metadataKey: "k"] == nil)
        var handler = RenderWhenLogged(label: "paystorm-test")
        handler.metadataProvider = Logger.MetadataProvider { ["from": "provider"] }
        #expect(handler.metadataProvider?.get() == ["from": "provider"], "the provider reaches the stream that writes")
        let router = Router()
        router.get("/id") { _, context in context.id }
        try await Application(router: router, logger: logger).test(.router) { client in
            var ids: Set<String> = []
            for _ in 0..<3 {
                try await client.execute(uri: "/id", method: .get) { response in
                    #expect(response.status == .ok)
                    ids.insert(String(buffer: response.body))
                }
            }
            #expect(ids.count == 3 && !ids.contains(""), "\(ids)")
        }
    }
}
