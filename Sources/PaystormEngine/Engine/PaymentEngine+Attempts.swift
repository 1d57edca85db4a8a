import GRDB
import PaystormStore

/// What a PSP attempt is for.
enum AttemptSubject: String {
    case payment, refund
}

/// A `psp_attempt` row.
struct Attempt {
    var id: Int64
    var subject: AttemptSubject
    var subjectID: String
    var pspID: String
    var key: String
    var tries: Int
    var statusQueries: Int
    var state: String
    var updatedNanoseconds: Int64

    /// The current row of a statement that selects ``columns``.
    init(_ row: PreparedStatement) {
        id = row.int64(at: 0)
        subject = AttemptSubject(rawValue: row.text(at: 1))!
        subjectID = row.text(at: 2)
        pspID = row.text(at: 3)
        key = row.text(at: 4)
        tries = Int(row.int64(at: 5))
        statusQueries = Int(row.int64(at: 6))
        state = row.text(at: 7)
        updatedNanoseconds = row.int64(at: 8)
    }

    var isOpen: Bool { state != "succeeded" && state != "failed" }

    /// The columns ``init(_:)`` reads.
    static let columns = "attempt_id, subject, subject_id, psp_id, psp_idempotency_key, tries, status_queries, state, updated_ns"
}

extension PaymentEngine {
    /// The host's report of a PSP answer to an attempt's call.
    ///
    /// A definite answer settles the attempt; a transient one retries with
    /// backoff at the same PSP under the same PSP idempotency key, and fails
    /// over to the next PSP only once this one has voided the key. While an
    /// attempt is ambiguous only a definite answer (or "not found") changes
    /// it, so a failed status query never triggers a second charge.
    ///
    /// - Parameter sentAtNanoseconds: the answered call's stamp
    ///   (``PSPRequest/sentAtNanoseconds``); `nil` takes the answer as the
    ///   current call's. An answer that says only that *a* call did nothing
    ///   (a transient error, a rate limit, "not found", "pending") and belongs
    ///   to an earlier call of the attempt is stale: it neither uses up a try
    ///   nor counts against the breaker. A definite answer is a fact about the
    ///   key, from whichever call it comes.
    public func pspReplied(attemptID: Int64, outcome: PSPOutcome, now: Int64, sentAtNanoseconds: Int64? = nil) throws(EngineError) {
        try transaction { db, effects in
            guard let attempt = try loadAttempt(attemptID, in: db) else {
                counters.lateReplies += 1
                return
            }
            guard attempt.isOpen else {
                counters.lateReplies += 1
                try auditContradiction(attempt, outcome, by: "reply", now: now, in: db)
                return
            }
            if let sentAtNanoseconds, sentAtNanoseconds != attempt.updatedNanoseconds, !outcome.isDefinite {
                counters.staleReplies += 1
                return
            }
            try apply(outcome, to: attempt, now: now, in: db, effects: &effects)
        }
    }

