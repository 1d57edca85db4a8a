import DequeModule
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A plain-HTTP/1.1 client for one host, for the hot paths of the load
/// generator, the server's PSP calls and the sandbox's webhooks:
/// up to `connections` kept-alive connections, one request on each at a
/// time, requests beyond that waiting in order for one to come free.
///
/// It exists because of what the general client costs here. Against the
/// sandbox answering 404 at once, on loopback, `paystorm load` spent about
/// 240 µs of CPU a request through `AsyncHTTPClient` with a task per
/// request (`wrk`, for scale: 12 µs), 150 µs through this client with the
/// same tasks, and 105 µs with this client and the whole schedule on its
/// event loop. The generator shares the machine with the server it
/// measures, so what it spends is taken from the server. It does only what
/// the generator needs: no TLS, no redirects, no proxies, no chunked request
/// bodies; everything runs on one event loop, so its state needs no lock.
final class KeepAliveHTTPClient: @unchecked Sendable {
    /// A client for a plain `http://` base URL, with the path the URL carries.
    struct Target: Sendable {
        let client: KeepAliveHTTPClient
        /// The base URL's path without a trailing slash ("" for none), to put before each request's path.
        let pathPrefix: String

        /// `nil` unless `url` is a plain `http://` URL with a host and no query or user.
        init?(plainURL url: String, loop: EventLoop, connections: Int, connectTimeout: TimeAmount = .seconds(2)) {
            guard let parsed = URL(string: url), parsed.scheme == "http", let host = parsed.host, !host.isEmpty,
                  parsed.query == nil, parsed.user == nil else { return nil }
            client = KeepAliveHTTPClient(loop: loop, host: host, port: parsed.port ?? 80, connections: connections, connectTimeout: connectTimeout)
            pathPrefix = parsed.path.hasSuffix("/") ? String(parsed.path.dropLast()) : parsed.path
        }

