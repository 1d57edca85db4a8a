import Foundation
import Testing

/// `bench server` and the `serve` and `psp-sandbox` children it starts.
extension CLITests {
    /// The processes whose standard error is `log`: a bench server's children
    /// are found by the log files in its --keep directory, even once orphaned.
    static func processes(writingTo log: String) -> [Int32] {
        let target = URL(fileURLWithPath: log).resolvingSymlinksInPath().path
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init)
        return pids.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\($0)/fd/2")) == target }
    }

    /// Kills what a test left running, so that a failing test does not leak servers.
    static func killAll(_ pids: [Int32]) {
        for pid in pids { kill(pid, SIGKILL) }
    }

    /// It used to wait for the server's health for minutes, saying nothing, while serve had long exited.
    @Test("bench server: a child that cannot start ends the wait at once, quoting its error and naming its log (64 for bad input)")
    func benchServerChildFailsToStart() throws {
        let kept = scratch + "/bench-server-locked"
        // serve cannot take its database's lock where a directory stands in the lock file's place.
        try FileManager.default.createDirectory(atPath: kept + "/bench.sqlite.lock", withIntermediateDirectories: true)
        defer { Self.killAll(Self.processes(writingTo: kept + "/sandbox.log") + Self.processes(writingTo: kept + "/serve.log")) }
        let started = Date()
        let result = try paystorm(["bench", "server", "--rates", "100", "--duration", "1", "--warmup", "0", "--keep", kept], timeoutSeconds: 30)
        let seconds = Date().timeIntervalSince(started)
        #expect(result.status == 64, "\(result.status): \(result.error)")
        #expect(result.error.contains("bench server: paystorm serve did not start: Error: --database: cannot open the lock file \(kept)/bench.sqlite.lock: Is a directory"),
                "\(result.error)")
        #expect(result.error.contains("its log: \(kept)/serve.log"), "\(result.error)")
        #expect(!result.output.contains("durable POST /payments"), "no rate was offered: \(result.output)")
        #expect(seconds < 15, "it took \(seconds) s to notice")
        // The sandbox, which did start, was stopped with it.
        #expect(Self.processes(writingTo: kept + "/sandbox.log").isEmpty, "the sandbox outlived bench server")
    }
}