    /// The host's report that a timer armed by the engine fired.
    public func timerFired(_ timer: EngineTimer, now: Int64) throws(EngineError) {
        try transaction { db, effects in
            switch timer {
            case let .pspTimeout(attemptID, sentAt):
                guard let attempt = try loadAttempt(attemptID, in: db), attempt.state == "in_flight" || attempt.state == "canceling",
                      attempt.updatedNanoseconds == sentAt else {
                    counters.staleTimers += 1
                    return
                }
                if attempt.state == "canceling" {
                    // The void is what makes failing over safe: keep asking.
                    try resendCancel(attempt, now: now, in: db, effects: &effects)
                    return
                }
                // No answer: the PSP may or may not have charged. Stay processing and ask.
                counters.ambiguousAttempts += 1
                breakers[attempt.pspID, default: CircuitBreaker()].recordFailure(
                    now: now, threshold: configuration.breakerFailureThreshold, openFor: configuration.breakerOpenNanoseconds)
                try updateAttempt(attempt.id, state: "ambiguous", error: "no reply within the PSP timeout", now: now, in: db)
                try db.run("UPDATE psp_attempt SET status_queries = 0 WHERE attempt_id = ?", [attempt.id])
                effects.append(.armTimer(.statusQuery(attemptID: attempt.id), afterNanoseconds: configuration.statusQueryDelayNanoseconds))
            case let .retry(attemptID):
                guard let attempt = try loadAttempt(attemptID, in: db), attempt.state == "backoff" || attempt.state == "canceling" else {
                    counters.staleTimers += 1
                    return
                }
                if attempt.state == "canceling" {
                    try resendCancel(attempt, now: now, in: db, effects: &effects)
                    return
                }
                if attempt.subject == .payment, !admit(attempt.pspID, now: now) {
                    try startCancel(attempt, reason: "PSP \(attempt.pspID) circuit breaker open", now: now, in: db, effects: &effects)
                    return
                }
                try db.run("UPDATE psp_attempt SET tries = tries + 1, state = 'in_flight', updated_ns = ? WHERE attempt_id = ?", [now, attempt.id])
                try emitCall(for: attempt, operation: attempt.subject == .payment ? .charge : .refund, sentAt: now, in: db, effects: &effects)
            case let .statusQuery(attemptID):
                guard let attempt = try loadAttempt(attemptID, in: db), attempt.state == "ambiguous" else {
                    counters.staleTimers += 1
                    return
                }
                guard attempt.statusQueries < configuration.maxStatusQueries else {
                    // No answer to any query (the PSP was down or unreachable the
                    // whole time): void the key. The PSP must answer that definitely
                    // — charged, or void for good — and the void is resent until it
                    // does, so the payment cannot stay processing forever.
                    counters.statusQueriesExhausted += 1
                    try startCancel(attempt, reason: "\(attempt.pspID): no answer to \(attempt.statusQueries) status queries",
                                    now: now, in: db, effects: &effects)
                    return
                }
                try db.run("UPDATE psp_attempt SET status_queries = status_queries + 1 WHERE attempt_id = ?", [attempt.id])
                let (amount, token) = try attemptAmount(attempt, in: db)
                effects.append(.callPSP(PSPRequest(attemptID: attempt.id, pspID: attempt.pspID, operation: .status,
                                                   idempotencyKey: attempt.key, amount: amount, cardToken: token,
                                                   sentAtNanoseconds: attempt.updatedNanoseconds)))
                let delay = backoff(attemptID: attempt.id, try: attempt.statusQueries + 2,
                                    base: configuration.statusQueryDelayNanoseconds, cap: configuration.backoffMaxNanoseconds * 4)
                effects.append(.armTimer(.statusQuery(attemptID: attempt.id), afterNanoseconds: delay))
            case let .notificationRetry(notificationID):
                try resendNotification(notificationID, now: now, in: db, effects: &effects)
            case .idempotencyPurge:
                let purged = try purgeIdempotencyRecords(now: now, in: db)
                // A full batch may have left more: the next one follows shortly.
                let delay = purged == configuration.idempotencyPurgeBatch ? 1_000_000_000 : configuration.idempotencyPurgeIntervalNanoseconds
                effects.append(.armTimer(.idempotencyPurge, afterNanoseconds: delay))
            }
        }
    }

    // MARK: - Attempt lifecycle

    func startAttempt(subject: AttemptSubject, subjectID: String, pspID: String, amount: Money, cardToken: String?,
                      now: Int64, in db: Database, effects: inout [EngineEffect]) throws {
        let key = "\(subjectID):\(pspID)"
        let insert = try statements(.insertAttempt, db)
        insert.bind(subject.rawValue, at: 1)
        insert.bind(subjectID, at: 2)
        insert.bind(pspID, at: 3)
        insert.bind(key, at: 4)
        insert.bind(now, at: 5)
        insert.bind(now, at: 6)
        try insert.execute()
        let id = db.lastInsertedRowID
        effects.append(.callPSP(PSPRequest(attemptID: id, pspID: pspID, operation: subject == .payment ? .charge : .refund,
                                           idempotencyKey: key, amount: amount, cardToken: cardToken, sentAtNanoseconds: now)))
        effects.append(.armTimer(.pspTimeout(attemptID: id, sentAtNanoseconds: now), afterNanoseconds: configuration.pspTimeoutNanoseconds))
    }

    /// The call for `attempt`, whose `updated_ns` the caller has just set to `sentAt`.
    func emitCall(for attempt: Attempt, operation: PSPRequest.Operation, sentAt: Int64, in db: Database, effects: inout [EngineEffect]) throws {
        let (amount, token) = try attemptAmount(attempt, in: db)
        effects.append(.callPSP(PSPRequest(attemptID: attempt.id, pspID: attempt.pspID, operation: operation,
                                           idempotencyKey: attempt.key, amount: amount, cardToken: token, sentAtNanoseconds: sentAt)))
        effects.append(.armTimer(.pspTimeout(attemptID: attempt.id, sentAtNanoseconds: sentAt), afterNanoseconds: configuration.pspTimeoutNanoseconds))
    }

