import ArgumentParser
import Foundation
import PaystormBenchmarks
import PaystormStore

extension Paystorm {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure Paystorm's speed. Build with `-c release` for meaningful figures.",
            subcommands: [Kernel.self, Engine.self, StoreInserts.self, World.self, Server.self])
    }
}

extension Paystorm.Bench {
    struct Kernel: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The hold model: N pending events; pop the earliest, schedule one at now + Exp(1).")

        @Option(help: "Events kept pending in the event list.")
        var pending: Int = 10_000

        @Option(help: "Events to deliver in the timed loop.")
        var events: Int = 20_000_000

        @Option(help: "Root seed.")
        var seed: UInt64 = 1

        @Option(help: "Repetitions; the best and median rates are reported.")
        var repeats: Int = 3

        func validate() throws {
            guard pending >= 1 && pending <= 50_000_000 else {
                throw ValidationError("--pending must be in 1...50000000, got \(pending)")
            }
            // At ~5 M events/s: a round of up to about 3 minutes, and enough events to time one.
            guard events >= 1_000 && events <= 1_000_000_000 else {
                throw ValidationError("--events must be in 1000...1000000000, got \(events)")
            }
            guard repeats >= 1 && repeats <= 100 else {
                throw ValidationError("--repeats must be in 1...100, got \(repeats)")
            }
        }

        func run() throws {
            #if DEBUG
            print("warning: debug build; build with `swift build -c release` for real figures")
            #endif
            var rates: [Double] = []
            var hash = ""
            for round in 1...repeats {
                let result = HoldModelBenchmark.run(pending: pending, events: events, seed: seed)
                rates.append(result.eventsPerSecond)
                hash = result.traceHash
                print("round \(round): \(result.events) events in \(format(result.seconds, 3)) s = \(format(result.eventsPerSecond / 1e6, 2))M events/s")
            }
            rates.sort()
            // Of an even count, the mean of the two middle rounds (the upper one alone was the best of two).
            let median = (rates[(rates.count - 1) / 2] + rates[rates.count / 2]) / 2
            print("hold model: pending=\(pending) events=\(events) best=\(Int(rates.last!)) events/s median=\(Int(median)) events/s trace=\(hash)")
        }
    }
}

extension Paystorm.Bench {
    struct StoreInserts: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "store",
            abstract: "SQLite inserts per second through GRDB's cached statements and through PreparedStatement (C API).")

        @Option(help: "Rows to insert (each way).")
        var rows: Int = 200_000

        @Option(help: "Rows per transaction.")
        var batch: Int = 1_000

        @OptionGroup var database: BenchmarkDatabase

        func validate() throws {
            guard rows >= 1 && rows <= 100_000_000 else { throw ValidationError("--rows must be in 1...100000000, got \(rows)") }
            guard batch >= 1 && batch <= 100_000_000 else { throw ValidationError("--batch must be in 1...100000000, got \(batch)") }
        }

        func run() throws {
            let location = database.location
            let result = try StoreInsertBenchmark.run(location: location, rows: rows, batch: batch)
            print("store inserts (\(location), \(min(batch, rows)) rows per transaction):")
            print("  GRDB cached statement: \(Int(result.grdbRowsPerSecond)) rows/s")
            print("  PreparedStatement:     \(Int(result.rawRowsPerSecond)) rows/s")
            print("  GRDB overhead:         \(format((result.rawRowsPerSecond / result.grdbRowsPerSecond - 1) * 100, 1))%")
        }
    }
}

extension Paystorm.Bench {
    struct Engine: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Complete payment lifecycles per second through the engine and SQLite with an in-process PSP.")

        @Option(help: "Payments to run.")
        var payments: Int = 100_000

        @Option(help: "Payments created before the PSP replies and consumers run.")
        var batch: Int = 500

        @Flag(help: "Also list each prepared statement's runs and SQLite VM instructions per payment.")
        var sqlProfile = false

        @Option(help: "Runs, one after another, each on a new database: prints each run's payments/s, then the median, best and worst (a machine whose speed drifts gives a spread, not one figure).")
        var runs: Int = 1

        @OptionGroup var database: BenchmarkDatabase

        func validate() throws {
            guard payments >= 1 && payments <= 50_000_000 else { throw ValidationError("--payments must be in 1...50000000, got \(payments)") }
            guard batch >= 1 && batch <= 100_000 else { throw ValidationError("--batch must be in 1...100000, got \(batch)") }
            guard runs >= 1 && runs <= 1_000 else { throw ValidationError("--runs must be in 1...1000, got \(runs)") }
        }

