import Foundation
import Hummingbird
import NIOCore
import PaystormEngine
import Synchronization

/// Who may call the API: one key per merchant, and an admin key for the
/// ledger. Keys arrive as `Authorization: Bearer <key>`.
public struct APIKeys: Sendable {
    public enum Principal: Sendable, Equatable {
        case merchant(String)
        case admin
    }

    /// key → merchant id.
    public var merchants: [String: String]
    public var adminKey: String
    /// Development mode: `sk_test_<merchant_id>` is the key of any merchant.
    public var acceptsTestKeys: Bool

    public init(merchants: [String: String] = [:], adminKey: String, acceptsTestKeys: Bool) {
        self.merchants = merchants
        self.adminKey = adminKey
        self.acceptsTestKeys = acceptsTestKeys
    }

    public static let testKeyPrefix = "sk_test_"

    /// Whether two keys are equal, in a time that depends on their lengths
    /// only, not on where they first differ (a guess at the admin key learns
    /// nothing from how fast it was refused).
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }

    /// Whose key `key` is; `nil` for no one's. A test key names its merchant
    /// only when the engine would take that id: `sk_test_m1, Bearer bogus`
    /// (two headers joined by a proxy) is no key of merchant `m1, Bearer bogus`.
    public func principal(forKey key: String) -> Principal? {
        if Self.constantTimeEqual(key, adminKey) { return .admin }
        if let merchant = merchants[key] { return .merchant(merchant) }
        if acceptsTestKeys, key.hasPrefix(Self.testKeyPrefix) {
            let merchant = String(key.dropFirst(Self.testKeyPrefix.count))
            if PaymentEngine.acceptsIdentifier(merchant) { return .merchant(merchant) }
        }
        return nil
    }

    /// Reads a key file: one `merchant_id key` pair per line; `#` starts a
    /// comment. Refused: a file without a key (no merchant could pay), a key
    /// given twice, and `adminKey` given to a merchant — the admin key is
    /// checked first, so that merchant could never pay or refund.
    public static func parse(_ text: String, file: String, adminKey: String? = nil) throws(APIWire.BadRequest) -> [String: String] {
        var keys: [String: String] = [:]
        for (line, merchant, key) in try KeyFile.pairs(text, file: file, expected: "merchant_id key") {
            guard keys[key] == nil else {
                throw APIWire.BadRequest(field: "\(file):\(line)", message: "this key is already given to merchant \(keys[key]!)")
            }
            if let adminKey, constantTimeEqual(key, adminKey) {
                throw APIWire.BadRequest(field: "\(file):\(line)", message: "merchant \(merchant) is given the admin key (--admin-key); "
                                         + "the admin key reads the ledger only, so \(merchant) could never pay or refund: give it a key of its own")
            }
            keys[key] = merchant
        }
        guard !keys.isEmpty else {
            throw APIWire.BadRequest(field: file, message: "no keys; expected a `merchant_id key` line for each merchant")
        }
        return keys
    }
}

/// The files of keys and secrets (`--api-keys`, `--webhook-secrets`): one
/// `name secret` pair a line, separated by spaces or tabs; `#` starts a
/// comment, so a secret cannot hold one.
enum KeyFile {
    /// The pairs of `text`, with their 1-based line numbers; the error names the line.
    static func pairs(_ text: String, file: String, expected: String = "name secret") throws(APIWire.BadRequest) -> [(line: Int, name: String, secret: String)] {
        var pairs: [(line: Int, name: String, secret: String)] = []
        // Any line ending (a file saved on Windows ends its lines in "\r\n", one
        // Character in Swift) and a leading byte-order mark.
        let body = text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text
        for (index, raw) in body.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let fields = line.split(whereSeparator: \.isWhitespace)
            if fields.isEmpty { continue }
            guard fields.count == 2 else {
                throw APIWire.BadRequest(field: "\(file):\(index + 1)", message: "expected `\(expected)`, found \(fields.count) fields")
            }
            pairs.append((index + 1, String(fields[0]), String(fields[1])))
        }
        return pairs
    }
}

