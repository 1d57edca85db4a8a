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
            // Whether the card has expired is asked only of a new request
            // (below): a retry of one made in the card's last month, arriving
            // after it ran out, still replays the payment.
            card = try CardDetails(number: command.card.number, expiry: command.card.expiry, cvv: command.card.cvv,
                                   currentYear: .min, currentMonth: .min)
        } catch {
            throw .invalidField(field: error.field, message: error.description)
        }
        // The CVV has been checked and is not used past this line.
        let tokenized = vault.tokenized(card)
        let token = tokenized.token
        let requestHash = Self.digest([command.userID, command.merchantID, String(amount.minorUnits), currency.code,
                                       token, String(card.expiryMonth), String(card.expiryYear)])
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
            guard !card.isExpired(currentYear: calendar.year, currentMonth: calendar.month) else {
                let expired = CardError.expired(command.card.expiry)
                throw EngineError.invalidField(field: expired.field, message: expired.description)
            }
            let paymentID = "pay-\(try nextID("payment", in: db))"
            _ = try vault.store(card, tokenized, in: db, statements: statements)
            let decision = fraud.assess(FraudSignal(userID: command.userID, merchantID: command.merchantID, cardToken: token,
                                                    cardBIN: card.first6, amount: amount, timeNanoseconds: now))
            let fraudText: String
            var failure: String?
            switch decision {
            case .approve: fraudText = "approve"
            case let .review(reasons): fraudText = "review: " + reasons.map(\.description).joined(separator: "; ")
            case let .decline(reasons):
                fraudText = "decline: " + reasons.map(\.description).joined(separator: "; ")
                // The reasons name the rules' limits: they stay in `fraud_decision`,
                // for the operator, and never reach the caller, who could tune
                // the next attempt to pass just under them.
                failure = "declined by fraud screening"
            }
            // Chosen only for a payment that will call a PSP: a half-open
            // breaker admits one probe, which a replay or a decline must not use up.
            let route = failure == nil ? chooseRoute(now: now) : nil
            let noRoute = failure == nil && route == nil
            if noRoute { failure = "no PSP available: every circuit breaker is open" }
            let status: PaymentStatus = failure == nil ? .processing : .failed
            let pspID = failure == nil ? route : nil
            let cardMasked = card.masked
            let insert = try statements(.insertPayment, db)
            insert.bind(paymentID, at: 1)
            insert.bind(command.userID, at: 2)
            insert.bind(command.merchantID, at: 3)
            insert.bind(amount.minorUnits, at: 4)
            insert.bind(currency.code, at: 5)
            insert.bind(status.rawValue, at: 6)
            insert.bind(token, at: 7)
            insert.bind(cardMasked, at: 8)
            insert.bind(pspID, at: 9)
            insert.bind(failure, at: 10)
            insert.bind(fraudText, at: 11)
            insert.bind(now, at: 12)
            insert.bind(now, at: 13)
            try insert.execute()
            try insertIdempotencyRecord(merchantID: command.merchantID, key: command.idempotencyKey, kind: "payment",
                                        requestHash: requestHash, resourceID: paymentID, now: now, in: db)
            if let failure {
                if noRoute { counters.breakerRejections += 1 }
                try emitEvent(.paymentFailed, paymentID: paymentID, refundID: nil,
                              parties: EventParties(merchantID: command.merchantID, userID: command.userID,
                                                    currency: currency.code, pspID: nil),
                              amount: amount.minorUnits, fee: 0, reason: failure, now: now, in: db)
            } else if let route {
                try startAttempt(subject: .payment, subjectID: paymentID, pspID: route, amount: amount,
                                 cardToken: token, now: now, in: db, effects: &effects)
            }
            // The row as just written: nothing above changes it after the insert.
            return PaymentView(paymentID: paymentID, merchantID: command.merchantID, userID: command.userID, status: status,
                               amount: amount, cardMasked: cardMasked, pspID: pspID, failureReason: failure,
                               refundedMinor: 0, replayed: false)
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

    /// Whether the engine takes `value` as an identifier (a user, a merchant):
    /// 1 to `maxLength` bytes of printable ASCII without spaces.
    public static func acceptsIdentifier(_ value: String, maxLength: Int = 64) -> Bool {
        (try? validateIdentifier(value, field: "", maxLength: maxLength)) != nil
    }

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

    /// The live record for a key; `nil` if there is none or its retention
    /// ran out. A lookup writes nothing: the command it guards may still be
    /// refused after it (a refund of a payment not completed), and a command
    /// that fails must fail before its first write. A new record replaces an
    /// expired one when it is stored (``insertIdempotencyRecord``).
    func idempotencyRecord(merchantID: String, key: String, kind: String, now: Int64, in db: Database) throws -> IdempotencyRecord? {
        let lookup = try statements(.idempotencyRecord, db)
        defer { lookup.reset() }
        lookup.bind(merchantID, at: 1)
        lookup.bind(key, at: 2)
        lookup.bind(kind, at: 3)
        guard try lookup.step(), lookup.int64(at: 2) > now else { return nil }
        return IdempotencyRecord(requestHash: lookup.text(at: 0), resourceID: lookup.text(at: 1))
    }

    /// Arms the engine's periodic upkeep — today the deletion of idempotency
    /// records past their retention, which otherwise only a lookup of the
    /// same key removes. A long-running host calls this once at start,
    /// outside a batch; each run re-arms the next. (The simulator does not:
    /// its runs are shorter than the retention.)
    public func armMaintenance() {
        pending.append(.armTimer(.idempotencyPurge, afterNanoseconds: configuration.idempotencyPurgeIntervalNanoseconds))
    }

    /// Deletes up to ``EngineConfiguration/idempotencyPurgeBatch`` records
    /// whose retention ended at or before `now`, oldest first, through
    /// `idempotency_expiry`. A replay of a purged key is a new request, as
    /// it already was once the record expired.
    func purgeIdempotencyRecords(now: Int64, in db: Database) throws -> Int {
        try db.run("""
            DELETE FROM idempotency_record WHERE (merchant_id, idempotency_key, kind) IN (
                SELECT merchant_id, idempotency_key, kind FROM idempotency_record INDEXED BY idempotency_expiry
                WHERE expires_ns <= ? ORDER BY expires_ns LIMIT ?)
            """, [now, configuration.idempotencyPurgeBatch])
        let purged = db.changesCount
        counters.idempotencyRecordsPurged += purged
        return purged
    }

    func insertIdempotencyRecord(merchantID: String, key: String, kind: String, requestHash: String, resourceID: String,
                                 now: Int64, in db: Database) throws {
        let insert = try statements(.insertIdempotencyRecord, db)
        insert.bind(merchantID, at: 1)
        insert.bind(key, at: 2)
        insert.bind(kind, at: 3)
        insert.bind(requestHash, at: 4)
        insert.bind(resourceID, at: 5)
        insert.bind(now, at: 6)
        insert.bind(now + configuration.idempotencyRetentionNanoseconds, at: 7)
        try insert.execute()
    }

    func paymentView(_ paymentID: String, in db: Database) throws -> PaymentView {
        let row = try statements(.paymentView, db)
        defer { row.reset() }
        row.bind(paymentID, at: 1)
        guard try row.step() else { throw EngineError.paymentNotFound(paymentID) }
        return PaymentView(
            paymentID: row.text(at: 0), merchantID: row.text(at: 1), userID: row.text(at: 2),
            status: PaymentStatus(rawValue: row.text(at: 3))!,
            amount: Money(minorUnits: row.int64(at: 4), currency: Currency(code: row.text(at: 5))!),
            cardMasked: row.text(at: 6), pspID: row.optionalText(at: 7), failureReason: row.optionalText(at: 8),
            refundedMinor: row.int64(at: 9), replayed: false)
    }

    /// The first PSP, in preference order, whose breaker lets a call through.
    func chooseRoute(now: Int64) -> String? {
        configuration.psps.first { admit($0.id, now: now) }?.id
    }
}
