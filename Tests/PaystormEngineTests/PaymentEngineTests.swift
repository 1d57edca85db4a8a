import Foundation
import GRDB
import Testing
@testable import PaystormEngine

@Suite("Payment engine: payments and PSP interaction")
struct PaymentEngineTests {
    @Test func completeLifecycle() throws {
        let h = try EngineHarness()
        let created = try h.pay(key: "k1", amount: "10.50")
        #expect(created.status == .processing && created.paymentID == "pay-1" && created.cardMasked == "411111******1111")
        let call = try #require(h.takeCall())
        #expect(call.operation == .charge && call.pspID == "stripe" && call.idempotencyKey == "pay-1:stripe")
        #expect(call.amount == Money(minorUnits: 1050, currency: .usd) && call.cardToken?.hasPrefix("tok_") == true)
        #expect(h.timers.map(\.timer) == [.pspTimeout(attemptID: call.attemptID, sentAtNanoseconds: h.now)])
        try h.reply(.succeeded(pspReference: "ch_1"), to: call)
        #expect(try h.engine.payment("pay-1").status == .completed)
        #expect(try h.engine.outboxBacklog() == 1)
        try h.drainOutbox()
        #expect(try h.engine.outboxBacklog() == 0)
        #expect(h.published.map(\.event.kind) == [.paymentCompleted])
        #expect(h.published.first?.partitionKey == "m-1")
        let fee = h.engine.configuration.fee(onGross: 1050)  // 2.9% + 30 = 60
        #expect(fee == 60)
        try h.read { (db: Database) throws in
            #expect(try Ledger.balance(of: .merchant("m-1"), currency: .usd, in: db) == 990)
            #expect(try Ledger.balance(of: .platformFees, currency: .usd, in: db) == 60)
            #expect(try Int64.fetchOne(db, sql: "SELECT balance_minor FROM wallet WHERE merchant_id = 'm-1'") == 990)
        }
        #expect(h.notifications.map(\.recipient) == ["user:u-1", "merchant:m-1"])
        let merchantCopy = h.notifications[1]
        #expect(merchantCopy.signature == h.engine.merchantSignature(merchantCopy.body, merchantID: "m-1"))
        #expect(h.notifications[0].signature == nil)
        #expect(try h.safetyViolations().isEmpty && h.settledViolations().isEmpty)
    }

    @Test func badInputIsRefusedWithTheFieldNamed() throws {
        let h = try EngineHarness()
        func field(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch let error as EngineError {
                if case let .invalidField(field, _) = error { return field } else { return "\(error)" }
            } catch { return "\(error)" }
        }
        #expect(field { try h.pay(key: "a", amount: "10.505") } == "amount")
        #expect(field { try h.pay(key: "b", amount: "0") } == "amount")
        #expect(field { try h.pay(key: "c", amount: "-1") } == "amount")
        #expect(field { try h.pay(key: "d", currency: "XYZ") } == "currency")
        #expect(field { try h.pay(key: "e", card: "4111111111111112") } == "payment_method.details.card_number")
        func card(_ key: String, expiry: String = "12/27", cvv: String = "123") throws {
            _ = try h.engine.createPayment(CreatePaymentCommand(userID: "u-1", merchantID: "m-1", amount: "1.00", currency: "USD",
                                                                card: CardInput(number: "4111111111111111", expiry: expiry, cvv: cvv),
                                                                idempotencyKey: key), now: h.now)
        }
        // Each card error names the field at fault, not the card as a whole.
        #expect(field { try card("e2", cvv: "12") } == "payment_method.details.cvv")
        #expect(field { try card("e3", expiry: "13/27") } == "payment_method.details.expiry_date")
        #expect(field { try card("e4", expiry: "01/20") } == "payment_method.details.expiry_date")
        #expect(field { try h.pay(key: "f", user: "") } == "user_id")
        #expect(field { try h.pay(key: "", amount: "1") } == "idempotency_key")
        #expect(field { try h.pay(key: "g", merchant: String(repeating: "m", count: 65)) } == "merchant_id")
        #expect(h.calls.isEmpty)
        let count = try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment") }
        #expect(count == 0)
    }

    @Test func idempotentReplayAndKeyReuse() throws {
        let h = try EngineHarness()
        let first = try h.pay(key: "same")
        let replay = try h.pay(key: "same")
        #expect(replay.paymentID == first.paymentID && replay.replayed && !first.replayed)
        #expect(h.calls.count == 1, "a replay never calls the PSP again")
        #expect(throws: EngineError.idempotencyKeyReused(key: "same")) { try h.pay(key: "same", amount: "11.00") }
        // Same key at another merchant is another payment.
        #expect(try h.pay(key: "same", merchant: "m-2").paymentID == "pay-2")
        // After the retention window the key is free again.
        h.advance(by: h.engine.configuration.idempotencyRetentionNanoseconds)
        #expect(try h.pay(key: "same").paymentID == "pay-3")
    }

