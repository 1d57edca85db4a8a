import Foundation
import GRDB
import Testing
@testable import PaystormEngine

extension EngineHarness {
    /// A completed, consumed payment of `amount`.
    @discardableResult
    func completedPayment(key: String, amount: String = "100.00") throws -> PaymentView {
        let view = try pay(key: key, amount: amount)
        try reply(.succeeded(pspReference: "ch_\(key)"), to: try #require(calls.last))
        calls.removeAll()
        try drainOutbox()
        return view
    }

    func refund(_ paymentID: String, amount: String, key: String) throws -> RefundView {
        let view = try engine.createRefund(CreateRefundCommand(merchantID: "m-1", paymentID: paymentID, amount: amount, idempotencyKey: key), now: now)
        collect()
        return view
    }

    func webhook(_ payload: PSPWebhookPayload, psp: String = "stripe", secret: String = "whsec-stripe",
                 timestamp: Int64? = nil, signature: String? = nil) throws -> WebhookOutcome {
        let body = String(decoding: try JSONEncoder().encode(payload), as: UTF8.self)
        let ts = timestamp ?? now / 1_000_000_000
        let outcome = try engine.receiveWebhook(pspID: psp, body: body,
                                                signature: signature ?? PaymentEngine.webhookSignature(body: body, timestampSeconds: ts, secret: secret),
                                                timestampSeconds: ts, now: now)
        collect()
        return outcome
    }
}

@Suite("Payment engine: refunds")
struct RefundTests {
    @Test func partialAndMultipleRefundsReverseLedgerAndWallet() throws {
        let h = try EngineHarness()
        try h.completedPayment(key: "p")  // 100.00, fee 2.90 + 0.30 = 320
        let first = try h.refund("pay-1", amount: "40.00", key: "r1")
        #expect(first.status == .processing)
        let call = try #require(h.takeCall())
        #expect(call.operation == .refund && call.pspID == "stripe" && call.idempotencyKey == "ref-1:stripe")
        try h.reply(.succeeded(pspReference: "re_1"), to: call)
        _ = try h.refund("pay-1", amount: "60.00", key: "r2")
        try h.reply(.succeeded(pspReference: "re_2"), to: try #require(h.takeCall()))
        try h.drainOutbox()
        #expect(try h.engine.payment("pay-1").refundedMinor == 10_000)
        try h.read { (db: Database) throws in
            #expect(try Ledger.balance(of: .merchant("m-1"), currency: .usd, in: db) == 0, "a full refund returns the whole net")
            #expect(try Ledger.balance(of: .platformFees, currency: .usd, in: db) == 0, "and the whole fee")
            #expect(try Ledger.balance(of: .psp("stripe"), currency: .usd, in: db) == 0)
            #expect(try Int64.fetchOne(db, sql: "SELECT balance_minor FROM wallet WHERE merchant_id = 'm-1'") == 0)
        }
        #expect(try h.safetyViolations().isEmpty && h.settledViolations().isEmpty)
    }

    /// The fee is returned in proportion to what was refunded so far, rounded
    /// down in total: the last cent of a 10.00 payment (fee 0.59) returns a
    /// cent of fee, all of the refund, and the merchant's share is zero. A
    /// zero posting is no posting: the entry still balances and posts.
    @Test func aRefundWhoseFeeShareIsItsWholeAmountStillPosts() throws {
        let h = try EngineHarness()
        try h.completedPayment(key: "p", amount: "10.00")  // fee 0.29 + 0.30 = 59
        _ = try h.refund("pay-1", amount: "9.99", key: "r1")
        try h.reply(.succeeded(pspReference: "re_1"), to: try #require(h.takeCall()))
        _ = try h.refund("pay-1", amount: "0.01", key: "r2")
        try h.reply(.succeeded(pspReference: "re_2"), to: try #require(h.takeCall()))
        try h.drainOutbox()
        try h.read { (db: Database) throws in
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM journal_entry") == 3, "the capture and both refunds")
            #expect(try Ledger.balance(of: .psp("stripe"), currency: .usd, in: db) == 0)
            #expect(try Ledger.balance(of: .platformFees, currency: .usd, in: db) == 0, "the whole fee returned")
            #expect(try Ledger.balance(of: .merchant("m-1"), currency: .usd, in: db) == 0)
        }
        #expect(try h.safetyViolations().isEmpty && h.settledViolations().isEmpty)
    }

    /// A retried refund whose key outlived its record is a new request,
    /// refused when nothing is left to refund — before it writes anything,
    /// so a group commit around it keeps the other commands. (The lookup
    /// used to delete the expired record first, and the refusal then rolled
    /// the whole batch back.)
    @Test func aRefundRefusedAfterItsKeyExpiredLeavesItsBatchWhole() throws {
        let h = try EngineHarness()
        try h.completedPayment(key: "p", amount: "50.00")
        _ = try h.refund("pay-1", amount: "50.00", key: "r")
        h.advance(by: h.engine.configuration.idempotencyRetentionNanoseconds)
        var refusal: EngineError?
        try h.engine.inBatch {
            try h.pay(key: "q", user: "u-2")
            do {
                _ = try h.refund("pay-1", amount: "50.00", key: "r")
            } catch {
                refusal = error as? EngineError
            }
        }
        guard case .refundExceedsCaptured = refusal else {
            Issue.record("expected refundExceedsCaptured, got \(String(describing: refusal))")
            return
        }
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment") } == 2, "the batch committed")
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM refund") } == 1)
        // The expired record stays until a new one replaces it (or the purge removes it).
        #expect(try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM idempotency_record WHERE idempotency_key = 'r'") } == 1)
        // The key is free: a new refund of another payment under it replaces the record.
        try h.completedPayment(key: "p2", amount: "20.00")
        let again = try h.refund("pay-3", amount: "5.00", key: "r")
        #expect(!again.replayed)
        #expect(try h.read { try String.fetchOne($0, sql: "SELECT resource_id FROM idempotency_record WHERE idempotency_key = 'r' AND kind = 'refund'") } == again.refundID)
        #expect(try h.refund("pay-3", amount: "5.00", key: "r").replayed)
    }

    @Test func pendingRefundsReserveTheCapturedAmount() throws {
        let h = try EngineHarness()
        try h.completedPayment(key: "p", amount: "50.00")
        // Three requests race before any PSP answers: the third would exceed.
        _ = try h.refund("pay-1", amount: "20.00", key: "a")
        _ = try h.refund("pay-1", amount: "20.00", key: "b")
        #expect(throws: EngineError.refundExceedsCaptured(paymentID: "pay-1", requestedMinor: 2_000, availableMinor: 1_000, currency: "USD")) {
            _ = try h.refund("pay-1", amount: "20.00", key: "c")
        }
        // Said in the major units the merchant sent.
        #expect(EngineError.refundExceedsCaptured(paymentID: "pay-1", requestedMinor: 2_000, availableMinor: 1_000, currency: "USD").description
                == "refund of 20.00 USD on payment pay-1 exceeds the 10.00 USD still refundable")
        // A failed refund releases its reservation.
        try h.reply(.declined(reason: "card_closed"), to: try #require(h.takeCall()))
        #expect(try h.engine.refund("ref-1").status == .failed)
        #expect(try h.refund("pay-1", amount: "30.00", key: "d").status == .processing)
        #expect(try h.safetyViolations().isEmpty)
    }

    @Test func refundRulesAndIdempotency() throws {
        let h = try EngineHarness()
        try h.pay(key: "not-yet")
        #expect(throws: EngineError.self) { _ = try h.refund("pay-1", amount: "1.00", key: "x") }
        #expect(throws: EngineError.paymentNotFound("pay-404")) { _ = try h.refund("pay-404", amount: "1.00", key: "y") }
        h.calls.removeAll()
        try h.completedPayment(key: "p")
        let first = try h.refund("pay-2", amount: "5.00", key: "same")
        let again = try h.refund("pay-2", amount: "5.00", key: "same")
        #expect(again.refundID == first.refundID && again.replayed)
        #expect(h.calls.count == 1)
        #expect(throws: EngineError.idempotencyKeyReused(key: "same")) { _ = try h.refund("pay-2", amount: "6.00", key: "same") }
        #expect(throws: EngineError.self) { _ = try h.refund("pay-2", amount: "1.001", key: "z") }
    }
}

@Suite("Payment engine: PSP webhooks")
struct WebhookTests {
    @Test func signedWebhookSettlesAnAmbiguousPaymentOnce() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        h.advance(by: h.engine.configuration.pspTimeoutNanoseconds)
        try h.fireDueTimers()
        let event = PSPWebhookPayload(eventID: "evt_1", type: .chargeSucceeded, pspReference: "pay-1:stripe", chargeID: "ch_1")
        #expect(try h.webhook(event) == .applied)
        #expect(try h.engine.payment("pay-1").status == .completed)
        #expect(try h.webhook(event) == .duplicate)
        try h.drainOutbox()
        #expect(h.published.count == 1, "applied at most once")
    }

    @Test func lateAndOutOfOrderWebhooksNeverMoveBackwards() throws {
        let h = try EngineHarness()
        try h.completedPayment(key: "k")
        #expect(try h.webhook(PSPWebhookPayload(eventID: "evt_late", type: .chargeFailed, pspReference: "pay-1:stripe", reason: "late")) == .ignored)
        #expect(try h.engine.payment("pay-1").status == .completed)
        #expect(try h.webhook(PSPWebhookPayload(eventID: "evt_x", type: .chargeSucceeded, pspReference: "pay-99:stripe")) == .unknownReference)
    }

    /// A success for an attempt that already failed at its PSP — declined,
    /// or voided before the payment moved on — contradicts the PSP's own
    /// answer. It moves nothing, by reply or by webhook, and is audited.
    @Test func aSuccessForAFailedAttemptIsAuditedNotApplied() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        let call = try #require(h.takeCall())
        try h.reply(.declined(reason: "card declined"), to: call)
        #expect(try h.engine.payment("pay-1").status == .failed)
        try h.reply(.succeeded(pspReference: "ch_late"), to: call)
        let webhook = PSPWebhookPayload(eventID: "evt_late", type: .chargeSucceeded, pspReference: "pay-1:stripe", chargeID: "ch_late")
        #expect(try h.webhook(webhook) == .ignored)
        // A repeated decline says nothing new.
        try h.reply(.declined(reason: "card declined"), to: call)
        #expect(try h.engine.payment("pay-1").status == .failed)
        let trail = try h.read { db in
            try Row.fetchAll(db, sql: "SELECT action, reason FROM audit_log WHERE subject_id = 'pay-1' ORDER BY audit_id")
                .map { "\($0["action"] as String): \($0["reason"] as String)" }
        }
        #expect(trail == [
            "contradicting-success: PSP stripe reported success (ch_late) by reply for attempt 1 (pay-1:stripe), which had already failed at that PSP",
            "contradicting-success: PSP stripe reported success (ch_late) by webhook evt_late for attempt 1 (pay-1:stripe), which had already failed at that PSP",
        ])
        try h.drainOutbox()
        #expect(h.published.map(\.event.kind) == [.paymentFailed])
    }

    @Test func badSignaturesAndStaleTimestampsChangeNothing() throws {
        let h = try EngineHarness()
        try h.pay(key: "k")
        let event = PSPWebhookPayload(eventID: "evt_1", type: .chargeSucceeded, pspReference: "pay-1:stripe")
        #expect(throws: EngineError.webhookRejected("signature does not match")) { _ = try h.webhook(event, signature: String(repeating: "0", count: 64)) }
        #expect(throws: EngineError.self) { _ = try h.webhook(event, secret: "whsec-paypal") }
        #expect(throws: EngineError.self) { _ = try h.webhook(event, timestamp: h.now / 1_000_000_000 - 301) }
        #expect(throws: EngineError.webhookRejected("unknown PSP \"adyen\"")) { _ = try h.webhook(event, psp: "adyen") }
        #expect(try h.engine.payment("pay-1").status == .processing)
        let recorded = try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM webhook_event") }
        #expect(recorded == 0)
        // The same event, properly signed, still applies: nothing was consumed by the bad ones.
        #expect(try h.webhook(event) == .applied)
    }

    /// A PSP's integrator reads these: the field at fault and what it may be,
    /// not a Swift `DecodingError`.
    @Test func aMalformedWebhookBodyIsRefusedNamingTheFieldAndWhatItMayBe() throws {
        let h = try EngineHarness()
        func refusal(_ body: String) -> String {
            let ts = h.now / 1_000_000_000
            do {
                _ = try h.engine.receiveWebhook(pspID: "stripe", body: body,
                                                signature: PaymentEngine.webhookSignature(body: body, timestampSeconds: ts, secret: "whsec-stripe"),
                                                timestampSeconds: ts, now: h.now)
                return "accepted"
            } catch {
                return error.description
            }
        }
        let cases: [(String, [String])] = [
            (#"{"event_id":"e1","type":"charge.exploded","psp_reference":"pay-1:stripe"}"#,
             ["type", "\"charge.exploded\"", "charge.succeeded, charge.failed, refund.succeeded, refund.failed"]),
            (#"{"event_id":"e2","type":"charge.succeeded"}"#, ["psp_reference", "required"]),
            (#"{"event_id":3,"type":"charge.succeeded","psp_reference":"pay-1:stripe"}"#, ["event_id", "expected a string"]),
            (#"{"event_id":"e4","type":null,"psp_reference":"pay-1:stripe"}"#, ["type", "null"]),
            ("{not json", ["not valid JSON"]),
            ("[]", ["the body must be a JSON object of event_id, type and psp_reference"]),
        ]
        for (body, words) in cases {
            let message = refusal(body)
            for word in words { #expect(message.contains(word), "\(body) → \(message)") }
            for swift in ["Cannot initialize", "CodingKeys", "DecodingError", "Context("] {
                #expect(!message.contains(swift), "\(body) → \(message)")
            }
        }
    }
}

@Suite("Payment engine: notifications and reconciliation")
struct NotificationAndReconciliationTests {
    /// A completed payment whose merchant notification failed its three attempts.
    func deadLetteredMerchantNotification(_ h: EngineHarness) throws -> NotificationMessage {
        try h.completedPayment(key: "k")
        let merchant = try #require(h.notifications.first { $0.recipient == "merchant:m-1" })
        for _ in 0..<3 {
            try h.engine.notificationDelivered(merchant.notificationID, success: false, now: h.now)
            h.collect()
            h.advance(by: 60_000_000_000)
            try h.fireDueTimers()
        }
        #expect(try h.engine.deadLetterCount() == 1)
        return merchant
    }

    @Test func failedNotificationsRetryThenDeadLetterThenReplay() throws {
        let h = try EngineHarness()
        let merchant = try deadLetteredMerchantNotification(h)
        #expect(h.notifications.filter { $0.notificationID == merchant.notificationID }.map(\.attempt) == [1, 2, 3])
        #expect(try h.engine.replayDeadLetters(limit: 10, now: h.now) == 1)
        h.collect()
        #expect(try h.engine.deadLetterCount() == 0)
        // The resends are rendered again from the event: the same message, each time.
        for resent in h.notifications where resent.notificationID == merchant.notificationID {
            #expect(resent.recipient == merchant.recipient && resent.body == merchant.body && resent.signature == merchant.signature)
        }
        let replayed = try #require(h.notifications.last)
        #expect(replayed.notificationID == merchant.notificationID && replayed.attempt == 1)
        try h.engine.notificationDelivered(merchant.notificationID, success: true, now: h.now)
        let states = try h.read { try Row.fetchOne($0, sql: "SELECT user_state, merchant_state FROM notification") }
        // The user's notification, never answered here, keeps its own state.
        #expect(states?["user_state"] == "pending" && states?["merchant_state"] == "delivered")
    }

    @Test func aReplayWhoseEventLeftTheOutboxFailsWithNothingWritten() throws {
        let h = try EngineHarness()
        let merchant = try deadLetteredMerchantNotification(h)
        // A store damaged behind the engine's back: the message cannot be rendered again.
        try h.engine.store.queue.write { try $0.execute(sql: "DELETE FROM outbox") }
        let sent = h.notifications.count
        let user = try #require(h.notifications.first { $0.recipient == "user:u-1" })
        // In a batch: a command that fails before writing leaves the batch's other commands to commit.
        _ = try h.engine.inBatch {
            #expect {
                try h.engine.replayDeadLetters(limit: 10, now: h.now)
            } throws: { error in
                "\(error)".contains("notification \(merchant.notificationID): its event payment.completed:pay-1 is not in the outbox")
            }
            try h.engine.notificationDelivered(user.notificationID, success: true, now: h.now)
        }
        h.collect()
        #expect(h.notifications.count == sent)
        #expect(try h.engine.deadLetterCount() == 1)
        let states = try h.read { try Row.fetchOne($0, sql: "SELECT user_state, merchant_state FROM notification") }
        #expect(states?["user_state"] == "delivered" && states?["merchant_state"] == "dead")
    }

    @Test func consumersAreIdempotentByEventID() throws {
        let h = try EngineHarness()
        try h.completedPayment(key: "k")
        let event = try #require(h.published.first?.event)
        for consumer in EngineConsumer.allCases {
            #expect(try h.engine.consume(event, by: consumer, now: h.now) == false)
        }
        try h.read { (db: Database) throws in
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM journal_entry") == 1)
            // The user's and the merchant's notifications share the event's row.
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM notification") == 1)
        }
        #expect(try h.settledViolations().isEmpty)
    }

    @Test func reconciliationSettlesStuckPaymentsAndRecordsTheRest() throws {
        let h = try EngineHarness()
        try h.pay(key: "stuck", amount: "12.00")
        h.advance(by: 200_000_000_000)
        try h.fireDueTimers()
        try h.fireDueTimers()
        #expect(try h.engine.payment("pay-1").status == .processing)
        let csv = """
            psp_reference,kind,amount,currency,status,settled_at_ns
            pay-1:stripe,charge,12.00,USD,captured,\(h.now)
            pay-77:stripe,charge,5.00,USD,captured,\(h.now)
            """
        let report = try SettlementReport.parseCSV(csv, pspID: "stripe", periodStart: EngineHarness.t0, periodEnd: h.now + 1)
        let result = try h.engine.reconcile(report, now: h.now)
        #expect(result.count(of: .statusMismatch) == 1 && result.count(of: .missingInternally) == 1)
        #expect(try h.engine.payment("pay-1").status == .completed)
        try h.read { (db: Database) throws in
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM reconciliation_item") == 2)
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM audit_log WHERE action = 'reconciliation-settle'") == 1)
        }
        // Nothing was invented for the payment the engine does not know.
        #expect(throws: EngineError.paymentNotFound("pay-77")) { _ = try h.engine.payment("pay-77") }
    }

    @Test func aPartRefusesLinesOutsideItsReferences() throws {
        let h = try EngineHarness()
        for n in 1...3 { try h.completedPayment(key: "k\(n)", amount: "1.00") }
        let part = ReferenceRange(after: "pay-1:stripe", through: "pay-2:stripe")
        let csv = """
            psp_reference,kind,amount,currency,status,settled_at_ns
            pay-2:stripe,charge,1.00,USD,captured,\(h.now)
            pay-3:stripe,charge,1.00,USD,captured,\(h.now)
            """
        let report = try SettlementReport.parseCSV(csv, pspID: "stripe", periodStart: EngineHarness.t0, periodEnd: h.now + 1)
        #expect(throws: EngineError.invalidField(
            field: "lines[1].psp_reference",
            message: "\"pay-3:stripe\" lies outside the part's references, after \"pay-1:stripe\" up to and including \"pay-2:stripe\"")) {
            _ = try h.engine.reconcile(report, references: part, now: h.now)
        }
        try h.read { (db: Database) throws in
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM reconciliation_item") == 0, "nothing was recorded")
        }
        // The same lines, each in a part that holds it, match.
        let whole = try h.engine.reconcile(report, references: ReferenceRange(after: "pay-1:stripe", through: nil), now: h.now)
        #expect(whole.matched == 2 && whole.items.isEmpty, "\(whole.items)")
    }

    @Test func aReconciliationKeepsTheHostsMarkInPlaceOfTheLast() throws {
        let h = try EngineHarness()
        try h.completedPayment(key: "k1", amount: "1.00")
        #expect(try h.engine.reconciledThrough().isEmpty)
        let report = { (psp: String) in
            SettlementReport(pspID: psp, periodStartNanoseconds: EngineHarness.t0, periodEndNanoseconds: h.now + 10, lines: [])
        }
        _ = try h.engine.reconcile(report("stripe"), now: h.now)
        #expect(try h.engine.reconciledThrough().isEmpty, "no mark given, none kept")
        _ = try h.engine.reconcile(report("stripe"), now: h.now, mark: 500)
        _ = try h.engine.reconcile(report("paypal"), now: h.now, mark: 700)
        // The latest mark replaces the last, even an earlier one: a clock put right again.
        _ = try h.engine.reconcile(report("stripe"), now: h.now, mark: 300)
        #expect(try h.engine.reconciledThrough() == ["stripe": 300, "paypal": 700])
        // A failed reconciliation keeps no mark.
        let outside = SettlementReport(pspID: "stripe", periodStartNanoseconds: EngineHarness.t0, periodEndNanoseconds: h.now + 10, lines: [
            SettlementLine(pspID: "stripe", pspReference: "zzz", kind: .charge, amount: Money(minorUnits: 1, currency: .usd),
                           status: .captured, settledAtNanoseconds: h.now),
        ])
        #expect(throws: EngineError.self) {
            _ = try h.engine.reconcile(outside, references: ReferenceRange(after: nil, through: "pay-9:stripe"), now: h.now, mark: 900)
        }
        #expect(try h.engine.reconciledThrough()["stripe"] == 300)
    }

    /// A report reconciled in parts reads, for each part, only the attempts
    /// in its range, found by the index: a part that read every attempt of
    /// the PSP made reconciliation grow with the square of the run.
    @Test func aPartOfAReportReadsOnlyItsReferencesByIndex() throws {
        let h = try EngineHarness()
        for n in 1...5 { try h.completedPayment(key: "k\(n)", amount: "1.00") }
        let part = ReferenceRange(after: "pay-2:stripe", through: "pay-4:stripe")
        let references = try h.read { db in
            try h.engine.engineRecords(pspID: "stripe", references: part, in: db).map(\.pspReference)
        }
        #expect(references == ["pay-3:stripe", "pay-4:stripe"])
        for range in [part, ReferenceRange(after: "pay-2:stripe", through: nil), ReferenceRange(after: nil, through: "pay-4:stripe")] {
            let (sql, arguments) = PaymentEngine.engineRecordsSelect(pspID: "stripe", references: range)
            let plan = try h.read { db in
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments).map { $0["detail"] as String }
            }
            #expect(plan.contains { $0.contains("psp_attempt_key (psp_id=? AND psp_idempotency_key") }, "\(range): \(plan)")
            #expect(!plan.contains { $0.contains("TEMP B-TREE") }, "\(range): \(plan)")
        }
    }
}

