/// What the engine believes, one per PSP attempt that could have moved money.
public struct EngineRecord: Sendable, Equatable {
    /// The payment the attempt belongs to (for a refund, the refunded payment).
    public var paymentID: String
    public var pspID: String
    /// The PSP-side idempotency key the engine sent, e.g. `pay-17:stripe`.
    public var pspReference: String
    public var kind: SettlementKind
    /// Always > 0.
    public var amount: Money
    /// The engine's state for the attempt on the payment scale. A refund's
    /// ``RefundStatus`` maps one to one: `requested` is `.initiated`,
    /// `succeeded` is `.completed`; ``refund(paymentID:pspID:pspReference:amount:status:createdAtNanoseconds:)``
    /// does the mapping and ``refundStatus`` reads it back.
    public var status: PaymentStatus
    /// Engine time the attempt was created, nanoseconds.
    public var createdAtNanoseconds: Int64

    public init(paymentID: String, pspID: String, pspReference: String, kind: SettlementKind,
                amount: Money, status: PaymentStatus, createdAtNanoseconds: Int64) {
        self.paymentID = paymentID
        self.pspID = pspID
        self.pspReference = pspReference
        self.kind = kind
        self.amount = amount
        self.status = status
        self.createdAtNanoseconds = createdAtNanoseconds
    }

    /// A refund attempt, its ``RefundStatus`` mapped onto the payment scale.
    public static func refund(paymentID: String, pspID: String, pspReference: String, amount: Money,
                              status: RefundStatus, createdAtNanoseconds: Int64) -> EngineRecord {
        let mapped: PaymentStatus
        switch status {
        case .requested: mapped = .initiated
        case .processing: mapped = .processing
        case .succeeded: mapped = .completed
        case .failed: mapped = .failed
        }
        return EngineRecord(paymentID: paymentID, pspID: pspID, pspReference: pspReference, kind: .refund,
                            amount: amount, status: mapped, createdAtNanoseconds: createdAtNanoseconds)
    }

    /// The refund's own status, or `nil` for a charge.
    public var refundStatus: RefundStatus? {
        guard kind == .refund else { return nil }
        switch status {
        case .initiated: return .requested
        case .processing: return .processing
        case .completed: return .succeeded
        case .failed: return .failed
        }
    }

    /// The status in the attempt's own vocabulary, for explanations.
    var statusName: String { refundStatus?.rawValue ?? status.rawValue }
}

/// The ways the engine and a PSP report can disagree. Declaration order is
/// the order of items for one reference.
public enum DiscrepancyKind: String, Sendable, CaseIterable {
    case missingAtPSP, missingInternally, amountMismatch, currencyMismatch, statusMismatch, duplicate

    var rank: Int {
        switch self {
        case .missingAtPSP: return 0
        case .missingInternally: return 1
        case .amountMismatch: return 2
        case .currencyMismatch: return 3
        case .statusMismatch: return 4
        case .duplicate: return 5
        }
    }
}

/// What to do about one discrepancy.
public enum Resolution: Sendable, Equatable {
    /// Move the engine record to this status, recording `auditReason`. Only
    /// ever offered for an engine `processing` record whose PSP line agrees
    /// on everything but the outcome: `.completed` when the PSP captured
    /// (or refunded, for a refund), `.failed` when it failed.
    case settle(PaymentStatus, auditReason: String)
    /// A person decides; nothing is adjusted automatically.
    case manualReview(String)
}

/// One difference between the engine and a PSP report.
public struct ReconciliationItem: Sendable, Equatable {
    public var kind: DiscrepancyKind
    public var pspReference: String
    public var paymentID: String?
    /// The engine record compared (the earliest, if the engine holds several).
    public var engine: EngineRecord?
    /// The PSP line compared: if the report holds several, the earliest
    /// settled that agrees with ``engine``, else the earliest settled.
    public var psp: SettlementLine?
    /// For `.duplicate`: the report's lines other than ``psp``, earliest first.
    public var extraLines: [SettlementLine]
    /// For `.duplicate`: the engine's records beyond ``engine``, earliest first.
    public var extraRecords: [EngineRecord]
    /// A human-readable explanation naming both sides.
    public var explanation: String
    public var resolution: Resolution

