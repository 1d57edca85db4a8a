import GRDB

extension PaymentEngine {
    /// processing → completed: records the capture and its fee and writes
    /// `payment.completed` to the outbox in the same transaction. A success
    /// for a payment already terminal never moves it; it is audited for
    /// reconciliation instead.
    func completePayment(_ paymentID: String, pspID: String, reference: String, now: Int64, in db: Database) throws {
        let payment = try paymentForTransition(paymentID, in: db)
        guard payment.status.canMove(to: .completed) else {
            try audit(paymentID, action: "ignored-success", reason: "PSP \(pspID) reported success (\(reference)) for a \(payment.status.rawValue) payment", now: now, in: db)
            return
        }
        let gross = payment.amountMinor
        let fee = configuration.fee(onGross: gross)
        let update = try statements(.completePayment, db)
        update.bind(pspID, at: 1)
        update.bind(reference, at: 2)
        update.bind(fee, at: 3)
        update.bind(now, at: 4)
        update.bind(paymentID, at: 5)
        try update.execute()
        var parties = payment.parties
        parties.pspID = pspID
        try emitEvent(.paymentCompleted, paymentID: paymentID, refundID: nil, parties: parties, amount: gross, fee: fee,
                      reason: nil, now: now, in: db)
        fraud.recordCompleted(userID: parties.userID, amount: Money(minorUnits: gross, currency: Currency(code: parties.currency)!))
    }

    /// processing → failed (or initiated → failed), with the reason and a
    /// `payment.failed` event. Terminal payments are left alone.
    func failPayment(_ paymentID: String, reason: String, now: Int64, in db: Database) throws {
        let payment = try paymentForTransition(paymentID, in: db)
        guard payment.status.canMove(to: .failed) else {
            try audit(paymentID, action: "ignored-failure", reason: "\(reason) for a \(payment.status.rawValue) payment", now: now, in: db)
            return
        }
        let update = try statements(.failPayment, db)
        update.bind(reason, at: 1)
        update.bind(now, at: 2)
        update.bind(paymentID, at: 3)
        try update.execute()
        try emitEvent(.paymentFailed, paymentID: paymentID, refundID: nil, parties: payment.parties, amount: payment.amountMinor,
                      fee: 0, reason: reason, now: now, in: db)
    }

    /// What a transition needs of a payment row.
    struct PaymentForTransition {
        var status: PaymentStatus
        var amountMinor: Int64
        var parties: EventParties
    }

    func paymentForTransition(_ paymentID: String, in db: Database) throws -> PaymentForTransition {
        let row = try statements(.paymentForTransition, db)
        defer { row.reset() }
        row.bind(paymentID, at: 1)
        guard try row.step() else { preconditionFailure("payment \(paymentID) of a transition is not stored") }
        return PaymentForTransition(
            status: PaymentStatus(rawValue: row.text(at: 0))!, amountMinor: row.int64(at: 1),
            parties: EventParties(merchantID: row.text(at: 4), userID: row.text(at: 3), currency: row.text(at: 2),
                                  pspID: row.optionalText(at: 5)))
    }

