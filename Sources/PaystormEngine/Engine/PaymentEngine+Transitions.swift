import GRDB

extension PaymentEngine {
    /// processing → completed: records the capture and its fee and writes
    /// `payment.completed` to the outbox in the same transaction. A success
    /// for a payment already terminal never moves it; it is audited for
    /// reconciliation instead.
    func completePayment(_ paymentID: String, pspID: String, reference: String, now: Int64, in db: Database) throws {
        let row = try db.row("SELECT status, amount_minor, currency, user_id FROM payment WHERE payment_id = ?", [paymentID])!
        let status = PaymentStatus(rawValue: row["status"])!
        guard status.canMove(to: .completed) else {
            try audit(paymentID, action: "ignored-success", reason: "PSP \(pspID) reported success (\(reference)) for a \(status.rawValue) payment", now: now, in: db)
            return
        }
        let gross: Int64 = row["amount_minor"]
        let fee = configuration.fee(onGross: gross)
        try db.run("""
            UPDATE payment SET status = 'completed', psp_id = ?, psp_reference = ?, captured_minor = amount_minor,
                fee_minor = ?, updated_ns = ? WHERE payment_id = ?
            """, [pspID, reference, fee, now, paymentID])
        try emitEvent(.paymentCompleted, paymentID: paymentID, refundID: nil, amount: gross, fee: fee, reason: nil, now: now, in: db)
        fraud.recordCompleted(userID: row["user_id"], amount: Money(minorUnits: gross, currency: Currency(code: row["currency"])!))
    }

    /// processing → failed (or initiated → failed), with the reason and a
    /// `payment.failed` event. Terminal payments are left alone.
    func failPayment(_ paymentID: String, reason: String, now: Int64, in db: Database) throws {
        let status = PaymentStatus(rawValue: try db.value("SELECT status FROM payment WHERE payment_id = ?", as: String.self, [paymentID])!)!
        guard status.canMove(to: .failed) else {
            try audit(paymentID, action: "ignored-failure", reason: "\(reason) for a \(status.rawValue) payment", now: now, in: db)
            return
        }
        try db.run("UPDATE payment SET status = 'failed', failure_reason = ?, updated_ns = ? WHERE payment_id = ?", [reason, now, paymentID])
        try emitPaymentFailed(paymentID: paymentID, reason: reason, now: now, in: db)
    }

    func emitPaymentFailed(paymentID: String, reason: String, now: Int64, in db: Database) throws {
        let amount = try db.value("SELECT amount_minor FROM payment WHERE payment_id = ?", as: Int64.self, [paymentID])!
        try emitEvent(.paymentFailed, paymentID: paymentID, refundID: nil, amount: amount, fee: 0, reason: reason, now: now, in: db)
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
        try emitEvent(.refundSucceeded, paymentID: paymentID, refundID: refundID, amount: amount, fee: feeReturn, reason: nil, now: now, in: db)
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
        try emitEvent(.refundFailed, paymentID: paymentID, refundID: refundID, amount: amount, fee: 0, reason: reason, now: now, in: db)
    }

    /// Writes a transaction event to the outbox (same transaction as the
    /// state change that caused it). Topics are partitioned by merchant.
    func emitEvent(_ kind: TransactionEvent.Kind, paymentID: String, refundID: String?, amount: Int64, fee: Int64,
                   reason: String?, now: Int64, in db: Database) throws {
        let payment = try db.row("SELECT merchant_id, user_id, currency, psp_id FROM payment WHERE payment_id = ?", [paymentID])!
        let event = TransactionEvent(
            eventID: "\(kind.rawValue):\(refundID ?? paymentID)", kind: kind, paymentID: paymentID, refundID: refundID,
            merchantID: payment["merchant_id"], userID: payment["user_id"], amountMinor: amount, currency: payment["currency"],
            feeMinor: fee, pspID: payment["psp_id"] ?? "none", timeNanoseconds: now, reason: reason)
        try db.run("INSERT INTO outbox (event_id, topic, partition_key, payload, created_ns) VALUES (?, ?, ?, ?, ?)", [event.eventID, Self.transactionsTopic, event.merchantID, event.json(), now])
    }

    func audit(_ subjectID: String, action: String, reason: String, now: Int64, in db: Database) throws {
        try db.run("INSERT INTO audit_log (subject_id, action, reason, created_ns) VALUES (?, ?, ?, ?)", [subjectID, action, reason, now])
    }

    /// The topic all transaction events are published to.
    public static let transactionsTopic = "transactions"
}
