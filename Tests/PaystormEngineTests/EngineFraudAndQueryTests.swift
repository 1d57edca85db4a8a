import Foundation
import GRDB
import Testing
@testable import PaystormEngine

@Suite("Payment engine: fraud screening, ledger queries, card data")
struct EngineFraudAndQueryTests {
    @Test func fraudDeclineFailsBeforeAnyPSPCallAndReviewIsRecorded() throws {
        var configuration = EngineHarness.configuration()
        configuration.fraudRules.blockedBINs = ["555555"]
        let h = try EngineHarness(configuration: configuration)
        let blocked = try h.pay(key: "b", card: "5555555555554444")
        #expect(blocked.status == .failed)
        #expect(blocked.failureReason == "declined by fraud screening", "the caller learns no rule or limit")
        #expect(try h.engine.payment(blocked.paymentID).failureReason == "declined by fraud screening")
        #expect(h.calls.isEmpty)
        let large = try h.pay(key: "big", amount: "6000.00")
        #expect(large.status == .processing && h.calls.count == 1)
        let decisions = try h.read { try String.fetchAll($0, sql: "SELECT fraud_decision FROM payment ORDER BY payment_id") }
        #expect(decisions[0].hasPrefix("decline: ") && decisions[0].contains("555555") && decisions[1].hasPrefix("review: "))
        try h.drainOutbox()
        #expect(h.published.map(\.event.kind) == [.paymentFailed])
        #expect(try h.safetyViolations().isEmpty)
    }