    /// A card expires when its month ends. A payment made in that last
    /// minute and retried a minute later, in the next month, replays the
    /// payment; only a new request with that card is refused.
    @Test func aReplayAcrossTheCardsExpiryMonthStillReplays() throws {
        let h = try EngineHarness()
        h.now = 1_790_812_740 * 1_000_000_000  // 2026-09-30 23:59 UTC
        func pay(_ key: String) throws -> PaymentView {
            try h.engine.createPayment(CreatePaymentCommand(userID: "u-1", merchantID: "m-1", amount: "5.00", currency: "USD",
                                                            card: CardInput(number: "4111111111111111", expiry: "09/26", cvv: "123"),
                                                            idempotencyKey: key), now: h.now)
        }
        let first = try pay("last-minute")
        h.advance(by: 90 * 1_000_000_000)  // 2026-10-01 00:00:30
        let retry = try pay("last-minute")
        #expect(retry.paymentID == first.paymentID && retry.replayed)
        #expect(throws: EngineError.invalidField(field: "payment_method.details.expiry_date",
                                                 message: "payment_method.details.expiry_date 09/26 is in the past")) { try pay("next-month") }
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment") } == 1)
    }

    /// Records past their retention are deleted by the upkeep timer, a
    /// batch at a time, oldest first; live ones stay and still replay.
    @Test func expiredIdempotencyRecordsArePurgedInBatches() throws {
        let second: Int64 = 1_000_000_000
        var configuration = EngineHarness.configuration()
        configuration.idempotencyRetentionNanoseconds = 60 * second
        configuration.idempotencyPurgeIntervalNanoseconds = 50 * second
        configuration.idempotencyPurgeBatch = 2
        let h = try EngineHarness(configuration: configuration)
        for i in 0..<3 { try h.pay(key: "old-\(i)", user: "u-\(i)") }
        h.advance(by: 30 * second)
        let young = try h.pay(key: "young", user: "u-9")
        func records() throws -> [String] {
            try h.read { try String.fetchAll($0, sql: "SELECT idempotency_key FROM idempotency_record ORDER BY idempotency_key") }
        }
        func purge() throws -> Int64 {
            try h.engine.timerFired(.idempotencyPurge, now: h.now)
            h.collect()
            let next = try #require(h.timers.last { $0.timer == .idempotencyPurge })
            return next.at - h.now
        }
        h.engine.armMaintenance()
        h.collect()
        #expect(h.timers.contains { $0.timer == .idempotencyPurge && $0.at == h.now + 50 * second })
        h.advance(by: 50 * second)  // the three old records expired 20 s ago, the young one has 10 s left
        #expect(try purge() == second, "a full batch is followed by another a second later")
        #expect(try records().count == 2)
        h.advance(by: second)
        #expect(try purge() == 50 * second)
        #expect(try records() == ["young"])
        #expect(h.engine.counters.idempotencyRecordsPurged == 3)
        #expect(try h.pay(key: "young", user: "u-9").paymentID == young.paymentID, "a live record still replays")
        #expect(try h.pay(key: "old-0", user: "u-0").paymentID == "pay-5", "a purged key is a new request")
    }

    /// An answer that ends a call spends its timeout, and the engine says so
    /// before it arms the next call's; an answer that leaves the call open
    /// (a failed void, which only schedules a resend; a status query's
    /// `pending`) does not.
    @Test func answeredCallsSpendTheirTimeout() throws {
        let h = try EngineHarness()
        h.dropsCancelledTimers = true
        func timeout(of call: PSPRequest) -> EngineTimer { .pspTimeout(attemptID: call.attemptID, sentAtNanoseconds: call.sentAtNanoseconds) }
        try h.pay(key: "k")
        let first = try #require(h.takeCall())
        #expect(h.timers.map(\.timer) == [timeout(of: first)])
        h.advance(by: 1_000)
        try h.reply(.transientError("503"), to: first)
        #expect(h.cancelledTimers == [timeout(of: first)])
        #expect(h.timers.map(\.timer) == [.retry(attemptID: first.attemptID)], "the spent timeout is gone, the retry armed")
        // A duplicate of the same answer, now stale, spends nothing more.
        try h.reply(.transientError("503"), to: first)
        #expect(h.cancelledTimers.count == 1)

        // Tries run out: the key is voided; a failed void leaves its call's timeout live.
        for _ in 1..<h.engine.configuration.maxAttemptsPerPSP {
            h.now = try #require(h.timers.first { if case .retry = $0.timer { true } else { false } }).at
            try h.fireDueTimers()
            try h.reply(.transientError("503"), to: try #require(h.takeCall()))
        }
        let cancel = try #require(h.takeCall())
        #expect(cancel.operation == .cancel)
        let spentBefore = h.cancelledTimers.count
        try h.reply(.transientError("busy"), to: cancel)
        #expect(h.cancelledTimers.count == spentBefore, "a void not yet confirmed keeps its timeout")
        #expect(h.timers.contains { $0.timer == timeout(of: cancel) })
        try h.reply(.voided, to: cancel)
        #expect(h.cancelledTimers.last == timeout(of: cancel))
        // The failover's own timeout is armed after, and stays.
        let failover = try #require(h.takeCall())
        #expect(failover.pspID == "paypal" && h.timers.contains { $0.timer == timeout(of: failover) })

        // A webhook answers the call first: the reply that follows is late, and the timeout already spent.
        _ = try h.webhook(PSPWebhookPayload(eventID: "evt-1", type: .chargeSucceeded, pspReference: failover.idempotencyKey),
                      psp: "paypal", secret: "whsec-paypal")
        #expect(h.cancelledTimers.last == timeout(of: failover))
        #expect(!h.timers.contains { $0.timer == timeout(of: failover) })
        #expect(try h.engine.payment("pay-1").status == .completed)

        // An ambiguous charge waits on its next status query; the webhook that settles it spends that.
        try h.pay(key: "k2")
        let lost = try #require(h.takeCall())
        h.advance(by: h.engine.configuration.pspTimeoutNanoseconds)
        try h.fireDueTimers()
        #expect(h.timers.map(\.timer) == [.statusQuery(attemptID: lost.attemptID)])
        _ = try h.webhook(PSPWebhookPayload(eventID: "evt-2", type: .chargeSucceeded, pspReference: lost.idempotencyKey))
        #expect(h.cancelledTimers.last == .statusQuery(attemptID: lost.attemptID) && h.timers.isEmpty)
        #expect(try h.engine.payment("pay-2").status == .completed)
    }

    @Test func transientErrorsRetryWithBackoffThenVoidThenFailOver() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        var keys: [String] = []
        var delays: [Int64] = []
        for _ in 0..<3 {
            let call = try #require(h.takeCall())
            keys.append(call.idempotencyKey)
            try h.reply(.transientError("503"), to: call)
            if let retry = h.timers.last(where: { if case .retry = $0.timer { true } else { false } }) {
                delays.append(retry.at - h.now)
                h.now = retry.at
                try h.fireDueTimers()
            }
        }
        #expect(keys == ["pay-1:stripe", "pay-1:stripe", "pay-1:stripe"], "retries reuse the PSP idempotency key")
        #expect(delays.count == 2 && delays[1] > delays[0] / 2, "backoff grows")
        // Before another PSP may charge, this one must void the key: an
        // earlier request could still land.
        let cancel = try #require(h.takeCall())
        #expect(cancel.operation == .cancel && cancel.pspID == "stripe" && cancel.idempotencyKey == "pay-1:stripe")
        #expect(h.calls.isEmpty, "no failover before the void is confirmed")
        try h.reply(.transientError("busy"), to: cancel)
        h.advance(by: h.engine.configuration.backoffMaxNanoseconds)
        try h.fireDueTimers()
        let again = try #require(h.takeCall())
        #expect(again.operation == .cancel)
        try h.reply(.voided, to: again)
        let failover = try #require(h.takeCall())
        #expect(failover.pspID == "paypal" && failover.idempotencyKey == "pay-1:paypal")
        try h.reply(.succeeded(pspReference: "pp_1"), to: failover)
        let payment = try h.engine.payment("pay-1")
        #expect(payment.status == .completed && payment.pspID == "paypal")
        #expect(h.engine.counters.failovers == 1)
        let reason = try h.read { try String.fetchOne($0, sql: "SELECT last_error FROM psp_attempt WHERE attempt_id = 1") }
        #expect(reason == "stripe: transient error: 503 after 3 tries")
        #expect(try h.safetyViolations().isEmpty)
    }

    /// Duplicates of try 1's transient error, arriving while try 2 is in
    /// flight, say nothing about try 2: it stays in flight, no try is used
    /// up, and the breaker counts one failure, not six (five open it).
    @Test func anAnswerToAnEarlierCallThatSaysNothingDefiniteIsStale() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        let first = try #require(h.takeCall())
        try h.reply(.transientError("503"), to: first)
        h.advance(by: h.engine.configuration.backoffMaxNanoseconds)
        try h.fireDueTimers()
        let second = try #require(h.takeCall())
        #expect(second.operation == .charge && second.sentAtNanoseconds > first.sentAtNanoseconds)
        for _ in 0..<5 { try h.reply(.transientError("503, duplicated"), to: first) }
        try h.reply(.rateLimited, to: first)
        #expect(h.engine.counters.staleReplies == 6)
        let row = try h.read { try Row.fetchOne($0, sql: "SELECT tries, state FROM psp_attempt WHERE attempt_id = 1") }
        #expect(row?["tries"] == 2 && row?["state"] == "in_flight")
        #expect(h.calls.isEmpty)
        try h.pay(key: "k2", user: "u-2")
        #expect(h.takeCall()?.pspID == "stripe", "the breaker stayed closed")
        // A definite answer is a fact about the key, from whichever call it comes.
        try h.reply(.succeeded(pspReference: "ch_1"), to: first)
        #expect(try h.engine.payment("pay-1").status == .completed)
        #expect(try h.safetyViolations().isEmpty)
    }

    @Test func declineFailsWithoutFailover() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        try h.reply(.declined(reason: "insufficient_funds"), to: try #require(h.takeCall()))
        let payment = try h.engine.payment("pay-1")
        #expect(payment.status == .failed && payment.failureReason == "declined by stripe: insufficient_funds")
        #expect(h.calls.isEmpty)
        try h.drainOutbox()
        #expect(h.published.map(\.event.kind) == [.paymentFailed])
        let count = try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM journal_entry") }
        #expect(count == 0)
    }

    /// While the engine voids a key (its retries ran out), the PSP's
    /// decline of the charge may still arrive — by the charge's late reply,
    /// a webhook, or as the answer to the void of a key it had declined.
    /// The card was refused: the payment fails and no other PSP is tried.
    @Test(arguments: ["late reply", "webhook", "answer to the void"])
    func aDeclineArrivingWhileVoidingFailsThePaymentWithoutFailover(_ channel: String) throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        var charges: [PSPRequest] = []
        while let call = h.takeCall(), call.operation == .charge {
            charges.append(call)
            try h.reply(.transientError("503"), to: call)
            h.advance(by: h.engine.configuration.backoffMaxNanoseconds)
            try h.fireDueTimers()
        }
        let cancel = try #require(h.calls.first { $0.operation == .cancel }, "retries ran out: the key is being voided")
        h.calls.removeAll()
        switch channel {
        case "late reply": try h.reply(.declined(reason: "do_not_honor"), to: try #require(charges.first))
        case "webhook":
            #expect(try h.webhook(PSPWebhookPayload(eventID: "evt-1", type: .chargeFailed, pspReference: "pay-1:stripe",
                                                    reason: "do_not_honor")) == .applied)
        default: try h.reply(.declined(reason: "do_not_honor"), to: cancel)
        }
        let payment = try h.engine.payment("pay-1")
        #expect(payment.status == .failed, "\(channel)")
        #expect(payment.failureReason?.contains("do_not_honor") == true, "\(String(describing: payment.failureReason))")
        #expect(!h.calls.contains { $0.operation == .charge }, "a declined card is not charged at another PSP")
        #expect(h.engine.counters.failovers == 0)
        #expect(try h.safetyViolations().isEmpty)
    }

    @Test func ambiguousOutcomeStaysProcessingUntilAStatusQuerySettlesIt() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        let charge = try #require(h.takeCall())
        h.advance(by: h.engine.configuration.pspTimeoutNanoseconds)
        try h.fireDueTimers()
        #expect(try h.engine.payment("pay-1").status == .processing)
        h.advance(by: h.engine.configuration.statusQueryDelayNanoseconds)
        try h.fireDueTimers()
        let query = try #require(h.takeCall())
        #expect(query.operation == .status && query.pspID == "stripe" && query.idempotencyKey == charge.idempotencyKey)
        // A failing status query changes nothing and never fails over.
        try h.reply(.transientError("timeout"), to: query)
        try h.reply(.pending, to: query)
        #expect(h.calls.isEmpty)
        #expect(try h.engine.payment("pay-1").status == .processing)
        // The late reply to the original charge is still authoritative.
        try h.reply(.succeeded(pspReference: "ch_9"), to: charge)
        #expect(try h.engine.payment("pay-1").status == .completed)
        #expect(try h.safetyViolations().isEmpty)
    }

    /// A call's timeout is judged by the call it was armed for, not by
    /// comparing clocks: a replica whose clock ran ten minutes ahead stamped
    /// the call, and the timer fires on one whose clock did not. Judged by
    /// the clocks it looked early, was dropped, and nothing else would ever
    /// settle the attempt.
    @Test func aTimeoutFiringOnAClockBehindTheCallsStampStillTimesItOut() throws {
        let h = try EngineHarness()
        let skew: Int64 = 600_000_000_000
        h.advance(by: skew)
        try h.pay(key: "k")
        _ = try #require(h.takeCall())
        let (timer, _) = try #require(h.timers.first)
        h.timers.removeAll()
        // Fired at the call's due time by a clock ten minutes behind the stamp's.
        try h.engine.timerFired(timer, now: h.now - skew + h.engine.configuration.pspTimeoutNanoseconds)
        h.collect()
        #expect(try h.read { try String.fetchOne($0, sql: "SELECT state FROM psp_attempt") } == "ambiguous")
        #expect(h.timers.contains { if case .statusQuery = $0.timer { true } else { false } }, "the attempt goes on to status queries")
    }

    /// The timer of an earlier call of the same attempt is stale, at any clock.
    @Test func theTimeoutOfAnEarlierCallOfTheAttemptIsStale() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        let first = try #require(h.takeCall())
        let (firstTimeout, _) = try #require(h.timers.first)
        try h.reply(.transientError("busy"), to: first)
        h.advance(by: h.engine.configuration.backoffMaxNanoseconds)
        h.timers.removeAll { if case .pspTimeout = $0.timer { true } else { false } }
        try h.fireDueTimers()
        _ = try #require(h.takeCall(), "the retry's call")
        let stale = h.engine.counters.staleTimers
        h.advance(by: h.engine.configuration.pspTimeoutNanoseconds)
        try h.engine.timerFired(firstTimeout, now: h.now)
        #expect(h.engine.counters.staleTimers == stale + 1)
        #expect(try h.read { try String.fetchOne($0, sql: "SELECT state FROM psp_attempt") } == "in_flight")
    }

    @Test func statusNotFoundRetriesTheSameChargeAtTheSamePSP() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        _ = try #require(h.takeCall())
        h.advance(by: h.engine.configuration.pspTimeoutNanoseconds)
        try h.fireDueTimers()
        h.advance(by: h.engine.configuration.statusQueryDelayNanoseconds)
        try h.fireDueTimers()
        try h.reply(.notFound, to: try #require(h.takeCall()))
        h.advance(by: h.engine.configuration.backoffMaxNanoseconds)
        try h.fireDueTimers()
        let retry = try #require(h.takeCall())
        #expect(retry.operation == .charge && retry.pspID == "stripe" && retry.idempotencyKey == "pay-1:stripe")
    }

    @Test func unansweredStatusQueriesEndInAVoidThatSettlesThePayment() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        _ = h.takeCall()
        for _ in 0..<40 {
            h.advance(by: 30_000_000_000)
            try h.fireDueTimers()
        }
        // Bounded queries, all unanswered, then the key is voided (resent while unanswered), never failed over.
        let queries = h.calls.filter { $0.operation == .status }
        #expect(queries.count == h.engine.configuration.maxStatusQueries)
        #expect(h.calls.allSatisfy { $0.pspID == "stripe" })
        let voids = h.calls.filter { $0.operation == .cancel }
        #expect(voids.count >= 2 && voids.allSatisfy { $0.idempotencyKey == "pay-1:stripe" })
        #expect(try h.engine.payment("pay-1").status == .processing)
        #expect(h.engine.counters.statusQueriesExhausted == 1)
        // The PSP comes back and confirms the void: now, and only now, the payment fails over.
        h.calls.removeAll()
        try h.reply(.voided, to: try #require(voids.last))
        #expect(h.calls.map(\.pspID) == ["paypal"])
        #expect(try h.safetyViolations().isEmpty)
    }

    @Test func aVoidAnsweredWithTheChargeCompletesThePayment() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        _ = h.takeCall()
        for _ in 0..<40 {
            h.advance(by: 30_000_000_000)
            try h.fireDueTimers()
        }
        let void = try #require(h.calls.last { $0.operation == .cancel })
        try h.reply(.succeeded(pspReference: "ch_1"), to: void)
        #expect(try h.engine.payment("pay-1").status == .completed)
        #expect(try h.safetyViolations().isEmpty)
    }

    @Test func openBreakerRoutesNewPaymentsToTheNextPSP() throws {
        let h = try EngineHarness()
        try h.openFirstBreaker()
        h.calls.removeAll()
        try h.pay(key: "after")
        #expect(h.takeCall()?.pspID == "paypal")
        // After the open period the first PSP gets one probe; the others wait for its outcome.
        h.advance(by: h.engine.configuration.breakerOpenNanoseconds)
        h.calls.removeAll()
        try h.pay(key: "probe")
        try h.pay(key: "while-probing")
        #expect(h.calls.map(\.pspID) == ["stripe", "paypal"])
        // The probe succeeds: the breaker closes and new payments go to the first PSP again.
        try h.reply(.succeeded(pspReference: "ok"), to: try #require(h.calls.first))
        h.calls.removeAll()
        try h.pay(key: "after-probe")
        #expect(h.calls.last?.pspID == "stripe")
    }

    /// A half-open breaker lets one probe through; a request that makes no
    /// call — a replay, a fraud decline — must not use it up, or the breaker
    /// stays open another period with nothing out to close it.
    @Test func onlyARealCallUsesTheHalfOpenProbe() throws {
        let h = try EngineHarness()
        try h.openFirstBreaker()
        h.advance(by: h.engine.configuration.breakerOpenNanoseconds)
        h.calls.removeAll()
        #expect(try h.pay(key: "k0").replayed)
        try h.pay(key: "probe")
        #expect(h.calls.map(\.pspID) == ["stripe"], "the probe went to the PSP whose breaker is half-open")
    }

    @Test func aFailedProbeReopensTheBreaker() throws {
        let h = try EngineHarness()
        try h.openFirstBreaker()
        h.advance(by: h.engine.configuration.breakerOpenNanoseconds)
        h.calls.removeAll()
        try h.pay(key: "probe")
        let probe = try #require(h.takeCall())
        #expect(probe.pspID == "stripe")
        try h.reply(.transientError("still down"), to: probe)
        h.calls.removeAll()
        try h.pay(key: "next")
        #expect(h.calls.map(\.pspID) == ["paypal"])
    }

    @Test func replicasSharingAStoreSeeEachOthersPayments() throws {
        let store = try PaymentEngine.openStore(.memory)
        let keys = (Data(repeating: 1, count: 32), Data(repeating: 2, count: 32))
        let a = try PaymentEngine(sharing: store, configuration: EngineHarness.configuration(), vaultEncryptionKey: keys.0, vaultTokenKey: keys.1)
        let b = try PaymentEngine(sharing: store, configuration: EngineHarness.configuration(), vaultEncryptionKey: keys.0, vaultTokenKey: keys.1)
        let command = CreatePaymentCommand(userID: "u", merchantID: "m", amount: "5.00", currency: "USD",
                                           card: CardInput(number: "4111111111111111", expiry: "12/27", cvv: "123"), idempotencyKey: "dup")
        let first = try a.createPayment(command, now: EngineHarness.t0)
        // The duplicate reaches the other replica: it replays, and only one PSP call exists.
        let second = try b.createPayment(command, now: EngineHarness.t0 + 1)
        #expect(second.paymentID == first.paymentID && second.replayed)
        #expect(a.takeEffects().filter { if case .callPSP = $0 { true } else { false } }.count == 1)
        #expect(b.takeEffects().isEmpty)
        #expect(try b.payment(first.paymentID).status == .processing)
    }

    @Test func aCommandThatFailsInABatchLeavesNoTraceAndTheRestCommits() throws {
        let h = try EngineHarness()
        // A refund for a merchant with no wallet: the wallet's CHECK
        // (balance >= 0) refuses the insert, before the consumer claims the event.
        let refund = h.unknownRefundSucceeded("ref-x", feeMinor: 0)
        try h.engine.inBatch {
            #expect(throws: EngineError.self) { try h.engine.consume(refund, by: .wallet, now: h.now) }
            try h.pay(key: "after-failure")
        }
        h.collect()  // a batch's effects are released when it commits
        // The claim went with the failed command: a redelivery is not a duplicate, and fails the same way.
        #expect(throws: EngineError.self) { try h.engine.consume(refund, by: .wallet, now: h.now) }
        #expect(h.engine.counters.duplicateDeliveries == 0)
        #expect(try h.engine.payment("pay-1").status == .processing)
        #expect(h.calls.count == 1)
    }

    @Test func aLedgerRefusalInABatchWritesNothing() throws {
        let h = try EngineHarness()
        // A refund the merchant's ledger account cannot cover: refused before any balance moves.
        let refund = h.unknownRefundSucceeded("ref-y", feeMinor: 10)
        try h.engine.inBatch {
            #expect(throws: EngineError.self) { try h.engine.consume(refund, by: .ledger, now: h.now) }
        }
        let (balances, claims) = try h.engine.store.queue.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM account_balance") ?? -1,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM consumed_event") ?? -1)
        }
        #expect(balances == 0 && claims == 0)
    }

    @Test func aCommandThatFailsAfterWritingRollsBackItsWholeBatch() throws {
        let h = try EngineHarness()
        // Storage failing under the second payment, after its payment row is written.
        try h.failStorage("AFTER INSERT ON psp_attempt", when: "NEW.subject_id = 'pay-2'")
        var failed: [String] = []
        var batchError: EngineError?
        do {
            try h.engine.inBatch {
                for key in ["first", "second", "third"] {
                    do { try h.pay(key: key) } catch { failed.append(key) }
                }
            }
        } catch {
            batchError = error
        }
        // The second failed half-way, and the third was refused: the batch is over.
        #expect(failed == ["second", "third"])
        #expect(batchError?.description.contains("simulated storage failure") == true)
        // The batch committed nothing: not the first payment, not the second's half.
        #expect(try h.engine.store.queue.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment") } == 0)
        #expect(try h.engine.store.queue.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM card_vault") } == 0)
        h.collect()
        #expect(h.calls.isEmpty)
        // The next batch starts clean.
        try h.restoreStorage()
        let fourth = try h.engine.inBatch { try h.pay(key: "fourth") }
        #expect(fourth.paymentID == "pay-1", "a rolled-back batch draws no ids")
        // Ids run on across batches and single commands (drawn in memory, stored at commit).
        let ids = try h.engine.inBatch { try ["fifth", "sixth"].map { try h.pay(key: $0).paymentID } }
        #expect(ids == ["pay-2", "pay-3"])
        #expect(try h.pay(key: "seventh").paymentID == "pay-4")
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT value FROM counter WHERE name = 'payment'") } == 4)
        h.collect()
        #expect(h.calls.count == 4)
        #expect(try h.engine.store.queue.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment") } == 4)
    }

    /// Commands of two engine instances join the store's held transaction:
    /// none begins or commits its own, each stores what it deferred (ids,
    /// the journal head) before the next reads it, and a command refused
    /// before writing does not spoil the commit.
    @Test func commandsJoinAHeldTransactionAndCommitWithIt() throws {
        let h = try EngineHarness(sharing: PaymentEngine.openStore(.memory, allowsHeldTransactions: true))
        let other = try PaymentEngine(sharing: h.engine.store, configuration: EngineHarness.configuration(),
                                      vaultEncryptionKey: Data(repeating: 1, count: 32), vaultTokenKey: Data(repeating: 2, count: 32))
        try h.engine.store.beginHeldTransaction()
        #expect(try h.pay(key: "a").paymentID == "pay-1")
        let second = try other.createPayment(CreatePaymentCommand(
            userID: "u-2", merchantID: "m-1", amount: "5.00", currency: "USD",
            card: CardInput(number: "4111111111111111", expiry: "12/27", cvv: "123"), idempotencyKey: "b"), now: h.now)
        #expect(second.paymentID == "pay-2")
        #expect(try h.pay(key: "c").paymentID == "pay-3")
        try h.engine.consume(h.captured(1), by: .ledger, now: h.now)
        try other.consume(h.captured(2), by: .ledger, now: h.now)
        try h.engine.inBatch { try h.engine.consume(h.captured(3), by: .ledger, now: h.now) }
        #expect(throws: EngineError.self) { try h.pay(key: "d", card: "4111111111111112") }  // Luhn: refused before writing
        #expect(try h.engine.store.queue.inDatabase { $0.isInsideTransaction })
        try h.engine.store.commitHeldTransaction()
        #expect(try h.engine.store.queue.inDatabase { $0.isInsideTransaction } == false)
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment") } == 3)
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT value FROM counter WHERE name = 'payment'") } == 3)
        let audit = try h.read { try Ledger.verify($0) }
        #expect(audit.entries == 3)
        #expect(try h.read { try Ledger.headHash(in: $0) } == audit.headHash)
    }

    /// A command that fails after writing cannot be undone inside a held
    /// transaction: the store refuses to commit it, rolls the whole
    /// transaction back and says why.
    @Test func aCommandThatFailsAfterWritingInAHeldTransactionStopsItsCommit() throws {
        let h = try EngineHarness(sharing: PaymentEngine.openStore(.memory, allowsHeldTransactions: true))
        try h.failStorage("AFTER INSERT ON psp_attempt", when: "NEW.subject_id = 'pay-2'")
        try h.engine.store.beginHeldTransaction()
        try h.pay(key: "first")
        #expect(throws: EngineError.self) { try h.pay(key: "second") }
        #expect(h.engine.store.heldTransactionFailed)
        // Nothing is built on top of half a command.
        do {
            try h.pay(key: "after", user: "u-3")
            Issue.record("a command joined a held transaction that will be rolled back")
        } catch {
            #expect("\(error)".contains("earlier command failed after writing"))
        }
        do {
            try h.engine.store.commitHeldTransaction()
            Issue.record("a held transaction holding half a command committed")
        } catch {
            #expect("\(error)".contains("simulated storage failure"))
            #expect("\(error)".contains("rolled back"))
        }
        #expect(!h.engine.store.holdsTransaction)
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment") } == 0)
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM card_vault") } == 0)
        // The next held transaction starts clean.
        try h.restoreStorage()
        try h.engine.store.beginHeldTransaction()
        #expect(try h.pay(key: "third").paymentID == "pay-1")
        try h.engine.store.commitHeldTransaction()
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment") } == 1)
    }

    /// A group commit posts many journal entries against the chain head it
    /// read once and stores the head once; a batch that rolls back leaves
    /// no trace of its head for the next transaction to chain from.
    @Test func aBatchChainsItsEntriesAndARolledBackBatchLeavesNoHead() throws {
        let h = try EngineHarness()
        try h.engine.inBatch {
            for n in 1...3 { try h.engine.consume(h.captured(n), by: .ledger, now: h.now) }
        }
        #expect(try h.read { try Ledger.verify($0).entries } == 3)
        // Storage fails under a payment after a fourth entry was posted in the same batch.
        try h.failStorage("AFTER INSERT ON psp_attempt")
        #expect(throws: EngineError.self) {
            try h.engine.inBatch {
                try h.engine.consume(h.captured(4), by: .ledger, now: h.now)
                try h.pay(key: "fails")
            }
        }
        try h.restoreStorage()
        #expect(try h.read { try Ledger.verify($0).entries } == 3)
        // The next entry chains from the committed head, in a batch and outside one.
        try h.engine.inBatch { try h.engine.consume(h.captured(4), by: .ledger, now: h.now) }
        try h.engine.consume(h.captured(5), by: .ledger, now: h.now)
        let audit = try h.read { try Ledger.verify($0) }
        #expect(audit.entries == 5)
        #expect(try h.read { try Ledger.headHash(in: $0) } == audit.headHash)
    }

    /// A ledger entry's balance changes wait in memory for the batch's
    /// commit. An entry whose own insert fails has written nothing, its
    /// balance changes included, and its batch goes on without it. One whose
    /// postings fail after that must take its batch down: the entry's row and
    /// its balance changes would otherwise be stored without their postings.
    @Test func aLedgerEntryFailingAfterItsInsertTakesItsBatchDown() throws {
        let h = try EngineHarness()
        /// Posts two captures in one batch while storage fails at `point`;
        /// whether the second's consume threw, and whether the batch did.
        func batch(_ first: Int, _ second: Int, failingAt point: String, when condition: String) throws -> [Bool] {
            try h.failStorage(point, when: condition)
            defer { try? h.restoreStorage() }
            var secondFailed = false
            do {
                try h.engine.inBatch {
                    try h.engine.consume(h.captured(first), by: .ledger, now: h.now)
                    do { try h.engine.consume(h.captured(second), by: .ledger, now: h.now) } catch { secondFailed = true }
                }
                return [secondFailed, false]
            } catch {
                return [secondFailed, true]
            }
        }
        func journal() throws -> [Int64] {
            try h.read { db in [Int64(try Ledger.verify(db).entries), try Ledger.balance(of: .merchant("m-1"), currency: .usd, in: db)] }
        }
        // The second entry's insert fails: the first commits without it.
        #expect(try batch(1, 2, failingAt: "BEFORE INSERT ON journal_entry", when: "NEW.transaction_id = 'pay-2'") == [true, false])
        #expect(try journal() == [1, 970])
        // The second entry's last posting fails: neither commits, nor any balance change.
        #expect(try batch(2, 3, failingAt: "BEFORE INSERT ON journal_posting", when: "NEW.entry_sequence = 3 AND NEW.line = 2") == [true, true])
        #expect(try journal() == [1, 970])
        // Both go through once storage works again.
        try h.engine.inBatch { for n in 2...3 { try h.engine.consume(h.captured(n), by: .ledger, now: h.now) } }
        #expect(try journal() == [3, 2_910])
    }

    /// A half-open breaker admits one probe. A batch that rolls back sent
    /// none of its calls, so the payment retried with the same key may
    /// still be the probe: it is not routed away from a healthy PSP.
    @Test func aRolledBackBatchGivesBackTheBreakersProbe() throws {
        let h = try EngineHarness()
        try h.openFirstBreaker()
        h.advance(by: h.engine.configuration.breakerOpenNanoseconds)
        try h.failStorage("AFTER INSERT ON psp_attempt", when: "NEW.psp_id = 'paypal'")
        let countersBefore = h.engine.counters
        var routes: [String?] = []
        #expect(throws: EngineError.self) {
            try h.engine.inBatch {
                routes.append(try h.pay(key: "probe").pspID)
                _ = try? h.pay(key: "after-probe", user: "u-2")  // stripe's probe is out: paypal, whose insert fails
            }
        }
        #expect(routes == ["stripe"])
        #expect(h.engine.counters == countersBefore)
        try h.restoreStorage()
        #expect(try h.pay(key: "probe").pspID == "stripe", "the probe was never sent")
        #expect(try h.pay(key: "after-probe", user: "u-2").pspID == "paypal")
    }

    /// A payment of a batch that rolled back never happened: the client
    /// retrying it with the same key is not judged by its velocity.
    @Test func aRolledBackBatchDoesNotCountTowardVelocity() throws {
        var configuration = EngineHarness.configuration()
        configuration.fraudRules.userVelocityReviewLimit = 1
        configuration.fraudRules.userVelocityDeclineLimit = 2
        let h = try EngineHarness(configuration: configuration)
        try h.failStorage("AFTER INSERT ON psp_attempt", when: "NEW.subject_id = 'pay-2'")
        for _ in 0..<2 {
            #expect(throws: EngineError.self) {
                try h.engine.inBatch {
                    try h.pay(key: "first")
                    _ = try? h.pay(key: "second")
                }
            }
        }
        try h.restoreStorage()
        let retried = try h.pay(key: "first")
        #expect(retried.status == .processing)
        let decision = try h.read { try String.fetchOne($0, sql: "SELECT fraud_decision FROM payment WHERE payment_id = ?", arguments: [retried.paymentID]) }
        #expect(decision == "approve", "four attempts that never happened were counted")
    }

    /// Inside a group commit the ledger judges a falling balance by what the
    /// batch already posted, not by the stored row alone, and stores one
    /// change per account at the commit.
    @Test func aBatchJudgesBalancesByWhatItAlreadyPosted() throws {
        let h = try EngineHarness()
        let capture = TransactionEvent(eventID: "payment.completed:pay-1", kind: .paymentCompleted, paymentID: "pay-1", refundID: nil,
                                       merchantID: "m-9", userID: "u-9", amountMinor: 1_000, currency: "USD", feeMinor: 30,
                                       pspID: "stripe", timeNanoseconds: h.now, reason: nil)
        try h.engine.inBatch {
            try h.engine.consume(capture, by: .ledger, now: h.now)
            // 485 net out of the 970 posted a moment ago, in the same uncommitted batch.
            #expect(try h.engine.consume(h.unknownRefundSucceeded("ref-a", feeMinor: 15), by: .ledger, now: h.now))
            // 600 more would take the merchant's 485 below zero: refused, and nothing of it kept.
            #expect(throws: EngineError.self) {
                try h.engine.consume(TransactionEvent(eventID: "refund.succeeded:ref-b", kind: .refundSucceeded, paymentID: "pay-1",
                                                      refundID: "ref-b", merchantID: "m-9", userID: "u-9", amountMinor: 600,
                                                      currency: "USD", feeMinor: 0, pspID: "stripe", timeNanoseconds: h.now,
                                                      reason: nil), by: .ledger, now: h.now)
            }
        }
        try h.read { (db: Database) throws in
            #expect(try Ledger.balance(of: .merchant("m-9"), currency: .usd, in: db) == 970 - 485)
            #expect(try Ledger.balance(of: .platformFees, currency: .usd, in: db) == 30 - 15)
            #expect(try Ledger.verify(db).entries == 2)
        }
    }

    @Test func restartedEngineResumesOpenAttempts() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("paystorm-engine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("engine.sqlite").path
        do {
            let h = try EngineHarness(.file(path: path))
            try h.pay(key: "k")
            _ = h.takeCall()
            h.advance(by: h.engine.configuration.pspTimeoutNanoseconds)
            try h.fireDueTimers()  // now ambiguous; then the process dies
        }
        let h = try EngineHarness(.file(path: path))
        h.now += 10_000_000_000
        try h.engine.recover(now: h.now)
        h.collect()
        #expect(h.timers.map(\.timer) == [.statusQuery(attemptID: 1)])
        h.advance(by: h.engine.configuration.statusQueryDelayNanoseconds)
        try h.fireDueTimers()
        let query = try #require(h.takeCall())
        #expect(query.operation == .status)
        try h.reply(.succeeded(pspReference: "ch_1"), to: query)
        #expect(try h.engine.payment("pay-1").status == .completed)
    }
}