    public init(kind: DiscrepancyKind, pspReference: String, paymentID: String?, engine: EngineRecord?,
                psp: SettlementLine?, extraLines: [SettlementLine] = [], extraRecords: [EngineRecord] = [],
                explanation: String, resolution: Resolution) {
        self.kind = kind
        self.pspReference = pspReference
        self.paymentID = paymentID
        self.engine = engine
        self.psp = psp
        self.extraLines = extraLines
        self.extraRecords = extraRecords
        self.explanation = explanation
        self.resolution = resolution
    }
}

/// The outcome of reconciling one report. Every reference considered is
/// exactly one of: matched, rightly absent, or named by at least one item.
public struct ReconciliationResult: Sendable, Equatable {
    /// References where the engine record and the PSP line agree fully.
    public var matched: Int
    /// In-period engine records the PSP rightly does not report (`initiated`
    /// or `failed`: no money moved).
    public var expectedAbsent: Int
    /// Sorted by `pspReference`, then `kind` in declaration order; at most one item per pair.
    public var items: [ReconciliationItem]

    public init(matched: Int, expectedAbsent: Int, items: [ReconciliationItem]) {
        self.matched = matched
        self.expectedAbsent = expectedAbsent
        self.items = items
    }

    /// - Complexity: O(items).
    public func count(of kind: DiscrepancyKind) -> Int { items.reduce(0) { $0 + ($1.kind == kind ? 1 : 0) } }

    /// Whether every difference was found and nothing needs a person.
    public var isClean: Bool { items.isEmpty }
}

/// Compares the engine's records with one PSP settlement report and
/// classifies every difference. Pure and deterministic: the result depends
/// only on the contents of its inputs, never on their order.
public enum Reconciler {
    /// Reconciles `engine` against `report`.
    ///
    /// Only records of `report.pspID` are looked at. Records created in the
    /// report period are expected in it (absent is right only for
    /// `initiated` or `failed`); records created outside it are still matched
    /// when the report has their reference, e.g. a charge created just before
    /// the period and settled inside it.
    ///
    /// - Complexity: O((n + m) log(n + m)) for n records and m lines.
    public static func reconcile(engine: [EngineRecord], report: SettlementReport) -> ReconciliationResult {
        // Both sides sorted by reference (then on every field, so the choice of
        // "first" is independent of input order) and walked together: no
        // per-reference containers. Sides that come in that order already
        // (``sortForReconciliation(_:)``) are walked where they are: at a
        // million lines, sorted copies were most of a simulation's peak memory.
        var records = engine.allSatisfy { $0.pspID == report.pspID } ? engine : engine.filter { $0.pspID == report.pspID }
        if !inOrder(records, by: recordOrder) { records.sort(by: recordOrder) }
        var lines = report.lines
        if !inOrder(lines, by: lineOrder) { lines.sort(by: lineOrder) }

        var result = ReconciliationResult(matched: 0, expectedAbsent: 0, items: [])
        var i = 0, j = 0
        while i < records.count || j < lines.count {
            let reference = j == lines.count || (i < records.count && records[i].pspReference < lines[j].pspReference)
                ? records[i].pspReference : lines[j].pspReference
            let recordStart = i, lineStart = j
            while i < records.count && records[i].pspReference == reference { i += 1 }
            while j < lines.count && lines[j].pspReference == reference { j += 1 }
            let group = records[recordStart..<i]
            // A reference is looked at when the report has it or one of its records was created in the period.
            guard j > lineStart || group.contains(where: { report.covers($0.createdAtNanoseconds) }) else { continue }
            var groupLines = Array(lines[lineStart..<j])
            // Of duplicated lines, the extras are the problem: compare the one that agrees, if any.
            if let record = group.first, let agreeing = groupLines.firstIndex(where: { agrees(record, $0) }) {
                groupLines.insert(groupLines.remove(at: agreeing), at: 0)
            }
            let items = classify(reference, records: Array(group), lines: groupLines, report: report)
            if !items.isEmpty {
                result.items.append(contentsOf: items)
            } else if group.isEmpty || groupLines.isEmpty {
                result.expectedAbsent += 1
            } else {
                result.matched += 1
            }
        }
        result.items.sort { ($0.pspReference, $0.kind.rank) < ($1.pspReference, $1.kind.rank) }
        return result
    }

