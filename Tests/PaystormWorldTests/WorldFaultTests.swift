import Testing
import Foundation
import GRDB
@testable import PaystormWorld

/// Each fault kind does what it says, and the design survives it: no
/// safety violation, and everything settles during healing.
@Suite("Payments world: faults")
struct WorldFaultTests {
    func run(_ faults: [ScheduledFault], payments: Int = 1_200, _ adjust: (inout WorldConfiguration) -> Void = { _ in }) throws -> WorldReport {
        // 150/s: the load lasts 8 s, so every fault happens under load.
        var configuration = smallWorld(payments: payments, rate: 150)
        configuration.faults = faults
        adjust(&configuration)
        return try PaymentsWorld.run(configuration)
    }

    @Test("a PSP outage: calls go unanswered, the breaker fails new payments over to the other PSP")
    func pspOutage() throws {
        let report = try run([ScheduledFault(atSeconds: 1, durationSeconds: 10, kind: .pspOutage(psp: "stripe"))], payments: 2_000)
        expectClean(report)
        #expect(report.psp[0].unanswered > 0)
        #expect(report.psp[1].charges > 100, "\(report.summary)")
        #expect(report.psp[1].succeeded > 100)
    }

    /// The report keeps when each fault really acted: one outlasting the
    /// load is cut where healing began, one inside it runs as scheduled.
    @Test("each fault's window as run: healing cuts the one that outlasts the load")
    func faultWindowsAsRun() throws {
        let report = try run([ScheduledFault(atSeconds: 1, durationSeconds: 10_000, kind: .pspOutage(psp: "stripe")),
                              ScheduledFault(atSeconds: 2, durationSeconds: 1, kind: .consumerCrash(group: "ledger", index: 0))])
        expectClean(report)
        #expect(report.faultWindows.count == 2)
        #expect(report.faultWindows[0] == FaultWindow(startedSeconds: 1, endedSeconds: report.healingBeganSeconds, endedByHealing: true))
        #expect(report.healingBeganSeconds >= report.loadEndSeconds && report.healingBeganSeconds < 100)
        #expect(report.faultWindows[1] == FaultWindow(startedSeconds: 2, endedSeconds: 3))
    }

    /// Two outages of one PSP that overlap keep it out until the later one
    /// ends: the first to end used to bring it back under the second. The
    /// PSP is then out exactly as under one outage over both, and the runs
    /// differ only in their fault messages.
    @Test("overlapping outages of one PSP last until the last of them ends")
    func overlappingOutages() throws {
        let one = try run([ScheduledFault(atSeconds: 1, durationSeconds: 6, kind: .pspOutage(psp: "stripe"))], payments: 2_000)
        let two = try run([ScheduledFault(atSeconds: 1, durationSeconds: 2, kind: .pspOutage(psp: "stripe")),
                           ScheduledFault(atSeconds: 2, durationSeconds: 5, kind: .pspOutage(psp: "stripe"))], payments: 2_000)
        expectClean(two)
        #expect(two.psp[0].unanswered == one.psp[0].unanswered, "\(two.psp[0].unanswered) against \(one.psp[0].unanswered)")
        #expect(two.psp[1].charges == one.psp[1].charges)
    }

    @Test("overlapping crashes of one replica keep it down until the last of them ends")
    func overlappingReplicaCrashes() throws {
        let two = try run([ScheduledFault(atSeconds: 1, durationSeconds: 2, kind: .replicaCrash(replica: 0)),
                           ScheduledFault(atSeconds: 2, durationSeconds: 5, kind: .replicaCrash(replica: 0))], payments: 2_000)
        let one = try run([ScheduledFault(atSeconds: 1, durationSeconds: 6, kind: .replicaCrash(replica: 0))], payments: 2_000)
        expectClean(two)
        #expect(two.lostInCrashes == one.lostInCrashes)
        #expect(two.timeToTerminal.map(\.value) == one.timeToTerminal.map(\.value))
    }

