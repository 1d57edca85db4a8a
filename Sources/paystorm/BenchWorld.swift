import ArgumentParser
import Foundation
import PaystormWorld
import PaystormBenchmarks

extension Paystorm.Bench {
    struct World: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The reference run of the payments world: the real engine among PSPs, broker, clients and faults.",
            discussion: """
                By default 1,000,000 payments at 1,000/s offered, two PSPs (median 150 ms, 3% transient \
                errors, 0.5% ambiguous timeouts), a PSP outage and a replica crash in the middle, every \
                invariant checked. Prints payments per wall second, peak memory and violations; exits 1 \
                when any invariant was violated.
                """)

        @Option(help: "Payments to start (at least 20,000: the reference crashes a replica 10 s after the middle of the load).")
        var payments: Int = 1_000_000

        @Option(help: "Root seed.")
        var seed: UInt64 = 1

        @Option(help: "Directory for the scratch database (deleted afterwards, also when interrupted).")
        var scratch: String = FileManager.default.temporaryDirectory.path

        @Flag(help: "Print the full report summary.")
        var verbose = false

        @Flag(help: "Run twice and compare trace hashes (the determinism self-check); exits 1 if they differ.")
        var twice = false

        func validate() throws {
            // The reference crashes a replica 10 s after the middle of the load, which at 1,000/s must still be going.
            guard payments >= 20_000 && payments <= 100_000_000 else {
                throw ValidationError("--payments must be in 20000...100000000 (the reference run's replica crash comes 10 s after the "
                    + "middle of its load at 1,000/s, so a shorter load would end before it), got \(payments)")
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: scratch, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--scratch \(scratch) is not a directory")
            }
            guard FileManager.default.isWritableFile(atPath: scratch) else {
                throw ValidationError("--scratch \(scratch): the directory is not writable")
            }
        }

        func run() throws {
            #if DEBUG
            print("warning: debug build; build with `swift build -c release` for real figures")
            #endif
            var configuration = WorldConfiguration.reference(payments: payments, seed: seed)
            configuration.scratchDatabasePath = (ScratchCleanup.registered(scratch) as NSString).appendingPathComponent("paystorm-world-\(getpid()).sqlite")
            // Wall time per phase, taken here in the host: the run reads no clock.
            let clock = ContinuousClock()
            let start = clock.now
            var phaseStart = start
            var phases: [(PaymentsWorld.Phase, Duration)] = []
            // On a terminal only: a ten-million run takes more than an hour.
            let bar = ProgressBar(label: "world \(payments) payments", quiet: false)
            let report = try PaymentsWorld.run(configuration, progress: { bar.update($0) }, phaseEnded: { phase in
                let now = clock.now
                phases.append((phase, now - phaseStart))
                phaseStart = now
                let next = PaymentsWorld.Phase.allCases.drop { $0 != phase }.dropFirst().first
                if let next { bar.note("\(phase.rawValue) done, now \(next.rawValue)") }
            })
            bar.finish()
            let seconds = (clock.now - start).seconds
            if verbose { print(report.summary) }
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            let peakMiB = Double(usage.ru_maxrss) / 1024
            // CPU beside wall: on a shared or drifting machine the CPU time
            // is the steadier figure, and wall above CPU means waiting, for
            // the disk as a large store outgrows the memory that caches it.
            func inSeconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
            let cpu = inSeconds(usage.ru_utime) + inSeconds(usage.ru_stime)
            print("wall by phase: " + phases.map { "\($0.0.rawValue) \(format($0.1.seconds, 1)) s" }.joined(separator: ", "))
            print("world: payments=\(report.paymentsStarted) wall=\(format(seconds, 1)) s cpu=\(format(cpu, 1)) s payments/s=\(Int(Double(report.paymentsStarted) / seconds)) events=\(report.events) events/s=\(Int(Double(report.events) / seconds)) peak_memory=\(format(peakMiB, 0)) MiB violations=\(report.violations) trace=\(report.traceHash)")
            if twice {
                configuration.scratchDatabasePath! += ".again"
                let again = try PaymentsWorld.run(configuration)
                let same = again.traceHash == report.traceHash && again.summary == report.summary
                print("determinism: second run trace=\(again.traceHash) \(same ? "identical" : "DIFFERENT")")
                if !same { throw ExitCode(1) }
            }
            if report.violations > 0 {
                if !verbose { print(report.summary) }
                throw ExitCode(1)
            }
        }
    }
}