    /// Puts records in the order ``reconcile(engine:report:)`` walks them, so
    /// that it reads them without a sorted copy.
    public static func sortForReconciliation(_ records: inout [EngineRecord]) { records.sort(by: recordOrder) }

    /// Puts report lines in the order ``reconcile(engine:report:)`` walks them,
    /// so that it reads them without a sorted copy.
    public static func sortForReconciliation(_ lines: inout [SettlementLine]) { lines.sort(by: lineOrder) }

    private static func recordOrder(_ a: EngineRecord, _ b: EngineRecord) -> Bool {
        a.pspReference != b.pspReference ? a.pspReference < b.pspReference : precedes(a, b)
    }

    private static func lineOrder(_ a: SettlementLine, _ b: SettlementLine) -> Bool {
        a.pspReference != b.pspReference ? a.pspReference < b.pspReference : precedes(a, b)
    }

    private static func inOrder<T>(_ items: [T], by order: (T, T) -> Bool) -> Bool {
        var index = 1
        while index < items.count {
            if order(items[index], items[index - 1]) { return false }
            index += 1
        }
        return true
    }

    /// The items for one reference, in kind order.
    private static func classify(_ reference: String, records: [EngineRecord], lines: [SettlementLine],
                                 report: SettlementReport) -> [ReconciliationItem] {
        let psp = report.pspID
        var items: [ReconciliationItem] = []
        func add(_ kind: DiscrepancyKind, _ explanation: String, _ resolution: Resolution? = nil) {
            items.append(ReconciliationItem(
                kind: kind, pspReference: reference, paymentID: records.first?.paymentID,
                engine: records.first, psp: lines.first,
                extraLines: kind == .duplicate ? Array(lines.dropFirst()) : [],
                extraRecords: kind == .duplicate ? Array(records.dropFirst()) : [],
                explanation: "\(reference): \(explanation)",
                resolution: resolution ?? .manualReview("\(kind.rawValue) for \(reference) at \(psp): neither side is adjusted automatically")))
        }

        switch (records.first, lines.first) {
        case (nil, nil):
            preconditionFailure("reference \(reference) has neither an engine record nor a PSP line")
        case let (record?, nil):
            if record.status != .initiated && record.status != .failed {
                add(.missingAtPSP, "\(describe(record)) but the \(psp) report for [\(report.periodStartNanoseconds), \(report.periodEndNanoseconds)) ns has no line for it",
                    .manualReview("confirm with \(psp) whether \(reference) moved money before changing anything"))
            }
        case let (nil, line?):
            add(.missingInternally, "\(describe(line)) but the engine has no \(psp) attempt with this reference",
                .manualReview(line.impliedStatus == .failed
                    ? "\(psp) saw an attempt the engine does not know, though no money moved: find its origin"
                    : "money may have moved at \(psp) that the engine does not know: find its origin"))
        case let (record?, line?):
            let moneyAgrees = record.amount == line.amount
            if record.amount.currency != line.amount.currency {
                add(.currencyMismatch, "\(describe(record)) but \(describe(line)): currency \(record.amount.currency) vs \(line.amount.currency)")
            } else if !moneyAgrees {
                let difference = Money(minorUnits: line.amount.minorUnits - record.amount.minorUnits, currency: line.amount.currency)
                add(.amountMismatch, "\(describe(record)) but \(describe(line)): \(psp) minus engine is \(difference)")
            }
            if let item = statusItem(record, line, moneyAgrees: moneyAgrees, single: records.count == 1 && lines.count == 1, report: report) {
                add(.statusMismatch, item.explanation, item.resolution)
            }
        }
        if lines.count > 1 || records.count > 1 {
            var parts: [String] = []
            if lines.count > 1 { parts.append("the \(psp) report has \(lines.count) lines (\(lines.map(describe).joined(separator: "; ")))") }
            if records.count > 1 { parts.append("the engine has \(records.count) records (\(records.map(describe).joined(separator: "; ")))") }
            add(.duplicate, parts.joined(separator: " and "),
                .manualReview("one reference must move money at most once: check \(reference) for a double charge"))
        }
        return items
    }