    @Test("a PSP brownout: slower answers and more transient errors, all retried")
    func pspBrownout() throws {
        let baseline = try run([])
        let report = try run([ScheduledFault(atSeconds: 0, durationSeconds: 10, kind: .pspBrownout(psp: "stripe", latencyFactor: 8, errorRate: 0.3))])
        expectClean(report)
        #expect(report.psp[0].transientErrors > 3 * baseline.psp[0].transientErrors)
        #expect(report.timeToTerminal[0].value > baseline.timeToTerminal[0].value)
        // Four transient errors in a row void the key before a failover: voids are counted apart from declines.
        #expect(report.psp[0].voided > 0 && baseline.psp[0].voided == 0, "\(report.psp[0])")
    }

    @Test("a two-way partition between the replicas and a PSP drops messages; payments still settle")
    func partition() throws {
        let report = try run([ScheduledFault(atSeconds: 1, durationSeconds: 5, kind: .partition(from: "replica", to: "psp.stripe", oneWay: false))])
        expectClean(report)
        #expect(report.networkPartitioned > 0)
    }

    /// The report's PSP table splits the calls that reached a PSP by what
    /// it did with them. An ambiguous call was counted as succeeded too,
    /// and a status query for a key the PSP never saw in no column, so the
    /// columns did not add up to the calls.
    @Test("each call that reached a PSP has exactly one outcome: the outcomes add up to the calls received")
    func pspOutcomesAddUp() throws {
        let report = try run([ScheduledFault(atSeconds: 1, durationSeconds: 3, kind: .partition(from: "replica", to: "psp.stripe", oneWay: false)),
                              ScheduledFault(atSeconds: 5, durationSeconds: 2, kind: .pspOutage(psp: "stripe"))]) { configuration in
            for index in configuration.psps.indices { configuration.psps[index].ambiguousRate = 0.02 }
        }
        expectClean(report)
        for psp in report.psp {
            #expect(psp.outcomes == psp.received, "\(psp)")
        }
        let stripe = report.psp[0]
        let sent = stripe.charges + stripe.refunds + stripe.statusQueries + stripe.cancels
        #expect(stripe.received < sent, "the partition lost calls on the way: \(stripe)")
        #expect(stripe.notFound > 0 && stripe.ambiguous > 0 && stripe.unanswered > 0, "\(stripe)")
    }

    @Test("a one-way partition (replies lost) leaves the outcome ambiguous until status queries settle it")
    func oneWayPartition() throws {
        let report = try run([ScheduledFault(atSeconds: 1, durationSeconds: 3, kind: .partition(from: "psp.stripe", to: "replica", oneWay: true))])
        expectClean(report)
        #expect(report.networkPartitioned > 0)
        #expect(report.psp[0].statusQueries > 0)
    }

    @Test("a replica crash loses its in-flight work; the restarted replica recovers from SQLite")
    func replicaCrash() throws {
        let report = try run([ScheduledFault(atSeconds: 2, durationSeconds: 3, kind: .replicaCrash(replica: 0))])
        expectClean(report)
        #expect(report.kernel.crashes == 1 && report.kernel.restarts == 1)
        #expect(report.lostInCrashes > 0 || report.kernel.droppedByCrash > 0)
    }

    @Test("a broker partition down: its events wait (lag), then flow")
    func brokerPartitionDown() throws {
        let report = try run([ScheduledFault(atSeconds: 1, durationSeconds: 5, kind: .brokerPartitionDown(partition: 0))])
        expectClean(report)
        #expect(report.windows.map(\.outboxBacklog).max()! > 50)
    }

    @Test("a broker partition still down when healing begins comes back there, and what waited on it flows")
    func brokerPartitionDownIntoHealing() throws {
        // The crash leaves partition 0 with events sent but not committed; the
        // rebalance rewinds them while the partition is down; healing brings
        // it back outside any actor.
        let report = try run([ScheduledFault(atSeconds: 0.5, durationSeconds: 5, kind: .consumerCrash(group: "ledger", index: 0)),
                              ScheduledFault(atSeconds: 1, durationSeconds: 10_000, kind: .brokerPartitionDown(partition: 0))])
        expectClean(report)
        #expect(report.consumerRedeliveries > 0)
    }

