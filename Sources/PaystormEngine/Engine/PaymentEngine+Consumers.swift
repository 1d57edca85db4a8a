import Crypto
import Foundation
import GRDB

extension PaymentEngine {
    // MARK: - Outbox relay

    /// Up to `limit` outbox events after `sequence`, oldest first, as publish
    /// effects (also returned). The relay publishes them, then acknowledges
    /// with ``acknowledgeOutbox(through:)``; anything not acknowledged is
    /// polled again, so delivery is at least once.
    @discardableResult
    public func pollOutbox(after sequence: Int64, limit: Int) throws(EngineError) -> [OutboxMessage] {
        do {
            let messages = try read { db in
                let rows = try statements(.pollOutbox, db)
                defer { rows.reset() }
                rows.bind(sequence, at: 1)
                rows.bind(Int64(max(0, limit)), at: 2)
                var messages: [OutboxMessage] = []
                messages.reserveCapacity(min(max(0, limit), 4_096))
                while try rows.step() {
                    messages.append(OutboxMessage(sequence: rows.int64(at: 0), topic: rows.text(at: 1), partitionKey: rows.text(at: 2),
                                                  event: try TransactionEvent.decode(rows.text(at: 3))))
                }
                return messages
            }
            pending.append(contentsOf: messages.map { .publish($0) })
            return messages
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Records that everything through `sequence` was published.
    public func acknowledgeOutbox(through sequence: Int64) throws(EngineError) {
        try transaction { db, _ in
            try db.run("UPDATE outbox_cursor SET published_through = MAX(published_through, ?) WHERE id = 1", [sequence])
        }
    }

    /// Events in the outbox that the relay has not acknowledged yet: what
    /// the consumers have not been handed at all.
    public func outboxBacklog() throws(EngineError) -> Int {
        try read { try Self.outboxBacklog(in: $0) }
    }

    /// ``outboxBacklog()`` read on a connection the caller holds.
    public static func outboxBacklog(in db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT (SELECT COALESCE(MAX(sequence), 0) FROM outbox) - published_through FROM outbox_cursor WHERE id = 1") ?? 0
    }

    /// The last acknowledged outbox sequence (where a restarted relay resumes).
    public func outboxCursor() throws(EngineError) -> Int64 {
        try read { try Int64.fetchOne($0, sql: "SELECT published_through FROM outbox_cursor WHERE id = 1") ?? 0 }
    }

    // MARK: - Consumers

    /// Delivers one transaction event to one of the engine's consumers.
    /// Idempotent by event id: a redelivery changes nothing and returns `false`.
    ///
    /// Each consumer's work checks before it writes and records the event
    /// last, so an event the work refuses leaves nothing behind, not even the
    /// record: it can be dead-lettered and replayed. Where the work itself
    /// writes a row keyed by the event id — the ledger's journal entry, the
    /// notifications — that row is the record; otherwise a `consumed_event`
    /// claim is.
    @discardableResult
    public func consume(_ event: TransactionEvent, by consumer: EngineConsumer, now: Int64) throws(EngineError) -> Bool {
        try transaction { db, effects in
            let applied: Bool
            switch consumer {
            case .ledger:
                if let entry = journalEntry(for: event) {
                    applied = try postToLedger(entry, in: db)
                } else {
                    applied = try !claimed(event, by: consumer, in: db)
                    if applied { try claim(event, by: consumer, now: now, in: db) }
                }
            case .wallet:
                applied = try !claimed(event, by: consumer, in: db)
                if applied {
                    try updateWallet(event, in: db)
                    try claim(event, by: consumer, now: now, in: db)
                }
            case .notification:
                applied = try notify(event, now: now, in: db, effects: &effects)
            }
            if !applied { counters.duplicateDeliveries += 1 }
            return applied
        }
    }

    func claimed(_ event: TransactionEvent, by consumer: EngineConsumer, in db: Database) throws -> Bool {
        let consumed = try statements(.consumedEvent, db)
        defer { consumed.reset() }
        consumed.bind(consumer.rawValue, at: 1)
        consumed.bind(event.eventID, at: 2)
        return try consumed.step()
    }

    /// Records that `consumer` consumed `event` (after ``claimed(_:by:in:)`` said it had not).
    func claim(_ event: TransactionEvent, by consumer: EngineConsumer, now: Int64, in db: Database) throws {
        let claim = try statements(.claimEvent, db)
        claim.bind(consumer.rawValue, at: 1)
        claim.bind(event.eventID, at: 2)
        claim.bind(now, at: 3)
        try claim.execute()
    }

    /// Captures: the PSP (outside world) owes the gross; the merchant earns
    /// the net, the platform the fee. Refunds reverse that in proportion.
    /// `nil` for an event that moves no money (or names an unknown currency).
    func journalEntry(for event: TransactionEvent) -> JournalEntry? {
        guard let currency = Currency(code: event.currency) else { return nil }
        func money(_ minor: Int64) -> Money { Money(minorUnits: minor, currency: currency) }
        let postings: [LedgerPosting]
        switch event.kind {
        case .paymentCompleted:
            postings = [.debit(.psp(event.pspID), money(event.amountMinor)),
                        .credit(.merchant(event.merchantID), money(event.amountMinor - event.feeMinor)),
                        .credit(.platformFees, money(event.feeMinor))]
        case .refundSucceeded:
            postings = [.credit(.psp(event.pspID), money(event.amountMinor)),
                        .debit(.merchant(event.merchantID), money(event.amountMinor - event.feeMinor)),
                        .debit(.platformFees, money(event.feeMinor))]
        case .paymentFailed, .refundFailed:
            return nil
        }
        // A share of zero is no posting: no fee, or (the fee returned with a
        // refund being rounded down in total) a last cent whose whole amount
        // is fee, which leaves the merchant nothing to give back. A negative
        // share stays in, for the ledger to refuse.
        return JournalEntry(id: event.eventID, transactionID: event.refundID ?? event.paymentID,
                            timeNanoseconds: event.timeNanoseconds, postings: postings.filter { $0.amount.minorUnits != 0 })
    }

    /// Posts `entry`; `false` if the journal already holds it (a redelivery).
    func postToLedger(_ entry: JournalEntry, in db: Database) throws -> Bool {
        do {
            try Ledger.post(entry, in: db, statements: statements)
            return true
        } catch LedgerError.duplicateEntry {
            return false
        }
    }

    /// The merchant's wallet: credited only for captured money (net of fee),
    /// debited for refunds (net of the fee returned).
    func updateWallet(_ event: TransactionEvent, in db: Database) throws {
        let (balance, gross, fees, refunded): (Int64, Int64, Int64, Int64)
        switch event.kind {
        case .paymentCompleted: (balance, gross, fees, refunded) = (event.amountMinor - event.feeMinor, event.amountMinor, event.feeMinor, 0)
        case .refundSucceeded: (balance, gross, fees, refunded) = (-(event.amountMinor - event.feeMinor), 0, -event.feeMinor, event.amountMinor)
        case .paymentFailed, .refundFailed: return
        }
        // Update first: SQLite checks the insert row's CHECK before an upsert
        // turns into an update, and a refund's delta is negative.
        let update = try statements(.updateWallet, db)
        update.bind(balance, at: 1)
        update.bind(gross, at: 2)
        update.bind(fees, at: 3)
        update.bind(refunded, at: 4)
        update.bind(event.merchantID, at: 5)
        update.bind(event.currency, at: 6)
        try update.execute()
        if update.changes == 0 {
            let insert = try statements(.insertWallet, db)
            insert.bind(event.merchantID, at: 1)
            insert.bind(event.currency, at: 2)
            insert.bind(balance, at: 3)
            insert.bind(gross, at: 4)
            insert.bind(fees, at: 5)
            insert.bind(refunded, at: 6)
            try insert.execute()
        }
    }

    // MARK: - Notifications

    /// The user and the merchant hear of every terminal state; the merchant's
    /// copy is signed with HMAC-SHA256 under its webhook secret.
    ///
    /// Both notifications of an event share one `notification` row, which
    /// holds their delivery states and nothing the event says: a resend
    /// renders the message again from the event in the outbox. (Two rows,
    /// each with its own copy of the body, were a quarter of the store.)
    /// - Returns: `false` if the event's notifications exist already (a redelivery).
    func notify(_ event: TransactionEvent, now: Int64, in db: Database, effects: inout [EngineEffect]) throws -> Bool {
        let insert = try statements(.insertNotification, db)
        insert.bind(event.eventID, at: 1)
        insert.bind(now, at: 2)
        insert.bind(now, at: 3)
        try insert.execute()
        guard insert.changes == 1 else { return false }
        let row = db.lastInsertedRowID
        let body = Self.notificationBody(event)
        for recipient in NotificationRecipient.allCases {
            effects.append(.sendNotification(notificationMessage(event, body: body, to: recipient,
                                                                 notificationID: recipient.notificationID(row: row), attempt: 1)))
        }
        return true
    }

    /// What a notification of `event` says, the same to both recipients.
    static func notificationBody(_ event: TransactionEvent) -> String {
        """
        {"event_id":"\(event.eventID)","type":"\(event.kind.rawValue)","payment_id":"\(event.paymentID)",\
        "refund_id":\(event.refundID.map { "\"\($0)\"" } ?? "null"),"amount_minor":\(event.amountMinor),"currency":"\(event.currency)"}
        """
    }

    func notificationMessage(_ event: TransactionEvent, body: String, to recipient: NotificationRecipient,
                             notificationID: Int64, attempt: Int) -> NotificationMessage {
        switch recipient {
        case .user:
            NotificationMessage(notificationID: notificationID, recipient: "user:\(event.userID)", body: body,
                                signature: nil, attempt: attempt)
        case .merchant:
            NotificationMessage(notificationID: notificationID, recipient: "merchant:\(event.merchantID)", body: body,
                                signature: merchantSignature(body, merchantID: event.merchantID), attempt: attempt)
        }
    }

    /// The signature a merchant verifies: hex HMAC-SHA256 of the body under
    /// the merchant's secret (derived per merchant from the configured one).
    /// - Complexity: O(body); the merchant's key is derived once and kept
    ///   (for up to ``MerchantSigners/capacity`` merchants).
    public func merchantSignature(_ body: String, merchantID: String) -> String {
        var mac = merchantSigners.signer(merchantID: merchantID, secret: configuration.merchantWebhookSecret)
        var body = body
        body.withUTF8 { mac.update(data: UnsafeRawBufferPointer($0)) }
        return Hex.encode(mac.finalize())
    }

    /// The host's report of a delivery attempt. Failures retry with backoff;
    /// after `maxNotificationAttempts` the notification goes to the
    /// dead-letter table, from which ``replayDeadLetters(limit:now:)`` resends.
    public func notificationDelivered(_ notificationID: Int64, success: Bool, now: Int64) throws(EngineError) {
        try transaction { db, effects in
            let (row, recipient) = NotificationRecipient.of(notificationID)
            if success {
                // One statement both checks the notification is pending and marks it delivered.
                let update = try statements(recipient == .user ? .userNotificationDelivered : .merchantNotificationDelivered, db)
                update.bind(now, at: 1)
                update.bind(row, at: 2)
                try update.execute()
                if update.changes == 0 { counters.lateReplies += 1 }
                return
            }
            let states = try statements(.notificationState, db)
            states.bind(row, at: 1)
            let column = recipient == .user ? 0 : 2
            guard try states.step(), states.text(at: Int32(column + 1)) == "pending" else {
                states.reset()
                counters.lateReplies += 1
                return
            }
            let attempts = Int(states.int64(at: Int32(column)))
            states.reset()
            if attempts >= configuration.maxNotificationAttempts {
                counters.deadLetters += 1
                try db.run("UPDATE notification SET \(recipient.rawValue)_state = 'dead', updated_ns = ? WHERE notification_id = ?", [now, row])
                try db.run("INSERT INTO dead_letter (source, reference, reason, created_ns) VALUES ('notification', ?, ?, ?)", [String(notificationID), "undeliverable after \(attempts) attempts", now])
            } else {
                let delay = backoff(attemptID: notificationID, try: attempts, base: configuration.notificationBackoffNanoseconds,
                                    cap: configuration.backoffMaxNanoseconds * 12)
                effects.append(.armTimer(.notificationRetry(notificationID: notificationID), afterNanoseconds: delay))
            }
        }
    }

    func resendNotification(_ notificationID: Int64, now: Int64, in db: Database, effects: inout [EngineEffect]) throws {
        guard let stored = try storedNotification(notificationID, in: db), stored.state == "pending" else {
            counters.staleTimers += 1
            return
        }
        try send(stored, attempt: stored.attempts + 1, state: nil, now: now, in: db, effects: &effects)
    }

    /// A notification's delivery state, and its event from the outbox, from
    /// which the message is rendered again: the same body, and the merchant's
    /// signature under the merchant's webhook secret as it is now. `nil` if
    /// there is no such notification.
    /// - Throws: if the event is not in the outbox, or does not decode.
    func storedNotification(_ notificationID: Int64, in db: Database) throws -> StoredNotification? {
        let (row, recipient) = NotificationRecipient.of(notificationID)
        guard let stored = try db.row("""
            SELECT n.\(recipient.rawValue)_attempts AS attempts, n.\(recipient.rawValue)_state AS state, n.event_id, o.payload
            FROM notification n LEFT JOIN outbox o ON o.event_id = n.event_id WHERE n.notification_id = ?
            """, [row]) else { return nil }
        guard let payload: String = stored["payload"] else {
            throw EngineError.storage("notification \(notificationID): its event \(stored["event_id"] as String) is not in the outbox")
        }
        return StoredNotification(notificationID: notificationID, attempts: stored["attempts"], state: stored["state"],
                                  event: try TransactionEvent.decode(payload))
    }

    /// Records attempt `attempt` (and `state`, if given) and sends the message.
    private func send(_ stored: StoredNotification, attempt: Int, state: String?, now: Int64, in db: Database, effects: inout [EngineEffect]) throws {
        let (row, recipient) = NotificationRecipient.of(stored.notificationID)
        let column = recipient.rawValue
        try db.run("""
            UPDATE notification SET \(column)_attempts = ?, \(column)_state = COALESCE(?, \(column)_state), updated_ns = ?
            WHERE notification_id = ?
            """, [attempt, state, now, row])
        effects.append(.sendNotification(notificationMessage(stored.event, body: Self.notificationBody(stored.event), to: recipient,
                                                             notificationID: stored.notificationID, attempt: attempt)))
    }

    /// Sends up to `limit` dead-lettered notifications again (oldest first),
    /// each from its first attempt.
    ///
    /// Every letter's notification and event are read before anything is
    /// written: a letter whose event is missing from the outbox fails the
    /// replay with nothing changed.
    /// - Returns: how many were replayed.
    @discardableResult
    public func replayDeadLetters(limit: Int, now: Int64) throws(EngineError) -> Int {
        try transaction { db, effects in
            let letters = try db.rows("""
                SELECT dead_letter_id, reference FROM dead_letter WHERE source = 'notification' AND replayed_ns IS NULL
                ORDER BY dead_letter_id LIMIT ?
                """, [max(0, limit)])
            let notifications = try letters.map { letter in
                guard let notificationID = Int64(letter["reference"] as String) else {
                    throw EngineError.storage("dead letter \(letter["dead_letter_id"] as Int64) names no notification: \"\(letter["reference"] as String)\"")
                }
                return try storedNotification(notificationID, in: db)
            }
            for (letter, stored) in zip(letters, notifications) {
                try db.run("UPDATE dead_letter SET replayed_ns = ? WHERE dead_letter_id = ?", [now, letter["dead_letter_id"] as Int64])
                if let stored {
                    try send(stored, attempt: 1, state: "pending", now: now, in: db, effects: &effects)
                } else {
                    counters.staleTimers += 1
                }
            }
            return letters.count
        }
    }

    /// Dead letters not yet replayed.
    public func deadLetterCount() throws(EngineError) -> Int {
        try read { try Self.deadLetterCount(in: $0) }
    }

    /// ``deadLetterCount()`` read on a connection the caller holds.
    public static func deadLetterCount(in db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM dead_letter WHERE replayed_ns IS NULL") ?? 0
    }
}

/// Per-merchant HMAC-SHA256 states keyed with the merchant's webhook secret,
/// so signing a notification costs one HMAC of its body rather than a key
/// derivation and a key schedule as well.
///
/// Bounded: at ``capacity`` merchants the table is emptied and refills on
/// demand (a signer is a pure function of the merchant id, so this changes
/// only speed).
struct MerchantSigners {
    static let capacity = 4_096
    private var signers: [String: HMAC<SHA256>] = [:]

    /// The keyed (not yet updated) HMAC state for `merchantID`: hex SHA-256 of
    /// the configured secret and the merchant id, as UTF-8, is the key.
    mutating func signer(merchantID: String, secret: String) -> HMAC<SHA256> {
        if let signer = signers[merchantID] { return signer }
        if signers.count >= Self.capacity { signers.removeAll(keepingCapacity: true) }
        let key = SymmetricKey(data: Data(PaymentEngine.digest([secret, merchantID]).utf8))
        let signer = HMAC<SHA256>(key: key)
        signers[merchantID] = signer
        return signer
    }
}

/// One recipient's notification of an event, as stored, with the event it is rendered from.
struct StoredNotification {
    var notificationID: Int64
    var attempts: Int
    var state: String
    var event: TransactionEvent
}

/// Who hears of an event. An event's two notifications share its
/// `notification` row; the host knows each by its own number, the user's
/// `2 × row − 1` and the merchant's `2 × row` (the numbers the two rows per
/// event of the earlier schema had).
public enum NotificationRecipient: String, CaseIterable, Sendable {
    /// Also the prefix of the row's columns for this recipient: `user_state`, `merchant_attempts`.
    case user, merchant

    public func notificationID(row: Int64) -> Int64 { self == .user ? 2 * row - 1 : 2 * row }

    /// The row and the recipient a notification number names.
    public static func of(_ notificationID: Int64) -> (row: Int64, recipient: NotificationRecipient) {
        ((notificationID + 1) / 2, notificationID % 2 == 0 ? .merchant : .user)
    }
}
