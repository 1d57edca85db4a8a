import Testing
@testable import PaystormEngine

@Suite("Reconciliation")
struct ReconcilerTests {
    static let start: Int64 = 1_000
    static let end: Int64 = 2_000

    static func money(_ minor: Int64, _ currency: Currency = .usd) -> Money { Money(minorUnits: minor, currency: currency) }

    static func record(_ n: Int, _ status: PaymentStatus = .completed, kind: SettlementKind = .charge, amount: Money = money(1050),
                       psp: String = "stripe", at time: Int64 = 1_500) -> EngineRecord {
        EngineRecord(paymentID: "pay-\(n)", pspID: psp, pspReference: "pay-\(n):\(psp)", kind: kind,
                     amount: amount, status: status, createdAtNanoseconds: time)
    }

    static func line(_ n: Int, _ status: SettlementStatus = .captured, kind: SettlementKind = .charge, amount: Money = money(1050),
                     at time: Int64 = 1_600) -> SettlementLine {
        SettlementLine(pspID: "stripe", pspReference: "pay-\(n):stripe", kind: kind, amount: amount, status: status, settledAtNanoseconds: time)
    }

    static func reconcile(_ engine: [EngineRecord], _ lines: [SettlementLine]) -> ReconciliationResult {
        Reconciler.reconcile(engine: engine, report: SettlementReport(pspID: "stripe", periodStartNanoseconds: start, periodEndNanoseconds: end, lines: lines))
    }

    static func keys(_ result: ReconciliationResult) -> [String] { result.items.map { "\($0.pspReference) \($0.kind.rawValue)" } }

    @Test func agreeingRecordsMatchAndRightfulAbsencesAreNotDiscrepancies() {
        let refund = EngineRecord.refund(paymentID: "pay-3", pspID: "stripe", pspReference: "pay-3:stripe", amount: Self.money(500),
                                         status: .succeeded, createdAtNanoseconds: 1_700)
        let result = Self.reconcile(
            [Self.record(1), Self.record(2, .failed), refund, Self.record(4, .failed), Self.record(5, .initiated)],
            [Self.line(1), Self.line(2, .failed), Self.line(3, .refunded, kind: .refund, amount: Self.money(500))])
        #expect(result.items.isEmpty)
        #expect(result.matched == 3)
        #expect(result.expectedAbsent == 2)
    }

    @Test func missingAtPSPIsReviewedNeverSettled() {
        for status in [PaymentStatus.completed, .processing] {
            let result = Self.reconcile([Self.record(1, status)], [])
            let item = try! #require(result.items.first)
            #expect(result.items.count == 1 && item.kind == .missingAtPSP)
            #expect(item.paymentID == "pay-1" && item.engine == Self.record(1, status) && item.psp == nil)
            guard case .manualReview = item.resolution else { Issue.record("\(item.resolution)"); continue }
            #expect(item.explanation.contains("pay-1:stripe") && item.explanation.contains("10.50 USD") && item.explanation.contains("stripe report"))
        }
    }

    @Test func missingInternallyIncludesLinesForAnotherPSPsRecord() {
        let result = Self.reconcile([Self.record(1, psp: "adyen")], [Self.line(1)])
        #expect(Self.keys(result) == ["pay-1:stripe missingInternally"])
        #expect(result.items[0].paymentID == nil && result.items[0].engine == nil && result.items[0].psp == Self.line(1))
        #expect(result.items[0].explanation.contains("stripe reports charge 10.50 USD, captured"))
        guard case .manualReview = result.items[0].resolution else { Issue.record("unknown money was settled"); return }
        #expect(result.matched == 0 && result.expectedAbsent == 0, "the adyen record is out of this report's scope")
    }

    @Test func amountMismatchNamesBothAmountsAndTheDifference() {
        let result = Self.reconcile([Self.record(1)], [Self.line(1, amount: Self.money(1000))])
        #expect(Self.keys(result) == ["pay-1:stripe amountMismatch"])
        let explanation = result.items[0].explanation
        #expect(explanation.contains("10.50 USD") && explanation.contains("10.00 USD") && explanation.contains("-0.50 USD"))
        #expect(result.matched == 0)
    }

