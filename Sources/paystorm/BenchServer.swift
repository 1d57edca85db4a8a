import ArgumentParser
import AsyncHTTPClient
import Foundation
import PaystormEngine
import PaystormScenario
import PaystormServer

extension Paystorm.Bench {
    struct Server: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "server",
            abstract: "Durable POST /payments through the PSP sandbox on loopback, open loop: accepted payments/s and latency per rate.",
            discussion: """
                Starts `paystorm psp-sandbox` and `paystorm serve` (this same executable, on a fresh WAL database in a \
                temporary directory) as child processes, then offers each --rates value in turn for --duration seconds \
                from this process, open loop, and prints accepted payments/s and latency percentiles (from each \
                request's scheduled send time), then the CPU each process spent per accepted payment: on a machine \
                this small the three share the cores, and the figures show where a payment's cost goes. Payments/s \
                are counted to the last acceptance: past capacity the answers run on after the offered seconds. Last, \
                how far the outbox relay and the consumers (ledger, wallet, notifications) were behind at the rate's \
                end: the server answers requests first, so a rate it answers in full but cannot keep up with shows \
                here, as seconds of that rate's payments not yet through the consumers (the backlog carries over to \
                the next rate). Build with `-c release`.

                With --runs N the whole measurement is made N times, one after another, each with a new server, \
                sandbox and database, and each rate ends with the median, best and worst of its runs: on a machine \
                whose speed drifts, p99 is a spread, not one figure.

                If the server or the sandbox exits while starting, bench server stops the other and exits with \
                its error lines (64 when it refused its input). SIGINT or SIGTERM stops both, removes the temporary \
                directory (not a --keep one) and exits 130 or 143; killed outright, bench server leaves them to \
                notice within a second that it is gone and stop.

                Example: paystorm bench server --rates 2500,5000 --duration 20
                Example: paystorm bench server --rates 2500 --duration 15 --runs 5
                """)

        @Option(help: "Offered rates, payments per second, comma-separated.") var rates = "2500,5000"
        @Option(help: "Seconds per rate.") var duration = 20.0
        @Option(help: "Seconds of load before each measured rate, not counted.") var warmup = 3.0
        @Option(help: "Sandbox profile: default (the simulator's PSPs: 150 ms, errors, webhooks) or ideal.") var pspProfile = "default"
        @Option(help: "Client connections of the load generator.") var connections = 256
        @Option(help: "HTTP connections from the server to the sandbox PSP, at most (serve --psp-connections).") var pspConnections = 1_024
        @Option(help: "Keep the database and logs here instead of a temporary directory (in run-1, run-2, … with --runs above 1); it must not hold a database from an earlier run.") var keep: String?
        @Flag(help: "Also deliver merchant notifications over HTTP to the sandbox (two more requests per payment); by default they are accepted in process.") var notify = false
        @Option(help: "Runs, one after another, each with a new server, sandbox and database; each rate then ends with the median, best and worst of its runs.") var runs = 1

        func offeredRates() throws -> [Double] {
            try rates.split(separator: ",", omittingEmptySubsequences: false).map { text -> Double in
                guard let rate = Double(text.trimmingCharacters(in: .whitespaces)), rate > 0, rate.isFinite else {
                    throw ValidationError("--rates: expected comma-separated payments/s, found \"\(text)\"")
                }
                return rate
            }
        }

        func validate() throws {
            let offered = try offeredRates()
            // Below a second a rate yields no figure worth printing; past a day (an hour of warm-up) a typo, not a plan.
            guard (1...86_400).contains(duration) else {
                throw ValidationError("--duration: expected seconds in 1...86400 (a day), found \(Self.figure(duration))")
            }
            guard (0...3_600).contains(warmup) else {
                throw ValidationError("--warmup: expected seconds in 0...3600 (an hour), found \(Self.figure(warmup))")
            }
            // The warm-up and the measured load are each one schedule.
            let longest = max(duration, warmup)
            for rate in offered where rate * longest > Double(LoadGenerator.maximumRequests) {
                throw ValidationError("--rates: \(Self.figure(rate))/s for \(Self.figure(longest)) s is \(Int(rate * longest)) requests; "
                                      + "the schedule is kept in memory, at most \(LoadGenerator.maximumRequests) a run")
            }
            for rate in offered where rate * duration < 1 {
                throw ValidationError("--rates: \(Self.figure(rate))/s for --duration \(Self.figure(duration)) s would send no request; "
                                      + "expected a rate × duration of at least 1")
            }
            guard pspConnections >= 1 else { throw ValidationError("--psp-connections: expected at least 1") }
            guard connections >= 1 else { throw ValidationError("--connections: expected at least 1") }
            guard ["default", "ideal"].contains(pspProfile) else { throw ValidationError("--psp-profile: expected default or ideal, found \"\(pspProfile)\"") }
            guard (1...100).contains(runs) else { throw ValidationError("--runs must be in 1...100, got \(runs)") }
            if let keep {
                for number in 1...runs {
                    let directory = directory(run: number, keep: keep)
                    if FileManager.default.fileExists(atPath: directory + "/bench.sqlite") {
                        // Its payments' idempotency keys are the generator's again: every request would be a replay.
                        throw ValidationError("--keep: \(directory)/bench.sqlite exists from an earlier run; give an empty directory")
                    }
                    // Made here, not once the run starts, so that a place that cannot hold it is bad input, said plainly.
                    if let problem = Self.makeDirectory(directory) { throw ValidationError("--keep: \(problem)") }
                }
            }
        }

        /// Creates `path` and its missing parents; what stood in the way, in words, or nil.
        static func makeDirectory(_ path: String) -> String? {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
                if !isDirectory.boolValue { return "\(path) is a file, not a directory" }
                return access(path, W_OK | X_OK) == 0 ? nil : "cannot write in \(path): \(String(cString: strerror(errno)))"
            }
            let parent = (path as NSString).deletingLastPathComponent
            if !parent.isEmpty, parent != path, let problem = makeDirectory(parent) { return problem }
            guard mkdir(path, 0o777) == 0 else { return "cannot create \(path): \(String(cString: strerror(errno)))" }
            return nil
        }

        /// A rate or a number of seconds as given: at most 2 decimals, trailing zeros
        /// dropped (2500, 1.5, 0.4); a positive value that would round to 0 in full (%g).
        static func figure(_ value: Double) -> String {
            var text = String(format: "%.2f", value)
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
            return text == "0" && value != 0 ? String(format: "%g", value) : text
        }

        /// Where run `number` keeps its database and logs under `--keep`.
        func directory(run number: Int, keep: String) -> String {
            runs > 1 ? "\(keep)/run-\(number)" : keep
        }

        /// What one run measured at one rate.
        struct RateFigures {
            var accepted: Double
            /// Latency percentiles in milliseconds; nil when nothing was answered.
            var p50: Double?
            var p99: Double?
            /// CPU µs per accepted payment: server, sandbox, generator; nil where /proc could not be read.
            var cpu: [Double]?
            var busyPercent: Double?
            /// Seconds of the rate's payments not yet through the consumers at its end; nil when the server could not say.
            var behindSeconds: Double?
        }

        func run() async throws {
            BenchServerChildren.shared.stopOnSignals()
            do {
                try await measureEveryRun()
            } catch {
                await BenchServerChildren.shared.waitIfStopping()
                throw error
            }
            await BenchServerChildren.shared.waitIfStopping()
        }

        /// Every run, each rate's figures, and with --runs above 1 their summary.
        func measureEveryRun() async throws {
            let offered = try offeredRates()
            var figures: [[RateFigures]] = []
            var failures: [String] = []
            for number in 1...runs {
                if runs > 1 { print("run \(number) of \(runs)") }
                let directory = keep.map { self.directory(run: number, keep: $0) } ?? NSTemporaryDirectory() + "paystorm-bench-server-\(getpid())-\(number)"
                // Interrupted, a run's logs are not worth a directory left behind; a --keep one stays.
                BenchServerChildren.shared.setTemporaryDirectory(keep == nil ? directory : nil)
                do {
                    figures.append(try await measure(offered, in: directory))
                } catch let failure as BenchServerChildren.StartFailure where failure.interrupted {
                    await BenchServerChildren.shared.waitIfStopping()
                    throw ExitCode(failure.exitStatus)
                } catch let failure as BenchServerChildren.StartFailure where failure.exitStatus == ExitStatus.badInput.rawValue || runs == 1 {
                    // A child refusing its input refuses it in every run: stop here, with the child's own words.
                    FileHandle.standardError.write(Data((failure.description + "\n").utf8))
                    throw ExitCode(failure.exitStatus)
                } catch {
                    // The runs done so far still count; this one's logs stay.
                    guard runs > 1 else { throw error }
                    print("run \(number) of \(runs) failed: \(error)")
                    failures.append("run \(number): \(error)")
                }
            }
            guard runs > 1 else { return }
            if !figures.isEmpty { summarize(figures, offered) }
            if !failures.isEmpty {
                throw ValidationError("\(failures.count) of \(runs) runs failed (" + failures.joined(separator: "; ") + ")")
            }
        }

        /// Each rate's median over the runs, with the range each figure took:
        /// best and worst are each figure's own, not one run's.
        func summarize(_ figures: [[RateFigures]], _ offered: [Double]) {
            print("over \(figures.count) runs, the median (best and worst, each figure's own):")
            for (index, rate) in offered.enumerated() {
                let runsOfRate = figures.map { $0[index] }
                func median(_ sorted: [Double]) -> Double { (sorted[(sorted.count - 1) / 2] + sorted[sorted.count / 2]) / 2 }
                func f(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
                func partial(_ values: [Double]) -> String { values.count < figures.count ? " from \(values.count) of \(figures.count) runs" : "" }
                func spread(_ values: [Double], _ unit: String, _ digits: Int, lowIsBest: Bool = true) -> String {
                    guard !values.isEmpty else { return "n/a" }
                    let sorted = values.sorted()
                    let (best, worst) = lowIsBest ? (sorted.first!, sorted.last!) : (sorted.last!, sorted.first!)
                    return "\(f(median(sorted), digits))\(unit) (best \(f(best, digits)), worst \(f(worst, digits)))" + partial(values)
                }
                func range(_ values: [Double], _ unit: String, _ digits: Int) -> String {
                    guard !values.isEmpty else { return "n/a" }
                    let sorted = values.sorted()
                    return "\(f(median(sorted), digits))\(unit) (\(f(sorted.first!, digits))–\(f(sorted.last!, digits))\(unit))" + partial(values)
                }
                print("  offered \(Self.figure(rate))/s: accepted " + spread(runsOfRate.map(\.accepted), " payments/s", 0, lowIsBest: false)
                      + "; p50 " + spread(runsOfRate.compactMap(\.p50), " ms", 2) + "; p99 " + spread(runsOfRate.compactMap(\.p99), " ms", 2)
                      + "; consumers behind at the end " + spread(runsOfRate.compactMap(\.behindSeconds), " s", 1)
                      + "; server CPU " + spread(runsOfRate.compactMap { $0.cpu?[0] }, " µs a payment", 0)
                      + "; machine busy " + range(runsOfRate.compactMap(\.busyPercent), "%", 0))
            }
        }

        /// One measurement of every rate, with its own server, sandbox and database in `directory`.
        func measure(_ offered: [Double], in directory: String) async throws -> [RateFigures] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let serverPort = try freePort(), sandboxPort = try freePort()
            let executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
            // A run that fails keeps its directory, so that its logs can be read.
            var finished = false
            defer { if keep == nil && finished { try? FileManager.default.removeItem(atPath: directory) } }
            let sandboxChild = try BenchServerChildren.shared.start(
                "paystorm psp-sandbox", executable,
                ["psp-sandbox", "--port", String(sandboxPort), "--profile", pspProfile,
                 "--webhook-url", "http://127.0.0.1:\(serverPort)/webhook"], log: directory + "/sandbox.log")
            defer { BenchServerChildren.shared.stop(sandboxChild) }
            let serverChild = try BenchServerChildren.shared.start(
                "paystorm serve", executable,
                ["serve", "--port", String(serverPort), "--database", directory + "/bench.sqlite", "--quiet",
                 "--rate-limit", "0", "--psp-url", "http://127.0.0.1:\(sandboxPort)",
                 "--psp-connections", String(pspConnections)]
                    + (notify ? ["--notify-url", "http://127.0.0.1:\(sandboxPort)/notifications"] : []),
                log: directory + "/serve.log")
            defer { BenchServerChildren.shared.stop(serverChild) }
            let sandbox = sandboxChild.process, server = serverChild.process
            let url = "http://127.0.0.1:\(serverPort)"
            // Either child exiting ends the wait at once: the other is stopped by its defer.
            try await BenchServerChildren.shared.waitUntilHealthy([(serverChild, url), (sandboxChild, "http://127.0.0.1:\(sandboxPort)")],
                                                           children: [serverChild, sandboxChild])
            print("bench server: durable POST /payments (WAL, synchronous FULL, group commit) through the \(pspProfile) PSP sandbox, loopback, \(ProcessInfo.processInfo.activeProcessorCount) cores")
            var figures: [RateFigures] = []
            for (index, rate) in offered.enumerated() {
                if warmup > 0 {
                    var options = LoadGenerator.Options(url: url, rate: rate, durationSeconds: warmup)
                    options.seed = UInt64(1_000 + index)
                    options.connections = connections
                    _ = try await LoadGenerator.run(options)
                }
                var options = LoadGenerator.Options(url: url, rate: rate, durationSeconds: duration)
                options.seed = UInt64(index + 1)
                options.connections = connections
                let processes = [server.processIdentifier, sandbox.processIdentifier, getpid()]
                let cpuBefore = processes.map(Self.cpuSeconds), wallBefore = WallClock.monotonic()
                let result = try await LoadGenerator.run(options)
                let cpuAfter = processes.map(Self.cpuSeconds), wall = Double(WallClock.monotonic() - wallBefore) / 1e9
                // CPU seconds of each process over the rate's run; nil where /proc could not be read.
                let cpu = zip(cpuBefore, cpuAfter).compactMap { before, after in before.flatMap { b in after.map { $0 - b } } }
                let accepted = result.samples.filter { $0.status == 200 || $0.status == 201 }
                let latencies = result.samples.filter { $0.status > 0 && $0.status < 500 }.map { Double($0.latencyNanoseconds) / 1e6 }.sorted()
                func quantile(_ q: Double) -> Double? {
                    latencies.isEmpty ? nil : latencies[min(latencies.count - 1, max(0, Int((q * Double(latencies.count)).rounded(.up)) - 1))]
                }
                func p(_ q: Double) -> String { quantile(q).map { String(format: "%.2f ms", $0) } ?? "n/a" }
                let failures = result.samples.count - accepted.count
                let refused = Dictionary(grouping: result.samples.filter { $0.status != 200 && $0.status != 201 }, by: \.status)
                    .sorted { $0.key < $1.key }
                    .map { $0.key == 0 ? "no answer ×\($0.value.count)" + (result.unsent > 0 ? " (\(result.unsent) never sent within half their timeout: all \(connections) connections busy, or the generator behind)" : "")
                                       : "HTTP \($0.key) ×\($0.value.count)" }
                // Per second from the first request due to the last acceptance:
                // past capacity the answers run on after the offered seconds end.
                let acceptedPerSecond = Double(accepted.count) / max(duration, result.acceptedSeconds)
                print("offered \(Self.figure(rate))/s for \(Self.figure(duration)) s: "
                      + String(format: "%.0f payments/s accepted (%d of %d; %d not accepted); latency p50 %@, p99 %@, p99.9 %@, max %@; generator lag at worst %.1f ms",
                             acceptedPerSecond, accepted.count, result.samples.count, failures,
                             p(0.5), p(0.99), p(0.999), p(1), result.maximumSendLagSeconds * 1_000)
                      + (refused.isEmpty ? "" : "; not accepted: " + refused.joined(separator: ", ")))
                var measured = RateFigures(accepted: acceptedPerSecond, p50: quantile(0.5), p99: quantile(0.99))
                if !accepted.isEmpty, cpu.count == processes.count {
                    let perPayment = cpu.map { $0 / Double(accepted.count) * 1e6 }
                    let busy = cpu.reduce(0, +) / wall / Double(ProcessInfo.processInfo.activeProcessorCount) * 100
                    print(String(format: "  CPU per accepted payment: server %.0f µs, PSP sandbox %.0f µs, load generator %.0f µs; the machine's %d cores %.0f%% busy with them",
                                 perPayment[0], perPayment[1], perPayment[2], ProcessInfo.processInfo.activeProcessorCount, busy))
                    measured.cpu = perPayment
                    measured.busyPercent = busy
                }
                // Every request answered is not yet a rate the server keeps up
                // with: past it, the outbox relay and the consumers fall behind
                // while the answers still come.
                if !accepted.isEmpty, let status = try? await LoadGenerator.engineStatus(url), status.outboxBacklog >= 0, status.consumerLag >= 0 {
                    let behind = Double(status.outboxBacklog) + Double(status.consumerLag) / Double(EngineConsumer.allCases.count)
                    print(String(format: "  at the end: outbox backlog %d events, consumer lag %d deliveries (≈ %.1f s of this rate's payments not yet through the consumers)",
                                 status.outboxBacklog, status.consumerLag, behind / acceptedPerSecond))
                    measured.behindSeconds = behind / acceptedPerSecond
                }
                figures.append(measured)
            }
            if let status = try? await LoadGenerator.health(url) { print("server engine: \(status)") }
            finished = true
            return figures
        }

        /// CPU seconds (user + system) a process has used so far, from
        /// `/proc/<pid>/stat`; `nil` where that cannot be read.
        static func cpuSeconds(_ pid: Int32) -> Double? {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let end = stat.lastIndex(of: ")") else { return nil }
            // Fields after the command name (which may hold spaces): state is
            // field 3, utime and stime fields 14 and 15.
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
            return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }

        /// A port nothing listens on now: bind port 0 and read what the kernel chose.
        func freePort() throws -> Int {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw ValidationError("cannot find a free port on 127.0.0.1") }
            return Int(UInt16(bigEndian: address.sin_port))
        }
    }
}
