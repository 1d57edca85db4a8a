import GRDB

extension PaymentEngine {
    /// `POST /payments`: validates, deduplicates by idempotency key, screens
    /// for fraud, vaults the card and starts the first PSP attempt. A fraud
    /// decline fails the payment before any PSP call; a review is recorded
    /// with its reasons and the payment proceeds.
    ///
    /// Idempotency is per merchant and key, for the retention window. A
    /// replay returns the payment as it stands (`replayed == true`); the same
    /// key with a different body is refused. Creation is one transaction, so
    /// of two concurrent duplicates exactly one creates the payment and the
    /// other sees its record and replays.
    public func createPayment(_ command: CreatePaymentCommand, now: Int64) throws(EngineError) -> PaymentView {
        try Self.validateIdentifier(command.userID, field: "user_id")
        try Self.validateIdentifier(command.merchantID, field: "merchant_id")
        try Self.validateIdentifier(command.idempotencyKey, field: "idempotency_key", maxLength: 255)
        guard let currency = Currency(code: command.currency) else {
            throw .invalidField(field: "currency", message: MoneyError.unknownCurrency(command.currency).description)
        }
        let amount: Money
        do {
            amount = try Money.parse(command.amount, currency: currency)
        } catch {
            throw .invalidField(field: "amount", message: error.description)
        }
        let calendar = CivilDate.yearMonth(unixNanoseconds: now)
        let card: CardDetails
        do {
            card = try CardDetails(number: command.card.number, expiry: command.card.expiry, cvv: command.card.cvv,
                                   currentYear: calendar.year, currentMonth: calendar.month)
        } catch {
            throw .invalidField(field: "payment_method.details", message: error.description)
        }
        // The CVV has been checked and is not used past this line.
        let token = vault.token(for: card)
        let requestHash = Self.digest([command.userID, command.merchantID, String(amount.minorUnits), currency.code,
                                       token, String(card.expiryMonth), String(card.expiryYear)])
        let route = chooseRoute(now: now)
        let configuration = self.configuration

        return try transaction { db, effects in
            if let existing = try idempotencyRecord(merchantID: command.merchantID, key: command.idempotencyKey,
                                                    kind: "payment", now: now, in: db) {
                guard existing.requestHash == requestHash else {
                    throw EngineError.idempotencyKeyReused(key: command.idempotencyKey)
                }
                counters.idempotentReplays += 1
                var view = try paymentView(existing.resourceID, in: db)
                view.replayed = true
                return view
            }
            let paymentID = "pay-\(try nextID("payment", in: db))"
            _ = try vault.store(card, in: db)
            let decision = fraud.assess(FraudSignal(userID: command.userID, merchantID: command.merchantID, cardToken: token,
                                                    cardBIN: card.first6, amount: amount, timeNanoseconds: now))
            let fraudText: String
            var failure: String?
            switch decision {
            case .approve: fraudText = "approve"
            case let .review(reasons): fraudText = "review: " + reasons.map(\.description).joined(separator: "; ")
            case let .decline(reasons):
                fraudText = "decline: " + reasons.map(\.description).joined(separator: "; ")
                failure = "declined by fraud screening: " + reasons.map(\.description).joined(separator: "; ")
            }
            if failure == nil, route == nil { failure = "no PSP available: every circuit breaker is open" }
            let status: PaymentStatus = failure == nil ? .processing : .failed
            try db.run("""
                INSERT INTO payment (payment_id, user_id, merchant_id, amount_minor, currency, status, card_token,
                    card_masked, psp_id, failure_reason, fraud_decision, created_ns, updated_ns)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [paymentID, command.userID, command.merchantID, amount.minorUnits, currency.code,
                                 status.rawValue, token, card.masked, failure == nil ? route : nil, failure, fraudText, now, now])
            try db.run("""
                INSERT INTO idempotency_record (merchant_id, idempotency_key, kind, request_hash, resource_id, created_ns, expires_ns)
                VALUES (?, ?, 'payment', ?, ?, ?, ?)
                """, [command.merchantID, command.idempotencyKey, requestHash, paymentID, now,
                                 now + configuration.idempotencyRetentionNanoseconds])
            if let failure {
                if route == nil { counters.breakerRejections += 1 }
                try emitPaymentFailed(paymentID: paymentID, reason: failure, now: now, in: db)
            } else if let route {
                try startAttempt(subject: .payment, subjectID: paymentID, pspID: route, amount: amount,
                                 cardToken: token, now: now, in: db, effects: &effects)
            }
            return try paymentView(paymentID, in: db)
        }
    }

    /// `GET /payments/{id}`. With a `merchantID`, a payment of another
    /// merchant is reported as not found.
    public func payment(_ paymentID: String, merchantID: String? = nil) throws(EngineError) -> PaymentView {
        try read { db in
            let view = try paymentView(paymentID, in: db)
            if let merchantID, view.merchantID != merchantID { throw EngineError.paymentNotFound(paymentID) }
            return view
        }
    }

    // MARK: - Helpers

    static func validateIdentifier(_ value: String, field: String, maxLength: Int = 64) throws(EngineError) {
        guard !value.isEmpty else { throw .invalidField(field: field, message: "must not be empty") }
        guard value.utf8.count <= maxLength else {
            throw .invalidField(field: field, message: "must be at most \(maxLength) bytes, got \(value.utf8.count)")
        }
        guard value.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw .invalidField(field: field, message: "must be printable ASCII without spaces")
        }
    }

    struct IdempotencyRecord {
        var requestHash: String
        var resourceID: String
    }

    /// The live record for a key, deleting it first if its retention ran out.
    func idempotencyRecord(merchantID: String, key: String, kind: String, now: Int64, in db: Database) throws -> IdempotencyRecord? {
        guard let row = try db.row("""
            SELECT request_hash, resource_id, expires_ns FROM idempotency_record
            WHERE merchant_id = ? AND idempotency_key = ? AND kind = ?
            """, [merchantID, key, kind]) else { return nil }
        if (row["expires_ns"] as Int64) <= now {
            try db.run("DELETE FROM idempotency_record WHERE merchant_id = ? AND idempotency_key = ? AND kind = ?", [merchantID, key, kind])
            return nil
        }
        return IdempotencyRecord(requestHash: row["request_hash"], resourceID: row["resource_id"])
    }

    func paymentView(_ paymentID: String, in db: Database) throws -> PaymentView {
        guard let row = try db.row("""
            SELECT payment_id, merchant_id, user_id, status, amount_minor, currency, card_masked, psp_id,
                   failure_reason, refunded_minor FROM payment WHERE payment_id = ?
            """, [paymentID]) else { throw EngineError.paymentNotFound(paymentID) }
        return PaymentView(
            paymentID: row["payment_id"], merchantID: row["merchant_id"], userID: row["user_id"],
            status: PaymentStatus(rawValue: row["status"])!,
            amount: Money(minorUnits: row["amount_minor"], currency: Currency(code: row["currency"])!),
            cardMasked: row["card_masked"], pspID: row["psp_id"], failureReason: row["failure_reason"],
            refundedMinor: row["refunded_minor"], replayed: false)
    }

    /// The first PSP, in preference order, whose breaker lets a call through.
    func chooseRoute(now: Int64) -> String? {
        configuration.psps.first { breakers[$0.id, default: CircuitBreaker()].allows(now: now) }?.id
    }
}
