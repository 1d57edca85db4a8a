import PaystormEngine
import PaystormKernel
import PaystormStatistics

/// A modelled payment service provider. It keeps the semantics the engine
/// relies on — one outcome per idempotency key, status queries that tell
/// the truth, a void (`cancel`) that fixes an untouched key as failed — and
/// misbehaves the way real PSPs do: lognormal latency, declines, transient
/// errors, rate limits, outages (no answer), brownouts, the ambiguous
/// failure (charged, reply lost), and signed webhooks that arrive late,
/// twice, out of order or never. Its records are the truth the checker
/// holds the engine to, and the source of its settlement reports.
final class PSP: SimActor {
    typealias Message = WorldMessage

    enum Final: UInt8 { case done, declined, voided }

    /// One money movement (or refusal) the PSP settled, packed into 32
    /// bytes: a PSP of a million-payment run holds a million of these, and
    /// a ten-million one ten million.
    struct Record {
        var key: Key
        var amountMinor: Int64
        var nanoseconds: Int64
        /// Index into the PSP's ``PSP/currencies``.
        var currency: UInt8
        var kind: SettlementKind
        var status: SettlementStatus
    }

    /// An idempotency key in eight bytes (see ``KeyTable``).
    struct Key: Hashable {
        var code: Int64
    }

    /// Packs a PSP's idempotency keys. The engine's shapes for this PSP
    /// are numbers: `pay-N:<psp>` is 2N, `ref-N:<psp>` is 2N + 1, N written
    /// plainly in decimal; any other text (a key from elsewhere, or "pay-07",
    /// "pay-+7", which would not come back the same) is -(i + 1), i its
    /// index in a table here.
    struct KeyTable {
        let pspID: String
        /// ":<psp>", which every engine-shaped key of this PSP ends with.
        private let suffix: String
        private var others: [String] = []
        private var codes: [String: Key] = [:]

        init(pspID: String) {
            self.pspID = pspID
            suffix = ":" + pspID
        }

        mutating func key(_ text: String) -> Key {
            if text.hasSuffix(suffix) {
                let head = text.dropLast(suffix.count)
                let digits = head.dropFirst(4)
                if let n = Int64(digits), n >= 0, n < Int64.max / 2, String(n) == digits {
                    if head.hasPrefix("pay-") { return Key(code: 2 * n) }
                    if head.hasPrefix("ref-") { return Key(code: 2 * n + 1) }
                }
            }
            if let key = codes[text] { return key }
            others.append(text)
            let key = Key(code: -Int64(others.count))
            codes[text] = key
            return key
        }

        func text(_ key: Key) -> String {
            if key.code < 0 { return others[Int(-key.code) - 1] }
            return (key.code % 2 == 0 ? "pay-" : "ref-") + "\(key.code / 2):\(pspID)"
        }

        /// Whether `a`'s text sorts before `b`'s byte by byte (the
        /// reconciler's order), without building the texts of packed keys.
        func precedes(_ a: Key, _ b: Key) -> Bool {
            guard a.code >= 0, b.code >= 0 else { return text(a).utf8.lexicographicallyPrecedes(text(b).utf8) }
            if a.code % 2 != b.code % 2 { return a.code % 2 == 0 }  // "pay-" before "ref-"
            return Self.digitsPrecede(a.code / 2, b.code / 2)
        }

        static let powersOfTen: [Int64] = (0..<19).map { exponent in (0..<exponent).reduce(1) { result, _ in result * 10 } }

        /// "x:" before "y:" byte by byte, x and y in decimal: the first
        /// differing digit decides, and where one's digits begin the other's,
        /// the longer sorts first (':' follows '9').
        static func digitsPrecede(_ x: Int64, _ y: Int64) -> Bool {
            guard x != y else { return false }
            func count(_ n: Int64) -> Int { powersOfTen.lastIndex { $0 <= n }.map { $0 + 1 } ?? 1 }
            let nx = count(x), ny = count(y)
            for position in 0..<min(nx, ny) {
                let dx = x / powersOfTen[nx - 1 - position] % 10, dy = y / powersOfTen[ny - 1 - position] % 10
                if dx != dy { return dx < dy }
            }
            return nx > ny
        }
    }