        func run() throws {
            #if DEBUG
            print("warning: debug build; build with `swift build -c release` for real figures")
            #endif
            let location = database.location
            var results: [EngineBenchmark.Result] = []
            for number in 1...runs {
                // Each run on a new file: the one before is removed (the last run's stays).
                if number > 1 { database.removeStore() }
                let result = try EngineBenchmark.run(payments: payments, batch: batch, location: location)
                let prefix = runs > 1 ? "run \(number) of \(runs): " : ""
                print("\(prefix)engine lifecycles (\(location)): \(result.payments) payments in \(format(result.seconds, 2)) s = \(Int(result.paymentsPerSecond)) payments/s")
                results.append(result)
                if !result.violations.isEmpty || result.sqlWork != results[0].sqlWork { break }
            }
            let ordered = results.sorted { $0.paymentsPerSecond < $1.paymentsPerSecond }
            // The phases of the middle run (the slower of the two middle ones for an even count).
            let result = ordered[(ordered.count - 1) / 2]
            if results.count > 1 {
                let median = (result.paymentsPerSecond + ordered[ordered.count / 2].paymentsPerSecond) / 2
                print("payments/s over \(results.count) runs: median \(Int(median)), best \(Int(ordered.last!.paymentsPerSecond)), worst \(Int(ordered[0].paymentsPerSecond))")
            }
            let perPayment = result.phaseSeconds.map { "\($0.phase) \(format($0.seconds / Double(result.payments) * 1e6, 1)) us" }
            print((results.count > 1 ? "per payment (middle run): " : "per payment: ") + perPayment.joined(separator: ", "))
            let count = Double(result.payments)
            print("SQL per payment (prepared statements; the same on every run of a build): \(format(Double(result.statements) / count, 1)) statements, \(format(Double(result.instructions) / count, 0)) SQLite VM instructions")
            if sqlProfile {
                print("  runs  instructions  statement (per payment, most instructions first)")
                for statement in result.sqlWork {
                    let runsText = format(Double(statement.runs) / count, 2), instructions = format(Double(statement.instructions) / count, 1)
                    let sql = statement.sql.split(whereSeparator: \.isWhitespace).joined(separator: " ")
                    print(String(repeating: " ", count: max(0, 6 - runsText.count)) + runsText + String(repeating: " ", count: max(0, 14 - instructions.count)) + instructions + "  " + sql.prefix(100))
                }
            }
            // The SQL is the build's, not the machine's: runs that differ in it are a bug of the benchmark or the engine.
            if let differing = results.first(where: { $0.sqlWork != results[0].sqlWork }) {
                print("SQL DIFFERS between runs: \(results[0].statements) statements and \(results[0].instructions) VM instructions in the first run, "
                      + "\(differing.statements) and \(differing.instructions) in a later one")
                throw ExitCode(1)
            }
            let last = results.last!
            print("checked: \(last.journalEntries) journal entries, wallets hold \(last.walletTotalMinor) minor units, \(last.violations.isEmpty ? "no invariant violations" : "VIOLATIONS:")")
            for violation in last.violations.prefix(20) { print("  \(violation)") }
            if !last.violations.isEmpty { throw ExitCode(1) }
        }
    }
}

/// Where a storage benchmark writes: in memory, or a new WAL file.
struct BenchmarkDatabase: ParsableArguments {
    @Option(help: "A new database file to use in WAL mode (default: in memory). It must not exist yet.")
    var store: String?

    func validate() throws {
        if let store, store.isEmpty || store.hasSuffix("/") {
            throw ValidationError("--store: give the path of a new database file, got \"\(store)\"")
        }
        if let store, FileManager.default.fileExists(atPath: store) {
            throw ValidationError("--store \(store) already exists; the benchmark needs a new file")
        }
        if let store {
            let directory = (store as NSString).deletingLastPathComponent
            let place = directory.isEmpty ? "." : directory
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: place, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--store \(store): no directory \(directory) to make it in")
            }
            guard FileManager.default.isWritableFile(atPath: place) else {
                throw ValidationError("--store \(store): the directory \(directory) is not writable")
            }
        }
    }

    var location: Store.Location { store.map { .file(path: $0) } ?? .memory }

    /// Removes the file an earlier run wrote at ``store``, with its WAL and
    /// shared-memory files, so that the next run starts on a new one.
    func removeStore() {
        guard let store else { return }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: store + suffix) }
    }
}

/// `value` with exactly `decimals` digits after the point (none for 0).
func format(_ value: Double, _ decimals: Int) -> String {
    if decimals == 0 { return "\(Int(value.rounded()))" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = "\(rounded)"
    if let dot = text.firstIndex(of: ".") {
        let fraction = text[text.index(after: dot)...].count
        if fraction < decimals { text += String(repeating: "0", count: decimals - fraction) }
    }
    return text
}