extension EngineHarness {
    /// A `refund.succeeded` of 5.00 USD for merchant m-9, whom the engine has
    /// never credited: its wallet and ledger account cannot cover it.
    func unknownRefundSucceeded(_ refundID: String, feeMinor: Int64) -> TransactionEvent {
        TransactionEvent(eventID: "refund.succeeded:\(refundID)", kind: .refundSucceeded, paymentID: "pay-\(refundID)", refundID: refundID,
                         merchantID: "m-9", userID: "u-9", amountMinor: 500, currency: "USD", feeMinor: feeMinor,
                         pspID: "stripe", timeNanoseconds: now, reason: nil)
    }
}

@Suite("Engine configuration: bounds that keep its arithmetic exact")
struct EngineConfigurationBoundsTests {
    @Test("each duration above a year, or not positive, is refused by name",
          arguments: ["backoffMaxNanoseconds", "pspTimeoutNanoseconds", "statusQueryDelayNanoseconds", "breakerOpenNanoseconds",
                      "idempotencyRetentionNanoseconds", "idempotencyPurgeIntervalNanoseconds", "notificationBackoffNanoseconds",
                      "webhookToleranceSeconds"])
    func durationsAreBounded(field: String) throws {
        try EngineHarness.configuration().validate()
        for tooMuch in [false, true] {
            var configuration = EngineHarness.configuration()
            let value: Int64 = tooMuch ? EngineConfiguration.maximumDurationNanoseconds + 1 : 0
            switch field {
            case "backoffMaxNanoseconds": configuration.backoffMaxNanoseconds = tooMuch ? value : configuration.backoffBaseNanoseconds - 1
            case "pspTimeoutNanoseconds": configuration.pspTimeoutNanoseconds = value
            case "statusQueryDelayNanoseconds": configuration.statusQueryDelayNanoseconds = value
            case "breakerOpenNanoseconds": configuration.breakerOpenNanoseconds = value
            case "idempotencyRetentionNanoseconds": configuration.idempotencyRetentionNanoseconds = value
            case "idempotencyPurgeIntervalNanoseconds": configuration.idempotencyPurgeIntervalNanoseconds = value
            case "notificationBackoffNanoseconds": configuration.notificationBackoffNanoseconds = value
            default: configuration.webhookToleranceSeconds = tooMuch ? value / 1_000_000_000 + 1 : 0
            }
            // A maximum below the base is the base's fault, and named so.
            let named = field == "backoffMaxNanoseconds" && !tooMuch ? "backoffBaseNanoseconds" : field
            #expect { try configuration.validate() } throws: { error in
                guard case let .invalidField(got, _) = error as? EngineError else { return false }
                return got == named
            }
        }
    }

    /// Status queries back off from their delay to a cap; a delay of 10 s
    /// shifted by 30 doublings wrapped negative, and the queries ran in a
    /// tight loop.
    @Test func backoffSaturatesAtItsCapInsteadOfWrapping() throws {
        let h = try EngineHarness()
        let base: Int64 = 10_000_000_000, cap: Int64 = 4 * 300_000_000_000
        for attempt in [1, 2, 10, 31, 40, 100] {
            let delay = h.engine.backoff(attemptID: 7, try: attempt, base: base, cap: cap)
            #expect(delay >= base / 2 && delay <= cap, "try \(attempt): \(delay)")
        }
        #expect(h.engine.backoff(attemptID: 7, try: 31, base: base, cap: cap) >= cap / 2)
    }

    /// The settle horizon sums the engine's waits; under the extreme settings
    /// validate() accepts it saturates instead of wrapping negative or trapping.
    @Test func theSettleHorizonSumsTheWaitsAndSaturates() throws {
        let second: Int64 = 1_000_000_000
        var configuration = EngineConfiguration(psps: [.init(id: "a", webhookSecret: "s"), .init(id: "b", webhookSecret: "s")])
        // 20 s query wait + 2 s timeout; (4 × 7 s + 7 s) at the second PSP; 7.5 s of notification retries.
        #expect(configuration.settleHorizonNanoseconds == 64 * second + second / 2)
        configuration.psps.append(.init(id: "c", webhookSecret: "s"))
        #expect(configuration.settleHorizonNanoseconds == 99 * second + second / 2, "a chain for each PSP after the first")
        // A first status query slower than the backoff cap is waited for in full.
        configuration.statusQueryDelayNanoseconds = 60 * second
        #expect(configuration.settleHorizonNanoseconds == 139 * second + second / 2)
        configuration.maxStatusQueries = 100
        configuration.maxNotificationAttempts = 100
        configuration.backoffMaxNanoseconds = EngineConfiguration.maximumDurationNanoseconds
        configuration.backoffBaseNanoseconds = second
        try configuration.validate()
        #expect(configuration.settleHorizonNanoseconds == .max)
    }
}
