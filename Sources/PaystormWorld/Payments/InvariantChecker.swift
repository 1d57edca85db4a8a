import GRDB
import PaystormEngine
import PaystormKernel
import PaystormStore

/// One broken invariant: what, which payment (or account), when, under which
/// seed, and the trail of what happened to the subject before.
public struct Violation: Sendable, Equatable, CustomStringConvertible {
    public var invariant: String
    public var subject: String
    public var virtualSeconds: Double
    public var seed: UInt64
    public var detail: String
    /// The subject's history: its PSP attempts, events and audit records, oldest first.
    public var trail: [String]

    public var description: String {
        "[\(invariant)] \(subject) at t=\(String(format: "%.3f", virtualSeconds)) s (seed \(seed)): \(detail)"
    }
}

/// Watches the world as it runs and checks every safety invariant of
/// DESIGN.md, from two sides: the engine's own records (``EngineAudit``,
/// run on a cadence and at the end) and the world's independent truth — what
/// the PSPs actually charged and refunded, what the broker carried, what the
/// clients were told. Liveness is judged after the healing phase.
final class InvariantChecker {
    let seed: UInt64
    private(set) var violations: [Violation] = []
    /// Most violations kept in full; the rest are counted.
    let keep = 1_000
    private(set) var violationCount = 0
    /// Every violation, per check: the kept ones and the ones only counted.
    private(set) var violationCounts: [Invariant: Int] = [:]
    /// Per payment number: bit 0 completed seen, bit 1 failed seen (from the broker).
    private var terminalSeen = ChunkedArray<UInt8>()
    /// Per payment number: bit i set once the engine sent a charge to PSP #i.
    private var chargedAt = ChunkedArray<UInt16>()
    /// Each payment's capture at a PSP and each refund key's payout, as the
    /// PSPs report them: kept on disk, they grew with the run in memory.
    let truth: WorldTruth
    var store: Store?
    var now: () -> SimInstant = { .zero }

    init(seed: UInt64, truth: WorldTruth) {
        self.seed = seed
        self.truth = truth
    }

    func record(_ invariant: Invariant, _ subject: String, _ detail: String) {
        violationCount += 1
        violationCounts[invariant, default: 0] += 1
        guard violations.count < keep else { return }
        // The trail is read from the store when the run ends: a violation can
        // be found inside an engine transaction, where the store cannot be read.
        violations.append(Violation(invariant: invariant.rawValue, subject: subject, virtualSeconds: now().seconds, seed: seed,
                                    detail: detail, trail: []))
    }

    /// A violation the engine's audit found, under the world's name for its check.
    func record(_ violation: EngineAudit.Violation) {
        let (invariant, detail) = Invariant.of(violation)
        record(invariant, violation.subject, detail)
    }

    /// Fills in each kept violation's trail from the store.
    func collectTrails() {
        for index in violations.indices { violations[index].trail = trail(of: violations[index].subject) }
    }

    static func paymentNumber(_ paymentID: String) -> Int? {
        guard paymentID.hasPrefix("pay-"), let number = Int(paymentID.dropFirst(4)), number >= 0 else { return nil }
        return number
    }

    private func grow(to number: Int) {
        terminalSeen.extend(toInclude: number, with: 0)
    }

    // MARK: - The PSPs' truth (invariant 1: one key, at most one charge)

    /// A PSP captured money for a charge key `pay-N:psp`.
    func pspCaptured(key: String, pspIndex: Int, amountMinor: Int64) {
        let paymentID = String(key.prefix { $0 != ":" })
        guard let number = Self.paymentNumber(paymentID) else {
            record(.oneCharge, key, "a PSP captured a key that names no payment")
            return
        }
        if let first = truth.capture(paymentNumber: number, psp: pspIndex, amountMinor: amountMinor) {
            record(.oneCharge, paymentID, "captured at PSP #\(first) and again at PSP #\(pspIndex) (key \(key))")
        }
    }

