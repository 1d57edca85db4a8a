import Foundation
import GRDB
import PaystormEngine
import PaystormScenario
import PaystormStore
import PaystormWorld
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import PaystormServer

@Suite("SQLite broker: partitions, offsets, redelivery, durability")
struct BrokerTests {
    @Test("uncommitted messages come again; committed offsets and the log survive a reopen")
    func atLeastOnce() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("broker.sqlite")
        do {
            let broker = try SQLiteBroker(.file(path: path), partitions: 4)
            try broker.produce((0..<30).map { BrokerRecord(topic: "transactions", key: "m\($0 % 3)", payload: "e\($0)") })
            let first = try broker.poll(group: "ledger", limit: 100)
            #expect(first.count == 30)
            // Per key, order is kept.
            for key in ["m0", "m1", "m2"] {
                let payloads = first.filter { $0.key == key }.map(\.payload)
                #expect(payloads == (0..<30).filter { "m\($0 % 3)" == key }.map { "e\($0)" })
            }
            #expect(try broker.poll(group: "ledger", limit: 100).count == 30, "nothing committed: everything again")
            try broker.commit(group: "ledger", Array(first.prefix(10)))
            #expect(try broker.lag(group: "ledger") < 30)
            #expect(try broker.lag(group: "wallet") == 30, "groups are independent")
        }
        let reopened = try SQLiteBroker(.file(path: path), partitions: 4)
        let rest = try reopened.poll(group: "ledger", limit: 100)
        #expect(rest.count == 20, "the ten committed before the reopen are not delivered again")
        #expect(try reopened.lag(group: "ledger") == rest.count)
        try reopened.commit(group: "ledger", rest)
        #expect(try reopened.lag(group: "ledger") == 0)
        try reopened.produce([BrokerRecord(topic: "transactions", key: "m0", payload: "late")])
        #expect(try reopened.poll(group: "ledger", limit: 10).map(\.payload) == ["late"])
    }

    @Test("retention: a message is deleted once every retained group committed it; offsets go on after the log empties")
    func retention() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("broker.sqlite")
        let groups = ["ledger", "wallet"]
        var lastOffsets: [Int: Int64] = [:]
        var walletPoll: [BrokerDelivery] = []
        do {
            let broker = try SQLiteBroker(.file(path: path), partitions: 2, retainedFor: groups)
            try broker.produce((0..<20).map { BrokerRecord(topic: "transactions", key: "m\($0 % 4)", payload: "e\($0)") })
            let all = try broker.poll(group: "ledger", limit: 100)
            #expect(all.count == 20)
            try broker.commit(group: "ledger", all)
            #expect(try broker.retainedMessages() == 20, "the wallet group has committed nothing yet")

            // The wallet commits the first three of partition 0 only.
            walletPoll = try broker.poll(group: "wallet", limit: 100)
            let firstThree = walletPoll.filter { $0.partition == 0 && $0.offset < 3 }
            #expect(firstThree.count == 3)
            try broker.commit(group: "wallet", firstThree)
            #expect(try broker.retainedMessages() == 17)
            #expect(try broker.lag(group: "wallet") == 17)
            #expect(try broker.poll(group: "wallet", limit: 100).count == 17, "what the wallet still owes is all there")
            #expect(try broker.lag(group: "audit") == 17, "a group retention does not wait for reads from the oldest message left")
            for delivery in all { lastOffsets[delivery.partition] = max(lastOffsets[delivery.partition] ?? -1, delivery.offset) }
        }
        do {
            // Reopened with the log trimmed part way.
            let broker = try SQLiteBroker(.file(path: path), partitions: 2, retainedFor: groups)
            #expect(try broker.lag(group: "wallet") == 17)
            #expect(try broker.lag(group: "audit") == 17)
            #expect(try broker.poll(group: "audit", limit: 100).count == 17)
            // Both groups in one commit, as the server's consumers commit.
            try broker.commit([("wallet", walletPoll), ("ledger", [])])
            #expect(try broker.retainedMessages() == 0)
            #expect(try broker.lag(group: "audit") == 0)
            #expect(try broker.poll(group: "audit", limit: 100).isEmpty)
        }
        let reopened = try SQLiteBroker(.file(path: path), partitions: 2, retainedFor: groups)
        #expect(try reopened.lag(group: "ledger") == 0)
        try reopened.produce((0..<4).map { BrokerRecord(topic: "transactions", key: "m\($0)", payload: "late\($0)") })
        let late = try reopened.poll(group: "ledger", limit: 100)
        #expect(late.map(\.payload).sorted() == ["late0", "late1", "late2", "late3"], "offsets of an emptied log are not reused")
        for delivery in late { #expect(delivery.offset > lastOffsets[delivery.partition] ?? -1) }
        #expect(try reopened.poll(group: "audit", limit: 100).map(\.payload).sorted() == ["late0", "late1", "late2", "late3"])
        #expect(try reopened.retainedMessages() == 4)
    }

    @Test("retention trims a backlog a bounded number of messages per commit; with no retained groups nothing is trimmed")
    func retentionBounds() throws {
        let broker = try SQLiteBroker(.memory, partitions: 2, retainedFor: ["ledger"])
        broker.maximumReleasedPerCommit = 7
        try broker.produce((0..<20).map { BrokerRecord(topic: "transactions", key: "m\($0 % 4)", payload: "e\($0)") })
        try broker.commit(group: "ledger", try broker.poll(group: "ledger", limit: 100))
        #expect(try broker.retainedMessages() == 13)
        var commits = 1
        while try broker.retainedMessages() > 0 && commits < 10 {
            try broker.produce([BrokerRecord(topic: "transactions", key: "m0", payload: "more")])
            try broker.commit(group: "ledger", try broker.poll(group: "ledger", limit: 100))
            commits += 1
        }
        #expect(commits == 4, "21 messages at 7 a commit, the ones produced meanwhile included")
        #expect(try broker.lag(group: "ledger") == 0)

        let keeping = try SQLiteBroker(.memory, partitions: 2)
        try keeping.produce((0..<20).map { BrokerRecord(topic: "transactions", key: "m\($0 % 4)", payload: "e\($0)") })
        try keeping.commit([("ledger", try keeping.poll(group: "ledger", limit: 100)), ("wallet", try keeping.poll(group: "wallet", limit: 100))])
        #expect(try keeping.retainedMessages() == 20)
        #expect(try keeping.poll(group: "audit", limit: 100).count == 20)
    }

    @Test("a commit whose transaction fails changes nothing: the offsets, the log and what is delivered stay as they were")
    func failedCommit() throws {
        let broker = try SQLiteBroker(.memory, partitions: 2, retainedFor: ["ledger"])
        try broker.produce((0..<10).map { BrokerRecord(topic: "transactions", key: "m\($0 % 4)", payload: "e\($0)") })
        let polled = try broker.poll(group: "ledger", limit: 100)
        try broker.store.queue.write {
            try $0.execute(sql: "CREATE TRIGGER no_trim BEFORE DELETE ON broker_message BEGIN SELECT RAISE(ABORT, 'the disk is full'); END")
        }
        #expect(throws: (any Error).self) { try broker.commit(group: "ledger", polled) }
        #expect(try broker.lag(group: "ledger") == 10)
        #expect(try broker.retainedMessages() == 10)
        // The same messages, whichever partition the poll now starts from.
        let again = try broker.poll(group: "ledger", limit: 100)
        #expect(again.sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) }
                    == polled.sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) })
        try broker.store.queue.write { try $0.execute(sql: "DROP TRIGGER no_trim") }
        try broker.commit(group: "ledger", polled)
        #expect(try broker.lag(group: "ledger") == 0)
        #expect(try broker.retainedMessages() == 0)
    }

    @Test("a commit naming an offset the log never held is refused whole: no group skips the messages still to come")
    func commitPastTheLogIsRefused() throws {
        let broker = try SQLiteBroker(.memory, partitions: 2)
        try broker.produce((0..<6).map { BrokerRecord(topic: "transactions", key: "m\($0 % 4)", payload: "e\($0)") })
        let polled = try broker.poll(group: "ledger", limit: 100)
        let last = try #require(polled.max { $0.offset < $1.offset })
        var beyond = last
        beyond.offset += 100
        var unknown = last
        unknown.topic = "refunds"
        for bad in [beyond, unknown] {
            #expect(throws: StoreError.self) { try broker.commit([("wallet", polled), ("ledger", [bad])]) }
            #expect(try broker.lag(group: "ledger") == 6, "nothing of the refused commit was taken")
            #expect(try broker.lag(group: "wallet") == 6, "not even another group's valid part")
        }
        let refusal = try #require(throws: StoreError.self) { try broker.commit(group: "ledger", [beyond]) }
        #expect("\(refusal)".contains("transactions/\(beyond.partition)@\(beyond.offset) was never in the log"), "\(refusal)")
        try broker.produce([BrokerRecord(topic: "transactions", key: "m0", payload: "e6")])
        #expect(try broker.poll(group: "ledger", limit: 100).count == 7, "every message is still delivered")
        try broker.commit(group: "ledger", polled)
        #expect(try broker.lag(group: "ledger") == 1)
    }

    @Test("the partition of a key is the same in every process (FNV-1a, not Swift's seeded Hasher)")
    func stablePartitions() throws {
        let broker = try SQLiteBroker(.memory, partitions: 8)
        // FNV-1a 64 of "m1" is 0x08a98b07b5509b6b (computed independently); mod 8 = 3.
        #expect(broker.partition(of: "m1") == Int(0x08a9_8b07_b550_9b6b as UInt64 % 8))
        #expect(Set((0..<100).map { broker.partition(of: "m\($0)") }).count == 8)
    }

    @Test("a backlog in a low partition does not starve a high one: each poll shares its limit among the partitions behind")
    func fairPoll() throws {
        let broker = try SQLiteBroker(.memory, partitions: 8)
        let low = try #require((0..<1_000).map { "m\($0)" }.first { broker.partition(of: $0) == 0 })
        let high = try #require((0..<1_000).map { "m\($0)" }.first { broker.partition(of: $0) == 7 })
        try broker.produce((0..<300).map { BrokerRecord(topic: "transactions", key: low, payload: "backlog-\($0)") })
        try broker.produce([BrokerRecord(topic: "transactions", key: high, payload: "waiting")])
        // Not committed, as when the consumer of the backlog keeps failing or is slow.
        let polls = try (0..<2).map { _ in try broker.poll(group: "ledger", limit: 256) }
        #expect(polls.allSatisfy { $0.count == 256 }, "the limit is still used in full")
        #expect(polls.contains { $0.contains { $0.payload == "waiting" } }, "partition 7 was delivered within two polls")
        for poll in polls {
            let backlog = poll.filter { $0.partition == 0 }.map(\.offset)
            #expect(backlog == Array(0..<Int64(backlog.count)), "a partition is still read oldest first from its committed offset")
        }
    }

    @Test("dead letters are kept per group")
    func deadLetters() throws {
        let broker = try SQLiteBroker(.memory)
        try broker.produce([BrokerRecord(topic: "t", key: "k", payload: "bad")])
        let delivery = try #require(try broker.poll(group: "g", limit: 1).first)
        try broker.deadLetter(group: "g", delivery, reason: "cannot decode")
        #expect(try broker.deadLetterCount(group: "g") == 1)
        #expect(try broker.deadLetterCount(group: "h") == 0)
        #expect(try broker.deadLetterCount(group: nil) == 1)
        // Parked again (a replay refused it again): still one letter, with the new reason.
        try broker.deadLetter(group: "g", delivery, reason: "refused again")
        #expect(try broker.deadLetters(group: "g", limit: 10) == [BrokerDeadLetter(group: "g", delivery: delivery, reason: "refused again")],
                "the letter is the message as delivered, key included")
        #expect(try broker.deadLetters(group: "h", limit: 10).isEmpty)
        try broker.resolveDeadLetter(group: "h", delivery)
        #expect(try broker.deadLetterCount(group: "g") == 1, "another group's resolution leaves this one's letter")
        try broker.resolveDeadLetter(group: "g", delivery)
        #expect(try broker.deadLetterCount(group: "g") == 0)
        // Without a group: every group's letters.
        try broker.deadLetter(group: "g", delivery, reason: "cannot decode")
        try broker.deadLetter(group: "h", delivery, reason: "cannot decode")
        #expect(try broker.deadLetterCount(group: nil) == 2)
    }

    @Test("dead letters list in log order per group, and a broker from before the letters kept keys still reads, then migrates")
    func deadLettersOfAnOlderBroker() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("old-broker.sqlite")
        do {
            let broker = try SQLiteBroker(.file(path: path), partitions: 2)
            try broker.produce((0..<6).map { BrokerRecord(topic: "t", key: "k\($0)", payload: "p\($0)") })
            let deliveries = try broker.poll(group: "g", limit: 10)
            for delivery in deliveries.reversed() { try broker.deadLetter(group: "g", delivery, reason: "r") }
            let listed = try broker.deadLetters(group: "g", limit: 10).map(\.delivery)
            #expect(listed == deliveries.sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) })
            #expect(try broker.deadLetters(group: "g", limit: 2).count == 2)
            // Back to the first schema: no key column, and its migration not yet run.
            try broker.store.queue.writeWithoutTransaction { db in
                try db.execute(sql: """
                    ALTER TABLE broker_dead_letter DROP COLUMN key;
                    DELETE FROM grdb_migrations WHERE identifier = 'v2-broker-dead-letter-key';
                    """)
            }
        }
        var readOnly = Configuration()
        readOnly.readonly = true
        let old = try DatabaseQueue(path: path, configuration: readOnly).read { try SQLiteBroker.deadLetters(in: $0) }
        #expect(old.count == 6 && old.allSatisfy { $0.delivery.key.isEmpty && $0.group == "g" })
        let reopened = try SQLiteBroker(.file(path: path), partitions: 2)
        #expect(try reopened.deadLetters(group: "g", limit: 10).map(\.delivery.payload) == old.map(\.delivery.payload))
        let delivery = try #require(try reopened.poll(group: "h", limit: 1).first)
        try reopened.deadLetter(group: "h", delivery, reason: "r")
        #expect(try reopened.deadLetters(group: "h", limit: 1).first?.delivery.key == delivery.key)
    }
}

