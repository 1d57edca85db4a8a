import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import PaystormEngine
import PaystormStatistics
import PaystormWorld
import Synchronization

/// `paystorm psp-sandbox`: PSPs over HTTP with the simulated PSPs'
/// behaviour profiles (``PSPProfile``): lognormal latency, declines,
/// transient errors (503: not processed), rate limits (429), and the
/// ambiguous failure — charged, then a 504 so the caller cannot know. It
/// keeps one outcome per idempotency key, answers status queries truthfully,
/// voids untouched keys on `cancel`, sends signed webhooks (late, sometimes
/// twice) to the server, serves settlement reports, and counts any payment
/// charged twice. It also takes merchant notifications, failing some.
public final class PSPSandbox: Sendable {
    enum Final { case done, declined, voided }

    struct Record {
        var key: String
        var kind: SettlementKind
        var amount: Money
        var status: SettlementStatus
        var nanoseconds: Int64
    }

    struct State {
        var outcomes: [String: Final] = [:]
        var records: [String: [Record]] = [:]
        /// Payment id (`pay-N`) → successful charges, over every PSP.
        var chargesPerPayment: [String: Int] = [:]
        var doubleCharged: [String] = []
        var calls = 0
        var answered: [String: Int] = [:]
        var notifications = 0
        var notificationsFailed = 0
        var webhooksSent = 0
        var webhooksFailed = 0
        let random: RandomStream
    }

    public let profiles: [String: PSPProfile]
    public let webhookURL: String?
    /// What each PSP signs its webhooks with: the server's secrets for it.
    public let webhookSecrets: WebhookSecrets
    public let notificationFailureRate: Double
    private let state: Mutex<State>
    private let client: HTTPClient
    /// Kept-alive connections of the sandbox's own for the webhooks, when
    /// `webhookURL` is plain `http://` (``KeepAliveHTTPClient``); `nil`:
    /// they go through `client`.
    let webhookPlain: KeepAliveHTTPClient.Target?
    /// The webhooks held back for their delays, on `webhookPlain`'s event loop.
    let webhookDelays: DelayedWork?

    /// The profiles a sandbox given `secrets` serves: all of them with the
    /// development defaults (`nil`), else those the file names — a server run
    /// with `--psps stripe` has no secret for paypal, and its file is the
    /// sandbox's too. A file that names none of them is refused.
    public static func profiles(_ profiles: [PSPProfile], signedBy secrets: WebhookSecrets?) throws(ServerError) -> [PSPProfile] {
        guard let secrets else { return profiles }
        let served = profiles.filter { secrets.psps[$0.id] != nil }
        guard !served.isEmpty else {
            throw ServerError("--webhook-secrets: names none of the sandbox's PSPs (\(profiles.map(\.id).joined(separator: ", "))); "
                              + "expected a line `<psp> <secret>` for each PSP it should serve")
        }
        return served
    }

    /// - Parameter webhookSecrets: a secret for every profile; `nil` for the development defaults.
    /// - Parameter webhookConnections: with a plain `http://` `webhookURL`,
    ///   the webhooks go over at most this many kept-alive connections of
    ///   the sandbox's own instead of through `client` (less than half the
    ///   CPU a request costs); `nil`: through `client`. Close them with ``shutdown()``.
    public init(profiles: [PSPProfile], webhookURL: String?, webhookSecrets: WebhookSecrets? = nil, notificationFailureRate: Double,
                seed: UInt64, client: HTTPClient, webhookConnections: Int? = nil) {
        self.profiles = Dictionary(uniqueKeysWithValues: profiles.map { ($0.id, $0) })
        self.webhookURL = webhookURL
        let secrets = webhookSecrets ?? .development(pspIDs: profiles.map(\.id))
        precondition(profiles.allSatisfy { secrets.psps[$0.id] != nil }, "every PSP of the sandbox needs a webhook secret")
        self.webhookSecrets = secrets
        self.notificationFailureRate = notificationFailureRate
        self.client = client
        webhookPlain = webhookConnections.flatMap { connections in
            webhookURL.flatMap { KeepAliveHTTPClient.Target(plainURL: $0, loop: MultiThreadedEventLoopGroup.singleton.next(), connections: connections) }
        }
        webhookDelays = webhookPlain.map { DelayedWork(loop: $0.client.loop) }
        state = Mutex(State(random: RandomStream(seed: seed)))
    }

    /// Closes the webhooks' kept-alive connections, if it has any.
    public func shutdown() async {
        try? await webhookPlain?.client.shutdown().get()
    }

