import GRDB

extension PaymentEngine {
    /// `POST /refunds`: full, partial or one of several. The amount is
    /// reserved against the capture in the same transaction that creates the
    /// refund, so Σ non-failed refunds (pending included) never exceeds the
    /// captured amount, however many requests race.
    public func createRefund(_ command: CreateRefundCommand, now: Int64) throws(EngineError) -> RefundView {
        try Self.validateIdentifier(command.merchantID, field: "merchant_id")
        try Self.validateIdentifier(command.paymentID, field: "payment_id")
        try Self.validateIdentifier(command.idempotencyKey, field: "idempotency_key", maxLength: 255)
        return try transaction { db, effects in
            guard let payment = try db.row("""
                SELECT merchant_id, status, currency, captured_minor, refund_reserved_minor, psp_id
                FROM payment WHERE payment_id = ?
                """, [command.paymentID]), payment["merchant_id"] == command.merchantID else {
                throw EngineError.paymentNotFound(command.paymentID)
            }
            let currency = Currency(code: payment["currency"])!
            let amount: Money
            do {
                amount = try Money.parse(command.amount, currency: currency)
            } catch let error as MoneyError {
                throw EngineError.invalidField(field: "amount", message: error.description)
            }
            let requestHash = Self.digest([command.merchantID, command.paymentID, String(amount.minorUnits)])
            if let existing = try idempotencyRecord(merchantID: command.merchantID, key: command.idempotencyKey,
                                                    kind: "refund", now: now, in: db) {
                guard existing.requestHash == requestHash else { throw EngineError.idempotencyKeyReused(key: command.idempotencyKey) }
                counters.idempotentReplays += 1
                var view = try refundView(existing.resourceID, in: db)
                view.replayed = true
                return view
            }
            let status = PaymentStatus(rawValue: payment["status"])!
            guard status == .completed else {
                throw EngineError.invalidState("payment \(command.paymentID) is \(status.rawValue); only completed payments can be refunded")
            }
            let available = (payment["captured_minor"] as Int64) - (payment["refund_reserved_minor"] as Int64)
            guard amount.minorUnits <= available else {
                throw EngineError.refundExceedsCaptured(paymentID: command.paymentID, requestedMinor: amount.minorUnits,
                                                        availableMinor: available, currency: currency.code)
            }
            let refundID = "ref-\(try nextID("refund", in: db))"
            let pspID: String = payment["psp_id"]
            try db.run("""
                INSERT INTO refund (refund_id, payment_id, merchant_id, amount_minor, currency, status, psp_id, created_ns, updated_ns)
                VALUES (?, ?, ?, ?, ?, 'processing', ?, ?, ?)
                """, [refundID, command.paymentID, command.merchantID, amount.minorUnits, currency.code, pspID, now, now])
            try db.run("UPDATE payment SET refund_reserved_minor = refund_reserved_minor + ?, updated_ns = ? WHERE payment_id = ?", [amount.minorUnits, now, command.paymentID])
            try insertIdempotencyRecord(merchantID: command.merchantID, key: command.idempotencyKey, kind: "refund",
                                        requestHash: requestHash, resourceID: refundID, now: now, in: db)
            try startAttempt(subject: .refund, subjectID: refundID, pspID: pspID, amount: amount, cardToken: nil,
                             now: now, in: db, effects: &effects)
            return try refundView(refundID, in: db)
        }
    }

    /// A refund by id.
    public func refund(_ refundID: String) throws(EngineError) -> RefundView {
        try read { db in try refundView(refundID, in: db) }
    }

    func refundView(_ refundID: String, in db: Database) throws -> RefundView {
        guard let row = try db.row("SELECT refund_id, payment_id, status, amount_minor, currency, failure_reason FROM refund WHERE refund_id = ?", [refundID]) else { throw EngineError.refundNotFound(refundID) }
        return RefundView(refundID: row["refund_id"], paymentID: row["payment_id"], status: RefundStatus(rawValue: row["status"])!,
                          amount: Money(minorUnits: row["amount_minor"], currency: Currency(code: row["currency"])!),
                          failureReason: row["failure_reason"], replayed: false)
    }
}