@Suite("PSP sandbox: one outcome per key, truthful status, void, double-charge detection")
struct SandboxTests {
    static func sandbox(_ change: (inout PSPProfile) -> Void = { _ in }) -> PSPSandbox {
        var profiles: [PSPProfile] = [PSPProfile.stripeLike.ideal, PSPProfile.paypalLike.ideal]
        for index in profiles.indices { change(&profiles[index]) }
        return PSPSandbox(profiles: profiles, webhookURL: nil, notificationFailureRate: 0, seed: 7, client: .shared)
    }

    static func call(_ key: String, _ minor: Int64 = 1_050) -> PSPWire.Call {
        PSPWire.Call(idempotencyKey: key, amountMinor: minor, currency: "USD", cardToken: "tok")
    }

    func outcome(_ reply: PSPSandbox.Reply) -> String {
        switch reply {
        case let .answer(answer): return answer.outcome
        case let .status(code, _): return "HTTP \(code)"
        }
    }

    @Test("a repeated charge is the same charge; a status query tells the truth; a void fixes an untouched key")
    func idempotency() throws {
        let sandbox = Self.sandbox()
        let stripe = try #require(sandbox.profiles["stripe"])
        #expect(outcome(sandbox.process(psp: stripe, operation: .status, call: Self.call("pay-1:stripe"), now: 1).reply) == "not_found")
        #expect(outcome(sandbox.process(psp: stripe, operation: .charge, call: Self.call("pay-1:stripe"), now: 2).reply) == "succeeded")
        #expect(outcome(sandbox.process(psp: stripe, operation: .charge, call: Self.call("pay-1:stripe"), now: 3).reply) == "succeeded")
        #expect(outcome(sandbox.process(psp: stripe, operation: .status, call: Self.call("pay-1:stripe"), now: 4).reply) == "succeeded")
        #expect(sandbox.stats.captured == 1)
        #expect(outcome(sandbox.process(psp: stripe, operation: .cancel, call: Self.call("pay-2:stripe"), now: 5).reply) == "voided")
        #expect(outcome(sandbox.process(psp: stripe, operation: .charge, call: Self.call("pay-2:stripe"), now: 6).reply) == "voided")
        #expect(outcome(sandbox.process(psp: stripe, operation: .status, call: Self.call("pay-2:stripe"), now: 6).reply) == "voided")
        #expect(outcome(sandbox.process(psp: stripe, operation: .cancel, call: Self.call("pay-1:stripe"), now: 7).reply) == "succeeded",
                "a void after the charge reports the charge")
        #expect(sandbox.stats.doubleCharged.isEmpty)
        let csv = sandbox.settlementCSV(psp: "stripe", from: 0, to: 100)
        let report = try SettlementReport.parseCSV(csv, pspID: "stripe", periodStart: 0, periodEnd: 100)
        #expect(report.lines.map(\.pspReference) == ["pay-1:stripe"])
    }

    @Test("the same payment charged at two PSPs is reported as a double charge")
    func doubleCharge() throws {
        let sandbox = Self.sandbox()
        _ = sandbox.process(psp: try #require(sandbox.profiles["stripe"]), operation: .charge, call: Self.call("pay-9:stripe"), now: 1)
        _ = sandbox.process(psp: try #require(sandbox.profiles["paypal"]), operation: .charge, call: Self.call("pay-9:paypal"), now: 2)
        #expect(sandbox.stats.doubleCharged == ["pay-9"])
    }

    @Test("the ambiguous failure charges and answers 504; a transient error charges nothing and answers 503")
    func failures() throws {
        let ambiguous = Self.sandbox { $0.ambiguousRate = 1 }
        let stripe = try #require(ambiguous.profiles["stripe"])
        #expect(outcome(ambiguous.process(psp: stripe, operation: .charge, call: Self.call("pay-1:stripe"), now: 1).reply) == "HTTP 504")
        #expect(outcome(ambiguous.process(psp: stripe, operation: .status, call: Self.call("pay-1:stripe"), now: 2).reply) == "succeeded")
        let transient = Self.sandbox { $0.transientErrorRate = 1 }
        let flaky = try #require(transient.profiles["stripe"])
        #expect(outcome(transient.process(psp: flaky, operation: .charge, call: Self.call("pay-1:stripe"), now: 1).reply) == "HTTP 503")
        #expect(transient.stats.captured == 0)
    }

    @Test("the adapter reads the sandbox's answers: 503 is safe to retry, 504 and garbage are unknown")
    func wire() {
        func body(_ text: String) -> Data { Data(text.utf8) }
        #expect(PSPWire.outcome(status: 200, body: body(#"{"outcome":"succeeded","reference":"r"}"#)) == .succeeded(pspReference: "r"))
        #expect(PSPWire.outcome(status: 200, body: body(#"{"outcome":"declined","reason":"x"}"#)) == .declined(reason: "x"))
        #expect(PSPWire.outcome(status: 200, body: body(#"{"outcome":"not_found"}"#)) == .notFound)
        #expect(PSPWire.outcome(status: 200, body: body(#"{"outcome":"voided"}"#)) == .voided)
        #expect(PSPWire.outcome(status: 429, body: Data()) == .rateLimited)
        #expect(PSPWire.outcome(status: 503, body: Data()) == .transientError("503 from PSP"))
        #expect(PSPWire.outcome(status: 504, body: Data()) == nil)
        #expect(PSPWire.outcome(status: 500, body: Data()) == nil)
        #expect(PSPWire.outcome(status: 200, body: body("<html>")) == nil)
        for call in [PSPWire.Call(idempotencyKey: "pay-1:stripe", amountMinor: 1_050, currency: "USD", cardToken: "tok_abc"),
                     PSPWire.Call(idempotencyKey: "odd \"key\"\\\n", amountMinor: -1, currency: "JPY", cardToken: nil)] {
            let decoded = try? JSONDecoder().decode(PSPWire.Call.self, from: Data(call.json().utf8))
            #expect(decoded?.idempotencyKey == call.idempotencyKey && decoded?.amountMinor == call.amountMinor
                    && decoded?.currency == call.currency && decoded?.cardToken == call.cardToken, "\(call.json())")
        }
    }

    @Test("a sandbox given a secrets file serves the PSPs it names, as the server given the same file does")
    func sandboxServesThePSPsItsSecretsName() throws {
        let stripeOnly = try WebhookSecrets.parse("stripe whsec_3f9c1e7a52d84b06\nnotifications ntf_5e0a7c3b9d1f2468\n", file: "s.txt")
        #expect(try PSPSandbox.profiles([.stripeLike, .paypalLike], signedBy: stripeOnly).map(\.id) == ["stripe"])
        #expect(try PSPSandbox.profiles([.stripeLike, .paypalLike], signedBy: nil).map(\.id) == ["stripe", "paypal"])
        let none = try WebhookSecrets.parse("adyen whsec_3f9c1e7a52d84b06\n", file: "s.txt")
        #expect(throws: ServerError.self) { try PSPSandbox.profiles([.stripeLike, .paypalLike], signedBy: none) }
    }
}