    /// What `GET /stats` answers.
    public struct Stats: Codable, Sendable, Equatable {
        public var calls: Int
        public var answered: [String: Int]
        public var captured: Int
        public var refunded: Int
        public var doubleCharged: [String]
        public var webhooksSent: Int
        public var webhooksFailed: Int
        public var notifications: Int
        public var notificationsFailed: Int
        enum CodingKeys: String, CodingKey {
            case calls, answered, captured, refunded, doubleCharged = "double_charged", webhooksSent = "webhooks_sent"
            case webhooksFailed = "webhooks_failed", notifications, notificationsFailed = "notifications_failed"
        }
    }

    public var stats: Stats {
        state.withLock { state in
            let all = state.records.values.joined()
            return Stats(calls: state.calls, answered: state.answered,
                         captured: all.filter { $0.kind == .charge && $0.status == .captured }.count,
                         refunded: all.filter { $0.kind == .refund && $0.status == .refunded }.count,
                         doubleCharged: state.doubleCharged.sorted(), webhooksSent: state.webhooksSent, webhooksFailed: state.webhooksFailed,
                         notifications: state.notifications, notificationsFailed: state.notificationsFailed)
        }
    }

    enum Reply {
        case answer(PSPWire.Answer)
        case status(Int, String)
    }

    /// One call, as the PSP processes it: what to answer, after how long,
    /// and whether a webhook follows.
    func process(psp: PSPProfile, operation: PSPRequest.Operation, call: PSPWire.Call, now: Int64)
        -> (reply: Reply, delay: Double, webhook: (Record, delay: Double, twice: Bool)?)
    {
        state.withLock { state in
            state.calls += 1
            let random = state.random
            let delay = random.lognormal(median: psp.latencyMedianSeconds, sigma: psp.latencySigma)
            let roll = random.uniform()
            if roll < psp.rateLimitRate {
                state.answered["rate_limited", default: 0] += 1
                return (.status(429, "rate limited"), delay, nil)
            }
            if roll < psp.rateLimitRate + psp.transientErrorRate {
                state.answered["transient_error", default: 0] += 1
                return (.status(503, "temporarily unavailable; not processed"), delay, nil)
            }
            let key = call.idempotencyKey
            let reference = "\(psp.id)-\(key)"
            var settled: Record?
            let answer: PSPWire.Answer
            switch operation {
            case .charge, .refund:
                switch state.outcomes[key] {
                case .done: answer = .init(outcome: "succeeded", reference: reference)
                case .declined: answer = .init(outcome: "declined", reason: "do_not_honor")
                case .voided: answer = .init(outcome: "voided")
                case nil:
                    let charge = operation == .charge
                    let amount = Money(minorUnits: call.amountMinor, currency: Currency(code: call.currency) ?? Currency(code: "USD")!)
                    if charge && random.uniform() < psp.declineRate {
                        state.outcomes[key] = .declined
                        settled = Record(key: key, kind: .charge, amount: amount, status: .failed, nanoseconds: now)
                        answer = .init(outcome: "declined", reason: "do_not_honor")
                    } else {
                        state.outcomes[key] = .done
                        settled = Record(key: key, kind: charge ? .charge : .refund, amount: amount,
                                         status: charge ? .captured : .refunded, nanoseconds: now)
                        if charge {
                            let payment = String(key.prefix { $0 != ":" })
                            state.chargesPerPayment[payment, default: 0] += 1
                            if state.chargesPerPayment[payment] == 2 { state.doubleCharged.append(payment) }
                        }
                        answer = .init(outcome: "succeeded", reference: reference)
                    }
                }
            case .status:
                switch state.outcomes[key] {
                case .done: answer = .init(outcome: "succeeded", reference: reference)
                case .declined: answer = .init(outcome: "declined", reason: "failed")
                case .voided: answer = .init(outcome: "voided")
                case nil: answer = .init(outcome: "not_found")
                }
            case .cancel:
                switch state.outcomes[key] {
                case .done: answer = .init(outcome: "succeeded", reference: reference)
                case .declined: answer = .init(outcome: "declined", reason: "do_not_honor")
                case .voided: answer = .init(outcome: "voided")
                case nil:
                    state.outcomes[key] = .voided
                    answer = .init(outcome: "voided")
                }
            }
            var webhook: (Record, Double, Bool)?
            if let settled {
                state.records[psp.id, default: []].append(settled)
                if random.uniform() < psp.webhookRate && random.uniform() >= psp.webhookLossRate {
                    webhook = (settled, random.lognormal(median: psp.webhookDelayMedianSeconds, sigma: 1.0),
                               random.uniform() < psp.webhookDuplicateRate)
                }
                if settled.status != .failed && (operation == .charge || operation == .refund) && random.uniform() < psp.ambiguousRate {
                    state.answered["ambiguous", default: 0] += 1
                    return (.status(504, "gateway timeout"), delay, webhook)  // moved money; the caller cannot know
                }
            }
            state.answered[answer.outcome, default: 0] += 1
            return (.answer(answer), delay, webhook)
        }
    }