/// A token bucket per API key: `rate` requests per second, bursts of `burst`.
public final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: Int64
    }

    public let rate: Double
    public let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Buckets kept at most; full ones are dropped first (a full bucket is
    /// the same as no bucket), so unknown-but-valid keys cannot grow memory.
    public let capacity = 100_000

    /// The longest `Retry-After` given, in seconds: a day.
    public static let maximumRetryAfterSeconds = 86_400

    /// `Retry-After` for a wait of `seconds`: whole seconds, at least 1, at
    /// most ``maximumRetryAfterSeconds``. A tiny rate makes the wait too
    /// large for an `Int` (or infinite), and converting it would trap.
    public static func retryAfterSeconds(_ seconds: Double) -> Int {
        guard seconds < Double(maximumRetryAfterSeconds) else { return maximumRetryAfterSeconds }  // NaN too
        return max(1, Int(seconds.rounded(.up)))
    }

    /// The rate for messages: whole requests per second when it is one, else as given.
    var rateDescription: String {
        rate >= 1 && rate < 1e15 && rate == rate.rounded() ? String(Int(rate)) : String(rate)
    }

    /// `nil` if the request may go ahead, else the seconds until it could.
    public func take(_ key: String, now: Int64 = WallClock.monotonic()) -> Double? {
        buckets.withLock { buckets in
            if buckets.count >= capacity, buckets[key] == nil {
                let rate = self.rate, burst = self.burst
                buckets = buckets.filter { min(burst, $0.value.tokens + Double(now - $0.value.updated) / 1e9 * rate) < burst }
                if buckets.count >= capacity { buckets.removeAll(keepingCapacity: true) }
            }
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            bucket.tokens = min(burst, bucket.tokens + Double(now - bucket.updated) / 1e9 * rate)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) / rate
        }
    }
}

/// The engine thread's status for `GET /health`, which takes no key and no
/// rate limit: asked of the engine at most once per ``maximumAge``, however
/// many probes come, so that a flood of them cannot take the engine thread
/// from the payments (each asks the broker for every consumer's lag and
/// counts the dead letters of the broker and of the engine).
/// Probes that come while it is being asked wait for that answer.
actor HealthProbe {
    let runner: EngineRunner
    let maximumAge: Duration
    private var last: (at: ContinuousClock.Instant, status: EngineRunner.Status)?
    private var asking: Task<EngineRunner.Status?, Never>?

    init(runner: EngineRunner, maximumAge: Duration = .milliseconds(250)) {
        self.runner = runner
        self.maximumAge = maximumAge
    }

    /// The engine's status, or `nil` when the engine did not answer.
    func status() async -> EngineRunner.Status? {
        if let last, ContinuousClock.now - last.at < maximumAge { return last.status }
        if let asking { return await asking.value }
        let task = Task { [runner] () -> EngineRunner.Status? in
            if case let .success(.status(status)) = await runner.perform(.status) { status } else { nil }
        }
        asking = task
        let status = await task.value
        asking = nil
        if let status { last = (.now, status) }
        return status
    }
}

/// The HTTP API of `paystorm serve` (`openapi/paystorm.yaml`): the design's
/// five endpoints and a health check, over an ``EngineRunner``.
public struct PaystormAPI: Sendable {
    public var runner: EngineRunner
    public var keys: APIKeys
    public var limiter: RateLimiter?
    /// Largest request body accepted, in bytes.
    public var maximumBodyBytes = 64 * 1_024
    /// PSPs whose webhooks are accepted.
    public var pspIDs: Set<String>
    /// The engine's webhook checks, run on the request's thread before the
    /// engine's: a forged or stale webhook is refused without taking a
    /// place in the engine's batches.
    public var webhooks: WebhookVerifier
    /// `GET /health`'s view of the engine thread, at most a quarter second old.
    let health: HealthProbe

    public init(runner: EngineRunner, keys: APIKeys, limiter: RateLimiter?, pspIDs: Set<String>) {
        self.runner = runner
        health = HealthProbe(runner: runner)
        self.keys = keys
        self.limiter = limiter
        self.pspIDs = pspIDs
        webhooks = WebhookVerifier(runner.engine.configuration)
    }

