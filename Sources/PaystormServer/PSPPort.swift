import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import PaystormEngine
import Synchronization

/// Where the server host sends the engine's PSP calls. `reply` is called
/// once, with the PSP's answer — or `nil` when the outcome is unknown
/// (timeout, connection lost after sending): the engine's own timeout then
/// makes the attempt ambiguous and settles it by status query, webhook or
/// reconciliation.
public protocol PSPPort: Sendable {
    func call(_ request: PSPRequest, reply: @escaping @Sendable (PSPOutcome?) -> Void)
}

/// Where the server host delivers notifications; `done` is always called,
/// `true` when the recipient took it.
public protocol NotificationPort: Sendable {
    func deliver(_ message: NotificationMessage, done: @escaping @Sendable (Bool) -> Void)
}

/// The wire format between the PSP adapter and `paystorm psp-sandbox`
/// (documented in `openapi/psp-sandbox.yaml`).
public enum PSPWire {
    /// The version of this wire format, raised whenever an answer's meaning
    /// changes. 2: a void is answered `voided` (Paystorm 0.7.0; the header
    /// from 0.8.0); 1 answered it `declined`, which this engine reads as a
    /// declined card.
    public static let version = "2"
    /// Carries ``version`` on every call and every answer (and the sandbox's
    /// `GET /health`): each side refuses the other's answers or calls when it
    /// names another version, or, for answers, none.
    public static let versionHeader = "Paystorm-PSP-Wire"

    /// Why an answer cannot be read as this version's, or `nil` when it can.
    public static func versionMismatch(_ stated: String?, from source: String) -> String? {
        guard stated != version else { return nil }
        let speaks = stated.map { "wire version \($0)" } ?? "no wire version (a paystorm psp-sandbox before 0.8.0?)"
        return "the PSP at \(source) speaks \(speaks), this server wire version \(version): run the server and the sandbox from the same paystorm build"
    }

    /// `POST {base}/psp/{psp}/{operation}` body.
    public struct Call: Codable, Sendable {
        public var idempotencyKey: String
        public var amountMinor: Int64
        public var currency: String
        public var cardToken: String?
        enum CodingKeys: String, CodingKey {
            case idempotencyKey = "idempotency_key", amountMinor = "amount_minor", currency, cardToken = "card_token"
        }

        /// The call as `JSONDecoder` reads it, for the common body (see
        /// ``PlainJSONCursor``: plain strings, canonical integers, each key
        /// known and given once); `nil` for any other, which the decoder reads.
        static func plain(_ body: Data) -> Call? {
            var key: String?, amount: Int64?, currency: String?, token: String?
            let read = body.withUnsafeBytes { raw in
                PlainJSONCursor.object(in: raw) { name, reader in
                    switch name {
                    case "idempotency_key": reader.plainString(into: &key)
                    case "amount_minor": reader.integer(into: &amount)
                    case "currency": reader.plainString(into: &currency)
                    case "card_token": reader.plainString(into: &token)
                    default: false
                    }
                }
            }
            guard read, let key, let amount, let currency else { return nil }
            return Call(idempotencyKey: key, amountMinor: amount, currency: currency, cardToken: token)
        }

        /// The same JSON `JSONEncoder` writes (keys in declaration order), without its cost.
        public func json() -> String {
            var text = "{\"idempotency_key\":\(PSPWire.quoted(idempotencyKey)),\"amount_minor\":\(amountMinor),\"currency\":\(PSPWire.quoted(currency))"
            if let cardToken { text += ",\"card_token\":\(PSPWire.quoted(cardToken))" }
            return text + "}"
        }
    }