    /// processing → succeeded: the refund's amount moves from reserved to
    /// refunded, with the proportional share of the fee returned.
    func completeRefund(_ refundID: String, now: Int64, in db: Database) throws {
        let refund = try db.row("SELECT payment_id, status, amount_minor FROM refund WHERE refund_id = ?", [refundID])!
        let status = RefundStatus(rawValue: refund["status"])!
        guard status.canMove(to: .succeeded) else {
            try audit(refundID, action: "ignored-success", reason: "refund success for a \(status.rawValue) refund", now: now, in: db)
            return
        }
        let paymentID: String = refund["payment_id"]
        let amount: Int64 = refund["amount_minor"]
        let payment = try db.row("SELECT captured_minor, fee_minor, refunded_minor, fee_returned_minor FROM payment WHERE payment_id = ?", [paymentID])!
        let captured: Int64 = payment["captured_minor"]
        let fee: Int64 = payment["fee_minor"]
        let refundedAfter: Int64 = payment["refunded_minor"] + amount
        precondition(refundedAfter <= captured, "refunds exceed the capture of \(paymentID)")
        // Cumulative proportional fee return: exact in total at a full refund.
        let returnedTotal = Int64(truncatingIfNeeded: (Int128(fee) * Int128(refundedAfter)) / Int128(captured))
        let feeReturn = returnedTotal - (payment["fee_returned_minor"] as Int64)
        try db.run("UPDATE refund SET status = 'succeeded', updated_ns = ? WHERE refund_id = ?", [now, refundID])
        try db.run("""
            UPDATE payment SET refunded_minor = refunded_minor + ?, fee_returned_minor = fee_returned_minor + ?, updated_ns = ?
            WHERE payment_id = ?
            """, [amount, feeReturn, now, paymentID])
        try emitEvent(.refundSucceeded, paymentID: paymentID, refundID: refundID,
                      parties: try paymentForTransition(paymentID, in: db).parties, amount: amount, fee: feeReturn, reason: nil, now: now, in: db)
    }

    /// processing → failed: the reservation is released.
    func failRefund(_ refundID: String, reason: String, now: Int64, in db: Database) throws {
        let refund = try db.row("SELECT payment_id, status, amount_minor FROM refund WHERE refund_id = ?", [refundID])!
        let status = RefundStatus(rawValue: refund["status"])!
        guard status.canMove(to: .failed) else {
            try audit(refundID, action: "ignored-failure", reason: "\(reason) for a \(status.rawValue) refund", now: now, in: db)
            return
        }
        let amount: Int64 = refund["amount_minor"]
        let paymentID: String = refund["payment_id"]
        try db.run("UPDATE refund SET status = 'failed', failure_reason = ?, updated_ns = ? WHERE refund_id = ?", [reason, now, refundID])
        try db.run("UPDATE payment SET refund_reserved_minor = refund_reserved_minor - ?, updated_ns = ? WHERE payment_id = ?", [amount, now, paymentID])
        try emitEvent(.refundFailed, paymentID: paymentID, refundID: refundID,
                      parties: try paymentForTransition(paymentID, in: db).parties, amount: amount, fee: 0, reason: reason, now: now, in: db)
    }

    /// Who an event concerns, as the payment row has them.
    struct EventParties {
        var merchantID: String
        var userID: String
        var currency: String
        /// `nil` while the payment has no PSP (published as "none").
        var pspID: String?
    }

    /// Writes a transaction event to the outbox (same transaction as the
    /// state change that caused it). Topics are partitioned by merchant.
    /// - Precondition: `parties` are the payment's as stored after the change.
    func emitEvent(_ kind: TransactionEvent.Kind, paymentID: String, refundID: String?, parties: EventParties,
                   amount: Int64, fee: Int64, reason: String?, now: Int64, in db: Database) throws {
        let event = TransactionEvent(
            eventID: "\(kind.rawValue):\(refundID ?? paymentID)", kind: kind, paymentID: paymentID, refundID: refundID,
            merchantID: parties.merchantID, userID: parties.userID, amountMinor: amount, currency: parties.currency,
            feeMinor: fee, pspID: parties.pspID ?? "none", timeNanoseconds: now, reason: reason)
        let insert = try statements(.insertOutbox, db)
        insert.bind(event.eventID, at: 1)
        insert.bind(Self.transactionsTopic, at: 2)
        insert.bind(event.merchantID, at: 3)
        insert.bind(event.json(), at: 4)
        insert.bind(now, at: 5)
        try insert.execute()
    }

    func audit(_ subjectID: String, action: String, reason: String, now: Int64, in db: Database) throws {
        try db.run("INSERT INTO audit_log (subject_id, action, reason, created_ns) VALUES (?, ?, ?, ?)", [subjectID, action, reason, now])
    }

    /// The topic all transaction events are published to.
    public static let transactionsTopic = "transactions"
}