    /// The engine sent a charge for payment `paymentID` to PSP `pspIndex`
    /// (invariant 7: no second PSP is tried while the first outcome is
    /// unknown). Every PSP it sent a charge for this payment to before must
    /// by now have fixed that key as failed — declined, or voided at the
    /// engine's request — which is what the engine must have heard before it
    /// fails over. No outcome (the charge may still be on its way) or a
    /// capture means it tried this PSP not knowing the first had failed.
    ///
    /// - Parameter outcome: a PSP's final outcome for the payment's key there
    ///   (``PSP/chargeOutcome(paymentNumber:)``).
    func chargeSent(paymentID: String, pspIndex: Int, outcome: (_ pspIndex: Int, _ paymentNumber: Int) -> PSP.Final?) {
        guard let number = Self.paymentNumber(paymentID), pspIndex < 16 else { return }
        chargedAt.extend(toInclude: number, with: 0)
        let earlier = chargedAt[number] & ~(1 << UInt16(pspIndex))
        chargedAt[number] |= 1 << UInt16(pspIndex)
        guard earlier != 0 else { return }
        for other in 0..<16 where earlier & (1 << UInt16(other)) != 0 {
            switch outcome(other, number) {
            case .declined, .voided: continue
            case .done:
                record(.noFailoverWhenAmbiguous, paymentID, "charge sent to PSP #\(pspIndex) after PSP #\(other) had captured the payment")
            case nil:
                record(.noFailoverWhenAmbiguous, paymentID,
                       "charge sent to PSP #\(pspIndex) while the charge sent to PSP #\(other) had no outcome there (not declined, not voided)")
            }
        }
    }

    func pspRefunded(key: String, amountMinor: Int64) {
        if !truth.payOut(reference: key, amountMinor: amountMinor) {
            record(.oneRefund, key, "a refund key moved money twice at its PSP")
        }
    }

    // MARK: - The broker's stream (invariant 5: terminal states are never left)

    /// - Returns: whether the event is the first terminal event of its payment.
    @discardableResult
    func published(_ event: TransactionEvent) -> Bool {
        guard let number = Self.paymentNumber(event.paymentID) else { return false }
        grow(to: number)
        let bit: UInt8
        switch event.kind {
        case .paymentCompleted: bit = 1
        case .paymentFailed: bit = 2
        case .refundSucceeded, .refundFailed:
            if event.amountMinor <= 0 { record(.amount, event.paymentID, "refund event \(event.eventID) with amount \(event.amountMinor)") }
            return false
        }
        if event.amountMinor <= 0 { record(.amount, event.paymentID, "event \(event.eventID) with amount \(event.amountMinor)") }
        let seen = terminalSeen[number] | bit
        if seen == 3 && terminalSeen[number] != 3 {
            record(.terminalState, event.paymentID, "published both payment.completed and payment.failed")
        }
        let first = terminalSeen[number] == 0
        terminalSeen[number] = seen
        return first
    }

    // MARK: - What clients were told (invariant 1: replays)

    /// Card numbers the engine took, to look for in clear at the end.
    private(set) var cards = EvenSample<String>(capacity: 64)

    /// The engine created a payment (not a replay) with `cardNumber`, as
    /// the client wrote it (``CardNumberSearch`` takes its digits: only the
    /// few sampled are ever looked at).
    func cardTaken(_ cardNumber: String) { cards.add(cardNumber) }

    /// Client request `request` was answered with payment or refund
    /// `resourceID` (request ids are shared by both): every answer to one
    /// request, created or replayed, must name what its first creation did.
    /// Every send of a request carries its idempotency key, so a second
    /// creation is a duplicate — even when the client never saw the first
    /// answer and so never compared the two.
    func created(request: Int64, resourceID: String) {
        if let first = truth.created(request: request, paymentID: resourceID), first != resourceID {
            record(.idempotentCreate, resourceID, "request \(request) created \(first) and then \(resourceID) under the same idempotency key")
        }
    }

    func replayMismatch(key: String, first: String, later: String) {
        record(.idempotentReplay, first, "key \(key) answered with \(first), then with \(later)")
    }

    func keyReuseAccepted(key: String, paymentID: String) {
        record(.idempotencyKeyReuse, paymentID, "key \(key) reused with a different body was accepted")
    }

    // MARK: - The engine's records

    /// ``EngineAudit/safety(_:)`` plus the checks only the world can make.
    /// The final audit also looks for the sampled cards (``cards``) in clear.
    func audit(final: Bool) {
        guard let store else { return }
        do {
            let (engine, wallets, cardData) = try store.read { db in
                let wallets = try Row.fetchAll(db, sql: """
                    SELECT merchant_id, currency, balance_minor, gross_minor, fees_minor, refunded_minor FROM wallet
                    WHERE balance_minor != gross_minor - fees_minor - refunded_minor ORDER BY merchant_id, currency
                    """)
                return (try EngineAudit.safety(db), wallets, final ? try Self.cardDataLeaks(db, cardNumbers: cards.items) : [])
            }
            for violation in engine { record(violation) }
            for row in wallets {
                record(.walletGrossFeeNet, row["merchant_id"],
                       "balance \(row["balance_minor"] as Int64) != gross \(row["gross_minor"] as Int64) − fees \(row["fees_minor"] as Int64) − refunded \(row["refunded_minor"] as Int64)")
            }
            for leak in cardData { record(.cardData, leak.subject, leak.detail) }
        } catch {
            record(.audit, "store", "the audit could not read the store: \(error)")
        }
    }