    /// The status disagreement between a paired record and line, if any.
    private static func statusItem(_ record: EngineRecord, _ line: SettlementLine, moneyAgrees: Bool, single: Bool,
                                   report: SettlementReport) -> (explanation: String, resolution: Resolution?)? {
        let sides = "\(describe(record)) but \(describe(line))"
        guard record.kind == line.kind else {
            return ("\(sides): the engine sent a \(record.kind.rawValue), the PSP reports a \(line.kind.rawValue)", nil)
        }
        guard let implied = line.impliedStatus else {
            return ("\(sides): \(line.status.rawValue) is not an outcome of a \(line.kind.rawValue)", nil)
        }
        guard implied != record.status else { return nil }
        let explanation = "\(sides): engine \(record.statusName), PSP \(line.status.rawValue)"
        guard record.status == .processing else { return (explanation, nil) }
        guard moneyAgrees && single else {
            return (explanation, .manualReview("engine is processing but the \(moneyAgrees ? "reference is duplicated" : "amounts disagree"); settling could record the wrong money"))
        }
        let reason = "reconciliation with the \(report.pspID) report for [\(report.periodStartNanoseconds), \(report.periodEndNanoseconds)) ns: "
            + "\(line.kind.rawValue) \(line.pspReference) \(line.status.rawValue) at \(line.settledAtNanoseconds) ns while the engine was processing"
        return (explanation, .settle(implied, auditReason: reason))
    }

    private static func agrees(_ record: EngineRecord, _ line: SettlementLine) -> Bool {
        record.kind == line.kind && record.amount == line.amount && line.impliedStatus == record.status
    }

    private static func describe(_ record: EngineRecord) -> String {
        "engine \(record.kind.rawValue) for payment \(record.paymentID) is \(record.amount), \(record.statusName), created at \(record.createdAtNanoseconds) ns"
    }

    private static func describe(_ line: SettlementLine) -> String {
        "\(line.pspID) reports \(line.kind.rawValue) \(line.amount), \(line.status.rawValue) at \(line.settledAtNanoseconds) ns"
    }

    /// A total order on every field, so equal-ranked elements are identical.
    private static func precedes(_ a: EngineRecord, _ b: EngineRecord) -> Bool {
        (a.createdAtNanoseconds, a.paymentID, a.kind.rawValue, a.status.rawValue, a.amount.currency.code, a.amount.minorUnits)
            < (b.createdAtNanoseconds, b.paymentID, b.kind.rawValue, b.status.rawValue, b.amount.currency.code, b.amount.minorUnits)
    }

    private static func precedes(_ a: SettlementLine, _ b: SettlementLine) -> Bool {
        (a.settledAtNanoseconds, a.kind.rawValue, a.status.rawValue, a.amount.currency.code, a.amount.minorUnits, a.pspID)
            < (b.settledAtNanoseconds, b.kind.rawValue, b.status.rawValue, b.amount.currency.code, b.amount.minorUnits, b.pspID)
    }
}
