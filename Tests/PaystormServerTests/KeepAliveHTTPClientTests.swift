import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing
@testable import PaystormServer

@Suite("Keep-alive HTTP client: connections reused, bounded, and every failure named")
struct KeepAliveHTTPClientTests {
    /// A server whose answer depends on the path: `/ok` answers at once,
    /// `/close` answers with `Connection: close`, `/big` sends 2 MiB, `/never`
    /// never answers. It counts the connections it accepted.
    final class TestServer: Sendable {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        final class Counter: Sendable {
            let value = Atomic<Int>(0)
        }

        private let acceptedCounter = Counter()
        var accepted: Int { acceptedCounter.value.load(ordering: .relaxed) }
        let channel: Channel
        var port: Int { channel.localAddress!.port! }

        init() throws {
            let accepted = acceptedCounter
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    accepted.value.add(1, ordering: .relaxed)
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(Answerer())
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
        }

        func stop() throws {
            try channel.close().wait()
            try group.syncShutdownGracefully()
        }
    }

    final class Answerer: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        private var uri = ""

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case let .head(head): uri = head.uri
            case .body: break
            case .end:
                var headers = HTTPHeaders()
                let body: ByteBuffer
                switch uri {
                case "/never": return
                case "/big": body = ByteBuffer(repeating: UInt8(ascii: "x"), count: 2 << 20)
                case "/close":
                    body = ByteBuffer(string: "bye")
                    headers.add(name: "Connection", value: "close")
                default: body = ByteBuffer(string: #"{"path":"\#(uri)"}"#)
                }
                headers.add(name: "Content-Length", value: String(body.readableBytes))
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                let close = uri == "/close"
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                    if close { bound.value.close(promise: nil) }
                }
            }
        }
    }

    static func get(_ client: KeepAliveHTTPClient, _ path: String, timeout: TimeAmount = .seconds(10)) async -> Result<KeepAliveHTTPClient.Response, Error> {
        do {
            return .success(try await client.execute(method: .GET, path: path, headers: HTTPHeaders(), body: nil,
                                                     deadline: .now() + timeout).get())
        } catch {
            return .failure(error)
        }
    }

    /// Runs `body` with a new test server and a client of `connections` to it, then closes both.
    static func withClient(connections: Int, _ body: (TestServer, KeepAliveHTTPClient) async throws -> Void) async throws {
        let server = try TestServer()
        defer { try? server.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = KeepAliveHTTPClient(loop: group.next(), host: "127.0.0.1", port: server.port, connections: connections)
        do {
            try await body(server, client)
        } catch {
            try? await client.shutdown().get()
            try? await group.shutdownGracefully()
            throw error
        }
        try await client.shutdown().get()
        try await group.shutdownGracefully()
    }

    @Test("sequential requests share one connection; an answer with Connection: close costs the next request a new one")
    func reuse() async throws {
        try await Self.withClient(connections: 4) { server, client in
            for index in 0..<20 {
                let response = try await Self.get(client, "/ok/\(index)").get()
                #expect(response.status == 200)
                #expect(String(buffer: response.body) == #"{"path":"/ok/\#(index)"}"#)
            }
            #expect(server.accepted == 1, "twenty requests one after another on one kept-alive connection")
            #expect(try await Self.get(client, "/close").get().keepAlive == false)
            #expect(try await Self.get(client, "/ok").get().status == 200)
            #expect(server.accepted == 2, "the closed connection was replaced once")
        }
    }

    @Test("at most `connections` are open; the requests beyond wait in order and are all answered")
    func bounded() async throws {
        try await Self.withClient(connections: 3) { server, client in
            let answers = try await withThrowingTaskGroup(of: Int.self) { tasks in
                for index in 0..<60 { tasks.addTask { try await Self.get(client, "/ok/\(index)").get().status } }
                return try await tasks.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(answers.count == 60 && answers.allSatisfy { $0 == 200 })
            #expect(server.accepted <= 3, "\(server.accepted) connections for a limit of 3")
        }
    }

    @Test("no answer by the deadline is timedOut, and that connection is not used again")
    func timeout() async throws {
        try await Self.withClient(connections: 1) { server, client async throws in
            let silent = await Self.get(client, "/never", timeout: .milliseconds(200))
            #expect(throws: KeepAliveHTTPClient.Failure.timedOut) { try silent.get() }
            // Its late answer must never be taken for the next request's.
            #expect(try await Self.get(client, "/ok").get().status == 200)
            #expect(server.accepted == 2)
        }
    }

    @Test("deadlines are kept by one sweep: a silent request fails after its deadline, never before, while answered ones around it are untouched; the sweep stops when nothing is in flight")
    func deadlineSweep() async throws {
        try await Self.withClient(connections: 8) { _, client async throws in
            let sent = NIODeadline.now()
            let silent = client.execute(method: .GET, path: "/never", headers: HTTPHeaders(), body: nil, deadline: sent + .milliseconds(150))
            let failedAt = silent.map { _ in NIODeadline.now() }.recover { _ in NIODeadline.now() }
            for round in 0..<20 {
                #expect(try await Self.get(client, "/ok-\(round)", timeout: .seconds(10)).get().status == 200)
            }
            await #expect(throws: KeepAliveHTTPClient.Failure.timedOut) { try await silent.get() }
            let waited = try await failedAt.get() - sent
            #expect(waited >= .milliseconds(150), "failed \(waited.nanoseconds / 1_000_000) ms after sending, before its deadline")
            let stopped = try await ServerFixture.eventually(5) {
                try await client.loop.submit { !client.sweeping }.get()
            }
            #expect(stopped, "no request is in flight: the sweep stopped")
        }
    }

    @Test("a request whose deadline passes while it waits for a connection is expiredWaiting, never written")
    func expiredWhileWaiting() async throws {
        try await Self.withClient(connections: 1) { server, client async throws in
            // Both handed to the client's event loop back to back, in this
            // order, with no wait between that a busy task pool could stretch:
            // the silent one takes the only connection, the other waits for it.
            let silent = client.execute(method: .GET, path: "/never", headers: HTTPHeaders(), body: nil, deadline: .now() + .milliseconds(300))
            let waiter = client.execute(method: .GET, path: "/ok", headers: HTTPHeaders(), body: nil, deadline: .now() + .milliseconds(100))
            await #expect(throws: KeepAliveHTTPClient.Failure.expiredWaiting) { try await waiter.get() }
            await #expect(throws: KeepAliveHTTPClient.Failure.timedOut) { try await silent.get() }
            #expect(server.accepted == 1, "no connection was made for the request that expired waiting")
        }
    }

    @Test("a refused connection is cannotConnect, an oversized answer answerTooLarge")
    func failures() async throws {
        let server = try TestServer()
        let port = server.port
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = KeepAliveHTTPClient(loop: group.next(), host: "127.0.0.1", port: port, connections: 2)
        await #expect(throws: KeepAliveHTTPClient.Failure.answerTooLarge) { try await Self.get(client, "/big").get() }
        #expect(try await Self.get(client, "/ok").get().status == 200, "the client goes on after an oversized answer")
        try server.stop()
        try await client.shutdown().get()
        let refused = KeepAliveHTTPClient(loop: group.next(), host: "127.0.0.1", port: port, connections: 2)
        let result = await Self.get(refused, "/ok")
        guard case let .failure(error as KeepAliveHTTPClient.Failure) = result, case .cannotConnect = error else {
            Issue.record("expected cannotConnect, got \(result)")
            return
        }
        try await refused.shutdown().get()
        try await group.shutdownGracefully()
    }
}

@Suite("Delayed work: one heap and one sweep for many timers")
struct DelayedWorkTests {
    @Test("work runs in the order of its times, never before its time, ties in the order scheduled; the sweep stops when nothing waits")
    func orderAndTiming() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let delays = DelayedWork(loop: group.next(), granularity: .milliseconds(5))
        let runs = Mutex<[(label: String, late: Int64)]>([])
        let start = NIODeadline.now()
        // Scheduled out of order; two share a delay.
        for (label, milliseconds) in [("c", 90), ("a", 30), ("b1", 60), ("b2", 60), ("d", 0)] {
            let due = start + .milliseconds(Int64(milliseconds))
            delays.schedule(in: .milliseconds(Int64(milliseconds))) {
                let late = (NIODeadline.now() - due).nanoseconds
                runs.withLock { $0.append((label, late)) }
            }
        }
        let done = try await ServerFixture.eventually(10) { runs.withLock { $0.count } == 5 }
        #expect(done)
        let seen = runs.withLock { $0 }
        #expect(seen.map(\.label) == ["d", "a", "b1", "b2", "c"])
        for run in seen { #expect(run.late >= 0, "\(run.label) ran \(-run.late) ns before its time") }
        let stopped = try await ServerFixture.eventually(5) {
            try await delays.loop.submit { !delays.sweeping && delays.count == 0 }.get()
        }
        #expect(stopped, "nothing waits: the sweep stopped")
        try await group.shutdownGracefully()
    }
}
