import PaystormEngine
import Testing
@testable import PaystormBenchmarks

/// Benchmarks are timed only in release builds by `paystorm bench`; these
/// tests check that each one does the work it claims to measure.
@Suite("Benchmark bodies")
struct BenchmarkTests {
    @Test func insertBenchmarkWritesEveryRow() throws {
        let result = try StoreInsertBenchmark.run(location: .memory, rows: 2_500, batch: 1_000)
        #expect(result.grdbRowsStored == 2_500)
        #expect(result.rawRowsStored == 2_500)
        #expect(result.grdbSeconds > 0 && result.rawSeconds > 0)
    }

    @Test func engineBenchmarkCompletesEveryLifecycleAndCountsTheSameSQLEachRun() throws {
        let a = try EngineBenchmark.run(payments: 600, batch: 250, location: .memory)
        let b = try EngineBenchmark.run(payments: 600, batch: 250, location: .memory)
        #expect(a.violations.isEmpty)
        #expect(a.journalEntries == 600)
        // Every lifecycle runs a few dozen statements; the counts are work, not time.
        #expect(a.statements > 600 * 10)
        #expect(a.instructions > a.statements)
        #expect(a.sqlWork == b.sqlWork)
        // One journal entry and one payment row per lifecycle, each counted once.
        #expect(a.sqlWork.first { $0.sql.hasPrefix("INSERT INTO journal_entry") }?.runs == 600)
        #expect(a.sqlWork.first { $0.sql.hasPrefix("INSERT INTO payment ") }?.runs == 600)
        let bigger = try EngineBenchmark.run(payments: 1_200, batch: 250, location: .memory)
        #expect(bigger.statements > a.statements)
    }

    @Test func engineBenchmarkCardsAreDistinctValidCardNumbers() throws {
        let indexes = [0, 1, 9, 10, 4_321, 99_999_999_999_999, 100_000_000_000_000 + 7]
        let numbers = indexes.map(EngineBenchmark.cardNumber)
        #expect(numbers[0] == "4000000000000002")
        #expect(Set(numbers).count == numbers.count)
        for number in numbers {
            #expect(number.utf8.count == 16)
            // Luhn, expiry and CVV as the engine checks them.
            _ = try CardDetails(number: number, expiry: "12/30", cvv: "123", currentYear: .min, currentMonth: .min)
        }
    }

    @Test func holdModelKeepsItsPendingEventsAndIsDeterministic() {
        let a = HoldModelBenchmark.run(pending: 500, events: 20_000, seed: 3)
        let b = HoldModelBenchmark.run(pending: 500, events: 20_000, seed: 3)
        let c = HoldModelBenchmark.run(pending: 500, events: 20_000, seed: 4)
        #expect(a.events == 20_000)
        #expect(a.traceHash == b.traceHash)
        #expect(a.traceHash != c.traceHash)
    }
}
