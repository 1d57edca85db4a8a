import GRDB

extension PaymentEngine {
    /// Compares the engine's PSP attempts with a PSP settlement report,
    /// records every difference, and settles only the safe cases — an attempt
    /// still `processing` (in flight or ambiguous) whose outcome the report
    /// states — with an audit reason. Nothing else is adjusted.
    ///
    /// With `references`, only the PSP references in that range are
    /// reconciled: a report too large to hold at once goes through in parts,
    /// each with every line of its references (consecutive ranges tile the
    /// references, so each is looked at exactly once).
    ///
    /// A line outside `references` is refused before anything is read: the
    /// engine's attempts for it would not be loaded, and it would be reported
    /// as missing internally when it is not.
    ///
    /// A discrepancy is recorded once per PSP, reference and kind: a report
    /// over a period that overlaps an earlier one (the server reconciles in
    /// overlapping rounds) finds it again, and returns it, but does not
    /// record it twice.
    ///
    /// - Parameter mark: the host's own note of what this reconciliation
    ///   covered — the server's round end, by its wall clock — kept for the
    ///   PSP in the same transaction, in place of the last one (see
    ///   ``reconciledThrough()``); `nil` keeps nothing.
    public func reconcile(_ report: SettlementReport, references: ReferenceRange = .all, now: Int64,
                          mark: Int64? = nil) throws(EngineError) -> ReconciliationResult {
        if let index = report.lines.firstIndex(where: { !references.contains($0.pspReference) }) {
            throw .invalidField(field: "lines[\(index)].psp_reference",
                                message: "\"\(report.lines[index].pspReference)\" lies outside the part's references, \(references)")
        }
        return try transaction { db, effects in
            let records = try engineRecords(pspID: report.pspID, references: references, in: db)
            let result = Reconciler.reconcile(engine: records, report: report)
            for item in result.items {
                let resolution: String
                switch item.resolution {
                case let .settle(status, reason): resolution = "settle \(status.rawValue): \(reason)"
                case let .manualReview(reason): resolution = "manual review: \(reason)"
                }
                try db.run("""
                    INSERT INTO reconciliation_item (psp_id, psp_reference, payment_id, kind, explanation, resolution, created_ns)
                    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
                    WHERE NOT EXISTS (SELECT 1 FROM reconciliation_item WHERE psp_id = ?1 AND psp_reference = ?2 AND kind = ?4)
                    """, [report.pspID, item.pspReference, item.paymentID, item.kind.rawValue, item.explanation, resolution, now])
                guard case let .settle(status, reason) = item.resolution,
                      let attempt = try loadAttempt(pspID: report.pspID, key: item.pspReference, in: db),
                      attempt.isOpen else { continue }
                try audit(attempt.subjectID, action: "reconciliation-settle", reason: reason, now: now, in: db)
                let outcome: PSPOutcome = status == .completed
                    ? .succeeded(pspReference: item.psp?.pspReference ?? item.pspReference)
                    : .declined(reason: "settled by reconciliation: \(reason)")
                try apply(outcome, to: attempt, now: now, in: db, effects: &effects)
            }
            if let mark {
                try db.run("""
                    INSERT INTO reconciled_period (psp_id, through_ns) VALUES (?, ?)
                    ON CONFLICT (psp_id) DO UPDATE SET through_ns = excluded.through_ns
                    """, [report.pspID, mark])
            }
            return result
        }
    }

    /// Per PSP, the mark of its latest reconciliation that had one (see
    /// ``reconcile(_:references:now:mark:)``); a PSP without one is absent.
    public func reconciledThrough() throws(EngineError) -> [String: Int64] {
        try read { db in
            var through: [String: Int64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT psp_id, through_ns FROM reconciled_period") {
                through[row["psp_id"]] = row["through_ns"]
            }
            return through
        }
    }

    /// One record per PSP attempt at `pspID`, in the reconciler's vocabulary
    /// and order. Read through a cursor: a PSP with a million attempts would
    /// otherwise hold a million GRDB rows beside the records made from them.
    func engineRecords(pspID: String, references: ReferenceRange = .all, in db: Database) throws -> [EngineRecord] {
        var records: [EngineRecord] = []
        let (sql, arguments) = Self.engineRecordsSelect(pspID: pspID, references: references)
        let rows = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
        while let row = try rows.next() {
            let amount = Money(minorUnits: row["amount_minor"], currency: Currency(code: row["currency"])!)
            let status: PaymentStatus = switch row["state"] as String {
            case "succeeded": .completed
            case "failed": .failed
            default: .processing
            }
            records.append(EngineRecord(paymentID: row["payment_id"], pspID: pspID, pspReference: row["psp_idempotency_key"],
                                        kind: row["subject"] == "payment" ? .charge : .refund, amount: amount, status: status,
                                        createdAtNanoseconds: row["created_ns"]))
        }
        Reconciler.sortForReconciliation(&records)
        return records
    }

    /// The query behind ``engineRecords(pspID:references:in:)``. References
    /// compare as SQLite's BINARY collation does, byte by byte: the order of
    /// Swift's `<` on the ASCII the PSPs use. Only the ends the range has are
    /// written into the query — "(? IS NULL OR key > ?)" kept SQLite from
    /// searching the index by range, so every part of a report read all of
    /// the PSP's attempts, and ten times the payments reconciled a hundred
    /// times the rows. The index's order is the reconciler's, near enough
    /// that its sort has little to do and SQLite none.
    static func engineRecordsSelect(pspID: String, references: ReferenceRange) -> (sql: String, arguments: StatementArguments) {
        var conditions = ["a.psp_id = ?"]
        var arguments: StatementArguments = [pspID]
        if let after = references.after { conditions.append("a.psp_idempotency_key > ?"); arguments += [after] }
        if let through = references.through { conditions.append("a.psp_idempotency_key <= ?"); arguments += [through] }
        let sql = """
            SELECT a.subject, a.subject_id, a.psp_idempotency_key, a.state, a.created_ns,
                   COALESCE(p.payment_id, r.payment_id) AS payment_id,
                   COALESCE(p.amount_minor, r.amount_minor) AS amount_minor, COALESCE(p.currency, r.currency) AS currency
            FROM psp_attempt a
            LEFT JOIN payment p ON a.subject = 'payment' AND p.payment_id = a.subject_id
            LEFT JOIN refund r ON a.subject = 'refund' AND r.refund_id = a.subject_id
            WHERE \(conditions.joined(separator: " AND "))
            ORDER BY a.psp_idempotency_key
            """
        return (sql, arguments)
    }
}

/// The PSP references after `after` up to and including `through`, compared
/// byte by byte; `nil` leaves that end open.
public struct ReferenceRange: Sendable, Equatable {
    public var after: String?
    public var through: String?

    public init(after: String?, through: String?) {
        self.after = after
        self.through = through
    }

    public static let all = ReferenceRange(after: nil, through: nil)

    /// Whether `reference` lies in the range, compared byte by byte as the
    /// engine's query compares it.
    public func contains(_ reference: String) -> Bool {
        if let after, !after.utf8.lexicographicallyPrecedes(reference.utf8) { return false }
        if let through, through.utf8.lexicographicallyPrecedes(reference.utf8) { return false }
        return true
    }
}

extension ReferenceRange: CustomStringConvertible {
    public var description: String {
        switch (after, through) {
        case (nil, nil): "all references"
        case let (after?, nil): "after \"\(after)\""
        case let (nil, through?): "up to and including \"\(through)\""
        case let (after?, through?): "after \"\(after)\" up to and including \"\(through)\""
        }
    }
}