@Suite("The OpenAPI document matches the server")
struct OpenAPIDocumentTests {
    static let document: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("openapi/paystorm.yaml"), encoding: .utf8)) ?? ""
    }()

    @Test("every route the server serves is documented")
    func routes() {
        #expect(!Self.document.isEmpty, "openapi/paystorm.yaml is missing")
        for path in PaystormAPI.paths {
            let documented = Self.document.contains("\n  \(path):")
            #expect(documented, "\(path) is not in openapi/paystorm.yaml")
        }
    }

    /// The codes are read from the server's source, so a code added there
    /// and not here fails this test.
    @Test("every error code the API sends is in Error.code's enum")
    func errorCodes() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let enumStart = try #require(Self.document.range(of: "    Error:\n"), "no Error schema").upperBound
        let codeEnum = try #require(Self.document[enumStart...].range(of: "enum:\n"), "no enum in the Error schema").upperBound
        let documented = Set(Self.document[codeEnum...].split(separator: "\n").prefix { $0.hasPrefix("                - ") }
            .map { $0.dropFirst("                - ".count).trimmingCharacters(in: .whitespaces) })
        var sent: Set<String> = []
        // Every file that writes the API's error body, but the sandbox's, which is another API.
        let sources = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Sources/PaystormServer").path)
            .filter { !$0.hasPrefix("PSPSandbox") }.sorted()
        let writers = try sources.filter {
            try String(contentsOf: root.appendingPathComponent("Sources/PaystormServer/\($0)"), encoding: .utf8).contains("ErrorBody(code:")
        }
        #expect(writers.contains("APIWire.swift"), "the files that write error bodies: \(writers)")
        for file in writers {
            let source = try String(contentsOf: root.appendingPathComponent("Sources/PaystormServer/\(file)"), encoding: .utf8)
            for match in source.matches(of: /code: "([a-z_]+)"/) { sent.insert(String(match.1)) }
            // ErrorMiddleware's codes for Hummingbird's own errors.
            for match in source.matches(of: /case \d+: "([a-z_]+)"/) { sent.insert(String(match.1)) }
        }
        #expect(sent.count > 15, "read \(sent.sorted())")
        for code in sent.sorted() {
            #expect(documented.contains(code), "the server sends error code \(code), which openapi/paystorm.yaml's Error.code does not list")
        }
    }

    @Test("every field of GET /health's engine status is documented (the schema allows no others)")
    func healthFields() throws {
        let status = EngineRunner.Status(batches: 0, calls: 0, largestBatch: 0, timersArmed: 0, pspCallsInFlight: 0, notificationsInFlight: 0,
                                         outboundQueued: 0, pspCallsDropped: 0, requestsShed: 0, outboxRelayed: 0, outboxBacklog: 0, consumerLag: 0, deadLetters: 0,
                                         notificationDeadLetters: 0, engineErrors: 0)
        let encoded = try PaystormAPI.encoder.encode(status)
        let keys = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any]).keys
        for key in keys.sorted() {
            let documented = Self.document.contains("            \(key):")
            #expect(documented, "engine status field \(key) is not in openapi/paystorm.yaml")
        }
    }
}