    /// Invariant 9: no card number in clear and no CVV column, anywhere.
    /// Every value of every row of every table is searched for every sample
    /// number, whatever its column's declared type (``CardNumberSearch``):
    /// text, blobs, and the digits of integers and of whole reals. One read
    /// of each table, the values looked at where SQLite holds them.
    static func cardDataLeaks(_ db: Database, cardNumbers: [String]) throws -> [(subject: String, detail: String)] {
        var found: [(subject: String, detail: String)] = []
        let search = CardNumberSearch(cardNumbers)
        let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        for table in tables {
            let columns = try String.fetchAll(db, sql: "SELECT name FROM pragma_table_info(?) ORDER BY cid", arguments: [table])
            for name in columns where name.lowercased().contains("cvv") || name.lowercased().contains("cvc") {
                found.append((subject: "\(table).\(name)", detail: "a CVV column exists"))
            }
            guard !columns.isEmpty, !search.numbers.isEmpty else { continue }
            let rows = try PreparedStatement(db, sql: "SELECT " + columns.map(Self.quoted).joined(separator: ", ") + " FROM " + Self.quoted(table))
            defer { rows.reset() }
            // Per column, the sample numbers found in it.
            var hits = [Set<Int>](repeating: [], count: columns.count)
            while try rows.step() {
                for column in columns.indices {
                    rows.withCell(at: Int32(column)) { cell in
                        switch cell {
                        case .null: break
                        case let .integer(value): search.search(value, into: &hits[column])
                        case let .real(value): search.search(value, into: &hits[column])
                        case let .text(bytes), let .blob(bytes): search.search(bytes, into: &hits[column])
                        }
                    }
                }
            }
            for (column, numbers) in zip(columns, hits) {
                for number in Set(numbers.map { search.numbers[$0] }).sorted() {
                    found.append((subject: "\(table).\(column)", detail: "a card number in clear (…\(number.suffix(4)))"))
                }
            }
        }
        return found
    }

    /// An SQL identifier in double quotes, any inside doubled.
    static func quoted(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    /// After healing: the PSPs' truth against the engine's records.
    /// Money captured at a PSP ⇔ the payment is completed; money refunded at
    /// a PSP ⇔ the refund succeeded, for its amount; refunds at the PSPs
    /// never exceed the capture.
    func crossCheck() {
        guard let store else { return }
        do {
            try store.read { db in
                // Payments in parts, each part's captures read at once.
                var part: [(paymentID: String, number: Int, status: String, amountMinor: Int64)] = []
                func judgePart() {
                    for (payment, capture) in zip(part, truth.captured(paymentNumbers: part.map(\.number))) {
                        let captured = capture?.amountMinor
                        if let captured, payment.status != "completed" {
                            record(.chargedButNotCompleted, payment.paymentID, "the PSP captured \(captured) but the payment is \(payment.status)")
                        } else if captured == nil && payment.status == "completed" {
                            record(.completedWithoutCharge, payment.paymentID, "the payment is completed but no PSP captured it")
                        } else if let captured, captured != payment.amountMinor {
                            record(.chargeAmount, payment.paymentID, "captured \(captured) for a payment of \(payment.amountMinor)")
                        }
                    }
                    part.removeAll(keepingCapacity: true)
                }
                let cursor = try Row.fetchCursor(db, sql: "SELECT payment_id, status, amount_minor FROM payment")
                while let row = try cursor.next() {
                    let paymentID: String = row["payment_id"]
                    guard let number = Self.paymentNumber(paymentID) else { continue }
                    part.append((paymentID, number, row["status"], row["amount_minor"]))
                    if part.count == 10_000 { judgePart() }
                }
                judgePart()
                var after: String?
                while case let payouts = truth.payouts(after: after, limit: 10_000), let last = payouts.last {
                    for (key, amount) in payouts {
                        let refundID = String(key.prefix { $0 != ":" })
                        if try Int.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM refund WHERE refund_id = ?"), arguments: [refundID]) == nil {
                            record(.refundWithoutRecord, refundID, "the PSP refunded \(amount) for an unknown refund")
                        }
                    }
                    after = last.reference
                }
                // Each refund against its PSP: money paid out ⇔ the refund
                // succeeded, for its amount. (The sums below agree with the
                // engine's books even when one refund is misread.)
                // In storage order, then sorted (see ``EngineAudit``: the id index would read the table's pages out of order).
                let refunds = try Row.fetchCursor(db, sql: "SELECT refund_id, psp_id, amount_minor, status FROM refund ORDER BY +refund_id")
                while let refund = try refunds.next() {
                    let refundID: String = refund["refund_id"]
                    let status: String = refund["status"]
                    let amount: Int64 = refund["amount_minor"]
                    let paidOut = truth.paidOut(reference: "\(refundID):\(refund["psp_id"] as String)")
                    if let paidOut, status == "failed" {
                        record(.refundedButFailed, refundID, "the PSP refunded \(paidOut) but the refund is failed")
                    } else if paidOut == nil && status == "succeeded" {
                        record(.refundWithoutPayout, refundID, "the refund succeeded but its PSP paid nothing out")
                    } else if let paidOut, paidOut != amount {
                        record(.refundAmount, refundID, "the PSP refunded \(paidOut) for a refund of \(amount)")
                    }
                }
                // What the PSPs paid out for each payment's refunds, against its capture.
                var payment: String?
                var refunded: Int64 = 0
                func judge() {
                    guard let payment, refunded > 0, let number = Self.paymentNumber(payment) else { return }
                    let captured = truth.captured(paymentNumber: number)?.amountMinor ?? 0
                    if refunded > captured {
                        record(.refundsExceedCapture, payment, "PSPs refunded \(refunded) of a capture of \(captured)")
                    }
                }
                let byPayment = try Row.fetchCursor(db, sql: "SELECT payment_id, refund_id FROM refund ORDER BY +payment_id")
                while let row = try byPayment.next() {
                    let paymentID: String = row["payment_id"]
                    if paymentID != payment {
                        judge()
                        payment = paymentID
                        refunded = 0
                    }
                    refunded += truth.paidOut(refundID: row["refund_id"])
                }
                judge()
            }
        } catch {
            record(.audit, "store", "the cross-check could not read the store: \(error)")
        }
    }

