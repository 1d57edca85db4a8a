import AsyncHTTPClient
import DequeModule
import Foundation
import NIOCore
import NIOPosix
import PaystormStatistics
import Synchronization

/// `paystorm load`: open-loop load against a running server. Arrivals follow
/// a schedule fixed in advance (constant rate or Poisson, from the seed), and
/// each request is sent at its time whatever the earlier ones are doing; its
/// latency is measured from the time it was *meant* to be sent, so a slow
/// server or a late generator shows up as latency instead of silently
/// lowering the offered load (no coordinated omission).
public enum LoadGenerator {
    public struct Options: Sendable {
        public var url: String
        public var rate: Double
        public var durationSeconds: Double
        /// Shares of payments and refunds; status reads take the rest of 1.
        public var paymentShare = 1.0
        public var refundShare = 0.0
        public var poisson = true
        public var merchants = 20
        public var connections = 64
        public var timeoutSeconds = 10.0
        public var seed: UInt64 = 1
        /// `Authorization: Bearer <prefix><merchant>` (the server's development keys).
        public var keyPrefix = "sk_test_"

        public init(url: String, rate: Double, durationSeconds: Double) {
            self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
            self.rate = rate
            self.durationSeconds = durationSeconds
        }
    }

    public enum Kind: UInt8, Sendable, CaseIterable {
        case payment, refund, read
        public var name: String { ["payment", "refund", "read"][Int(rawValue)] }
    }

    /// One request: when it was due (from the start), how long it took from
    /// then, and its HTTP status (0: no answer — connection failed or timed out).
    public struct Sample: Sendable {
        public var intendedNanoseconds: Int64
        public var latencyNanoseconds: Int64
        public var status: Int16
        public var kind: Kind
    }

    public struct Result: Sendable {
        public var options: Options
        public var samples: [Sample]
        /// Payment ids the server acknowledged (200 or 201 to a POST /payments).
        public var acknowledged: [String]
        /// Wall seconds from the first due time to the last answer.
        public var elapsedSeconds: Double
        /// How late the generator sent its latest request, at worst: a large
        /// value means the generator (not the server) fell behind.
        public var maximumSendLagSeconds: Double
        /// Requests never sent within half their timeout: every connection
        /// was busy, or the generator itself was that late (see
        /// ``maximumSendLagSeconds``). Counted as no answer (status 0) in `samples`.
        public var unsent: Int
        /// Wall seconds from the first due time to the last 200 or 201: the
        /// time the accepted payments took (``elapsedSeconds`` also runs
        /// through the final timeouts).
        public var acceptedSeconds: Double
    }

    /// Users, each with a card of their own (so fraud screening sees ordinary customers).
    static let users = 200_000

    /// A Luhn-valid 16-digit test card number for a user.
    static func card(user: Int) -> String {
        var digits = Array("4000" + String(format: "%011d", user)).map { Int(String($0))! }
        var sum = 0
        for (position, digit) in digits.reversed().enumerated() {
            let doubled = position % 2 == 0 ? digit * 2 : digit
            sum += doubled > 9 ? doubled - 9 : doubled
        }
        digits.append((10 - sum % 10) % 10)
        return digits.map(String.init).joined()
    }

    final class Box: Sendable {
        let state = Mutex(Shared())
        func withLock<T>(_ body: (inout Shared) -> T) -> T { state.withLock { body(&$0) } }
    }

    struct Shared {
        var samples: [Sample] = []
        var acknowledged: [String] = []
        /// Acknowledged payments that may be refunded or read.
        var recent: [(id: String, merchant: String)] = []
        var maximumLag: Int64 = 0
        var unsent = 0
        /// Monotonic time of the last 200 or 201.
        var lastAccepted: Int64 = 0
    }

    /// At most `limit` requests out at once, the rest waiting here in the
    /// order they were due. The HTTP client would queue them itself, but its
    /// pool went past its connection limit (the test shows six connections
    /// at once against a limit of two) and removes each timed-out waiter
    /// from its queue by a linear search: under overload the generator spent
    /// its CPU on that and measured its own collapse. A waiter whose
    /// deadline passes hears so at the next release, not at the deadline.
    final class ConnectionGate: Sendable {
        struct Waiter {
            var deadline: Int64
            var continuation: CheckedContinuation<Bool, Never>
        }

