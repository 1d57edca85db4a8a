import Foundation
import PaystormServer

/// The `psp-sandbox` and `serve` processes a `bench server` run starts, and
/// what stops them: the run's end, one of them failing to start, or SIGINT or
/// SIGTERM to `bench server`. Left alone, a child outlives its parent, adopted
/// by init, still holding its port and database.
///
/// One per process (``shared``): signal dispositions are the process's.
final class BenchServerChildren: @unchecked Sendable {
    /// A started child and the file its standard error goes to.
    struct Child {
        /// How messages name it: `paystorm serve`, `paystorm psp-sandbox`.
        let name: String
        let process: Process
        let log: String
    }

    /// A child that did not come up; `exitStatus` is what `bench server` exits with.
    struct StartFailure: Error, CustomStringConvertible {
        var description: String
        var exitStatus: Int32
        /// Refused because a signal is stopping the run: nothing to say.
        var interrupted = false
    }

    static let shared = BenchServerChildren()

    /// How long a child stopped on SIGINT or SIGTERM gets to drain before SIGKILL.
    static let interruptedGraceSeconds = 5.0
    /// How long a child gets at a run's end: it drains the backlog of the last rate.
    static let finishedGraceSeconds = 30.0
    /// The bound on waiting for both children's `GET /health`.
    static let startTimeoutSeconds = 30.0

    private let lock = NSLock()
    // Guarded by `lock`.
    private var running: [Child] = []
    private var temporaryDirectory: String?
    private var stopping = false
    private var signalSources: [any DispatchSourceSignal] = []

    /// From now on SIGINT and SIGTERM stop the children, remove the run's
    /// temporary directory and end this process with 128 + the signal's number.
    func stopOnSignals() {
        lock.lock()
        defer { lock.unlock() }
        guard signalSources.isEmpty else { return }
        signalSources = Interrupts.handle { [unowned self] number in self.stopAndExit(signal: number) }
    }

    /// The directory to remove if a signal ends the run; nil for a `--keep` directory.
    func setTemporaryDirectory(_ directory: String?) {
        lock.withLock { temporaryDirectory = directory }
    }

    /// Starts this executable with `arguments`, its standard error to `log`
    /// (created or emptied), its standard output discarded.
    func start(_ name: String, _ executable: String, _ arguments: [String], log: String) throws -> Child {
        guard FileManager.default.createFile(atPath: log, contents: nil), let handle = FileHandle(forWritingAtPath: log) else {
            throw StartFailure(description: "bench server: cannot create \(log)", exitStatus: 1)
        }
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardError = handle
        process.standardOutput = FileHandle.nullDevice
        var environment = ProcessInfo.processInfo.environment
        environment[Self.parentVariable] = String(getpid())
        process.environment = environment
        let child = Child(name: name, process: process, log: log)
        // Under the lock, so that a signal handled meanwhile either sees this child or stops the start.
        lock.lock()
        defer { lock.unlock() }
        guard !stopping else { throw StartFailure(description: "", exitStatus: 1, interrupted: true) }
        try process.run()
        running.append(child)
        return child
    }

    /// Stops `child` if it still runs: SIGTERM, then SIGKILL after
    /// `graceSeconds`. It stays among the running children until it has
    /// ended, so that a signal meanwhile (a user tired of waiting for the
    /// last rate's drain) stops it too, and removes the directory only
    /// after it.
    func stop(_ child: Child, graceSeconds: Double = finishedGraceSeconds) {
        Self.terminate([child.process], graceSeconds: graceSeconds)
        lock.withLock { running.removeAll { $0.process === child.process } }
    }