    public static let paths = ["/health", "/payments", "/payments/{id}", "/refunds", "/webhook", "/ledger"]

    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        let api = self
        router.get("/health") { _, _ in
            guard let status = await api.health.status() else {
                return Self.json(503, APIWire.ErrorBody(code: "unavailable", message: "the engine did not answer"))
            }
            return Self.json(200, Health(status: "ok", engine: status))
        }
        router.post("/payments") { request, context in
            try await api.authorized(request) { merchant in
                let command = try APIWire.createPayment(try await api.body(request))
                guard command.merchantID == merchant else {
                    throw APIFailure(403, APIWire.ErrorBody(code: "forbidden", message: "the API key belongs to merchant \(merchant), not \(command.merchantID)", field: "merchant_id"))
                }
                let view = try api.unwrap(await api.runner.perform(.createPayment(command))) { answer -> PaymentView? in
                    if case let .payment(view) = answer { view } else { nil }
                }
                return Self.json(view.replayed ? 200 : 201, APIWire.Payment(view))
            }
        }
        router.get("/payments/{id}") { request, context in
            try await api.authorized(request) { merchant in
                let id = context.parameters.get("id") ?? ""
                let view = try api.unwrap(await api.runner.perform(.payment(id: id, merchantID: merchant))) { answer -> PaymentView? in
                    if case let .payment(view) = answer { view } else { nil }
                }
                return Self.json(200, APIWire.Payment(view))
            }
        }
        router.post("/refunds") { request, context in
            try await api.authorized(request) { merchant in
                let command = try APIWire.createRefund(try await api.body(request), merchantID: merchant)
                let view = try api.unwrap(await api.runner.perform(.createRefund(command))) { answer -> RefundView? in
                    if case let .refund(view) = answer { view } else { nil }
                }
                return Self.json(view.replayed ? 200 : 201, APIWire.Refund(view))
            }
        }
        router.post("/webhook") { request, context in
            try await api.webhook(request)
        }
        router.get("/ledger") { request, context in
            try await api.authorized(request, admin: true) { _ in
                let query = try APIWire.ledgerQuery(request.uri.queryParameters.map { (String($0.key), String($0.value)) })
                let page = try api.unwrap(await api.runner.perform(.ledger(query))) { answer -> LedgerPage? in
                    if case let .ledger(page) = answer { page } else { nil }
                }
                return Self.json(200, APIWire.LedgerPage(page))
            }
        }
        return router
    }

    struct Health: Codable {
        var status: String
        var engine: EngineRunner.Status
    }

    /// Checks the key and the rate limit, then runs `body` for the key's merchant.
    func authorized(_ request: Request, admin: Bool = false,
                    _ body: (String) async throws -> Response) async throws -> Response {
        let key = try Self.bearerKey(request.headers[values: .authorization])
        guard let principal = keys.principal(forKey: key) else {
            throw APIFailure(401, APIWire.ErrorBody(code: "unauthorized", message: "unknown API key", field: "Authorization"))
        }
        if let limiter, let wait = limiter.take(key) {
            let seconds = RateLimiter.retryAfterSeconds(wait)
            var response = Self.json(429, APIWire.ErrorBody(code: "rate_limited", message: "more than \(limiter.rateDescription) requests per second for this API key; retry after \(seconds) s"))
            response.headers[.retryAfter] = String(seconds)
            return response
        }
        switch (principal, admin) {
        case (.admin, true): return try await body("")
        case let (.merchant(id), false): return try await body(id)
        case (.merchant, true):
            throw APIFailure(403, APIWire.ErrorBody(code: "forbidden", message: "the ledger needs the admin key"))
        case (.admin, false):
            throw APIFailure(403, APIWire.ErrorBody(code: "forbidden", message: "the admin key reads the ledger; payments and refunds need a merchant's key"))
        }
    }

    /// The key of the request's one `Authorization: Bearer <key>` header,
    /// the scheme in any case (RFC 7235), or a 401 saying what is wrong.
    /// Two headers are refused, not joined: which key was meant is not for
    /// the server to guess.
    static func bearerKey(_ values: [String]) throws -> String {
        func refused(_ message: String) -> APIFailure {
            APIFailure(401, APIWire.ErrorBody(code: "unauthorized", message: message, field: "Authorization"))
        }
        guard let header = values.first else {
            throw refused("missing Authorization header; send `Authorization: Bearer <api key>`")
        }
        guard values.count == 1 else {
            throw refused("more than one Authorization header (\(values.count)); send one: `Authorization: Bearer <api key>`")
        }
        guard let space = header.firstIndex(where: { $0 == " " || $0 == "\t" }) else {
            throw refused("expected `Authorization: Bearer <api key>`, found no scheme before the key")
        }
        let scheme = header[..<space]
        guard scheme.lowercased() == "bearer" else {
            let shown = scheme.count <= 20 && scheme.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") } ? String(scheme) : "of \(scheme.count) characters"
            throw refused("expected `Authorization: Bearer <api key>`, found scheme \(shown)")
        }
        return String(header[space...].drop { $0 == " " || $0 == "\t" })
    }

    func body(_ request: Request) async throws -> Data {
        try await Self.body(request, limit: maximumBodyBytes)
    }

    /// The request's body, or a 413 when it is over `limit` bytes (by its
    /// Content-Length, or as it streams in).
    static func body(_ request: Request, limit: Int) async throws -> Data {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIFailure(413, APIWire.ErrorBody(code: "body_too_large", message: "the body is \(length) bytes; at most \(limit) are accepted"))
        }
        var request = request
        do {
            return Data(buffer: try await request.collectBody(upTo: limit))
        } catch {
            throw APIFailure(413, APIWire.ErrorBody(code: "body_too_large", message: "the body is over \(limit) bytes"))
        }
    }

    func unwrap<T>(_ result: Result<EngineRunner.Answer, EngineError>, _ extract: (EngineRunner.Answer) -> T?) throws -> T {
        switch result {
        case let .success(answer):
            guard let value = extract(answer) else { preconditionFailure("the engine runner answered \(answer) to the wrong call") }
            return value
        case let .failure(error):
            throw APIFailure(error)
        }
    }

    /// `POST /webhook`: a PSP's event, authenticated by its signature.
    func webhook(_ request: Request) async throws -> Response {
        func header(_ name: String) throws -> String {
            let lowercased = name.lowercased()
            guard let value = request.headers.first(where: { $0.name.canonicalName == lowercased })?.value, !value.isEmpty else {
                throw APIFailure(400, APIWire.ErrorBody(code: "webhook_rejected", message: "missing \(name) header", field: name))
            }
            return value
        }
        let psp = try header("X-Paystorm-PSP")
        guard pspIDs.contains(psp) else {
            throw APIFailure(400, APIWire.ErrorBody(code: "webhook_rejected", message: "unknown PSP \"\(psp)\"; expected one of \(pspIDs.sorted().joined(separator: ", "))", field: "X-Paystorm-PSP"))
        }
        let signature = try header("X-Paystorm-Signature")
        let timestampText = try header("X-Paystorm-Timestamp")
        guard let timestamp = Int64(timestampText) else {
            throw APIFailure(400, APIWire.ErrorBody(code: "webhook_rejected", message: "expected Unix seconds, found \"\(timestampText)\"", field: "X-Paystorm-Timestamp"))
        }
        let data = try await body(request)
        guard let text = String(data: data, encoding: .utf8) else {
            throw APIFailure(400, APIWire.ErrorBody(code: "webhook_rejected", message: "the body is not UTF-8"))
        }
        // The engine checks again, and is the authority; this only keeps bad ones off its thread.
        do throws(EngineError) {
            try webhooks.verify(pspID: psp, body: text, signature: signature, timestampSeconds: timestamp, nowNanoseconds: WallClock.nanoseconds())
        } catch {
            throw APIFailure(error)
        }
        let outcome = try unwrap(await runner.perform(.webhook(pspID: psp, body: text, signature: signature, timestampSeconds: timestamp))) { answer -> WebhookOutcome? in
            if case let .webhook(outcome) = answer { outcome } else { nil }
        }
        return Self.json(200, APIWire.WebhookResult(outcome: outcome.rawValue))
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return encoder
    }()

    /// For ``WireNamed`` values: the same JSON without the key conversion,
    /// which was half of the encoder's time for a payment's answer.
    static let wireEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static func json(_ status: Int, _ value: some Encodable) -> Response { response(status, jsonBody(value)) }
    static func json(_ status: Int, _ value: some WireNamed) -> Response { response(status, jsonBody(value)) }
    static func json(_ status: Int, _ value: some WrittenWire) -> Response { response(status, jsonBody(value)) }

    /// The JSON of `value`, as ``json(_:_:)-(_,Encodable)`` answers it.
    static func jsonBody(_ value: some Encodable) -> ByteBuffer {
        ByteBuffer(data: (try? encoder.encode(value)) ?? Data("{}".utf8))
    }

    static func jsonBody(_ value: some WireNamed) -> ByteBuffer {
        ByteBuffer(data: (try? wireEncoder.encode(value)) ?? Data("{}".utf8))
    }

    static func jsonBody(_ value: some WrittenWire) -> ByteBuffer {
        ByteBuffer(string: value.wireJSON)
    }

    private static func response(_ status: Int, _ body: ByteBuffer) -> Response {
        Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
    }
}