@Suite("Audit and load reports")
struct AuditAndLoadTests {
    /// A file edited by hand or on Windows: spaces around an id, CRLF line
    /// ends and blank lines were read as ids no payment has (a false violation).
    @Test("the acknowledged ids are read trimmed, blank lines skipped")
    func acknowledgedIDsAreTrimmed() {
        #expect(ServerAudit.acknowledgedIDs("pay-1\n  pay-2 \r\n\tpay-3\t\r\n\n   \npay-4\r\n") == ["pay-1", "pay-2", "pay-3", "pay-4"])
        #expect(ServerAudit.acknowledgedIDs("pay-1\rpay-2\r") == ["pay-1", "pay-2"])
        #expect(ServerAudit.acknowledgedIDs("").isEmpty && ServerAudit.acknowledgedIDs(" \r\n \n").isEmpty)
    }

    @Test("the audit catches a lost acknowledged payment and a double charge, and passes a sound database")
    func auditCatches() async throws {
        let directory = TemporaryDirectory()
        let runner = try ServerFixture.runner(in: directory)
        try runner.start()
        guard case let .success(.payment(view)) = await runner.perform(.createPayment(ServerFixture.command(key: "audit"))) else {
            Issue.record("no payment")
            return
        }
        #expect(await ServerFixture.eventually {
            guard case let .success(.ledger(page)) = await runner.perform(.ledger(LedgerQuery())) else { return false }
            return !page.entries.isEmpty
        })
        await runner.stop()
        let path = directory.file("engine.sqlite")
        let sound = try ServerAudit.run(databasePath: path, acknowledged: [view.paymentID], settled: false, doubleCharged: [])
        #expect(sound.violations.isEmpty)
        // The head it reports is a witness the same journal reproduces, and a different hash is not.
        let head = try #require(sound.journalHead)
        #expect(head.sequence == Int64(sound.journalEntries))
        #expect(try ServerAudit.run(databasePath: path, acknowledged: [], settled: false, doubleCharged: [], witnesses: [head]).violations.isEmpty)
        var forged = head
        forged.hash[0] ^= 1
        let unwitnessed = try ServerAudit.run(databasePath: path, acknowledged: [], settled: false, doubleCharged: [], witnesses: [forged])
        #expect(unwitnessed.violations.map(\.invariant) == ["ledger"] && unwitnessed.journalHead == nil)
        let lost = try ServerAudit.run(databasePath: path, acknowledged: [view.paymentID, "pay-404"], settled: false, doubleCharged: [])
        #expect(lost.violations.map(\.invariant) == ["acknowledged-payment-durable"])
        let twice = try ServerAudit.run(databasePath: path, acknowledged: [], settled: false, doubleCharged: ["pay-1"])
        #expect(twice.violations.map(\.invariant) == ["no-double-charge"])
        // A broken ledger: an unbalanced posting written behind the engine's back.
        let store = try PaymentEngine.openStore(.file(path: path))
        try store.queue.inDatabase { db in
            try db.execute(sql: "DROP TRIGGER journal_posting_append_only_update")
            try db.execute(sql: "UPDATE journal_posting SET amount_minor = amount_minor + 1 WHERE entry_sequence = 1 AND line = 1")
            #expect(db.changesCount == 1)
        }
        let broken = try ServerAudit.run(databasePath: path, acknowledged: [], settled: false, doubleCharged: [])
        #expect(!broken.violations.isEmpty, "the audit must catch a tampered ledger")
    }

    @Test("a measured run is judged like a simulated one: percentiles with intervals, 429s and 5xx apart")
    func loadMeasurement() throws {
        var requests: [LoadMeasurement.Request] = []
        for index in 0..<1_000 {
            let status = index % 100 == 0 ? 503 : index % 100 == 1 ? 429 : 201
            requests.append(.init(dueSeconds: Double(index) / 100, latencySeconds: Double(index % 100 + 1) / 1_000, status: status, kind: .payment))
        }
        let measurement = LoadMeasurement(target: "http://x", description: "test", seed: 1, durationSeconds: 10, elapsedSeconds: 10,
                                          maximumSendLagSeconds: 0, acknowledgedPayments: 980, requests: requests)
        let document = measurement.document(thresholds: [try Threshold.parse("p(50)<60ms"), try Threshold.parse("availability>=99.9%")])
        #expect(document.requests.answered == 980)
        // The last nine answers came after the ten seconds of load: not throughput.
        #expect(document.requests.achievedPerSecond == 97.1)
        #expect(document.requests.serverErrors == 10)
        #expect(document.requests.throttled == 10)
        #expect(document.thresholds.map(\.outcome) == [.passed, .failed])
        #expect(document.verdict.exitCode == 2)
        #expect(document.windows.count == 10)
        #expect(document.windows.allSatisfy { $0.offered == 100 && $0.answered == 98 })
        let p50 = try #require(document.latency.first { $0.percentile == 50 })
        #expect(abs(p50.seconds - 0.051) < 0.002)
        // It reads back and compares like any report.
        let decoded = try ReportWriter.decode(Data(ReportWriter.json(document).utf8))
        let rows = Comparison.compare(decoded, decoded)
        #expect(rows.first { $0.metric == "latency p99" }?.a == String(format: "%.1f ms", try #require(document.latency.first { $0.percentile == 99 }).seconds * 1_000))
        let terminal = try #require(rows.first { $0.metric == "time to terminal p99" })
        #expect(terminal.a == "n/a" && terminal.change == "—", "a measured run has no time to terminal; it must not read as 0 ms")
    }
}