    /// The settlement report of one PSP for `[from, to)`, as CSV.
    public func settlementCSV(psp: String, from: Int64, to: Int64) -> String {
        state.withLock { state in
            var lines = [SettlementReportColumn.header]
            for record in state.records[psp, default: []] where record.nanoseconds >= from && record.nanoseconds < to {
                lines.append([record.key, record.kind.rawValue, record.amount.decimalString, record.amount.currency.code,
                              record.status.rawValue, String(record.nanoseconds)].joined(separator: ","))
            }
            return lines.joined(separator: "\n") + "\n"
        }
    }

    /// Sends the webhook of `record` after `delay` seconds, and again right
    /// after when `twice`.
    private func scheduleWebhook(_ record: Record, psp: String, delay: Double, twice: Bool) {
        if let plain = webhookPlain, let delays = webhookDelays {
            // On the connections' event loop: no task, no thread switch.
            delays.schedule(in: .nanoseconds(Int64(delay * 1e9))) {
                self.postWebhook(record, psp: psp, over: plain).whenComplete { _ in
                    if twice { _ = self.postWebhook(record, psp: psp, over: plain) }
                }
            }
            return
        }
        Task {
            try? await Task.sleep(for: .seconds(delay))
            await self.sendWebhook(record, psp: psp)
            if twice { await self.sendWebhook(record, psp: psp) }
        }
    }