@Suite("Webhook bodies: the fast reader agrees with the JSON decoder")
struct WebhookBodyTests {
    @Test func theSettlementFormIsReadAsTheDecoderReadsIt() throws {
        for type in [PSPWebhookPayload.Kind.chargeSucceeded, .chargeFailed, .refundSucceeded, .refundFailed] {
            let body = PSPWebhookPayload.settlementEventJSON(reference: "pay-12:stripe", type: type)
            let fast = try #require(PSPWebhookPayload.settlementEvent(fromJSON: body))
            #expect(fast == (try JSONDecoder().decode(PSPWebhookPayload.self, from: Data(body.utf8))))
        }
    }

    @Test func anyOtherBodyIsLeftToTheDecoder() {
        let others = [
            #"{"type":"charge.succeeded","event_id":"evt-a","psp_reference":"a"}"#,  // keys reordered
            #"{"event_id":"evt-a","type":"charge.succeeded","psp_reference":"b"}"#,  // id not from the reference
            #"{"event_id":"evt-a\u0041","type":"charge.succeeded","psp_reference":"a\u0041"}"#,  // escapes
            #"{"event_id":"evt-a", "type":"charge.succeeded","psp_reference":"a"}"#,  // whitespace
            #"{"event_id":"evt-a","type":"charge.refunded","psp_reference":"a"}"#,  // unknown type
            #"{"event_id":"evt-","type":"charge.succeeded","psp_reference":""}"#,  // empty reference
            "{\"event_id\":\"evt-a\nb\",\"type\":\"charge.succeeded\",\"psp_reference\":\"a\nb\"}",  // a raw newline
            #"{"event_id":"evt-a","type":"charge.succeeded","psp_reference":"a","reason":"x"}"#,  // more fields
        ]
        for body in others {
            #expect(PSPWebhookPayload.settlementEvent(fromJSON: body) == nil, "\(body)")
        }
    }

    @Test func theEngineStillAcceptsAnyValidBody() throws {
        let h = try EngineHarness()
        try h.pay(key: "w")
        let call = try #require(h.takeCall())
        // Keys in another order and an escaped character: the decoder's path.
        let body = #"{"type":"charge.succeeded","event_id":"evt\u002D1","psp_reference":"\#(call.idempotencyKey)"}"#
        let timestamp = h.now / 1_000_000_000
        let outcome = try h.engine.receiveWebhook(pspID: "stripe", body: body,
                                                  signature: PaymentEngine.webhookSignature(body: body, timestampSeconds: timestamp, secret: "whsec-stripe"),
                                                  timestampSeconds: timestamp, now: h.now)
        #expect(outcome == .applied)
        #expect(try h.engine.payment("pay-1").status == .completed)
    }
}