    /// The subject's history from the store, for a violation's trail.
    func trail(of subject: String) -> [String] {
        guard let store else { return [] }
        return (try? store.read { db -> [String] in
            var lines: [String] = []
            if let row = try Row.fetchOne(db, sql: "SELECT status, amount_minor, currency, psp_id, failure_reason, created_ns, updated_ns FROM payment WHERE payment_id = ?", arguments: [subject]) {
                lines.append("payment \(subject): \(row["status"] as String) \(row["amount_minor"] as Int64) \(row["currency"] as String) via \(row["psp_id"] as String? ?? "-") (\(row["failure_reason"] as String? ?? "no failure"))")
            }
            // Both lookups name the whole key of an index: a trail is a few
            // index probes, not a scan of every attempt and every event.
            for row in try Row.fetchAll(db, sql: """
                SELECT attempt_id, psp_id, state, tries, status_queries, last_error, updated_ns FROM psp_attempt
                WHERE subject IN ('payment', 'refund') AND subject_id = ? ORDER BY attempt_id
                """, arguments: [subject]) {
                lines.append("attempt \(row["attempt_id"] as Int64) at \(row["psp_id"] as String): \(row["state"] as String), \(row["tries"] as Int) tries, \(row["status_queries"] as Int) status queries, last error \(row["last_error"] as String? ?? "none")")
            }
            let events = TransactionEvent.Kind.allCases.map { "\($0.rawValue):\(subject)" }
            for row in try Row.fetchAll(db, sql: """
                SELECT event_id, created_ns FROM outbox WHERE event_id IN (\(databaseQuestionMarks(count: events.count))) ORDER BY sequence
                """, arguments: StatementArguments(events)) {
                lines.append("event \(row["event_id"] as String) at engine time \(row["created_ns"] as Int64)")
            }
            for row in try Row.fetchAll(db, sql: "SELECT action, reason FROM audit_log WHERE subject_id = ? ORDER BY audit_id", arguments: [subject]) {
                lines.append("audit \(row["action"] as String): \(row["reason"] as String)")
            }
            return lines
        }) ?? []
    }
}

/// An even sample of a stream of unknown length, drawn by position, not at
/// random (it takes nothing from a run's random streams): every
/// `stride`-th item, the stride doubling and every other item kept dropped
/// whenever `capacity` are held. It always holds the first item, and
/// between half and all of `capacity` spread evenly over the whole stream,
/// its end included.
struct EvenSample<Item> {
    let capacity: Int
    private(set) var items: [Item] = []
    private(set) var stride = 1
    private var seen = 0

    /// - Precondition: `capacity` is even and at least 2.
    init(capacity: Int) {
        precondition(capacity >= 2 && capacity % 2 == 0, "an even sample needs an even capacity of at least 2")
        self.capacity = capacity
        items.reserveCapacity(capacity)
    }

    mutating func add(_ item: Item) {
        defer { seen += 1 }
        guard seen % stride == 0 else { return }
        items.append(item)
        if items.count == capacity {
            items = Swift.stride(from: 0, to: capacity, by: 2).map { items[$0] }
            stride *= 2
        }
    }
}