    /// The message of an error body (`{"error": {"message": …}}`), else the
    /// body's text, at most 200 characters: what a refusal said, for a log line.
    static func errorMessage(_ body: Data) -> String {
        if let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
           let message = (object["error"] as? [String: Any])?["message"] as? String {
            return message
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "no body" : text
    }

    /// `Call` as JSON, written directly: `JSONEncoder` was a visible share of
    /// the server's time per PSP call.
    static func quoted(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 }) else { return "\"\(text)\"" }
        let data = (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The answer of a call the PSP processed (HTTP 200): `succeeded`,
    /// `declined`, `voided`, `not_found` or `pending`. (Before Paystorm
    /// 0.7.0 the sandbox answered a void `declined`/`canceled`: mixing that
    /// sandbox with this engine fails payments it would have failed over.)
    public struct Answer: Codable, Sendable {
        public var outcome: String
        public var reference: String?
        public var reason: String?

        /// The answer as `JSONDecoder` reads it, for the common body (as
        /// ``Call/plain(_:)``); `nil` for any other, which the decoder reads.
        static func plain(_ body: Data) -> Answer? {
            var outcome: String?, reference: String?, reason: String?
            let read = body.withUnsafeBytes { raw in
                PlainJSONCursor.object(in: raw) { name, reader in
                    switch name {
                    case "outcome": reader.plainString(into: &outcome)
                    case "reference": reader.plainString(into: &reference)
                    case "reason": reader.plainString(into: &reason)
                    default: false
                    }
                }
            }
            guard read, let outcome else { return nil }
            return Answer(outcome: outcome, reference: reference, reason: reason)
        }

        /// The answer in `body`: ``plain(_:)``, else `JSONDecoder`.
        static func read(_ body: Data) -> Answer? {
            plain(body) ?? (try? JSONDecoder().decode(Answer.self, from: body))
        }
    }

    /// The PSP's answer, from its HTTP status and body. `nil` means the outcome
    /// is unknown: a 5xx other than 503 (a gateway timeout, say) may come after
    /// the PSP moved money.
    ///
    /// A 404 is a call not processed: the sandbox answers it, before reading
    /// the call, for a PSP or an operation it does not serve (any server
    /// does for a path it has no route for), and a PSP that processed a call
    /// answers 200, a lookup that finds nothing included (`not_found`). Read
    /// as unknown, every payment routed there stayed `processing` on status
    /// queries answered 404 too. As a transient error it is retried, counts
    /// against the PSP's circuit breaker (new payments go to the next PSP),
    /// and ends in a void — which the engine needs confirmed before it fails
    /// over, so even a 404 that lied could not make a second charge.
    public static func outcome(status: Int, body: Data) -> PSPOutcome? {
        switch status {
        case 200:
            guard let answer = Answer.read(body) else { return nil }
            switch answer.outcome {
            case "succeeded": return .succeeded(pspReference: answer.reference ?? "")
            case "declined": return .declined(reason: answer.reason ?? "declined")
            case "voided": return .voided
            case "not_found": return .notFound
            case "pending": return .pending
            default: return nil
            }
        case 429: return .rateLimited
        case 404: return .transientError("404 from PSP: not served there")
        // The sandbox's contract, as Stripe's: 503 means the request was not processed.
        case 503: return .transientError("503 from PSP")
        default: return nil
        }
    }
}

/// The engine's PSP port over HTTP, for `paystorm psp-sandbox` or any PSP
/// speaking its wire format. A card token goes to the PSP as it is: the
/// sandbox never needs the number; an adapter for a live PSP would
/// detokenize inside the card-data boundary here.
public struct HTTPPSPAdapter: PSPPort {
    public let baseURL: String
    public let client: HTTPClient
    /// Longer than the engine's PSP timeout is pointless: the engine gives up first.
    public let timeout: TimeAmount
    /// Told, once, when the PSP answers in another wire version (``PSPWire/version``).
    private let mismatch: WireMismatchReport
    /// Told, once per PSP, when a call to it is answered 404.
    private let notServed: NotServedReport
    /// Kept-alive connections for the calls to a plain `http://` PSP
    /// (``KeepAliveHTTPClient``, with less than half the CPU a request costs
    /// through `client`); `nil`: the calls go through `client`.
    let plain: KeepAliveHTTPClient.Target?

    public init(baseURL: String, client: HTTPClient, timeout: TimeAmount = .seconds(5),
                onWireMismatch: @escaping @Sendable (String) -> Void = { _ in }, onNotServed: @escaping @Sendable (String) -> Void = { _ in }) {
        self.init(baseURL: baseURL, client: client, plain: nil, timeout: timeout, onWireMismatch: onWireMismatch, onNotServed: onNotServed)
    }

    init(baseURL: String, client: HTTPClient, plain: KeepAliveHTTPClient.Target?, timeout: TimeAmount = .seconds(5),
         onWireMismatch: @escaping @Sendable (String) -> Void = { _ in }, onNotServed: @escaping @Sendable (String) -> Void = { _ in }) {
        self.baseURL = Self.trimmed(baseURL)
        self.client = client
        self.plain = plain
        self.timeout = timeout
        self.mismatch = WireMismatchReport(report: onWireMismatch)
        self.notServed = NotServedReport(report: onNotServed)
    }