@Suite("Journal witnesses in the server's log")
struct JournalWitnessLogTests {
    func capture(_ n: Int) -> JournalEntry {
        JournalEntry(id: "capture:pay-\(n)", transactionID: "pay-\(n)", timeNanoseconds: Int64(n), postings: [
            .debit(.psp("stripe"), Money(minorUnits: 1_000, currency: .usd)),
            .credit(.merchant("m-1"), Money(minorUnits: 1_000, currency: .usd)),
        ])
    }

    @Test("a head is logged once when it moved, nothing for an empty journal")
    func trail() throws {
        var trail = JournalWitnessLog.Trail()
        #expect(trail.line(for: nil) == nil)
        let first = try #require(Ledger.Witness("1:" + String(repeating: "ab", count: 32)))
        let second = try #require(Ledger.Witness("2:" + String(repeating: "cd", count: 32)))
        #expect(trail.line(for: first)?.hasPrefix("journal head: \(first) ") == true)
        #expect(trail.line(for: first) == nil)
        #expect(trail.line(for: nil) == nil)
        #expect(trail.line(for: second)?.contains("paystorm audit --witness \(second)") == true)
    }

    /// The server drains its engine only after the services beside it have
    /// returned: one still waiting out its interval held every stop of
    /// `serve` until the shutdown timeout (and a 5 s stop limit killed it).
    /// The bounds are wide: beside the other suites, whose blocking work
    /// can hold both of the cooperative pool's threads for minutes, this
    /// test's tasks may wait that long to run at all.
    @Test("a graceful shutdown ends the service's wait at once, not after its interval")
    func gracefulShutdownEndsTheWait() async throws {
        let service = JournalWitnessLog(every: 1_800, log: { _ in }) { nil }
        let group = ServiceGroup(configuration: .init(services: [service], logger: Logger(label: "witness-test")))
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(200))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(ContinuousClock.now - start < .seconds(600))
    }

    @Test("the service logs the journal's heads as it grows, and each logged head verifies the journal")
    func serviceLogsVerifiableHeads() async throws {
        let queue = try DatabaseQueue()
        try await queue.write { try Ledger.createTables($0) }
        let lines = Mutex<[String]>([])
        let service = JournalWitnessLog(every: 0.02, log: { line in lines.withLock { $0.append(line) } }) {
            try await queue.read { try Ledger.head(in: $0) }
        }
        let running = Task { try await service.run() }
        func waitForLines(_ count: Int) async throws {
            // Wide: beside the other suites this task may not run for minutes.
            let deadline = ContinuousClock.now + .seconds(600)
            while lines.withLock({ $0.count }) < count && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            try #require(lines.withLock { $0.count } >= count, "no journal head logged within 600 s")
        }
        try await queue.write { db in for n in 1...3 { try Ledger.post(capture(n), in: db) } }
        try await waitForLines(1)
        _ = try await queue.write { db in try Ledger.post(capture(4), in: db) }
        try await waitForLines(2)
        // Idle: the head stays, nothing more is logged.
        try await Task.sleep(for: .milliseconds(100))
        running.cancel()
        _ = try? await running.value
        let logged = lines.withLock { $0 }
        #expect(logged.count == 2, "\(logged)")
        let witnesses = logged.compactMap { line in
            line.split(separator: " ").dropFirst(2).first.flatMap { Ledger.Witness(String($0)) }
        }
        #expect(witnesses.map(\.sequence) == [3, 4])
        try await queue.read { db in _ = try Ledger.verify(db, witnesses: witnesses) }
    }
}