/// A response whose coding keys already spell the wire's snake_case names,
/// so that ``PaystormAPI/json(_:_:)-(_,WireNamed)`` can skip the encoder's key conversion.
/// The conversion would leave every key as it is (tested).
protocol WireNamed: Encodable {}

extension APIWire.Refund: WireNamed {}
extension APIWire.ErrorBody: WireNamed {}

/// A response on every payment's path, written directly: the bytes
/// ``PaystormAPI/wireEncoder`` writes (tested), without its cost: in a
/// profile, about a thirtieth of the server's and the sandbox's CPU a payment.
protocol WrittenWire: WireNamed {
    var wireJSON: String { get }
}

extension APIWire.Payment: WrittenWire {
    var wireJSON: String {
        var writer = CanonicalJSONWriter()
        writer.field("amount", amount)
        writer.field("card", card)
        writer.field("currency", currency)
        writer.field("failure_reason", failureReason)
        writer.field("merchant_id", merchantID)
        writer.field("payment_id", paymentID)
        writer.field("psp", psp)
        writer.field("refunded", refunded)
        writer.field("replayed", replayed)
        writer.field("status", status)
        writer.field("user_id", userID)
        return writer.finish()
    }
}

extension APIWire.WebhookResult: WrittenWire {
    var wireJSON: String {
        var writer = CanonicalJSONWriter()
        writer.field("outcome", outcome)
        return writer.finish()
    }
}