    /// Applies a PSP answer to an open attempt.
    ///
    /// Only three things are definite: a success (money moved), a decline
    /// (the PSP fixed the key's outcome: nothing moved, ever, and the card was
    /// refused — the payment fails) and a confirmed void (nothing moved and
    /// the card was never judged — the payment may fail over). A transient
    /// error proves only that *this* request did nothing — an earlier request
    /// with the same key may still be on its way — so when retries run out
    /// the engine voids the key before it fails over or gives up; that is
    /// what keeps one payment to one charge.
    ///
    /// An answer that moves the attempt on spends the timer it was waiting
    /// on (``awaitedTimer(of:)``): the host is told it may drop it
    /// (``EngineEffect/cancelTimer(_:)``), ahead of any timer the answer
    /// arms. A `pending`, or a failure while voiding, which only schedules
    /// the next try, leaves the attempt waiting.
    func apply(_ outcome: PSPOutcome, to attempt: Attempt, now: Int64, in db: Database, effects: inout [EngineEffect]) throws {
        let mark = effects.count
        guard try applyOutcome(outcome, to: attempt, now: now, in: db, effects: &effects),
              let spent = Self.awaitedTimer(of: attempt) else { return }
        effects.insert(.cancelTimer(spent), at: mark)
    }

    /// The timer an open attempt waits on in its state: its call's timeout
    /// while a charge, refund or void is out, the next status query while
    /// ambiguous, the next try in backoff.
    static func awaitedTimer(of attempt: Attempt) -> EngineTimer? {
        switch attempt.state {
        case "in_flight", "canceling": .pspTimeout(attemptID: attempt.id, sentAtNanoseconds: attempt.updatedNanoseconds)
        case "ambiguous": .statusQuery(attemptID: attempt.id)
        case "backoff": .retry(attemptID: attempt.id)
        default: nil
        }
    }

    /// ``apply(_:to:now:in:effects:)`` but for the timer it spends.
    /// - Returns: whether the attempt was moved on (what it waited on is over).
    private func applyOutcome(_ outcome: PSPOutcome, to attempt: Attempt, now: Int64, in db: Database,
                              effects: inout [EngineEffect]) throws -> Bool {
        switch outcome {
        case let .succeeded(reference):
            breakers[attempt.pspID, default: CircuitBreaker()].recordSuccess()
            try updateAttempt(attempt.id, state: "succeeded", error: nil, now: now, in: db)
            switch attempt.subject {
            case .payment: try completePayment(attempt.subjectID, pspID: attempt.pspID, reference: reference, now: now, in: db)
            case .refund: try completeRefund(attempt.subjectID, now: now, in: db)
            }
        case .voided:
            // Nothing moved and nothing will, and the card was never judged:
            // now failing over is safe. (Only a void the engine asked for
            // makes a key void, so the attempt is canceling, unless this
            // answer overtook the confirmation it follows.)
            breakers[attempt.pspID, default: CircuitBreaker()].recordSuccess()
            let cause = try db.value("SELECT last_error FROM psp_attempt WHERE attempt_id = ?", as: String.self, [attempt.id])
                ?? "\(attempt.pspID): voided"
            try updateAttempt(attempt.id, state: "failed", error: nil, now: now, in: db)
            try failOver(from: attempt, reason: cause, now: now, in: db, effects: &effects)
        case let .declined(reason):
            // Also while canceling: the PSP declined the key before the void
            // reached it. A declined card is not tried at another PSP.
            breakers[attempt.pspID, default: CircuitBreaker()].recordSuccess()
            try updateAttempt(attempt.id, state: "failed", error: reason, now: now, in: db)
            switch attempt.subject {
            case .payment: try failPayment(attempt.subjectID, reason: "declined by \(attempt.pspID): \(reason)", now: now, in: db)
            case .refund: try failRefund(attempt.subjectID, reason: "declined by \(attempt.pspID): \(reason)", now: now, in: db)
            }
        case .transientError, .rateLimited, .notFound:
            switch attempt.state {
            case "in_flight":
                break
            case "ambiguous" where outcome == .notFound:
                break  // the PSP has no record yet: retry the same key
            case "canceling":
                let delay = backoff(attemptID: attempt.id, try: attempt.tries, base: configuration.backoffBaseNanoseconds,
                                    cap: configuration.backoffMaxNanoseconds)
                effects.append(.armTimer(.retry(attemptID: attempt.id), afterNanoseconds: delay))
                return false
            default:
                return false  // a failed status query, or a duplicate reply during backoff
            }
            if outcome != .notFound {
                breakers[attempt.pspID, default: CircuitBreaker()].recordFailure(
                    now: now, threshold: configuration.breakerFailureThreshold, openFor: configuration.breakerOpenNanoseconds)
            }
            let message: String = switch outcome {
            case let .transientError(text): "transient error: \(text)"
            case .rateLimited: "rate limited"
            default: "PSP has no record of the call"
            }
            if attempt.tries < configuration.maxAttemptsPerPSP {
                try updateAttempt(attempt.id, state: "backoff", error: message, now: now, in: db)
                let delay = backoff(attemptID: attempt.id, try: attempt.tries,
                                    base: configuration.backoffBaseNanoseconds, cap: configuration.backoffMaxNanoseconds)
                effects.append(.armTimer(.retry(attemptID: attempt.id), afterNanoseconds: delay))
            } else {
                try startCancel(attempt, reason: "\(attempt.pspID): \(message) after \(attempt.tries) tries", now: now, in: db, effects: &effects)
            }
        case .pending:
            return false  // the next status query will ask again
        }
        return true
    }