    @Test("poison messages on a lossy link: each reaches the dead-letter topic with its commit, none is lost")
    func poisonOnALossyLink() throws {
        let report = try run([]) {
            $0.network.lossRate = 0.05
            $0.buggify.enabled = true
            $0.buggify.enableProbability = 1
            $0.buggify.fireProbability = 0.02
        }
        expectClean(report)
        let poisoned = report.buggifyFired.first { $0.site == "consumerPoisonMessage" }?.count ?? 0
        #expect(report.brokerDeadLetters > 0 && report.brokerDeadLetters <= poisoned + report.consumerRefusals,
                "\(report.brokerDeadLetters) dead letters, \(poisoned) poisoned, \(report.consumerRefusals) refused")
    }

    /// One payment per merchant, many refunds and poisoned messages: a refund
    /// whose capture a consumer has not applied (it is in the dead-letter
    /// topic) would take the merchant's wallet and ledger below zero.
    static func refundsOfPoisonedCaptures(_ configuration: inout WorldConfiguration) {
        configuration.clients.merchants = 1_000_000
        configuration.clients.zipfExponent = 0
        configuration.clients.refundShare = 0.4
        configuration.buggify.enabled = true
        configuration.buggify.enableProbability = 1
        configuration.buggify.fireProbability = 0.05
    }

    @Test("an event the engine refuses (a refund before its dead-lettered capture) waits in the dead-letter topic for healing")
    func refusedEventsAreDeadLettered() throws {
        let report = try run([], payments: 2_000, Self.refundsOfPoisonedCaptures)
        expectClean(report)
        #expect(report.consumerRefusals > 0, "\(report.summary)")
    }

    @Test("an event refused after healing's first replay is replayed too: no dead letter is left")
    func refusalsAfterTheFirstReplayAreReplayed() throws {
        // A partition down from mid-load to healing, and slow consumers: its
        // backlog is still draining when healing first replays the dead
        // letters, so refunds whose capture was dead-lettered are refused after it.
        let report = try run([ScheduledFault(atSeconds: 5, durationSeconds: 10_000, kind: .brokerPartitionDown(partition: 1))],
                             payments: 2_000) {
            Self.refundsOfPoisonedCaptures(&$0)
            $0.service.internalServiceMedianSeconds = 0.01
            $0.healingSeconds = $0.minimumHealingSeconds
        }
        expectClean(report)
        #expect(report.consumerRefusals > 0)
    }

    @Test("a consumer crash: its partitions are rebalanced and redelivered, applied once")
    func consumerCrash() throws {
        let report = try run([ScheduledFault(atSeconds: 2, durationSeconds: 6, kind: .consumerCrash(group: "ledger", index: 0)),
                              ScheduledFault(atSeconds: 2, durationSeconds: 6, kind: .consumerCrash(group: "notification", index: 1))])
        expectClean(report)
        #expect(report.rebalances > 6)
        #expect(report.kernel.crashes == 2)
    }

    @Test("a webhook storm: thousands of duplicates, each PSP event applied once")
    func webhookStorm() throws {
        let report = try run([ScheduledFault(atSeconds: 3, durationSeconds: 2, kind: .webhookStorm(psp: "stripe", count: 3_000))])
        expectClean(report)
        #expect(report.psp[0].webhooksSent > 3_000)
    }

    @Test("forged webhooks — a wrong secret, a body altered after signing, an hour-old signature — are all refused")
    func webhookForgery() throws {
        let baseline = try run([])
        let report = try run([ScheduledFault(atSeconds: 3, durationSeconds: 2, kind: .webhookForgery(psp: "stripe", count: 600))])
        expectClean(report)
        // Every forgery reaches the engine (no loss on this network) and is refused there.
        #expect(report.webhooksRejected == baseline.webhooksRejected + 600)
        // To replicas whose clocks run an hour behind, an hour-old signature is fresh:
        // taking those is right, not a violation.
        let behind = (0..<3).map { ScheduledFault(atSeconds: 0, durationSeconds: 8, kind: .clockSkew(replica: $0, offsetSeconds: -3_600)) }
        expectClean(try run(behind + [ScheduledFault(atSeconds: 3, durationSeconds: 2, kind: .webhookForgery(psp: "stripe", count: 600))]))
    }

    @Test("clock skew past the webhook tolerance: that replica refuses webhooks, nothing breaks")
    func clockSkew() throws {
        let report = try run([ScheduledFault(atSeconds: 0, durationSeconds: 10, kind: .clockSkew(replica: 1, offsetSeconds: 600))])
        expectClean(report)
        #expect(report.webhooksRejected > 0)
        // Time to terminal is virtual time: the skewed replica's clock is not in it.
        let unskewed = try run([])
        #expect(report.timeToTerminal.map(\.probability) == unskewed.timeToTerminal.map(\.probability))
        for (skewed, plain) in zip(report.timeToTerminal, unskewed.timeToTerminal) {
            #expect(skewed.value < plain.value * 3 + 1, "p\(skewed.probability * 100): \(skewed.value) s against \(plain.value) s")
        }
    }

    @Test("an outbox relay crash: events are published after the restart, at least once")
    func relayCrash() throws {
        let report = try run([ScheduledFault(atSeconds: 1, durationSeconds: 3, kind: .relayCrash)])
        expectClean(report)
        #expect(report.kernel.crashes == 1)
    }

    @Test("lossy, duplicating links: clients retry with the same key, replays answer the same payment")
    func lossyNetwork() throws {
        let report = try run([]) { $0.network.lossRate = 0.01; $0.network.duplicationRate = 0.01 }
        expectClean(report)
        #expect(report.networkLost > 0 && report.networkDuplicated > 0)
        #expect(report.retries > 0)
    }

    @Test("BUGGIFY: every fault site fires somewhere, and the design survives each")
    func buggify() throws {
        let report = try run([]) {
            $0.buggify.enabled = true
            $0.buggify.enableProbability = 1
            $0.buggify.fireProbability = 0.01
        }
        expectClean(report)
        #expect(Set(report.buggifyFired.map(\.site)) == Set(Buggify.Site.allCases.map(\.rawValue)), "\(report.buggifyFired)")
        #expect(report.brokerDeadLetters > 0)
    }

    @Test("refunds: full, partial and repeated refunds settle, never past the capture")
    func refunds() throws {
        let report = try run([], payments: 2_000) { $0.clients.refundShare = 0.3 }
        expectClean(report)
        #expect(report.refundsRequested > 100)
        #expect(report.refundsAccepted > 50)
        #expect(report.psp.reduce(0) { $0 + $1.refunds } > 50)
    }

    @Test("a throttling gateway answers 429; clients back off and retry")
    func throttling() throws {
        let report = try run([]) { $0.gateway.rateLimitPerSecond = 100; $0.gateway.burst = 20 }
        #expect(report.violations == 0)
        #expect(report.gatewayThrottled > 0)
        #expect(report.retries > 0)
    }
}

