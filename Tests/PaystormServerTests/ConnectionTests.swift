import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import PaystormServer

@Suite("HTTP connections: a stalled request does not hold its connection forever")
struct ConnectionTests {
    @Test("a request whose body stops arriving is closed after the idle timeout")
    func stalledUploadIsClosed() async throws {
        let directory = TemporaryDirectory()
        let runner = try ServerFixture.runner(in: directory)
        try runner.start()
        let server = try PaymentServer.httpServer(certificate: nil, key: nil, idleTimeout: .milliseconds(500))
        let app = Application(router: ServerFixture.api(runner).router(), server: server, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            // Headers and 10 of the 100 bytes promised, then nothing.
            let request = "POST /payments HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk_test_m1\r\n"
                + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user_id\""
            let (closed, seconds, _) = try await Self.sendThenWaitForClose(request, port: port, giveUpAfterSeconds: 10)
            #expect(closed, "the server still held the stalled connection after 10 s")
            #expect(seconds < 8, "closed after \(seconds) s")
        }
        await runner.stop()
    }

    /// Connects to 127.0.0.1:`port`, sends `text`, and reads until the
    /// server closes the connection or `giveUpAfterSeconds` pass without a
    /// byte: whether it closed, after how long, and what it answered. On a
    /// thread of its own: the reads block.
    static func sendThenWaitForClose(_ text: String, port: Int, giveUpAfterSeconds: Int) async throws
        -> (closed: Bool, seconds: Double, answer: String)
    {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0, "connect: errno \(errno)")
        var timeout = timeval(tv_sec: giveUpAfterSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(text.utf8)
        try #require(send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count)
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                defer { close(fd) }
                let start = ContinuousClock.now
                var buffer = [UInt8](repeating: 0, count: 4_096)
                var answer: [UInt8] = []
                while true {
                    let read = recv(fd, &buffer, buffer.count, 0)
                    if read > 0 {  // whatever the server says before it closes
                        answer += buffer[..<read]
                        continue
                    }
                    let closed = read == 0 || errno == ECONNRESET
                    let elapsed = ContinuousClock.now - start
                    continuation.resume(returning: (closed, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                                                    String(decoding: answer, as: UTF8.self)))
                    return
                }
            }
        }
    }
}