    /// The final outcome per packed key (``KeyTable``). Codes are payment
    /// and refund numbers, so most outcomes sit in a dense byte table
    /// indexed by the code — one byte a number where a dictionary took about
    /// twenty. The table grows only next to the numbers it holds: text keys
    /// and stray huge numbers ("pay-999999999999:…") go to a dictionary
    /// instead of allocating the table all the way up to them.
    struct OutcomeTable {
        /// 0 none, else `Final.rawValue + 1`.
        private var dense = ChunkedArray<UInt8>()
        private var sparse: [Key: Final] = [:]
        static let denseReach: Int64 = 1 << 20

        /// Bytes the dense table holds.
        var denseCount: Int { dense.count }

        /// A key's outcome; set once per key (an outcome is final).
        subscript(key: Key) -> Final? {
            get {
                if key.code >= 0 && key.code < Int64(dense.count) {
                    let stored = dense[Int(key.code)]
                    if stored != 0 { return Final(rawValue: stored - 1) }
                }
                return sparse.isEmpty ? nil : sparse[key]
            }
            set {
                guard let final = newValue else { preconditionFailure("an outcome is final: it is never cleared") }
                guard key.code >= 0 && key.code < Int64(dense.count) + Self.denseReach else {
                    sparse[key] = final
                    return
                }
                dense.extend(toInclude: Int(key.code), with: 0)
                dense[Int(key.code)] = final.rawValue + 1
            }
        }
    }

    private var keys: KeyTable
    /// The currencies of the records, by index.
    private var currencies: [Currency] = []

    private func currencyIndex(_ currency: Currency) -> UInt8 {
        if let index = currencies.firstIndex(of: currency) { return UInt8(index) }
        precondition(currencies.count < Int(UInt8.max), "more than 255 currencies at one PSP")
        currencies.append(currency)
        return UInt8(currencies.count - 1)
    }

    unowned let world: World
    let index: Int
    let profile: PSPProfile
    private var outcomes = OutcomeTable()
    private(set) var records = ChunkedArray<Record>()
    private var calls: [Int64: (PSPRequest, ActorAddress)] = [:]
    private var nextCall: Int64 = 0
    var outage = false
    var brownoutFactor = 1.0
    var brownoutErrorRate = 0.0
    /// Settlement discrepancies injected in the last report, by PSP reference.
    private(set) var injectedDiscrepancies: [String] = []

    /// Signs this PSP's webhooks (its key scheduled once).
    private let webhookSigner: WebhookSigner