    @Test func cardTestingBurstIsDeclined() throws {
        let h = try EngineHarness()
        var statuses: [PaymentStatus] = []
        for i in 0..<8 {
            let card = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117",
                        "3530111333300000", "4012888888881881", "5105105105105100", "4222222222222"][i]
            statuses.append(try h.pay(key: "t\(i)", amount: "1.00", card: card).status)
            h.advance(by: 1_000_000_000)
        }
        // Standard rules: a sixth distinct card within a day from one user is declined.
        #expect(Array(statuses.prefix(5)) == Array(repeating: .processing, count: 5))
        #expect(Array(statuses.suffix(3)) == Array(repeating: .failed, count: 3))
    }

    /// Replicas of one service share their fraud state: a card tester whose
    /// attempts are spread over two engines meets the limit one engine would
    /// have set, and engines with their own state each see only half.
    @Test func replicasSharingAFraudDetectorJudgeAsOne() throws {
        let store = try PaymentEngine.openStore(.memory)
        let configuration = EngineHarness.configuration()
        let shared = FraudDetector(rules: configuration.fraudRules)
        func statuses(_ engines: [EngineHarness], _ run: String) throws -> [PaymentStatus] {
            try (0..<12).map { i in
                let h = engines[i % engines.count]
                h.now = EngineHarness.t0 + Int64(i) * 1_000_000_000
                return try h.pay(key: "\(run)-\(i)", amount: "1.00").status
            }
        }
        let single = try statuses([EngineHarness()], "single")
        #expect(single.suffix(2) == [.failed, .failed], "the card's eleventh attempt in an hour is declined: \(single)")
        let sharing = try [EngineHarness(sharing: store, configuration: configuration, fraud: shared),
                           EngineHarness(sharing: store, configuration: configuration, fraud: shared)]
        #expect(try statuses(sharing, "sharing") == single)
        let separate = try [EngineHarness(sharing: store, configuration: configuration),
                            EngineHarness(sharing: store, configuration: configuration)]
        #expect(try !statuses(separate, "separate").contains(.failed), "each of two engines of its own saw six attempts")
    }

    @Test func ledgerQueryFiltersAndPages() throws {
        let h = try EngineHarness()
        for i in 0..<5 { try h.completedPayment(key: "p\(i)", amount: "\(i + 1).00") }
        let all = try h.engine.ledger(LedgerQuery(limit: 2))
        #expect(all.entries.map(\.sequence) == [1, 2] && all.nextCursor == 2)
        let next = try h.engine.ledger(LedgerQuery(afterSequence: 2, limit: 2))
        #expect(next.entries.map(\.sequence) == [3, 4])
        let last = try h.engine.ledger(LedgerQuery(afterSequence: 4, limit: 2))
        #expect(last.entries.map(\.sequence) == [5] && last.nextCursor == nil)
        let one = try h.engine.ledger(LedgerQuery(transactionID: "pay-3"))
        #expect(one.entries.count == 1 && one.entries[0].entryID == "payment.completed:pay-3")
        #expect(one.entries[0].postings.contains(.debit(.psp("stripe"), Money(minorUnits: 300, currency: .usd))))
        #expect(try h.engine.ledger(LedgerQuery(account: "merchant:m-1")).entries.count == 5)
        #expect(try h.engine.ledger(LedgerQuery(account: "merchant:nobody")).entries.isEmpty)
        #expect(throws: EngineError.invalidField(field: "limit", message: "must be 1...1000, got 0")) {
            _ = try h.engine.ledger(LedgerQuery(limit: 0))
        }
        #expect(throws: EngineError.self) { _ = try h.engine.ledger(LedgerQuery(fromNanoseconds: 10, toNanoseconds: 5)) }
    }

    /// An account filter pages like the unfiltered journal, combines with the
    /// other filters, lists an entry with two postings to the account once,
    /// and is read from the account index in order (no scan, no sort).
    @Test func ledgerAccountFilterPagesFromTheAccountIndex() throws {
        let h = try EngineHarness()
        for i in 0..<6 {
            try h.completedPayment(key: "p\(i)", amount: "\(i + 1).00")
            h.advance(by: 1_000_000_000)
        }
        let first = try h.engine.ledger(LedgerQuery(account: "platform:fees", limit: 4))
        #expect(first.entries.map(\.sequence) == [1, 2, 3, 4] && first.nextCursor == 4)
        let rest = try h.engine.ledger(LedgerQuery(account: "platform:fees", afterSequence: 4, limit: 4))
        #expect(rest.entries.map(\.sequence) == [5, 6] && rest.nextCursor == nil)
        let times = first.entries.map(\.timeNanoseconds)
        let windowed = try h.engine.ledger(LedgerQuery(account: "external:psp:stripe", fromNanoseconds: times[1], toNanoseconds: times[2]))
        #expect(windowed.entries.map(\.sequence) == [2, 3])
        #expect(try h.engine.ledger(LedgerQuery(account: "external:psp:stripe", transactionID: "pay-4")).entries.map(\.transactionID) == ["pay-4"])
        try h.engine.store.queue.write { db in
            _ = try Ledger.post(JournalEntry(id: "adjust-1", transactionID: "adjust-1", timeNanoseconds: h.now, postings: [
                .debit(.platformFees, Money(minorUnits: 1, currency: .usd)), .debit(.platformFees, Money(minorUnits: 1, currency: .usd)),
                .credit(.merchant("m-1"), Money(minorUnits: 2, currency: .usd)),
            ]), in: db)
        }
        let twice = try h.engine.ledger(LedgerQuery(account: "platform:fees", afterSequence: 6))
        #expect(twice.entries.map(\.entryID) == ["adjust-1"] && twice.entries[0].postings.count == 3)

        let (sql, arguments) = PaymentEngine.ledgerSelect(LedgerQuery(account: "merchant:m-1", fromNanoseconds: 0, limit: 10))
        let plan = try h.engine.store.queue.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments).map { $0["detail"] as String }
        }
        #expect(plan.contains { $0.contains("journal_posting_account (account=? AND entry_sequence>?)") }, "\(plan)")
        #expect(!plan.contains { $0.contains("TEMP B-TREE") }, "\(plan)")
    }

    /// After a realistic run on a database file, no column, row or byte of the
    /// file holds a CVV or a plaintext card number.
    @Test func databaseHoldsNoCVVOrPlaintextCardNumber() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("paystorm-scan-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("engine.sqlite").path
        let cards = ["4111111111111111", "5555555555554444", "378282246310005"]
        do {
            let h = try EngineHarness(.file(path: path))
            for (i, card) in cards.enumerated() {
                let view = try h.engine.createPayment(CreatePaymentCommand(
                    userID: "u-\(i)", merchantID: "m-1", amount: "10.00", currency: "USD",
                    card: CardInput(number: card, expiry: "12/27", cvv: "9\(i)7"), idempotencyKey: "k\(i)"), now: h.now)
                h.collect()
                try h.reply(.succeeded(pspReference: "ch_\(i)"), to: try #require(h.calls.last))
                _ = try h.engine.createRefund(CreateRefundCommand(merchantID: "m-1", paymentID: view.paymentID, amount: "1.00", idempotencyKey: "r\(i)"), now: h.now)
                h.collect()
            }
            try h.drainOutbox()
            try h.engine.store.queue.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        if let wal = try? Data(contentsOf: URL(fileURLWithPath: path + "-wal")) { bytes.append(wal) }
        for secret in cards + ["907", "917", "927"].map({ "\"cvv\":\"\($0)\"" }) {
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "found \(secret) in the database")
        }
        let queue = try DatabaseQueue(path: path)
        let tables = try queue.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") }
        for table in tables {
            let columns = try queue.read { try Row.fetchAll($0, sql: "PRAGMA table_info(\(table))").map { $0["name"] as String } }
            #expect(!columns.contains { $0.lowercased().contains("cvv") || $0.lowercased() == "card_number" }, "\(table)")
            for row in try queue.read({ try Row.fetchAll($0, sql: "SELECT * FROM \(table)") }) {
                for (_, value) in row {
                    let text = String(describing: value)
                    for card in cards { #expect(!text.contains(card), "\(table) holds a card number") }
                    for cvv in ["907", "917", "927"] where table != "counter" { #expect(!text.contains("cvv\":\"\(cvv)"), "\(table)") }
                }
            }
        }
    }
}