/// The checker must catch each class of bug it exists for: a broken engine
/// host, simulated by writing what such an engine would write.
@Suite("Payments world: the checker catches broken engines")
struct CheckerTests {
    @Test("each sabotage is reported under its invariant", arguments: [
        (Sabotage.doubleCharge, "one-charge"),
        (.unbalancedPosting, "ledger"),
        (.journalRewritten, "ledger"),
        (.terminalLeft, "terminal-state"),
        (.overRefund, "refunds"),
        (.cardNumberInClear, "card-data"),
        (.walletDrift, "wallet-equals-journal"),
        (.stuckPayment, "payment-terminal"),
        (.refundMisread, "refunded-but-failed"),
        (.notificationDropped, "notification-sent"),
        (.idempotencyForgotten, "idempotent-create"),
        (.refundIdempotencyForgotten, "idempotent-create"),
        (.reconciliationMislabelled, "reconciliation-classified"),
        (.webhookUnverified, "webhook-authenticated"),
        (.failoverWhileAmbiguous, "no-failover-when-ambiguous"),
    ])
    func sabotage(_ sabotage: Sabotage, _ invariant: String) throws {
        // Clients refund payments at least 5 s old: a refund needs a longer load than 500 at 300/s.
        var configuration = smallWorld(payments: 500, rate: sabotage == .refundMisread ? 50 : 300)
        configuration.sabotage = sabotage
        // Lost replies make clients retry.
        if sabotage == .idempotencyForgotten { configuration.network.lossRate = 0.05 }
        // Refunds of payments at least 5 s old, some of them retried.
        if sabotage == .refundIdempotencyForgotten {
            configuration = smallWorld(payments: 2_000, rate: 100)
            configuration.sabotage = sabotage
            configuration.network.lossRate = 0.05
            configuration.clients.refundShare = 0.3
        }
        // Charges that go ambiguous: the PSP captured, its reply lost.
        if sabotage == .failoverWhileAmbiguous {
            for index in configuration.psps.indices { configuration.psps[index].ambiguousRate = 0.05 }
        }
        if sabotage == .webhookUnverified {
            configuration.faults = [ScheduledFault(atSeconds: 1, durationSeconds: 1, kind: .webhookForgery(psp: "stripe", count: 50))]
        }
        // Reports with a discrepancy in a few percent of their lines, to be misread.
        if sabotage == .reconciliationMislabelled {
            for index in configuration.psps.indices { configuration.psps[index].settlementMissingRate = 0.02 }
        }
        let report = try PaymentsWorld.run(configuration)
        let found = report.safetyViolations + report.livenessViolations
        #expect(found.contains { $0.invariant == invariant }, "\(sabotage): \(found)")
        let violation = try #require(found.first { $0.invariant == invariant })
        #expect(violation.seed == configuration.seed)
        #expect(violation.virtualSeconds > 0)
    }