        struct State {
            var free: Int
            var waiting = Deque<Waiter>()
        }

        let state: Mutex<State>

        init(limit: Int) {
            precondition(limit >= 1, "a gate with no connection would never open")
            state = Mutex(State(free: limit))
        }

        /// `true`: a connection is the caller's until ``release()``; `false`:
        /// none came free before `deadline` (monotonic nanoseconds).
        func acquire(deadline: Int64) async -> Bool {
            await withCheckedContinuation { continuation in
                let granted = state.withLock { state in
                    if state.free > 0 {
                        state.free -= 1
                        return true
                    }
                    state.waiting.append(Waiter(deadline: deadline, continuation: continuation))
                    return false
                }
                if granted { continuation.resume(returning: true) }
            }
        }

        /// Hands the connection to the oldest waiter still within its
        /// deadline; waiters past theirs are told so on the way.
        func release() {
            let now = WallClock.monotonic()
            var expired: [CheckedContinuation<Bool, Never>] = []
            let next: CheckedContinuation<Bool, Never>? = state.withLock { state in
                while let waiter = state.waiting.popFirst() {
                    if waiter.deadline > now { return waiter.continuation }
                    expired.append(waiter.continuation)
                }
                state.free += 1
                return nil
            }
            for continuation in expired { continuation.resume(returning: false) }
            next?.resume(returning: true)
        }
    }