extension PSPWire.Answer: WrittenWire {
    var wireJSON: String {
        var writer = CanonicalJSONWriter()
        writer.field("outcome", outcome)
        writer.field("reason", reason)
        writer.field("reference", reference)
        return writer.finish()
    }
}

/// A refusal with its status and error body.
struct APIFailure: Error {
    var status: Int
    var body: APIWire.ErrorBody
    init(_ status: Int, _ body: APIWire.ErrorBody) {
        self.status = status
        self.body = body
    }

    /// The engine's refusal, with its status (``APIWire/error(_:)``).
    init(_ error: EngineError) {
        (status, body) = APIWire.error(error)
    }
}

/// Every error leaves as the API's JSON error body: refusals with their
/// status, unknown routes as 404, and anything unexpected as a 500 that
/// says nothing about internals.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let failure as APIFailure {
            var response = PaystormAPI.json(failure.status, failure.body)
            if failure.status == 401 { response.headers[.wwwAuthenticate] = "Bearer" }
            if failure.body.error.code == "overloaded" { response.headers[.retryAfter] = "1" }
            return response
        } catch let bad as APIWire.BadRequest {
            return PaystormAPI.json(400, APIWire.ErrorBody(code: "bad_request", message: bad.message, field: bad.field))
        } catch let error as HTTPError {
            let code: String = switch error.status.code {
            case 404: "not_found"
            case 405: "method_not_allowed"
            case 413: "body_too_large"
            default: "bad_request"
            }
            let message = error.status.code == 404 ? "no such endpoint: \(request.method) \(request.uri.path)" : (error.body ?? error.status.reasonPhrase)
            return PaystormAPI.json(error.status.code, APIWire.ErrorBody(code: code, message: message))
        } catch {
            context.logger.error("unexpected error: \(error)")
            return PaystormAPI.json(500, APIWire.ErrorBody(code: "internal", message: "internal error"))
        }
    }
}