    @Test("a failover while the first charge has no outcome is caught, though nothing was charged twice")
    func failoverWhileUnanswered() throws {
        // The first PSP is down: its charges go unanswered and stay without
        // an outcome there, so no capture check can see the broken failover.
        var configuration = smallWorld(payments: 500)
        configuration.sabotage = .failoverWhileAmbiguous
        configuration.faults = [ScheduledFault(atSeconds: 0.5, durationSeconds: 5, kind: .pspOutage(psp: "stripe"))]
        let report = try PaymentsWorld.run(configuration)
        let found = report.safetyViolations.filter { $0.invariant == "no-failover-when-ambiguous" }
        #expect(found.count == 1, "\(report.safetyViolations)")
        let violation = try #require(found.first)
        #expect(violation.detail.contains("no outcome there"), "\(violation.detail)")
        #expect(!report.safetyViolations.contains { $0.invariant == "one-charge" })
        #expect(violation.trail.contains { $0.hasPrefix("attempt ") })
    }

    @Test("a double charge names the payment and carries its trail")
    func trail() throws {
        var configuration = smallWorld(payments: 300)
        configuration.sabotage = .doubleCharge
        let report = try PaymentsWorld.run(configuration)
        let violation = try #require(report.safetyViolations.first { $0.invariant == "one-charge" })
        #expect(violation.subject.hasPrefix("pay-"))
        #expect(violation.trail.contains { $0.hasPrefix("attempt ") })
        #expect(violation.trail.contains { $0.hasPrefix("event payment.completed:\(violation.subject) ") }, "\(violation.trail)")
        // The PSPs' truth disagrees with the engine afterwards, too.
        #expect(report.safetyViolations.contains { $0.invariant == "charged-but-not-completed" || $0.invariant == "one-charge" })
    }
}

@Suite("Payments world: the card sample")
struct EvenSampleTests {
    @Test("an even sample keeps the first item and spreads over the whole stream, its end included", arguments: [1, 63, 64, 65, 1_000, 1_000_000])
    func spansTheStream(count: Int) {
        var sample = EvenSample<Int>(capacity: 64)
        for item in 0..<count { sample.add(item) }
        #expect(sample.items.first == 0)
        #expect(sample.items.count <= 64 && sample.items.count >= min(count, 32))
        #expect(sample.items == sample.items.sorted() && Set(sample.items).count == sample.items.count)
        // Evenly spaced, and the last kept item within one spacing of the end.
        let spacing = sample.stride
        #expect(zip(sample.items, sample.items.dropFirst()).allSatisfy { $1 - $0 == spacing })
        #expect(count - 1 - sample.items.last! < spacing)
    }