    @Test func currencyIsCheckedBeforeAmount() {
        for amount in [Self.money(1050, .eur), Self.money(999, .eur), Self.money(1050, .jpy)] {
            let result = Self.reconcile([Self.record(1)], [Self.line(1, amount: amount)])
            #expect(Self.keys(result) == ["pay-1:stripe currencyMismatch"], "\(amount)")
            #expect(result.count(of: .amountMismatch) == 0)
            #expect(result.items[0].explanation.contains("USD vs \(amount.currency.code)"))
        }
    }

    /// Every engine status against every PSP outcome: settle only for `processing`.
    @Test("status table", arguments: PaymentStatus.allCases)
    func statusTable(engine: PaymentStatus) {
        for status in SettlementStatus.allCases {
            let result = Self.reconcile([Self.record(1, engine)], [Self.line(1, status)])
            let implied: PaymentStatus? = status == .captured ? .completed : status == .failed ? .failed : nil
            let agrees = implied == engine
            #expect(result.matched == (agrees ? 1 : 0), "\(engine) vs \(status)")
            #expect(Self.keys(result) == (agrees ? [] : ["pay-1:stripe statusMismatch"]), "\(engine) vs \(status)")
            guard let item = result.items.first else { continue }
            #expect(item.explanation.contains("\(engine.rawValue), PSP \(status.rawValue)") || implied == nil)
            switch item.resolution {
            case let .settle(to, reason):
                #expect(engine == .processing && to == implied, "\(engine) vs \(status)")
                #expect(reason.contains("pay-1:stripe") && reason.contains("processing"))
            case .manualReview:
                #expect(engine != .processing || implied == nil, "\(engine) vs \(status)")
            }
        }
    }

    @Test func kindDisagreementIsAStatusMismatchForReview() {
        let result = Self.reconcile([Self.record(1, .processing)], [Self.line(1, .refunded, kind: .refund)])
        #expect(Self.keys(result) == ["pay-1:stripe statusMismatch"])
        #expect(result.items[0].explanation.contains("the engine sent a charge, the PSP reports a refund"))
        guard case .manualReview = result.items[0].resolution else { Issue.record("kind mismatch was settled"); return }
    }

    @Test func refundStatusesMapBothWays() {
        for status in RefundStatus.allCases {
            let refund = EngineRecord.refund(paymentID: "p", pspID: "s", pspReference: "r", amount: Self.money(1), status: status, createdAtNanoseconds: 0)
            #expect(refund.refundStatus == status && refund.kind == .refund)
        }
        #expect(Self.record(1).refundStatus == nil)
        let processing = EngineRecord.refund(paymentID: "pay-1", pspID: "stripe", pspReference: "pay-1:stripe", amount: Self.money(1050), status: .processing, createdAtNanoseconds: 1_500)
        let result = Self.reconcile([processing], [Self.line(1, .refunded, kind: .refund)])
        #expect(result.items.map(\.kind) == [.statusMismatch])
        guard case .settle(.completed, _) = result.items[0].resolution else { Issue.record("\(result.items[0].resolution)"); return }
        #expect(result.items[0].explanation.contains("engine refund for payment pay-1 is 10.50 USD, processing"))
    }

