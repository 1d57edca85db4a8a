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

    /// The live (not zombie) children of `parent`, from /proc.
    static func children(of parent: Int32) -> [Int32] {
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init)
        return pids.filter { pid in
            // After the command name, which may hold spaces: state, then the parent's pid.
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            return fields.count > 1 && fields[0] != "Z" && Int32(fields[1]) == parent
        }
    }

    /// Whether `pid` is still a live process (a zombie is not).
    static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: end)...].hasPrefix(" Z")
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

    /// A `bench server` offering a small rate for a minute, once both its
    /// children run and serve has opened its database; its standard error,
    /// children and temporary directory.
    func startBenchServer() throws -> (Process, Pipe, [Int32], String) {
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable), "build the executable first (swift build --build-tests)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["bench", "server", "--rates", "50", "--duration", "60", "--warmup", "0"]
        process.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        process.standardError = err
        try process.run()
        let parent = process.processIdentifier
        let directory = NSTemporaryDirectory() + "paystorm-bench-server-\(parent)-1"
        var children: [Int32] = []
        let startBy = Date().addingTimeInterval(15)
        while Date() < startBy, children.count < 2 || !FileManager.default.fileExists(atPath: directory + "/bench.sqlite") {
            usleep(50_000)
            children = Self.children(of: parent)
        }
        if children.count < 2 { kill(parent, SIGKILL) }
        try #require(children.count == 2, "bench server started \(children.count) children")
        usleep(300_000)
        return (process, err, children, directory)
    }

    /// Ctrl-C used to end bench server alone: serve and the sandbox (each in
    /// a process group of its own) went on serving, adopted by init, holding
    /// their ports and database, and the temporary directory stayed.
    @Test("bench server: SIGINT or SIGTERM stops its children, removes its temporary directory and exits 130 or 143")
    func benchServerStopsChildrenOnSignal() throws {
        for (signal, expected) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143))] {
            let (process, err, children, directory) = try startBenchServer()
            let parent = process.processIdentifier
            defer {
                Self.killAll(children.filter(Self.alive))
                if process.isRunning { kill(parent, SIGKILL) }
                try? FileManager.default.removeItem(atPath: directory)
            }
            kill(parent, signal)
            let stopBy = Date().addingTimeInterval(10)
            while process.isRunning, Date() < stopBy { usleep(50_000) }
            #expect(!process.isRunning, "bench server still runs 10 s after signal \(signal)")
            if process.isRunning { kill(parent, SIGKILL) }
            process.waitUntilExit()
            let error = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationReason == .exit && process.terminationStatus == expected,
                    "signal \(signal): \(process.terminationReason == .exit ? "exited" : "killed by signal") \(process.terminationStatus): \(error)")
            #expect(children.filter(Self.alive).isEmpty, "signal \(signal): children \(children.filter(Self.alive)) outlived bench server")
            #expect(!FileManager.default.fileExists(atPath: directory), "signal \(signal): \(directory) was left behind")
        }
    }

    /// Both used to be found only once the run began, as Foundation's errors (NSCocoaErrorDomain 516, 513), exit 1.
    @Test("bench server --keep: a file, or a place where the directory cannot be made, is refused up front with 64, naming it")
    func benchServerKeepUnusable() throws {
        let file = try temporaryFile("keep-is-a-file", "")
        let onFile = try paystorm(["bench", "server", "--rates", "50", "--duration", "1", "--keep", file], timeoutSeconds: 30)
        #expect(onFile.status == 64, "\(onFile.status): \(onFile.error)")
        #expect(onFile.error.contains("--keep: \(file) is a file, not a directory"), "\(onFile.error)")
        let below = try paystorm(["bench", "server", "--rates", "50", "--duration", "1", "--keep", file + "/run"], timeoutSeconds: 30)
        #expect(below.status == 64 && below.error.contains("--keep: \(file) is a file, not a directory"), "\(below.error)")
        // Root may write anywhere a permission allows, but not in /sys; anyone else not in a directory without write permission.
        let readOnly: String
        if getuid() == 0 {
            readOnly = "/sys/paystorm-keep-\(getpid())"
        } else {
            readOnly = scratch + "/read-only"
            try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: true)
            chmod(readOnly, 0o555)
        }
        let target = readOnly + "/kept"
        let refused = try paystorm(["bench", "server", "--rates", "50", "--duration", "1", "--keep", target], timeoutSeconds: 30)
        #expect(refused.status == 64, "\(refused.status): \(refused.error)")
        #expect(refused.error.contains("--keep: cannot create \(getuid() == 0 ? readOnly : target): "), "\(refused.error)")
        #expect(!refused.error.contains("NSCocoaErrorDomain") && !onFile.error.contains("NSCocoaErrorDomain"))
        #expect(!refused.output.contains("durable POST") && !onFile.output.contains("durable POST"), "refused before anything started")
    }

    /// --duration 1e12 was taken; 0.001 ran and exited 0 with no sample; --rates 0.4 printed "offered 0/s", 1.5 "offered 2/s".
    @Test("bench server: --duration in 1...86400 and --warmup in 0...3600, a rate that would send nothing refused, offered rates shown as given")
    func benchServerDurationAndRates() throws {
        // Tiny rates, so that a build that takes the duration does not build a schedule of billions of requests.
        for (arguments, message) in [
            (["--rates", "0.000001", "--duration", "1e12"], "--duration: expected seconds in 1...86400 (a day), found 1000000000000"),
            (["--rates", "2500", "--duration", "0.001"], "--duration: expected seconds in 1...86400 (a day), found 0.001"),
            (["--rates", "0.01", "--duration", "100", "--warmup", "4000"], "--warmup: expected seconds in 0...3600 (an hour), found 4000"),
            (["--rates", "50,0.4", "--duration", "1", "--warmup", "0"], "--rates: 0.4/s for --duration 1 s would send no request"),
            // A schedule of 8.6 billion requests used to be built in memory before anything was sent.
            (["--rates", "100000", "--duration", "86400"], "--rates: 100000/s for 86400 s is 8640000000 requests; the schedule is kept in memory, at most 20000000 a run"),
        ] {
            let result = try paystorm(["bench", "server"] + arguments, timeoutSeconds: 20)
            #expect(result.status == 64 && result.error.contains(message), "\(arguments): \(result.status) \(result.error)")
        }
        let fractional = try paystorm(["bench", "server", "--rates", "1.5", "--duration", "2", "--warmup", "0"], timeoutSeconds: 60)
        #expect(fractional.status == 0, "\(fractional.error)")
        #expect(fractional.output.contains("\noffered 1.5/s for 2 s: "), "\(fractional.output)")
        #expect(!fractional.output.contains("offered 2/s"), "\(fractional.output)")
    }

    /// SIGKILL reaches no handler of bench server: its children used to serve on forever, adopted by init.
    @Test("bench server killed with SIGKILL: serve and the sandbox notice their parent is gone and stop within seconds")
    func benchServerChildrenStopWithKilledParent() throws {
        let (process, _, children, directory) = try startBenchServer()
        defer {
            Self.killAll(children.filter(Self.alive))
            try? FileManager.default.removeItem(atPath: directory)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let stopBy = Date().addingTimeInterval(15)
        while Date() < stopBy, !children.filter(Self.alive).isEmpty { usleep(100_000) }
        #expect(children.filter(Self.alive).isEmpty, "children \(children.filter(Self.alive)) still run 15 s after their parent was killed")
    }
}
