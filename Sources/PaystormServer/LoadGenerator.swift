import AsyncHTTPClient
import DequeModule
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import PaystormStatistics

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

    /// A Luhn-valid 16-digit test card number for a user: `4000`, the user
    /// number in 11 digits, and the check digit. Built from digits, not
    /// through `String(format:)`: that took about a tenth of the
    /// generator's CPU, which `bench server` takes from the server.
    /// - Precondition: `0 <= user < 10^11`.
    static func card(user: Int) -> String {
        precondition((0..<100_000_000_000).contains(user), "a card number has 11 digits for the user")
        var digits: [UInt8] = [4, 0, 0, 0] + Array(repeating: 0, count: 12)
        var rest = user
        for position in (4...14).reversed() {
            digits[position] = UInt8(rest % 10)
            rest /= 10
        }
        var sum = 0
        for (distance, digit) in digits[..<15].reversed().enumerated() {
            let doubled = distance % 2 == 0 ? Int(digit) * 2 : Int(digit)
            sum += doubled > 9 ? doubled - 9 : doubled
        }
        digits[15] = UInt8((10 - sum % 10) % 10)
        return String(decoding: digits.map { $0 + UInt8(ascii: "0") }, as: UTF8.self)
    }

    /// What a run has gathered so far.
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

    /// At most `limit` requests out at once, the rest waiting in the order
    /// they were due. The general HTTP client would queue them itself, but
    /// its pool went past its connection limit (the test shows six
    /// connections at once against a limit of two) and removes each
    /// timed-out waiter from its queue by a linear search: under overload the
    /// generator spent its CPU on that and measured its own collapse. A
    /// waiter whose deadline passes hears so at the next release, not at the
    /// deadline.
    struct ConnectionGate {
        private(set) var free: Int
        private(set) var waiting = Deque<(request: Int, deadline: Int64)>()

        init(limit: Int) {
            precondition(limit >= 1, "a gate with no connection would never open")
            free = limit
        }

        /// `true`: a connection is the request's until ``release(now:)``;
        /// `false`: it waits, at most until `deadline` (monotonic nanoseconds).
        mutating func acquire(_ request: Int, deadline: Int64) -> Bool {
            if free > 0 {
                free -= 1
                return true
            }
            waiting.append((request, deadline))
            return false
        }

        /// A connection came back: it goes to the oldest waiter still within
        /// its deadline (`next`); the waiters before it, past theirs, are
        /// `expired` and never sent.
        mutating func release(now: Int64) -> (next: Int?, expired: [Int]) {
            var expired: [Int] = []
            while let waiter = waiting.popFirst() {
                if waiter.deadline > now { return (waiter.request, expired) }
                expired.append(waiter.request)
            }
            free += 1
            return (nil, expired)
        }
    }

    /// Where the generator's requests go, answered on the run's event loop.
    /// A plain `http://` URL gets the generator's own kept-alive connections
    /// (``KeepAliveHTTPClient``); anything else (`https://`) goes through
    /// the general client.
    enum Transport: Sendable {
        case plain(KeepAliveHTTPClient.Target)
        case general(HTTPClient, base: String)

        init(url: String, connections: Int, configuration: HTTPClient.Configuration, loop: EventLoop) {
            if let target = KeepAliveHTTPClient.Target(plainURL: url, loop: loop, connections: connections) {
                self = .plain(target)
            } else {
                self = .general(HTTPClient(eventLoopGroupProvider: .shared(loop), configuration: configuration), base: url)
            }
        }

        /// One request; its answer's status and body (at most 1 MiB), on `loop`.
        func send(_ method: HTTPMethod, _ path: String, headers: HTTPHeaders, body: String?, deadline: NIODeadline,
                  on loop: EventLoop) -> EventLoopFuture<KeepAliveHTTPClient.Response> {
            switch self {
            case let .plain(target):
                return target.client.execute(method: method, path: target.pathPrefix + path, headers: headers,
                                             body: body.map { ByteBuffer(string: $0) }, deadline: deadline)
            case let .general(client, base):
                let request: HTTPClient.Request
                do {
                    request = try HTTPClient.Request(url: base + path, method: method, headers: headers, body: body.map { .string($0) })
                } catch {
                    return loop.makeFailedFuture(error)
                }
                let accumulator = ResponseAccumulator(request: request, maxBodySize: KeepAliveHTTPClient.maximumBody)
                return client.execute(request: request, delegate: accumulator, eventLoop: .delegateAndChannel(on: loop), deadline: deadline)
                    .futureResult.map { response in
                        KeepAliveHTTPClient.Response(status: Int(response.status.code), headers: response.headers,
                                                     body: response.body ?? ByteBuffer(), keepAlive: true)
                    }
            }
        }

        func shutdown() async throws {
            switch self {
            case let .plain(target): try await target.client.shutdown().get()
            case let .general(client, _): try await client.shutdown()
            }
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

    /// The engine's status from `GET /health` (``EngineRunner/Status``).
    public static func engineStatus(_ base: String, timeout: TimeAmount = .seconds(5)) async throws -> EngineRunner.Status {
        struct Health: Decodable { var engine: EngineRunner.Status }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(Health.self, from: Data(try await health(base, timeout: timeout).utf8)).engine
        } catch let error as ServerError {
            throw error
        } catch {
            throw ServerError("\(base)/health: not an engine status this build reads (\(error)); are the server and this generator the same build?")
        }
    }

    /// The most requests one run may schedule: the schedule, and each
    /// request's answer, are kept in memory (about 40 bytes a request).
    public static let maximumRequests = 20_000_000

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
        let loop = group.next()
        let transport = Transport(url: options.url, connections: options.connections, configuration: configuration, loop: loop)
        let schedule = Schedule(loop: loop, transport: transport, options: options, offsets: offsets, kinds: kinds,
                                amounts: amounts, progress: progress)
        let result = await schedule.run()
        try await transport.shutdown()
        try await group.shutdownGracefully()
        return result
    }

    /// One run of the schedule, every request sent and answered on one event
    /// loop: the connections call back on it, so the schedule, the gate and
    /// the samples need no lock, and a request costs no task and no switch
    /// between threads. (With a task per request, the kernel's switches
    /// between the task pool's threads and the event loop's were about a
    /// third of the generator's profile.)
    final class Schedule: @unchecked Sendable {
        let loop: EventLoop
        let transport: Transport
        let options: Options
        let offsets: [Int64]
        let kinds: [Kind]
        let amounts: [Int]
        let progress: (@Sendable (Int, Int) -> Void)?
        let timeout: Int64
        private var start: Int64 = 0
        /// The next request of the schedule to fall due.
        private var next = 0
        private var finished = 0
        private var reported = 0
        private var gate: ConnectionGate
        private var shared = Shared()
        private let done: EventLoopPromise<Void>
        private var ended = false

        init(loop: EventLoop, transport: Transport, options: Options, offsets: [Int64], kinds: [Kind], amounts: [Int],
             progress: (@Sendable (Int, Int) -> Void)?) {
            self.loop = loop
            self.transport = transport
            self.options = options
            self.offsets = offsets
            self.kinds = kinds
            self.amounts = amounts
            self.progress = progress
            timeout = Int64(options.timeoutSeconds * 1e9)
            gate = ConnectionGate(limit: options.connections)
            done = loop.makePromise()
        }

        func run() async -> Result {
            loop.execute {
                self.start = WallClock.monotonic()
                self.due()
            }
            try? await done.futureResult.get()
            let (final, start) = try! await loop.submit { (self.shared, self.start) }.get()
            let elapsed = Double(WallClock.monotonic() - start) / 1e9
            return Result(options: options, samples: final.samples.sorted { $0.intendedNanoseconds < $1.intendedNanoseconds },
                          acknowledged: final.acknowledged, elapsedSeconds: elapsed,
                          maximumSendLagSeconds: Double(final.maximumLag) / 1e9, unsent: final.unsent,
                          acceptedSeconds: Double(max(0, final.lastAccepted - start)) / 1e9)
        }

        /// Sends (or queues for a connection) every request now due, then
        /// sleeps until the next one is.
        private func due() {
            let now = WallClock.monotonic() - start
            if next < offsets.count && offsets[next] <= now {
                shared.maximumLag = max(shared.maximumLag, now - offsets[next])
            }
            while next < offsets.count && offsets[next] <= now {
                let index = next
                next += 1
                // The timeout runs from the time the request was due, waiting
                // for a connection included. A request waits at most half of it
                // for a connection, so one that is sent has the other half to be
                // answered (sent with moments to spare, it would only cost the
                // server work whose answer nobody waits for).
                if gate.acquire(index, deadline: deadline(index) - timeout / 2) { send(index) }
            }
            if let progress, next - reported >= max(1, offsets.count / 100) {
                reported = next
                progress(next, offsets.count)
            }
            if next < offsets.count {
                loop.scheduleTask(in: .nanoseconds(offsets[next] - now)) { self.due() }
            } else {
                finishIfDone()
            }
        }

        /// Ends the run once every request of the schedule was due and finished.
        private func finishIfDone() {
            guard !ended, next == offsets.count, finished == offsets.count else { return }
            ended = true
            done.succeed(())
        }

        private func deadline(_ index: Int) -> Int64 { start + offsets[index] + timeout }

        private func send(_ index: Int) {
            let remaining = deadline(index) - WallClock.monotonic()
            guard remaining > 0 else {
                return record(index, kind: kinds[index], status: 0, paymentID: nil, merchant: "", sent: false)
            }
            var kind = kinds[index]
            let merchant = "m\(index % options.merchants)"
            var target = (id: "", merchant: merchant)
            if kind != .payment {
                if shared.recent.isEmpty {
                    kind = .payment  // nothing to refund or read yet
                } else {
                    target = shared.recent[index % shared.recent.count]
                }
            }
            let path: String
            var method = HTTPMethod.POST
            var body: String?
            switch kind {
            case .payment:
                path = "/payments"
                let amountMinor = amounts[index], cents = amountMinor % 100
                let amount = "\(amountMinor / 100).\(cents < 10 ? "0" : "")\(cents)"
                body = """
                    {"user_id":"u\(index % users)","merchant_id":"\(merchant)","amount":"\(amount)","currency":"USD",\
                    "payment_method":{"type":"card","details":{"card_number":"\(card(user: index % users))","expiry_date":"12/39","cvv":"123"}},\
                    "idempotency_key":"load-\(options.seed)-\(index)"}
                    """
            case .refund:
                path = "/refunds"
                body = "{\"payment_id\":\"\(target.id)\",\"amount\":\"0.01\",\"idempotency_key\":\"load-refund-\(options.seed)-\(index)\"}"
            case .read:
                path = "/payments/" + target.id
                method = .GET
            }
            var headers = HTTPHeaders()
            headers.add(name: "Authorization", value: "Bearer \(options.keyPrefix)\(target.merchant)")
            headers.add(name: "Content-Type", value: "application/json")
            let sentKind = kind, sentMerchant = target.merchant
            transport.send(method, path, headers: headers, body: body, deadline: .now() + .nanoseconds(remaining), on: loop)
                .hop(to: loop)
                .whenComplete { result in
                    var status: Int16 = 0
                    var paymentID: String?
                    if case let .success(response) = result {
                        status = Int16(clamping: response.status)
                        if sentKind == .payment, status == 200 || status == 201 {
                            paymentID = LoadGenerator.paymentIDField(response.body)
                        }
                    }
                    self.record(index, kind: sentKind, status: status, paymentID: paymentID, merchant: sentMerchant, sent: true)
                }
        }

        /// Records a finished request — answered, failed, or never sent — and
        /// hands its connection on.
        private func record(_ index: Int, kind: Kind, status: Int16, paymentID: String?, merchant: String, sent: Bool) {
            let now = WallClock.monotonic()
            // The client's deadline is kept by a sweep that may fire a little
            // after it: an answer that came past it is a timeout all the same,
            // and what it said was not heard, as a client that gave up would not.
            let late = status != 0 && now > deadline(index)
            let paymentID = late ? nil : paymentID
            shared.samples.append(Sample(intendedNanoseconds: offsets[index], latencyNanoseconds: now - start - offsets[index],
                                         status: late ? 0 : status, kind: kind))
            if !sent { shared.unsent += 1 }
            if !late && (status == 200 || status == 201) { shared.lastAccepted = max(shared.lastAccepted, now) }
            if let paymentID {
                shared.acknowledged.append(paymentID)
                if shared.recent.count < 10_000 { shared.recent.append((paymentID, merchant)) } else { shared.recent[index % 10_000] = (paymentID, merchant) }
            }
            finished += 1
            let (waiter, expired) = gate.release(now: now)
            for request in expired {
                finished += 1
                shared.unsent += 1
                shared.samples.append(Sample(intendedNanoseconds: offsets[request], latencyNanoseconds: now - start - offsets[request],
                                             status: 0, kind: kinds[request]))
            }
            if let waiter { send(waiter) }
            finishIfDone()
        }
    }

    /// The `payment_id` of a payment answer, without a JSON decoder on the hot path.
    ///
    /// Read from the bytes: Foundation's `range(of:)` on a `String` made of
    /// them was about 7% of the generator's CPU under `paystorm bench server`.
    static func paymentIDField(_ body: ByteBuffer) -> String? {
        body.withUnsafeReadableBytes { bytes -> String? in
            let key = paymentIDKey
            guard bytes.count >= key.count else { return nil }
            // A plain scan: the generic searches (Foundation's `DataProtocol.firstRange(of:)`
            // among them) cost more than the rest of recording an answer.
            search: for start in 0...(bytes.count - key.count) {
                for offset in 0..<key.count where bytes[start + offset] != key[offset] { continue search }
                let value = start + key.count
                var end = value
                while end < bytes.count && bytes[end] != UInt8(ascii: "\"") { end += 1 }
                guard end < bytes.count else { return nil }
                return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[value..<end]), as: UTF8.self)
            }
            return nil
        }
    }

    private static let paymentIDKey = Array(#""payment_id":""#.utf8)
}