    /// Waits until every `(child, url)` answers `GET url/health` with 200.
    /// Fails as soon as any of `children` has exited, quoting the error lines
    /// of its log, and after ``startTimeoutSeconds`` at most.
    func waitUntilHealthy(_ targets: [(child: Child, url: String)], children: [Child]) async throws {
        let deadline = WallClock.monotonic() + Int64(Self.startTimeoutSeconds * 1e9)
        for target in targets {
            while true {
                if let exited = children.first(where: { !$0.process.isRunning }) {
                    // Stopped by a signal's handler, it is no failure to report.
                    await waitIfStopping()
                    throw Self.exitFailure(exited)
                }
                if (try? await LoadGenerator.health(target.url, timeout: .milliseconds(500))) != nil { break }
                if WallClock.monotonic() >= deadline {
                    try await failIfNotStopping(StartFailure(
                        description: "bench server: \(target.child.name) did not answer GET \(target.url)/health within "
                            + String(format: "%.0f", Self.startTimeoutSeconds) + " s; its log: \(target.child.log)",
                        exitStatus: 1))
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// A child that exited during start-up, in words: its own error lines and where its whole log is.
    static func exitFailure(_ child: Child) -> StartFailure {
        waitUntilEnded([child.process])
        let status = child.process.terminationStatus
        let signalled = child.process.terminationReason == .uncaughtSignal
        let text = (try? String(contentsOfFile: child.log, encoding: .utf8)) ?? ""
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let errors = lines.filter { $0.localizedCaseInsensitiveContains("error") }
        let quoted = (errors.isEmpty ? Array(lines.suffix(5)) : Array(errors.prefix(5)))
        let how = signalled ? "was killed by signal \(status)" : "exited \(status)"
        var description = "bench server: \(child.name) did not start: " + (quoted.first ?? "it wrote nothing to its log")
        for line in quoted.dropFirst() { description += "\n  " + line }
        description += "\n  (it \(how); its log: \(child.log))"
        // 64 is the child refusing its input, which is bench server's input too.
        return StartFailure(description: description, exitStatus: !signalled && status == 64 ? 64 : 1)
    }

    /// The environment variable that tells a child the pid of the `bench server` it must not outlive.
    static let parentVariable = "PAYSTORM_BENCH_SERVER_PID"

    /// In a child started by `bench server` (``parentVariable`` set), stops
    /// this process once that parent is gone, even killed with SIGKILL, which
    /// no handler of the parent sees: SIGTERM to itself (a graceful stop),
    /// SIGKILL 10 s later if that did not end it. The parent is looked for once a
    /// second. Not PR_SET_PDEATHSIG: that fires when the *thread* that
    /// started the child ends, and Foundation starts it on the calling thread,
    /// here one of the concurrency pool's, which may end while the parent runs.
    static func stopWithParentIfAsked() {
        guard let text = ProcessInfo.processInfo.environment[parentVariable], let parent = pid_t(text), parent > 1 else { return }
        let watcher = Thread {
            while getppid() == parent { sleep(1) }
            kill(getpid(), SIGTERM)
            sleep(10)
            kill(getpid(), SIGKILL)
        }
        watcher.name = "bench-server-parent-watch"
        watcher.start()
    }

    /// Returns at once unless a signal is stopping this process; else waits
    /// for the signal's handler to end it. Stopped by the handler, the children
    /// exit and the run fails: that is no failure to report, nor an exit status.
    func waitIfStopping() async {
        if lock.withLock({ stopping }) { try? await Task.sleep(for: .seconds(Self.interruptedGraceSeconds * 4)) }
    }

    private func failIfNotStopping(_ failure: StartFailure) async throws {
        await waitIfStopping()
        throw failure
    }

    private func stopAndExit(signal number: Int32) {
        lock.lock()
        let alreadyStopping = stopping
        stopping = true
        let children = running, directory = temporaryDirectory
        lock.unlock()
        guard !alreadyStopping else { return }
        Self.terminate(children.map(\.process), graceSeconds: Self.interruptedGraceSeconds)
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
        let name = number == SIGINT ? "SIGINT" : "SIGTERM"
        FileHandle.standardError.write(Data("bench server: \(name): stopped the server and the PSP sandbox\n".utf8))
        fflush(nil)
        // Not exit(): the run's tasks are still going on other threads; no atexit work may race them.
        _exit(128 + number)
    }

    /// SIGTERM to each of `processes` still running; SIGKILL to those still
    /// running `graceSeconds` later; returns once all have ended.
    private static func terminate(_ processes: [Process], graceSeconds: Double) {
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = WallClock.monotonic() + Int64(graceSeconds * 1e9)
        while processes.contains(where: \.isRunning), WallClock.monotonic() < deadline { usleep(20_000) }
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        waitUntilEnded(processes)
    }

    /// Polls rather than `Process.waitUntilExit()`, which is not safe to
    /// call on one process from two threads, as a signal's handler and the
    /// run's own stop may.
    private static func waitUntilEnded(_ processes: [Process]) {
        while processes.contains(where: \.isRunning) { usleep(10_000) }
    }
}