    public func call(_ request: PSPRequest, reply: @escaping @Sendable (PSPOutcome?) -> Void) {
        let call = PSPWire.Call(idempotencyKey: request.idempotencyKey, amountMinor: request.amount.minorUnits,
                                currency: request.amount.currency.code, cardToken: request.cardToken)
        let path = "/psp/\(request.pspID)/\(request.operation.rawValue)"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Idempotency-Key", value: request.idempotencyKey)
        headers.add(name: PSPWire.versionHeader, value: PSPWire.version)
        let adapter = self
        if let plain {
            // Answered on the client's event loop: no task, no thread switch.
            send(path, headers: headers, body: call.json(), over: plain).whenSuccess(reply)
            return
        }
        var http = HTTPClientRequest(url: baseURL + path)
        http.method = .POST
        http.headers = headers
        http.body = .bytes(ByteBuffer(string: call.json()))
        Task { reply(await adapter.send(http)) }
    }

    /// `baseURL` without a trailing slash, for paths to be appended.
    static func trimmed(_ baseURL: String) -> String {
        baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
    }

    /// Sends one call over the kept-alive connections and reads the PSP's
    /// answer, on their event loop: `nil` when its outcome is unknown. The
    /// future never fails.
    func send(_ path: String, headers: HTTPHeaders, body: String, over plain: KeepAliveHTTPClient.Target) -> EventLoopFuture<PSPOutcome?> {
        plain.client.execute(method: .POST, path: plain.pathPrefix + path, headers: headers, body: ByteBuffer(string: body),
                             deadline: .now() + timeout)
            .map { response in outcome(status: response.status, headers: response.headers, body: response.body, path: path) }
            .recover { error in Self.outcome(of: error) }
    }

    /// Sends one call and reads the PSP's answer: `nil` when its outcome is unknown.
    func send(_ http: HTTPClientRequest) async -> PSPOutcome? {
        do {
            let response = try await client.execute(http, timeout: timeout)
            let body = try await response.body.collect(upTo: 1 << 16)
            return outcome(status: Int(response.status.code), headers: response.headers, body: body,
                           path: URL(string: http.url)?.path ?? http.url)
        } catch {
            return Self.outcome(of: error)
        }
    }

    /// What the PSP's answer to the call at `path` (`/psp/{id}/{operation}`) says.
    func outcome(status: Int, headers: HTTPHeaders, body: ByteBuffer, path: String) -> PSPOutcome? {
        // An answer in another version may mean something else (a void
        // answered "declined" reads as a declined card): unknown, and said.
        if status == 200, let problem = PSPWire.versionMismatch(headers.first(name: PSPWire.versionHeader), from: baseURL) {
            mismatch.once(problem)
            return nil
        }
        if status == 404 {
            let parts = path.split(separator: "/")
            let psp = parts.count >= 3 && parts[parts.count - 3] == "psp" ? String(parts[parts.count - 2]) : path
            notServed.once(psp: psp, "PSP \(psp) is not served at \(baseURL): POST \(path) was answered 404 (\(PSPWire.errorMessage(Data(buffer: body))))."
                           + " Its calls count as not processed: retried, then voided, and its payments wait on a void it cannot confirm;"
                           + " give serve --psps only the PSPs there")
        }
        return PSPWire.outcome(status: status, body: Data(buffer: body))
    }

    /// What a call that failed with `error` tells the engine: a transient
    /// error when the error shows the request was never written — no
    /// connection was made, or none was free before the connect timeout —
    /// so the PSP cannot have acted on it; else `nil`, unknown. A read
    /// timeout, a closed connection, a deadline or a cancellation may come
    /// after the PSP took the request, and so stay unknown: the engine then
    /// settles the attempt by status query.
    static func outcome(of error: any Error) -> PSPOutcome? {
        let neverSent: Bool
        switch error {
        case let error as KeepAliveHTTPClient.Failure:
            switch error {
            case .cannotConnect, .expiredWaiting: neverSent = true
            case .timedOut, .connectionLost, .answerTooLarge, .shutDown: neverSent = false
            }
        case let error as HTTPClientError:
            neverSent = unsentClientErrors.contains(error)
        case is NIOConnectionError:
            neverSent = true  // every address of the host refused or timed out
        case let error as IOError:
            // Refused is an answer to a SYN only; on a connection that was made, a reset reads as ECONNRESET.
            neverSent = error.errnoCode == ECONNREFUSED
        default:
            neverSent = false
        }
        return neverSent ? .transientError("PSP unreachable, nothing sent: \(error)") : nil
    }