    @Test func duplicateLinesAreOneItemCarryingTheExtras() {
        let result = Self.reconcile([Self.record(1)], [Self.line(1, at: 1_900), Self.line(1), Self.line(1, at: 1_800)])
        #expect(Self.keys(result) == ["pay-1:stripe duplicate"])
        #expect(result.items[0].psp == Self.line(1), "the earliest settled line is the one compared")
        #expect(result.items[0].extraLines == [Self.line(1, at: 1_800), Self.line(1, at: 1_900)])
        #expect(result.items[0].explanation.contains("3 lines"))
        #expect(result.matched == 0)
        // The line that agrees is compared whatever its position; a duplicate
        // that disagrees; an unknown duplicated reference.
        let lines = [Self.line(1, amount: Self.money(99)), Self.line(1), Self.line(2), Self.line(2), Self.line(3, .failed), Self.line(3, .failed)]
        for order in [lines, lines.reversed()] {
            let mixed = Self.reconcile([Self.record(1), Self.record(3, .processing)], order)
            #expect(Self.keys(mixed) == ["pay-1:stripe duplicate", "pay-2:stripe missingInternally", "pay-2:stripe duplicate",
                                         "pay-3:stripe statusMismatch", "pay-3:stripe duplicate"])
            #expect(mixed.items[0].psp == Self.line(1) && mixed.items[0].extraLines == [Self.line(1, amount: Self.money(99))])
            #expect(mixed.items[3].resolution == .manualReview("engine is processing but the reference is duplicated; settling could record the wrong money"))
        }
    }

    @Test func duplicateEngineRecordsAreReportedToo() {
        let result = Self.reconcile([Self.record(1, at: 1_200), Self.record(1, at: 1_100)], [Self.line(1)])
        #expect(Self.keys(result) == ["pay-1:stripe duplicate"])
        #expect(result.items[0].engine == Self.record(1, at: 1_100) && result.items[0].extraRecords == [Self.record(1, at: 1_200)])
    }

    @Test func combinationsGiveOneItemPerDifferenceInOrder() {
        let result = Self.reconcile(
            [Self.record(4, .processing), Self.record(1), Self.record(3), Self.record(2, .failed)],
            [Self.line(2, amount: Self.money(7, .eur)), Self.line(3), Self.line(4, amount: Self.money(1)), Self.line(5, .failed)])
        #expect(Self.keys(result) == ["pay-1:stripe missingAtPSP", "pay-2:stripe currencyMismatch", "pay-2:stripe statusMismatch",
                                      "pay-4:stripe amountMismatch", "pay-4:stripe statusMismatch", "pay-5:stripe missingInternally"])
        #expect(result.matched == 1)
        #expect(!result.items.contains { if case .settle = $0.resolution { true } else { false } }, "processing with a wrong amount is not settled")
    }

    @Test func periodIsHalfOpenAndOnlyScopesWhatIsExpected() {
        let engine = [Self.record(1, at: Self.start - 1), Self.record(2, at: Self.start), Self.record(3, at: Self.end - 1),
                      Self.record(4, at: Self.end), Self.record(5, at: 10), Self.record(6, at: Self.end + 5)]
        let result = Self.reconcile(engine, [Self.line(5), Self.line(6, amount: Self.money(1))])
        #expect(Self.keys(result) == ["pay-2:stripe missingAtPSP", "pay-3:stripe missingAtPSP", "pay-6:stripe amountMismatch"])
        #expect(result.matched == 1, "a record from before the period that the report settles still matches")
    }

    @Test("shuffled inputs give identical results", arguments: 0..<50)
    func orderDoesNotMatter(seed: Int) {
        var random = SplitMix(seed: UInt64(seed))
        let scenario = ReconScenario(random: &random)
        let reference = Reconciler.reconcile(engine: scenario.engine, report: scenario.report)
        for _ in 0..<5 {
            var report = scenario.report
            report.lines = random.shuffled(report.lines)
            #expect(Reconciler.reconcile(engine: random.shuffled(scenario.engine), report: report) == reference)
        }
        // Inputs already in the reconciler's order are walked as they are, to the same result.
        var sorted = scenario.report
        Reconciler.sortForReconciliation(&sorted.lines)
        var records = random.shuffled(scenario.engine)
        Reconciler.sortForReconciliation(&records)
        #expect(Reconciler.reconcile(engine: records, report: sorted) == reference)
    }

    /// Inject discrepancies of known kinds into a faithful report; the
    /// reconciler must find exactly those and account for every reference.
    @Test("finds exactly the injected discrepancies", arguments: 0..<400)
    func propertySweep(seed: Int) {
        var random = SplitMix(seed: UInt64(seed) &* 7_919)
        let scenario = ReconScenario(random: &random)
        let result = Reconciler.reconcile(engine: scenario.engine, report: scenario.report)
        #expect(Set(Self.keys(result)) == scenario.expected)
        #expect(result.items.count == scenario.expected.count)
        #expect(result.items == result.items.sorted { ($0.pspReference, $0.kind.rank) < ($1.pspReference, $1.kind.rank) })
        #expect(result.matched == scenario.matched)
        let settled = result.items.filter { if case .settle = $0.resolution { true } else { false } }.map(\.pspReference)
        #expect(Set(settled) == scenario.settled)
        #expect(settled.allSatisfy { ref in result.items.first { $0.pspReference == ref }?.engine?.status == .processing })
        let flagged = Set(result.items.map(\.pspReference)).count
        #expect(result.matched + result.expectedAbsent + flagged == scenario.references)
    }

    @Test func theSweepInjectsEveryKindAndSettlement() {
        var kinds = Set<String>()
        var settlements = 0
        for seed in 0..<400 {
            var random = SplitMix(seed: UInt64(seed) &* 7_919)
            let scenario = ReconScenario(random: &random)
            kinds.formUnion(scenario.expected.map { String($0.split(separator: " ")[1]) })
            settlements += scenario.settled.count
        }
        #expect(kinds == Set(DiscrepancyKind.allCases.map(\.rawValue)))
        #expect(settlements > 100)
    }

    static let validCSV = "psp_reference,kind,amount,currency,status,settled_at_ns\r\npay-1:stripe,charge,10.50,USD,captured,1600\r\nrf-2:stripe,refund,1000,JPY,refunded,1700\npay-3:stripe,charge,1.234,KWD,failed,0\n\n"

    @Test func parsesTheCSVExactly() throws {
        let report = try SettlementReport.parseCSV(Self.validCSV, pspID: "stripe", periodStart: Self.start, periodEnd: Self.end)
        #expect(report.pspID == "stripe" && report.periodStartNanoseconds == Self.start && report.periodEndNanoseconds == Self.end)
        #expect(report.lines == [
            Self.line(1),
            SettlementLine(pspID: "stripe", pspReference: "rf-2:stripe", kind: .refund, amount: Self.money(1000, .jpy), status: .refunded, settledAtNanoseconds: 1_700),
            SettlementLine(pspID: "stripe", pspReference: "pay-3:stripe", kind: .charge, amount: Self.money(1234, .kwd), status: .failed, settledAtNanoseconds: 0),
        ])
        #expect(try SettlementReport.parseCSV(SettlementReportColumn.header, pspID: "s", periodStart: 0, periodEnd: 1).lines.isEmpty)
    }

    static let badRows: [(String, SettlementReportError, String)] = [
        ("pay-1:stripe,charge,10.50,USD,captured", .wrongColumnCount(line: 3, expected: 6, found: 5), "line 3: 5 columns, expected 6"),
        ("", .wrongColumnCount(line: 3, expected: 6, found: 0), "line 3: 0 columns"),
        (",charge,10.50,USD,captured,1", .badReference("", line: 3, column: .pspReference, reason: "the reference is empty"), "line 3, column 1 (psp_reference)"),
        ("\"pay-1\",charge,10.50,USD,captured,1", .badReference("\"pay-1\"", line: 3, column: .pspReference, reason: "the reference contains whitespace, a control character or a quote"), "column 1"),
        ("pay-1:stripe,chargeback,10.50,USD,captured,1", .unknownKind("chargeback", line: 3, column: .kind), "line 3, column 2 (kind): kind \"chargeback\""),
        ("pay-1:stripe,charge,10.505,USD,captured,1", .badAmount("10.505", line: 3, column: .amount, .tooManyDecimals("10.505", currency: .usd)), "line 3, column 3 (amount): amount \"10.505\""),
        ("pay-1:stripe,charge,-1,USD,captured,1", .badAmount("-1", line: 3, column: .amount, .notPositive("-1")), "column 3 (amount)"),
        ("pay-1:stripe,charge,10.50,XYZ,captured,1", .unknownCurrency("XYZ", line: 3, column: .currency), "line 3, column 4 (currency): currency \"XYZ\""),
        ("pay-1:stripe,charge,10.50,usd,captured,1", .unknownCurrency("usd", line: 3, column: .currency), "column 4 (currency)"),
        ("pay-1:stripe,charge,10.50,USD,settled,1", .unknownStatus("settled", line: 3, column: .status), "line 3, column 5 (status): status \"settled\""),
        ("pay-1:stripe,charge,10.50,USD,captured,-5", .badTimestamp("-5", line: 3, column: .settledAt), "line 3, column 6 (settled_at_ns): \"-5\""),
        ("pay-1:stripe,charge,10.50,USD,captured,99999999999999999999", .badTimestamp("99999999999999999999", line: 3, column: .settledAt), "column 6"),
    ]

    @Test("each bad row is refused naming its line and column", arguments: 0..<badRows.count)
    func refusesBadRows(index: Int) {
        let (row, expected, message) = Self.badRows[index]
        let csv = "psp_reference,kind,amount,currency,status,settled_at_ns\npay-0:stripe,charge,1,USD,captured,1\n\(row)\npay-9:stripe,charge,1,USD,captured,1\n"
        #expect(throws: expected) { try SettlementReport.parseCSV(csv, pspID: "stripe", periodStart: 0, periodEnd: 10) }
        #expect(expected.description.contains(message), "\(expected.description)")
        #expect(expected.line == 3)
    }

    @Test func refusesBadFilesAndPeriods() {
        func parse(_ text: String, _ start: Int64 = 0, _ end: Int64 = 10) throws(SettlementReportError) { _ = try SettlementReport.parseCSV(text, pspID: "s", periodStart: start, periodEnd: end) }
        #expect(throws: SettlementReportError.missingHeader) { try parse("\n\n") }
        #expect(throws: SettlementReportError.badHeader(found: "reference,kind,amount,currency,status,settled_at_ns")) { try parse("reference,kind,amount,currency,status,settled_at_ns\n") }
        #expect(throws: SettlementReportError.emptyPeriod(start: 10, end: 10)) { try parse(Self.validCSV, 10, 10) }
        #expect(SettlementReportError.badHeader(found: "x").description == "line 1: header \"x\" is not \"psp_reference,kind,amount,currency,status,settled_at_ns\"")
    }
}