    /// A success reported for an attempt the engine already closed as
    /// failed — declined, or its key voided before failing over — is the PSP
    /// contradicting its own definite answer: money may have moved that no
    /// record shows. Nothing is moved; it is audited, for reconciliation and
    /// for whoever reads the payment's trail.
    func auditContradiction(_ attempt: Attempt, _ outcome: PSPOutcome, by channel: String, now: Int64, in db: Database) throws {
        guard attempt.state == "failed", case let .succeeded(reference) = outcome else { return }
        try audit(attempt.subjectID, action: "contradicting-success",
                  reason: "PSP \(attempt.pspID) reported success (\(reference)) by \(channel) for attempt \(attempt.id) (\(attempt.key)), "
                      + "which had already failed at that PSP", now: now, in: db)
    }

    func resendCancel(_ attempt: Attempt, now: Int64, in db: Database, effects: inout [EngineEffect]) throws {
        try db.run("UPDATE psp_attempt SET updated_ns = ? WHERE attempt_id = ?", [now, attempt.id])
        try emitCall(for: attempt, operation: .cancel, sentAt: now, in: db, effects: &effects)
    }

    /// Asks the PSP to void the attempt's key before the engine fails over
    /// or fails the subject; `reason` is kept for when the void is confirmed.
    func startCancel(_ attempt: Attempt, reason: String, now: Int64, in db: Database, effects: inout [EngineEffect]) throws {
        try updateAttempt(attempt.id, state: "canceling", error: reason, now: now, in: db)
        try emitCall(for: attempt, operation: .cancel, sentAt: now, in: db, effects: &effects)
    }

    /// After a definite failure (or a confirmed void) at `attempt`'s PSP: a payment moves to the
    /// next PSP in preference order whose breaker allows it, or fails; a
    /// refund fails (it must be made where the money was captured).
    func failOver(from attempt: Attempt, reason: String, now: Int64, in db: Database, effects: inout [EngineEffect]) throws {
        guard attempt.subject == .payment else {
            try failRefund(attempt.subjectID, reason: reason, now: now, in: db)
            return
        }
        let routes = configuration.psps.map(\.id)
        let start = (routes.firstIndex(of: attempt.pspID) ?? routes.count - 1) + 1
        let next = routes[min(start, routes.count)...].first { admit($0, now: now) }
        guard let next else {
            try failPayment(attempt.subjectID, reason: reason, now: now, in: db)
            return
        }
        counters.failovers += 1
        let (amount, token) = try attemptAmount(attempt, in: db)
        try db.run("UPDATE payment SET psp_id = ?, updated_ns = ? WHERE payment_id = ?", [next, now, attempt.subjectID])
        try startAttempt(subject: .payment, subjectID: attempt.subjectID, pspID: next, amount: amount, cardToken: token,
                         now: now, in: db, effects: &effects)
    }

    func loadAttempt(_ id: Int64, in db: Database) throws -> Attempt? {
        let row = try statements(.attempt, db)
        defer { row.reset() }
        row.bind(id, at: 1)
        return try row.step() ? Attempt(row) : nil
    }

    /// The newest attempt that sent `key` to `pspID` (webhooks and
    /// settlement reports name attempts by their PSP idempotency key).
    func loadAttempt(pspID: String, key: String, in db: Database) throws -> Attempt? {
        let row = try statements(.attemptByKey, db)
        defer { row.reset() }
        row.bind(pspID, at: 1)
        row.bind(key, at: 2)
        return try row.step() ? Attempt(row) : nil
    }

    func updateAttempt(_ id: Int64, state: String, error: String?, now: Int64, in db: Database) throws {
        let update = try statements(.updateAttempt, db)
        update.bind(state, at: 1)
        update.bind(error, at: 2)
        update.bind(now, at: 3)
        update.bind(id, at: 4)
        try update.execute()
    }

    /// The amount (and card token, for charges) an attempt moves.
    func attemptAmount(_ attempt: Attempt, in db: Database) throws -> (Money, String?) {
        let row = try statements(attempt.subject == .payment ? .paymentAmount : .refundAmount, db)
        defer { row.reset() }
        row.bind(attempt.subjectID, at: 1)
        guard try row.step() else { preconditionFailure("\(attempt.subject) \(attempt.subjectID) of attempt \(attempt.id) is not stored") }
        return (Money(minorUnits: row.int64(at: 0), currency: Currency(code: row.text(at: 1))!), row.optionalText(at: 2))
    }
}