    @Test("the card search finds a number anywhere in a value's digits, and nothing else")
    func cardNumberSearch() {
        let visa = "4111111111111111"
        let amex = "378282246310005"
        let search = CardNumberSearch([visa, amex, visa])
        func found(_ text: String) -> [String] {
            var hits: Set<Int> = []
            var text = text
            text.withUTF8 { search.search(UnsafeRawBufferPointer($0), into: &hits) }
            return Set(hits.map { search.numbers[$0] }).sorted()
        }
        #expect(found(visa) == [visa])
        #expect(found("card \(visa) and \(amex)!") == [amex, visa])
        #expect(found("99\(visa)7") == [visa], "inside a longer run of digits")
        #expect(found("x\(amex.dropLast())") == [])
        #expect(found("4111 1111 1111 1111") == [])
        #expect(found("") == [])
        var hits: Set<Int> = []
        search.search(Int64(visa)!, into: &hits)
        search.search(-Int64(amex)!, into: &hits)
        #expect(Set(hits.map { search.numbers[$0] }) == [visa, amex])
        hits = []
        search.search(Double(visa)!, into: &hits)
        search.search(Double(visa)! + 0.5, into: &hits)
        search.search(Int64(visa)! * 1_000 + 7, into: &hits)
        #expect(hits.map { search.numbers[$0] }.allSatisfy { $0 == visa } && !hits.isEmpty)
        var none: Set<Int> = []
        search.search(Int64.min, into: &none)
        search.search(Double.nan, into: &none)
        search.search(1e300, into: &none)
        #expect(none.isEmpty)
    }

    @Test("the card search's prefilter lets every sought number through, and a number sharing its low bits is still not found")
    func cardNumberSearchPrefilter() {
        // As many numbers as a world's sample holds.
        let numbers = (0..<64).map { String(4_000_000_000_000_000 + UInt64($0) * 7_919_113) }
        let search = CardNumberSearch(numbers)
        var hits: Set<Int> = []
        var text = numbers.joined(separator: " x ")
        text.withUTF8 { search.search(UnsafeRawBufferPointer($0), into: &hits) }
        #expect(hits == Set(0..<64))
        // Each of these passes the prefilter (the same low 12 bits) and is no number sought.
        var others: Set<Int> = []
        for number in numbers { search.search(Int64(number)! + 4_096, into: &others) }
        #expect(others.isEmpty)
    }

    @Test("the final audit finds a card number stored in clear as text, blob, integer or real, in any column")
    func cardDataInEveryStorageClass() throws {
        let visa = "4111111111111111"
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: """
                CREATE TABLE note (id INTEGER PRIMARY KEY, words TEXT, raw BLOB, amount INTEGER, ratio REAL, anything);
                INSERT INTO note (words, raw, amount, ratio, anything) VALUES ('clean', x'00ff', 17, 0.5, NULL);
                CREATE TABLE card_cache (secret_cvv TEXT);
                """)
            try db.execute(sql: "INSERT INTO note (words) VALUES (?)", arguments: ["pan " + visa])
            try db.execute(sql: "INSERT INTO note (raw) VALUES (?)", arguments: [Data(("\u{1}" + visa + "\u{2}").utf8)])
            try db.execute(sql: "INSERT INTO note (amount) VALUES (?)", arguments: [Int64(visa)!])
            try db.execute(sql: "INSERT INTO note (ratio) VALUES (?)", arguments: [Double(visa)!])
            try db.execute(sql: "INSERT INTO note (anything) VALUES (?)", arguments: [Data(visa.utf8)])
        }
        let leaks = try queue.read { try InvariantChecker.cardDataLeaks($0, cardNumbers: [visa, "5555555555554444"]) }
        #expect(leaks.map(\.subject) == ["card_cache.secret_cvv", "note.words", "note.raw", "note.amount", "note.ratio", "note.anything"])
        #expect(leaks.dropFirst().allSatisfy { $0.detail == "a card number in clear (…1111)" })
        let clean = try queue.read { try InvariantChecker.cardDataLeaks($0, cardNumbers: ["5555555555554444"]) }
        #expect(clean.map(\.subject) == ["card_cache.secret_cvv"])
    }
}