    /// A webhook's body and headers, signed now.
    private func webhook(_ record: Record, psp: String) -> (body: String, headers: HTTPHeaders) {
        let body = PSPWebhookPayload.settlementEventJSON(reference: record.key, type: PSPWebhookPayload.Kind(record.kind, record.status))
        let timestamp = WallClock.nanoseconds() / 1_000_000_000
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "X-Paystorm-PSP", value: psp)
        headers.add(name: "X-Paystorm-Timestamp", value: String(timestamp))
        headers.add(name: "X-Paystorm-Signature",
                    value: PaymentEngine.webhookSignature(body: body, timestampSeconds: timestamp, secret: webhookSecrets.psps[psp]!))
        return (body, headers)
    }

    private func counted(_ ok: Bool) {
        state.withLock { state in
            if ok { state.webhooksSent += 1 } else { state.webhooksFailed += 1 }
        }
    }

    private func postWebhook(_ record: Record, psp: String, over plain: KeepAliveHTTPClient.Target) -> EventLoopFuture<Void> {
        let (body, headers) = webhook(record, psp: psp)
        return plain.client.execute(method: .POST, path: plain.path, headers: headers,
                                    body: ByteBuffer(string: body), deadline: .now() + .seconds(5))
            .map { self.counted($0.status == 200) }
            .recover { _ in self.counted(false) }
    }

    private func sendWebhook(_ record: Record, psp: String) async {
        guard let webhookURL else { return }
        let (body, headers) = webhook(record, psp: psp)
        var request = HTTPClientRequest(url: webhookURL)
        request.method = .POST
        request.headers = headers
        request.body = .bytes(ByteBuffer(string: body))
        let ok: Bool
        do {
            let response = try await client.execute(request, timeout: .seconds(5))
            _ = try await response.body.collect(upTo: 1 << 16)
            ok = response.status.code == 200
        } catch {
            ok = false
        }
        counted(ok)
    }

    /// One request, as ``PSPSandboxServer`` hands it over: routed, and
    /// answered with what to write and after how long.
    func respond(to request: SandboxRequest, now: Int64) -> SandboxAnswer {
        let (path, query) = request.uri.firstIndex(of: "?").map { (request.uri[..<$0], request.uri[request.uri.index(after: $0)...]) }
            ?? (request.uri[...], "")
        let parts = path.split(separator: "/")
        switch (request.method, parts.count, parts.first) {
        case (.POST, 3, "psp") where parts[2] != "settlement":
            return answerCall(psp: String(parts[1]), operation: String(parts[2]), request: request, now: now).statingVersion
        case (.GET, 3, "psp") where parts[2] == "settlement":
            return settlement(psp: String(parts[1]), query: query)
        case (.GET, 1, "stats"):
            return .json(200, stats)
        case (.POST, 1, "notifications"):
            let fail = state.withLock { state in
                state.notifications += 1
                let fail = state.random.uniform() < notificationFailureRate
                if fail { state.notificationsFailed += 1 }
                return fail
            }
            return fail ? .json(500, APIWire.ErrorBody(code: "merchant_down", message: "the merchant endpoint failed"))
                        : .json(200, APIWire.WebhookResult(outcome: "received"))
        case (.GET, 1, "health"):
            return SandboxAnswer.json(200, APIWire.WebhookResult(outcome: "ok")).statingVersion
        case (_, 3, "psp"):
            return .notAllowed(request.method, path, allow: parts[2] == "settlement" ? .GET : .POST)
        case (_, 1, "stats"), (_, 1, "health"):
            return .notAllowed(request.method, path, allow: .GET)
        case (_, 1, "notifications"):
            return .notAllowed(request.method, path, allow: .POST)
        default:
            return .json(404, APIWire.ErrorBody(code: "not_found", message: "no such endpoint: \(request.method) \(path)"))
        }
    }

    /// One call to a PSP (`POST /psp/{psp}/{operation}`), answered after the
    /// PSP's latency. A caller that names another wire version is refused:
    /// its calls and this sandbox's answers would not mean the same.
    private func answerCall(psp id: String, operation name: String, request: SandboxRequest, now: Int64) -> SandboxAnswer {
        if let stated = request.headers.first(name: PSPWire.versionHeader), stated != PSPWire.version {
            return .json(400, APIWire.ErrorBody(code: "wire_version", message: "this sandbox speaks PSP wire version \(PSPWire.version), the call version \(stated): run the server and the sandbox from the same paystorm build", field: PSPWire.versionHeader))
        }
        guard let psp = profiles[id] else {
            return .json(404, APIWire.ErrorBody(code: "not_found", message: "no PSP \(id) here; this sandbox runs \(profiles.keys.sorted().joined(separator: ", "))"))
        }
        guard let operation = PSPRequest.Operation(rawValue: name) else {
            return .json(404, APIWire.ErrorBody(code: "not_found", message: "operations are charge, refund, status and cancel"))
        }
        let call: PSPWire.Call
        do {
            let body = Data(buffer: request.body, byteTransferStrategy: .noCopy)
            call = try PSPWire.Call.plain(body) ?? JSONDecoder().decode(PSPWire.Call.self, from: body)
        } catch {
            return .json(400, APIWire.ErrorBody(code: "bad_request", message: "not a PSP call: \(error)"))
        }
        let (reply, delay, webhook) = process(psp: psp, operation: operation, call: call, now: now)
        if let (record, webhookDelay, twice) = webhook {
            scheduleWebhook(record, psp: psp.id, delay: webhookDelay, twice: twice)
        }
        var answer: SandboxAnswer = switch reply {
        case let .answer(answer): .json(200, answer)
        case let .status(code, message): .json(code, APIWire.ErrorBody(code: "psp_\(code)", message: message))
        }
        answer.delayNanoseconds = Int64(delay * 1e9)
        return answer
    }

    /// `GET /psp/{psp}/settlement?from_ns=&to_ns=`: the report as CSV.
    private func settlement(psp: String, query: Substring) -> SandboxAnswer {
        guard profiles[psp] != nil else {
            return .json(404, APIWire.ErrorBody(code: "not_found", message: "no PSP \(psp) here"))
        }
        var bounds: [String: Int64] = [:]
        for pair in query.split(separator: "&") {
            let name = String(pair.prefix { $0 != "=" })
            guard name == "from_ns" || name == "to_ns", bounds[name] == nil else { continue }
            let text = String(pair.dropFirst(name.count + 1))
            guard let value = Int64(text.removingPercentEncoding ?? text), value >= 0 else {
                return .json(400, APIWire.ErrorBody(code: "bad_request", message: "expected Unix nanoseconds >= 0, found \"\(text)\"", field: name))
            }
            bounds[name] = value
        }
        let csv = settlementCSV(psp: psp, from: bounds["from_ns"] ?? 0, to: bounds["to_ns"] ?? Int64.max)
        return SandboxAnswer(status: 200, body: ByteBuffer(string: csv), contentType: "text/csv")
    }
}

extension PSPProfile {
    /// This PSP at its best: answers in a millisecond, never declines, fails,
    /// throttles or loses a reply, and sends no webhooks (`--profile ideal`).
    public var ideal: PSPProfile {
        var profile = self
        profile.latencyMedianSeconds = 0.001
        profile.latencySigma = 0
        profile.declineRate = 0
        profile.transientErrorRate = 0
        profile.rateLimitRate = 0
        profile.ambiguousRate = 0
        profile.webhookRate = 0
        return profile
    }
}

/// The server's side of the sandbox's reports.
enum SandboxClient {
    /// The lines of `pspID`'s report stamped in `[from, to)`.
    static func settlementLines(client: HTTPClient, baseURL: String, pspID: String, from: Int64, to: Int64) async throws -> [SettlementLine] {
        let request = HTTPClientRequest(url: "\(baseURL)/psp/\(pspID)/settlement?from_ns=\(from)&to_ns=\(to)")
        let response = try await client.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 512 << 20)
        guard response.status.code == 200 else { throw ServerError("settlement report of \(pspID): HTTP \(response.status.code)") }
        return try SettlementReport.parseCSV(String(buffer: body), pspID: pspID, periodStart: from, periodEnd: to).lines
    }
}