    init(world: World, index: Int, profile: PSPProfile) {
        self.world = world
        self.index = index
        self.profile = profile
        keys = KeyTable(pspID: profile.id)
        webhookSigner = WebhookSigner(secret: World.webhookSecret(profile.id))
    }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        switch message {
        case let .pspCall(request, replyTo):
            world.metrics.pspCallCounted(at: kernel.now.nanoseconds)
            guard !outage else {
                world.metrics.psp[index].unanswered += 1
                return
            }
            let id = nextCall
            nextCall += 1
            calls[id] = (request, replyTo)
            let latency = kernel.random.lognormal(median: profile.latencyMedianSeconds, sigma: profile.latencySigma) * brownoutFactor
            kernel.setTimer(after: SimDuration(seconds: latency), .pspProcess(call: id))
        case let .pspProcess(id):
            guard let (request, replyTo) = calls.removeValue(forKey: id) else { return }
            process(request, replyTo: replyTo, kernel)
        case let .pspWebhookDue(record, duplicate):
            sendWebhook(records[Int(record)], kernel)
            if duplicate { sendWebhook(records[Int(record)], kernel) }
        default:
            break
        }
    }

    private func process(_ request: PSPRequest, replyTo: ActorAddress, _ kernel: SimulationKernel<WorldMessage>) {
        let random = kernel.random
        let roll = random.uniform()
        var counters = world.metrics.psp[index]
        defer { world.metrics.psp[index] = counters }
        let transient = profile.transientErrorRate + brownoutErrorRate
        let reply: PSPOutcome
        if roll < profile.rateLimitRate {
            counters.rateLimited += 1
            reply = .rateLimited
        } else if roll < profile.rateLimitRate + transient {
            counters.transientErrors += 1
            reply = .transientError("503 from \(profile.id)")
        } else {
            let decline = request.operation == .charge && random.bernoulli(profile.declineRate)
            reply = apply(request, decline: decline, kernel)
            switch reply {
            case .succeeded: counters.succeeded += 1
            case .declined: counters.declined += 1
            default: break
            }
        }
        let moved = request.operation == .charge || request.operation == .refund
        if moved, case .succeeded = reply, random.bernoulli(profile.ambiguousRate) || world.buggify.fires(.pspReplyLost) {
            counters.ambiguous += 1
            return  // charged; the reply is lost
        }
        world.network.send(.pspReply(attemptID: request.attemptID, outcome: reply), to: replyTo, kernel: kernel)
    }

    /// The PSP's semantics for one request that reached it.
    private func apply(_ request: PSPRequest, decline: Bool, _ kernel: SimulationKernel<WorldMessage>) -> PSPOutcome {
        let text = request.idempotencyKey
        let key = keys.key(text)
        let reference = "\(profile.id)-\(text)"
        switch request.operation {
        case .charge, .refund:
            switch outcomes[key] {
            case .done: return .succeeded(pspReference: reference)
            case .declined: return .declined(reason: "do_not_honor")
            case .voided: return .declined(reason: "canceled")
            case nil:
                let charge = request.operation == .charge
                if decline {
                    outcomes[key] = .declined
                    settle(key, charge ? .charge : .refund, request.amount, .failed, kernel)
                    return .declined(reason: "do_not_honor")
                }
                outcomes[key] = .done
                if charge {
                    world.checker.pspCaptured(key: text, pspIndex: index, amountMinor: request.amount.minorUnits)
                    settle(key, .charge, request.amount, .captured, kernel)
                } else {
                    world.checker.pspRefunded(key: text, amountMinor: request.amount.minorUnits)
                    settle(key, .refund, request.amount, .refunded, kernel)
                }
                return .succeeded(pspReference: reference)
            }
        case .status:
            switch outcomes[key] {
            case .done: return .succeeded(pspReference: reference)
            case .declined, .voided: return .declined(reason: "failed")
            case nil: return .notFound
            }
        case .cancel:
            switch outcomes[key] {
            case .done: return .succeeded(pspReference: reference)
            case .declined, .voided: return .declined(reason: "canceled")
            case nil:
                outcomes[key] = .voided
                return .declined(reason: "canceled")
            }
        }
    }

    /// Records a final outcome and maybe schedules its webhook.
    private func settle(_ key: Key, _ kind: SettlementKind, _ amount: Money, _ status: SettlementStatus,
                        _ kernel: SimulationKernel<WorldMessage>) {
        records.append(Record(key: key, amountMinor: amount.minorUnits, nanoseconds: World.epochNanoseconds + kernel.now.nanoseconds,
                              currency: currencyIndex(amount.currency), kind: kind, status: status))
        let random = kernel.random
        guard random.bernoulli(profile.webhookRate), world.healing || !random.bernoulli(profile.webhookLossRate) else { return }
        let duplicate = random.bernoulli(profile.webhookDuplicateRate) || world.buggify.fires(.webhookDuplicated)
        let delay = random.lognormal(median: profile.webhookDelayMedianSeconds, sigma: 1.0)
        kernel.setTimer(after: SimDuration(seconds: delay), .pspWebhookDue(record: Int32(records.count - 1), duplicate: duplicate))
    }

    /// A webhook storm: `count` repeats of recent outcomes, spread over `seconds`.
    func storm(count: Int, overSeconds seconds: Double, kernel: SimulationKernel<WorldMessage>) {
        guard !records.isEmpty else { return }
        let random = kernel.random
        for _ in 0..<count {
            let record = records.count - 1 - random.uniformInt(below: min(records.count, 10_000))
            kernel.send(.pspWebhookDue(record: Int32(record), duplicate: false), to: world.psps[index],
                        after: SimDuration(seconds: random.uniform() * seconds))
        }
    }

    private func sendWebhook(_ record: Record, _ kernel: SimulationKernel<WorldMessage>) {
        let body = PSPWebhookPayload.settlementEventJSON(reference: keys.text(record.key),
                                                          type: PSPWebhookPayload.Kind(record.kind, record.status))
        let timestamp = (World.epochNanoseconds + kernel.now.nanoseconds) / 1_000_000_000
        let signature = webhookSigner.signature(body: body, timestampSeconds: timestamp)
        world.metrics.psp[index].webhooksSent += 1
        world.network.send(.webhook(WebhookDelivery(pspID: profile.id, body: body, signature: signature, timestampSeconds: timestamp)),
                           to: world.gateway, kernel: kernel)
    }

    /// The settlement report for everything settled so far, drawn once and
    /// handed out in parts (``nextSettlementPart(_:records:)``): a PSP of a
    /// ten-million-payment run settled five million times, and the report's
    /// lines with the engine's records for them were most of a run's memory
    /// at its end.
    struct SettlementPlan {
        /// Record indices in reference order.
        var order: [Int32]
        /// Per record: 1 missing from the report, 2 its amount off by one.
        var flags: [UInt8]
        var next = 0
        /// The last reference handed out; `nil` before the first part.
        var after: String?
        var finished = false
        let now: Int64
    }

    /// Draws the report's discrepancies — a few lines missing, a few amounts
    /// off, as real reports carry — and orders the records by reference.
    func settlementPlan(now: Int64, random: RandomStream) -> SettlementPlan {
        injectedDiscrepancies.removeAll()
        var flags = [UInt8](repeating: 0, count: records.count)
        for (index, record) in records.enumerated() where record.status != .failed {
            // A failed attempt absent from a report is no discrepancy: only money movements go missing.
            if random.bernoulli(profile.settlementMissingRate) {
                flags[index] = 1
            } else if random.bernoulli(profile.settlementAmountErrorRate) {
                flags[index] = 2
            } else {
                continue
            }
            injectedDiscrepancies.append(keys.text(record.key))
        }
        precondition(records.count < Int(Int32.max), "more records than a settlement plan indexes")
        var order = (0..<Int32(records.count)).map { $0 }
        // One record per key (a key's outcome is settled once), so the
        // reference alone orders them.
        order.sort { keys.precedes(records[Int($0)].key, records[Int($1)].key) }
        return SettlementPlan(order: order, flags: flags, now: now)
    }

    /// The next part of the report: the lines of up to `limit` records in
    /// reference order, and the range of references it stands for (the
    /// last part's is open at the top, so the engine's attempts the PSP
    /// never saw are looked at too). `nil` once every part was handed out.
    func nextSettlementPart(_ plan: inout SettlementPlan, records limit: Int) -> (report: SettlementReport, references: ReferenceRange)? {
        guard !plan.finished else { return nil }
        var lines: [SettlementLine] = []
        lines.reserveCapacity(min(limit, plan.order.count - plan.next))
        var last: String?
        let end = min(plan.order.count, plan.next + limit)
        while plan.next < end {
            let index = Int(plan.order[plan.next])
            plan.next += 1
            let record = records[index]
            let key = keys.text(record.key)
            last = key
            if plan.flags[index] == 1 { continue }
            var amount = Money(minorUnits: record.amountMinor, currency: currencies[Int(record.currency)])
            if plan.flags[index] == 2 { amount.minorUnits += 1 }
            lines.append(SettlementLine(pspID: profile.id, pspReference: key, kind: record.kind, amount: amount,
                                        status: record.status, settledAtNanoseconds: record.nanoseconds))
        }
        let through = plan.next < plan.order.count ? last : nil
        let range = ReferenceRange(after: plan.after, through: through)
        plan.after = through
        plan.finished = through == nil
        return (SettlementReport(pspID: profile.id, periodStartNanoseconds: World.epochNanoseconds, periodEndNanoseconds: plan.now, lines: lines),
                range)
    }
}
