import Foundation
import GRDB
import Testing
@testable import PaystormEngine

/// The audit's whole-table checks read tables in storage order and sort
/// only what they find (see ``EngineAudit``). Each test breaks a sound
/// database the way its check exists to notice, on payments whose ids sort
/// as text unlike their rows ("pay-10" before "pay-2"), and expects every
/// violation, in id order.
@Suite("Engine audit: the whole-table checks")
struct EngineAuditTests {
    /// Twelve completed payments, an hour apart, each by its own user.
    func completedPayments() throws -> EngineHarness {
        let h = try EngineHarness()
        for index in 1...12 {
            try h.pay(key: "k\(index)", user: "u-\(index)", amount: "20.00")
            let call = try #require(h.takeCall())
            try h.reply(.succeeded(pspReference: "ch_\(index)"), to: call)
            h.advance(by: 3_600 * 1_000_000_000)
        }
        #expect(try h.safetyViolations().isEmpty, "the database starts sound")
        return h
    }

    func tamper(_ h: EngineHarness, _ sql: String) throws {
        try h.engine.store.queue.write { try $0.execute(sql: sql) }
    }

    func attempt(_ paymentID: String, at pspID: String, _ state: String) -> String {
        """
        INSERT INTO psp_attempt (subject, subject_id, psp_id, psp_idempotency_key, tries, state, created_ns, updated_ns)
        VALUES ('payment', '\(paymentID)', '\(pspID)', '\(paymentID):\(pspID)', 1, '\(state)', 0, 0)
        """
    }

    @Test("a reservation no refund accounts for")
    func refunds() throws {
        let h = try completedPayments()
        try tamper(h, "UPDATE payment SET refund_reserved_minor = 500 WHERE payment_id IN ('pay-2', 'pay-10')")
        let found = try h.safetyViolations()
        #expect(found.map(\.invariant) == ["refunds", "refunds"])
        #expect(found.map(\.subject) == ["pay-10", "pay-2"])
    }

    @Test("a second successful charge, and a completed payment without one")
    func oneCharge() throws {
        let h = try completedPayments()
        try tamper(h, attempt("pay-3", at: "paypal", "succeeded"))
        try tamper(h, "UPDATE psp_attempt SET state = 'failed' WHERE subject_id = 'pay-11'")
        let found = try h.safetyViolations()
        #expect(found.map(\.invariant) == ["one-charge", "one-charge"])
        #expect(found.map(\.subject) == ["pay-11", "pay-3"])
    }

    /// The check starts from the few ambiguous attempts and looks each
    /// one's payment up, whatever the planner would prefer: walking every
    /// attempt instead made the audit grow with the square of the run.
    @Test("the ambiguous-failover check reads the ambiguous attempts first, by index")
    func failoverCheckPlan() throws {
        let h = try completedPayments()
        let plan = try h.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + EngineAudit.noFailoverWhenAmbiguousSQL).map { $0["detail"] as String }
        }
        #expect(plan.count >= 2, "\(plan)")
        #expect(plan.first == "SEARCH a USING INDEX psp_attempt_open (state=?)", "\(plan)")
        #expect(plan.dropFirst().first?.hasPrefix("SEARCH b USING INDEX psp_attempt_subject (subject=? AND subject_id=?") == true, "\(plan)")
    }

    @Test("a charge at another PSP after an ambiguous one")
    func failoverWhileAmbiguous() throws {
        let h = try completedPayments()
        for paymentID in ["pay-5", "pay-12"] {
            // The capture moves to the second PSP, so one charge still succeeded.
            try tamper(h, "UPDATE psp_attempt SET state = 'ambiguous' WHERE subject_id = '\(paymentID)'")
            try tamper(h, attempt(paymentID, at: "paypal", "succeeded"))
        }
        let found = try h.safetyViolations()
        #expect(found.map(\.invariant) == ["no-failover-when-ambiguous", "no-failover-when-ambiguous"])
        #expect(found.map(\.subject) == ["pay-12", "pay-5"])
        #expect(found.allSatisfy { $0.detail == "tried paypal while stripe was ambiguous" })
    }
}