        /// The URL's own path, for a request to the URL itself ("/" for none).
        var path: String { pathPrefix.isEmpty ? "/" : pathPrefix }
    }

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer
        /// Whether the connection may carry the next request.
        var keepAlive: Bool
    }

    /// The largest answer body taken; a longer one fails ``Failure/answerTooLarge``.
    static let maximumBody = 1 << 20

    enum Failure: Error, Equatable {
        /// No answer before the deadline (the connection is closed: its
        /// answer may still come).
        case timedOut
        /// The connection closed or failed before the whole answer came.
        case connectionLost
        /// The answer's body passed ``maximumBody`` (the connection is closed).
        case answerTooLarge
        /// No connection could be made.
        case cannotConnect(String)
        /// The deadline passed while the request waited for a connection:
        /// it was never written.
        case expiredWaiting
        case shutDown
    }

    let loop: EventLoop
    let host: String
    let port: Int
    let connections: Int
    let connectTimeout: TimeAmount
    private var idle: [Channel] = []
    private var open = 0
    private var waiting = Deque<Pending>()
    private var closed = false
    /// The request each busy connection carries: its deadline, and who
    /// awaits its answer.
    private var inFlight: [ObjectIdentifier: InFlight] = [:]
    /// Fails the requests in flight past their deadline, every
    /// ``sweepInterval`` while any is in flight.
    private var sweep: RepeatedTask?
    /// How late past its deadline a request in flight may be failed.
    ///
    /// One sweep instead of a timer per request: NIO cancels a scheduled
    /// task by searching its whole queue of them, so every answer searched
    /// every task pending on the loop — in the PSP sandbox, with its
    /// thousands of delayed webhooks, 4.1% of its CPU samples under
    /// `paystorm bench server` (0.2% with the sweep).
    static let sweepInterval: TimeAmount = .milliseconds(20)

    private struct InFlight {
        var deadline: NIODeadline
        var channel: Channel
        var handler: AnswerHandler
    }

    struct Pending {
        var head: HTTPRequestHead
        var body: ByteBuffer?
        var promise: EventLoopPromise<Response>
        var deadline: NIODeadline
    }

    init(loop: EventLoop, host: String, port: Int, connections: Int, connectTimeout: TimeAmount = .seconds(2)) {
        precondition(connections >= 1, "a client with no connection would never send")
        self.loop = loop
        self.host = host
        self.port = port
        self.connections = connections
        self.connectTimeout = connectTimeout
    }

    /// Sends one request; the future fails with a ``Failure`` or any error
    /// of the connection. `path` starts with `/`.
    func execute(method: HTTPMethod, path: String, headers: HTTPHeaders, body: ByteBuffer?, deadline: NIODeadline) -> EventLoopFuture<Response> {
        let promise = loop.makePromise(of: Response.self)
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        head.headers.replaceOrAdd(name: "Host", value: "\(host):\(port)")
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body?.readableBytes ?? 0))
        let pending = Pending(head: head, body: body, promise: promise, deadline: deadline)
        loop.execute { self.start(pending) }
        return promise.futureResult
    }

    /// Closes every connection; requests still waiting fail with ``Failure/shutDown``.
    func shutdown() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.closed = true
            for pending in self.waiting { pending.promise.fail(Failure.shutDown) }
            self.waiting.removeAll()
            let channels = self.idle
            self.idle.removeAll()
            return EventLoopFuture.andAllComplete(channels.map { $0.close() }, on: self.loop)
        }
    }

    private func start(_ pending: Pending) {
        guard !closed else { return pending.promise.fail(Failure.shutDown) }
        if let channel = idle.popLast() {
            send(pending, on: channel)
        } else if open < connections {
            open += 1
            connect(pending)
        } else {
            waiting.append(pending)
        }
    }

    private func connect(_ pending: Pending) {
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(AnswerHandler())
                }
            }
            .connect(host: host, port: port)
            .whenComplete { result in
                switch result {
                case let .success(channel):
                    channel.closeFuture.whenComplete { _ in self.lost(channel) }
                    self.send(pending, on: channel)
                case let .failure(error):
                    self.open -= 1
                    pending.promise.fail(Failure.cannotConnect("\(error)"))
                    self.next()
                }
            }
    }

    private func send(_ pending: Pending, on channel: Channel) {
        guard channel.isActive, let handler = try? channel.pipeline.syncOperations.handler(type: AnswerHandler.self) else {
            // Closed while idle (its close frees its slot): try again on another.
            return start(pending)
        }
        let key = ObjectIdentifier(channel)
        inFlight[key] = InFlight(deadline: pending.deadline, channel: channel, handler: handler)
        if sweep == nil {
            sweep = loop.scheduleRepeatedTask(initialDelay: Self.sweepInterval, delay: Self.sweepInterval) { _ in self.failExpired() }
        }
        handler.awaiting = { result in
            self.inFlight[key] = nil
            switch result {
            case let .success(response):
                pending.promise.succeed(response)
                self.reuse(channel, keepAlive: response.keepAlive)
            case let .failure(error):
                pending.promise.fail(error)
            }
        }
        channel.write(HTTPClientRequestPart.head(pending.head), promise: nil)
        if let body = pending.body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    /// Whether the deadline sweep runs (only while a request is in flight). On the client's event loop only.
    var sweeping: Bool { sweep != nil }

    /// Fails every request in flight past its deadline; stops sweeping once none is in flight.
    private func failExpired() {
        let now = NIODeadline.now()
        for (key, request) in inFlight where request.deadline <= now {
            inFlight[key] = nil
            // Its answer may still come: the connection cannot carry another request.
            request.handler.fail(Failure.timedOut)
            request.channel.close(promise: nil)
        }
        if inFlight.isEmpty {
            sweep?.cancel()
            sweep = nil
        }
    }

    /// An answered connection takes the next waiting request, or waits idle.
    private func reuse(_ channel: Channel, keepAlive: Bool) {
        guard keepAlive, !closed else {
            channel.close(promise: nil)
            return
        }
        if let pending = nextWaiting() {
            send(pending, on: channel)
        } else {
            idle.append(channel)
        }
    }

    /// The oldest waiting request still within its deadline; those past
    /// theirs fail on the way, never written.
    private func nextWaiting() -> Pending? {
        let now = NIODeadline.now()
        while let pending = waiting.popFirst() {
            if pending.deadline > now { return pending }
            pending.promise.fail(Failure.expiredWaiting)
        }
        return nil
    }

    /// A connection closed, answered or not: its slot frees for a waiting request.
    private func lost(_ channel: Channel) {
        open -= 1
        idle.removeAll { $0 === channel }
        next()
    }

    private func next() {
        guard open < connections, let pending = nextWaiting() else { return }
        if closed { return pending.promise.fail(Failure.shutDown) }
        open += 1
        connect(pending)
    }
}

/// Collects one answer at a time and hands it to whoever awaits it. Used
/// only on its channel's event loop, the client's.
private final class AnswerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    var awaiting: ((Result<KeepAliveHTTPClient.Response, Error>) -> Void)?
    private var head: HTTPResponseHead?
    private var body: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            self.head = head
            body = nil
        case var .body(part):
            if body == nil { body = part } else { body!.writeBuffer(&part) }
            if body!.readableBytes > KeepAliveHTTPClient.maximumBody {
                fail(KeepAliveHTTPClient.Failure.answerTooLarge)
                context.close(promise: nil)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let answer = KeepAliveHTTPClient.Response(status: Int(head.status.code), headers: head.headers, body: body ?? ByteBuffer(),
                                                      keepAlive: head.isKeepAlive)
            body = nil
            let awaiting = self.awaiting
            self.awaiting = nil
            awaiting?(.success(answer))
        }
    }

    func fail(_ error: Error) {
        let awaiting = self.awaiting
        self.awaiting = nil
        awaiting?(.failure(error))
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(KeepAliveHTTPClient.Failure.connectionLost)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
        context.close(promise: nil)
    }
}