/// Engine records, a report derived from them with injected discrepancies,
/// and what the reconciler must therefore find.
struct ReconScenario {
    var engine: [EngineRecord] = []
    var report: SettlementReport
    var expected: Set<String> = []
    var settled: Set<String> = []
    var matched = 0
    var references = 0

    init(random: inout SplitMix) {
        let currencies: [Currency] = [.usd, .eur, .jpy, .kwd]
        report = SettlementReport(pspID: "stripe", periodStartNanoseconds: 1_000, periodEndNanoseconds: 2_000, lines: [])
        for i in 0..<(5 + random.below(40)) {
            let kind: SettlementKind = random.below(5) == 0 ? .refund : .charge
            let psp = random.below(8) == 0 ? "adyen" : "stripe"
            let status: PaymentStatus = [.completed, .completed, .completed, .failed, .initiated][random.below(5)]
            var record = EngineRecord(paymentID: "pay-\(i)", pspID: psp, pspReference: "\(kind == .charge ? "pay" : "rf")-\(i):\(psp)", kind: kind,
                                      amount: Money(minorUnits: Int64(1 + random.below([100, 10_000, 1_000_000][random.below(3)])), currency: currencies[random.below(4)]),
                                      status: status, createdAtNanoseconds: random.below(10) == 0 ? Int64(random.below(1_000)) : Int64(1_000 + random.below(1_000)))
            let moved: SettlementStatus = kind == .charge ? .captured : .refunded
            var line = SettlementLine(pspID: "stripe", pspReference: record.pspReference, kind: kind, amount: record.amount,
                                      status: status == .completed ? moved : .failed, settledAtNanoseconds: Int64(1_000 + random.below(1_000)))
            var present = status == .completed || (status == .failed && random.below(2) == 0)
            let inScope = (1_000..<2_000).contains(record.createdAtNanoseconds)
            if !inScope && status == .completed && random.below(2) == 0 { present = false }
            guard psp == "stripe" else {
                engine.append(record)
                continue
            }
            var injected: String?
            switch random.below(12) {
            case 0 where present && inScope && status == .completed:
                if random.below(2) == 0 { record.status = .processing }
                present = false; injected = "missingAtPSP"
            case 1 where present:
                line.amount.minorUnits += Int64(1 + random.below(100)); injected = "amountMismatch"
            case 2 where present:
                line.amount.currency = currencies[(currencies.firstIndex(of: line.amount.currency)! + 1 + random.below(3)) % 4]
                if random.below(2) == 0 { line.amount.minorUnits += 1 }
                injected = "currencyMismatch"
            case 3 where present:
                line.status = line.status == .failed ? moved : .failed; injected = "statusMismatch"
            case 4 where present && status != .initiated:
                record.status = .processing; injected = "statusMismatch"; settled.insert(record.pspReference)
            case 5 where !present && status != .completed:
                line.status = moved; present = true; injected = "statusMismatch"
            case 6 where present:
                var copy = line
                copy.settledAtNanoseconds += Int64(1 + random.below(50))
                report.lines.append(copy); injected = "duplicate"
            case 7:
                let ghost = SettlementLine(pspID: "stripe", pspReference: "ghost-\(i):stripe", kind: kind, amount: line.amount, status: moved, settledAtNanoseconds: 1_500)
                report.lines.append(ghost); expected.insert("ghost-\(i):stripe missingInternally"); references += 1
            default:
                break
            }
            engine.append(record)
            if present { report.lines.append(line) }
            if let injected { expected.insert("\(record.pspReference) \(injected)") }
            if present || inScope { references += 1 }
            if present && injected == nil { matched += 1 }
        }
    }
}