    /// The HTTP client's errors that fail a request before it is written:
    /// it waited in the pool's queue (`getConnectionFromPoolTimeout`, or
    /// `connectTimeout` while no connection stood), or its connection was
    /// never set up.
    static let unsentClientErrors: [HTTPClientError] = [
        .getConnectionFromPoolTimeout, .connectTimeout, .tlsHandshakeTimeout, .socksHandshakeTimeout, .httpProxyHandshakeTimeout,
    ]
}

/// Delivers notifications to an HTTP endpoint (a merchant's webhook URL),
/// with the recipient and the HMAC signature in headers.
public struct HTTPNotifier: NotificationPort {
    public let url: String
    public let client: HTTPClient
    /// Kept-alive connections for a plain `http://` URL (``KeepAliveHTTPClient``);
    /// `nil`: the notifications go through `client`.
    let plain: KeepAliveHTTPClient.Target?

    public init(url: String, client: HTTPClient) {
        self.init(url: url, client: client, plain: nil)
    }

    init(url: String, client: HTTPClient, plain: KeepAliveHTTPClient.Target?) {
        self.url = url
        self.client = client
        self.plain = plain
    }

    public func deliver(_ message: NotificationMessage, done: @escaping @Sendable (Bool) -> Void) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "X-Paystorm-Recipient", value: message.recipient)
        headers.add(name: "X-Paystorm-Notification", value: String(message.notificationID))
        if let signature = message.signature { headers.add(name: "X-Paystorm-Signature", value: signature) }
        if let plain {
            post(message.body, headers: headers, over: plain).whenSuccess(done)
            return
        }
        var http = HTTPClientRequest(url: url)
        http.method = .POST
        http.headers = headers
        http.body = .bytes(ByteBuffer(string: message.body))
        let client = self.client
        Task {
            do {
                let response = try await client.execute(http, timeout: .seconds(5))
                _ = try await response.body.collect(upTo: 1 << 16)
                done((200..<300).contains(Int(response.status.code)))
            } catch {
                done(false)
            }
        }
    }

    /// One notification over the kept-alive connections, on their event
    /// loop: whether the recipient took it (a 2xx). The future never fails.
    func post(_ body: String, headers: HTTPHeaders, over plain: KeepAliveHTTPClient.Target) -> EventLoopFuture<Bool> {
        plain.client.execute(method: .POST, path: plain.path, headers: headers,
                             body: ByteBuffer(string: body), deadline: .now() + .seconds(5))
            .map { (200..<300).contains($0.status) }
            .recover { _ in false }
    }
}

/// Takes every notification at once: for a server run without a merchant endpoint.
public struct AcceptingNotifier: NotificationPort {
    public init() {}
    public func deliver(_ message: NotificationMessage, done: @escaping @Sendable (Bool) -> Void) { done(true) }
}

/// Reports that a PSP is not served where its calls go, the first time for
/// each PSP: every call to it after that is answered the same.
final class NotServedReport: Sendable {
    private let reported = Mutex<Set<String>>([])
    private let report: @Sendable (String) -> Void

    init(report: @escaping @Sendable (String) -> Void) { self.report = report }

    func once(psp: String, _ problem: @autoclosure () -> String) {
        guard reported.withLock({ $0.insert(psp).inserted }) else { return }
        report(problem())
    }
}

/// Reports a wire-version mismatch the first time only: every answer after
/// it has the same one.
final class WireMismatchReport: Sendable {
    private let reported = Mutex(false)
    private let report: @Sendable (String) -> Void

    init(report: @escaping @Sendable (String) -> Void) { self.report = report }

    func once(_ problem: String) {
        let first = reported.withLock { reported in
            defer { reported = true }
            return !reported
        }
        if first { report(problem + "; every answer of this PSP is treated as unknown until then") }
    }
}
