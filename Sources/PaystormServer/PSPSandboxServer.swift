import Foundation
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// One request to the sandbox, read whole.
struct SandboxRequest {
    var method: HTTPMethod
    /// The request target: path and query.
    var uri: String
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// What the sandbox answers one request with, and after how long.
struct SandboxAnswer {
    var status: Int
    var body: ByteBuffer
    var contentType = "application/json"
    /// Whether the answer carries ``PSPWire/versionHeader``.
    var statesVersion = false
    /// The method a 405 names in its `Allow` header.
    var allow: HTTPMethod?
    /// The PSP's latency: the answer is written this long after the request was read.
    var delayNanoseconds: Int64 = 0

    static func json(_ status: Int, _ value: some Encodable) -> SandboxAnswer {
        SandboxAnswer(status: status, body: PaystormAPI.jsonBody(value))
    }

    static func json(_ status: Int, _ value: some WireNamed) -> SandboxAnswer {
        SandboxAnswer(status: status, body: PaystormAPI.jsonBody(value))
    }

    static func json(_ status: Int, _ value: some WrittenWire) -> SandboxAnswer {
        SandboxAnswer(status: status, body: PaystormAPI.jsonBody(value))
    }

    /// 405: `path` is served, but not to `method`.
    static func notAllowed(_ method: HTTPMethod, _ path: Substring, allow: HTTPMethod) -> SandboxAnswer {
        var answer = json(405, APIWire.ErrorBody(code: "method_not_allowed", message: "\(method) is not served at \(path); \(allow) is"))
        answer.allow = allow
        return answer
    }

    /// This answer stating this build's PSP wire version.
    var statingVersion: SandboxAnswer {
        var answer = self
        answer.statesVersion = true
        return answer
    }
}

/// `paystorm psp-sandbox`'s HTTP/1.1 server, on plain SwiftNIO: each request
/// is answered by ``PSPSandbox/respond(to:now:)`` on its connection's event
/// loop, and its answer written after the PSP's latency on that loop's timer.
///
/// The sandbox is a stand-in for a PSP that shares the machine with the
/// server under test in `bench server`, so what it spends is taken from the
/// server. Behind Hummingbird, each call went from the event loop to a task
/// and back: about a quarter of the sandbox's CPU in a profile at 2,500
/// payments a second was Swift concurrency's executor threads and the
/// thread switches into them.
public struct PSPSandboxServer: Service {
    public let sandbox: PSPSandbox
    public let host: String
    public let port: Int
    /// Called once the server listens, with its port (the one asked for, or the one given for port 0).
    public let onListening: @Sendable (Int) -> Void
    /// The largest request body read; a longer one is answered 413.
    static let bodyLimit = 1 << 16

    public init(sandbox: PSPSandbox, host: String, port: Int, onListening: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self.onListening = onListening
    }

    /// Binds and serves until the graceful shutdown of its service group:
    /// then it stops taking connections, lets each open one finish the call
    /// it carries (a PSP call cut off would leave its caller not knowing
    /// whether it charged), closes them, and returns.
    public func run() async throws {
        let listening = try await bind()
        onListening(listening.channel.localAddress?.port ?? port)
        let drained = listening.channel.eventLoop.makePromise(of: Void.self)
        // However the listening channel ends, the open connections are quiesced.
        listening.channel.closeFuture.whenComplete { _ in listening.quiescing.initiateShutdown(promise: drained) }
        try await withGracefulShutdownHandler {
            try await drained.futureResult.get()
        } onGracefulShutdown: {
            listening.quiescing.initiateShutdown(promise: nil)
        }
    }

    /// Serves until a SIGTERM or SIGINT, then drains as ``run()`` does and returns.
    public func runUntilSignalled() async throws {
        let group = ServiceGroupConfiguration(services: [self], gracefulShutdownSignals: [.sigterm, .sigint],
                                              logger: Logger(label: "paystorm.psp-sandbox"))
        try await ServiceGroup(configuration: group).run()
    }

    /// The listening channel, and what quiesces its connections.
    func bind() async throws -> (channel: Channel, quiescing: ServerQuiescingHelper) {
        do {
            return try await listen()
        } catch {
            throw ServerError("cannot listen on \(host):\(port): \(error); choose another --port or --host")
        }
    }

    private func listen() async throws -> (channel: Channel, quiescing: ServerQuiescingHelper) {
        let sandbox = self.sandbox
        let group = MultiThreadedEventLoopGroup.singleton
        let quiescing = ServerQuiescingHelper(group: group)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Pipelining assistance hands over one request at a
                    // time (the next is read once this one's answer is
                    // written), and closes a quiesced connection after it.
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SandboxHTTPHandler(sandbox: sandbox))
                }
            }
            .bind(host: host, port: port).get()
        return (channel, quiescing)
    }
}

/// Reads one request whole, has the sandbox answer it, and writes the
/// answer when its delay has passed. Used only on its channel's event loop.
final class SandboxHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let sandbox: PSPSandbox
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var overLimit = false
    private var active = true

    init(sandbox: PSPSandbox) {
        self.sandbox = sandbox
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            self.head = head
            body.clear()
            overLimit = head.headers.first(name: "Content-Length").flatMap(Int.init).map { $0 > PSPSandboxServer.bodyLimit } ?? false
        case var .body(part):
            guard !overLimit else { return }
            if body.readableBytes + part.readableBytes > PSPSandboxServer.bodyLimit {
                overLimit = true
                body.clear()
            } else {
                body.writeBuffer(&part)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let answer: SandboxAnswer
            if overLimit {
                answer = .json(413, APIWire.ErrorBody(code: "body_too_large", message: "the body is over \(PSPSandboxServer.bodyLimit) bytes"))
            } else {
                answer = sandbox.respond(to: SandboxRequest(method: head.method, uri: head.uri, headers: head.headers, body: body),
                                         now: WallClock.nanoseconds())
            }
            body.clear()
            let keepAlive = head.isKeepAlive
            if answer.delayNanoseconds > 0 {
                context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(answer.delayNanoseconds)) {
                    self.write(answer, to: head, keepAlive: keepAlive, context: context)
                }
            } else {
                write(answer, to: head, keepAlive: keepAlive, context: context)
            }
        }
    }

    private func write(_ answer: SandboxAnswer, to request: HTTPRequestHead, keepAlive: Bool, context: ChannelHandlerContext) {
        guard active else { return }  // the caller hung up while the PSP "worked"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: answer.contentType)
        headers.add(name: "Content-Length", value: String(answer.body.readableBytes))
        if answer.statesVersion { headers.add(name: PSPWire.versionHeader, value: PSPWire.version) }
        if let allow = answer.allow { headers.add(name: "Allow", value: allow.rawValue) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: HTTPResponseStatus(statusCode: answer.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(answer.body))), promise: nil)
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        context.fireChannelInactive()
    }

    /// A request the decoder could not read has had its 400 (NIO's error
    /// handler, which leaves the closing to the pipeline): the connection
    /// cannot be trusted to carry another.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