    /// `GET <base>/health`: the body of a 200, or an error that says what
    /// came instead (another status, or nothing: is the server running?).
    public static func health(_ base: String, timeout: TimeAmount = .seconds(5)) async throws -> String {
        let base = base.hasSuffix("/") ? String(base.dropLast()) : base
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/health"), timeout: timeout)
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw ServerError("cannot reach \(base)/health (\(error)); is `paystorm serve` running there?")
        }
        guard response.status.code == 200 else {
            throw ServerError("\(base)/health answered HTTP \(response.status.code); is the server healthy?")
        }
        return String(buffer: body)
    }

    public static func run(_ options: Options, progress: (@Sendable (Int, Int) -> Void)? = nil) async throws -> Result {
        let random = RandomStream(seed: options.seed)
        // The whole schedule, fixed before the first request.
        var offsets: [Int64] = []
        var kinds: [Kind] = []
        var t = 0.0
        while true {
            t += options.poisson ? random.exponential(mean: 1 / options.rate) : 1 / options.rate
            if t >= options.durationSeconds { break }
            offsets.append(Int64(t * 1e9))
            let roll = random.uniform()
            kinds.append(roll < options.paymentShare ? .payment : roll < options.paymentShare + options.refundShare ? .refund : .read)
        }
        let amounts = offsets.indices.map { _ in 100 + random.uniformInt(below: 49_900) }

        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: options.connections)
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(Int64(options.timeoutSeconds.rounded(.up))))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
        let gate = ConnectionGate(limit: options.connections)
        let shared = Box()
        let total = offsets.count
        let start = WallClock.monotonic()

        await withDiscardingTaskGroup { tasks in
            var next = 0
            var reported = 0
            while next < total {
                let now = WallClock.monotonic() - start
                if offsets[next] > now {
                    try? await Task.sleep(for: .nanoseconds(min(offsets[next] - now, 5_000_000)))
                    continue
                }
                let lag = now - offsets[next]
                shared.withLock { $0.maximumLag = max($0.maximumLag, lag) }
                while next < total && offsets[next] <= now {
                    let index = next, kind = kinds[index], amount = amounts[index], offset = offsets[index]
                    tasks.addTask {
                        await send(index, kind: kind, amountMinor: amount, start: start, offset: offset,
                                   options: options, client: client, gate: gate, shared: shared)
                    }
                    next += 1
                }
                if let progress, next - reported >= max(1, total / 100) {
                    reported = next
                    progress(next, total)
                }
            }
        }
        let elapsed = Double(WallClock.monotonic() - start) / 1e9
        try await client.shutdown()
        try await group.shutdownGracefully()
        let final = shared.withLock { $0 }
        return Result(options: options, samples: final.samples.sorted { $0.intendedNanoseconds < $1.intendedNanoseconds },
                      acknowledged: final.acknowledged, elapsedSeconds: elapsed,
                      maximumSendLagSeconds: Double(final.maximumLag) / 1e9, unsent: final.unsent,
                      acceptedSeconds: Double(max(0, final.lastAccepted - start)) / 1e9)
    }

    static func send(_ index: Int, kind: Kind, amountMinor: Int, start: Int64, offset: Int64, options: Options,
                     client: HTTPClient, gate: ConnectionGate, shared: Box) async {
        var kind = kind
        let merchant = "m\(index % options.merchants)"
        var target = (id: "", merchant: merchant)
        if kind != .payment {
            if let pick = shared.withLock({ $0.recent.isEmpty ? nil : $0.recent[index % $0.recent.count] }) {
                target = pick
            } else {
                kind = .payment  // nothing to refund or read yet
            }
        }
        var request: HTTPClientRequest
        switch kind {
        case .payment:
            request = HTTPClientRequest(url: options.url + "/payments")
            request.method = .POST
            let amount = "\(amountMinor / 100).\(String(format: "%02d", amountMinor % 100))"
            let body = """
                {"user_id":"u\(index % users)","merchant_id":"\(merchant)","amount":"\(amount)","currency":"USD",\
                "payment_method":{"type":"card","details":{"card_number":"\(card(user: index % users))","expiry_date":"12/39","cvv":"123"}},\
                "idempotency_key":"load-\(options.seed)-\(index)"}
                """
            request.body = .bytes(ByteBuffer(string: body))
        case .refund:
            request = HTTPClientRequest(url: options.url + "/refunds")
            request.method = .POST
            request.body = .bytes(ByteBuffer(string: "{\"payment_id\":\"\(target.id)\",\"amount\":\"0.01\",\"idempotency_key\":\"load-refund-\(options.seed)-\(index)\"}"))
        case .read:
            request = HTTPClientRequest(url: options.url + "/payments/" + target.id)
        }
        request.headers.add(name: "Authorization", value: "Bearer \(options.keyPrefix)\(target.merchant)")
        request.headers.add(name: "Content-Type", value: "application/json")
        var status: Int16 = 0
        var paymentID: String?
        // The timeout runs from the time the request was due, waiting for a
        // connection included. A request waits at most half of it for a
        // connection, so one that is sent has the other half to be answered
        // (sent with moments to spare, it would only cost the server work
        // whose answer nobody waits for).
        let timeout = Int64(options.timeoutSeconds * 1e9)
        let deadline = start + offset + timeout
        var sent = false
        if await gate.acquire(deadline: deadline - timeout / 2) {
            let remaining = deadline - WallClock.monotonic()
            if remaining > 0 {
                sent = true
                do {
                    let response = try await client.execute(request, timeout: .nanoseconds(remaining))
                    let body = try await response.body.collect(upTo: 1 << 20)
                    status = Int16(clamping: Int(response.status.code))
                    if kind == .payment, status == 200 || status == 201 {
                        paymentID = paymentIDField(String(buffer: body))
                    }
                } catch {
                    status = 0
                }
            }
            gate.release()
        }
        let finished = WallClock.monotonic()
        let sample = Sample(intendedNanoseconds: offset, latencyNanoseconds: finished - start - offset, status: status, kind: kind)
        shared.withLock { shared in
            shared.samples.append(sample)
            if !sent { shared.unsent += 1 }
            if status == 200 || status == 201 { shared.lastAccepted = max(shared.lastAccepted, finished) }
            if let paymentID {
                shared.acknowledged.append(paymentID)
                if shared.recent.count < 10_000 { shared.recent.append((paymentID, merchant)) } else { shared.recent[index % 10_000] = (paymentID, merchant) }
            }
        }
    }

    /// The `payment_id` of a payment answer, without a JSON decoder on the hot path.
    static func paymentIDField(_ body: String) -> String? {
        guard let range = body.range(of: "\"payment_id\":\"") else { return nil }
        let rest = body[range.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }
}
