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

    /// An idempotency key in eight bytes (see ``KeyTable``).
    struct Key: Hashable {
        var code: Int64
    }

    /// Packs a PSP's idempotency keys. The engine's shapes for this PSP
    /// are numbers: `pay-N:<psp>` is 2N, `ref-N:<psp>` is 2N + 1, N written
    /// plainly in decimal; any other text (a key from elsewhere, or "pay-07"
    /// and "pay-+7", which would share pay-7's number) is -(i + 1), i its
    /// index in a table here.
    struct KeyTable {
        /// ":<psp>", which every engine-shaped key of this PSP ends with.
        private let suffix: String
        private var codes: [String: Key] = [:]

        init(pspID: String) {
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
            let key = Key(code: -Int64(codes.count + 1))
            codes[text] = key
            return key
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

    unowned let world: World
    let index: Int
    let profile: PSPProfile
    private var outcomes = OutcomeTable()
    /// How many outcomes this PSP settled; they are kept in ``WorldTruth``.
    private(set) var recordCount: Int32 = 0
    private var calls: [Int64: (PSPRequest, ActorAddress)] = [:]
    private var nextCall: Int64 = 0
    var outage = false
    var brownoutFactor = 1.0
    var brownoutErrorRate = 0.0
    /// Settlement discrepancies injected in the last report: each PSP
    /// reference, and the kind the engine must classify it as.
    private(set) var injectedDiscrepancies: [(reference: String, kind: DiscrepancyKind)] = []

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
            world.metrics.psp[index].received += 1
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
            guard let facts = world.truth.webhookFacts(psp: index, number: record) else { return }
            sendWebhook(facts, kernel)
            if duplicate { sendWebhook(facts, kernel) }
        case let .pspForgedWebhookDue(record, how):
            guard let facts = world.truth.webhookFacts(psp: index, number: record) else { return }
            sendForgedWebhook(facts, how: how, kernel)
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
        }
        // Each call that reached the PSP gets exactly one outcome: the reply
        // it was sent, or lost after the money moved.
        let moved = request.operation == .charge || request.operation == .refund
        if moved, case .succeeded = reply, random.bernoulli(profile.ambiguousRate) || world.buggify.fires(.pspReplyLost) {
            counters.ambiguous += 1
            return  // charged; the reply is lost
        }
        switch reply {
        case .succeeded: counters.succeeded += 1
        case .declined: counters.declined += 1
        case .voided: counters.voided += 1
        case .notFound: counters.notFound += 1
        case .rateLimited, .transientError: break  // counted above
        case .pending: break  // never answered by the modelled PSP, which settles a call at once
        }
        world.network.send(.pspReply(attemptID: request.attemptID, sentAt: request.sentAtNanoseconds, outcome: reply), to: replyTo, kernel: kernel)
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
            case .voided: return .voided
            case nil:
                let charge = request.operation == .charge
                if decline {
                    outcomes[key] = .declined
                    settle(text, charge ? .charge : .refund, request.amount, .failed, kernel)
                    return .declined(reason: "do_not_honor")
                }
                outcomes[key] = .done
                if charge {
                    world.checker.pspCaptured(key: text, pspIndex: index, amountMinor: request.amount.minorUnits)
                    settle(text, .charge, request.amount, .captured, kernel)
                } else {
                    world.checker.pspRefunded(key: text, amountMinor: request.amount.minorUnits)
                    settle(text, .refund, request.amount, .refunded, kernel)
                }
                return .succeeded(pspReference: reference)
            }
        case .status:
            switch outcomes[key] {
            case .done: return .succeeded(pspReference: reference)
            case .declined: return .declined(reason: "failed")
            case .voided: return .voided
            case nil: return .notFound
            }
        case .cancel:
            switch outcomes[key] {
            case .done: return .succeeded(pspReference: reference)
            case .declined: return .declined(reason: "do_not_honor")
            case .voided: return .voided
            case nil:
                outcomes[key] = .voided
                return .voided
            }
        }
    }

    /// The final outcome of payment `number`'s charge key here
    /// (`pay-N:<psp>`), read without recording the key; `nil` if the key has
    /// none yet — it never came, or it is still on its way.
    func chargeOutcome(paymentNumber number: Int) -> Final? {
        outcomes[Key(code: 2 * Int64(number))]
    }

    /// Records a final outcome and maybe schedules its webhook.
    private func settle(_ reference: String, _ kind: SettlementKind, _ amount: Money, _ status: SettlementStatus,
                        _ kernel: SimulationKernel<WorldMessage>) {
        precondition(recordCount < Int32.max, "more settlements than a PSP numbers")
        world.truth.append(psp: index, WorldTruth.Record(number: recordCount, reference: reference, kind: kind, status: status, amount: amount,
                                                         settledNanoseconds: World.epochNanoseconds + kernel.now.nanoseconds))
        recordCount += 1
        let random = kernel.random
        guard random.bernoulli(profile.webhookRate), world.healing || !random.bernoulli(profile.webhookLossRate) else { return }
        let duplicate = random.bernoulli(profile.webhookDuplicateRate) || world.buggify.fires(.webhookDuplicated)
        let delay = random.lognormal(median: profile.webhookDelayMedianSeconds, sigma: 1.0)
        kernel.setTimer(after: SimDuration(seconds: delay), .pspWebhookDue(record: recordCount - 1, duplicate: duplicate))
    }

    /// A webhook storm: `count` repeats of recent outcomes, spread over `seconds`.
    func storm(count: Int, overSeconds seconds: Double, kernel: SimulationKernel<WorldMessage>) {
        aboutRecentOutcomes(count: count, overSeconds: seconds, kernel: kernel) { record, _ in
            .pspWebhookDue(record: record, duplicate: false)
        }
    }

    /// Forged webhooks: `count` claims, spread over `seconds`, that one of
    /// the PSP's recent outcomes succeeded (see ``FaultKind/webhookForgery(psp:count:)``).
    func forge(count: Int, overSeconds seconds: Double, kernel: SimulationKernel<WorldMessage>) {
        aboutRecentOutcomes(count: count, overSeconds: seconds, kernel: kernel) { record, random in
            .pspForgedWebhookDue(record: record, how: UInt8(random.uniformInt(below: 3)))
        }
    }

    /// Sends this PSP `count` messages, spread over `seconds`, each about one
    /// of its last 10,000 settled outcomes: for each, the outcome is drawn,
    /// then `message`, then the delay.
    private func aboutRecentOutcomes(count: Int, overSeconds seconds: Double, kernel: SimulationKernel<WorldMessage>,
                                     _ message: (Int32, RandomStream) -> WorldMessage) {
        guard recordCount > 0 else { return }
        let random = kernel.random
        let settled = Int(recordCount)
        for _ in 0..<count {
            let record = settled - 1 - random.uniformInt(below: min(settled, 10_000))
            kernel.send(message(Int32(record), random), to: world.psps[index], after: SimDuration(seconds: random.uniform() * seconds))
        }
    }

    /// A webhook in this PSP's name claiming `record` succeeded, not
    /// authentic: signed under another secret (`how` 0), the PSP's true
    /// webhook with its body altered after signing (1), or signed an hour
    /// ago, past any tolerance (2).
    private func sendForgedWebhook(_ record: (reference: String, kind: SettlementKind, status: SettlementStatus), how: UInt8,
                                   _ kernel: SimulationKernel<WorldMessage>) {
        let claim = PSPWebhookPayload.settlementEventJSON(reference: record.reference,
                                                           type: record.kind == .charge ? .chargeSucceeded : .refundSucceeded)
        let now = (World.epochNanoseconds + kernel.now.nanoseconds) / 1_000_000_000
        let (timestamp, signature): (Int64, String)
        switch how {
        case 0:
            timestamp = now
            signature = WebhookSigner(secret: "not-" + World.webhookSecret(profile.id)).signature(body: claim, timestampSeconds: now)
        case 1:
            let authentic = PSPWebhookPayload.settlementEventJSON(reference: record.reference,
                                                                   type: PSPWebhookPayload.Kind(record.kind, record.status))
            timestamp = now
            signature = webhookSigner.signature(body: authentic + " ", timestampSeconds: now)
        default:
            timestamp = now - 3_600
            signature = webhookSigner.signature(body: claim, timestampSeconds: timestamp)
        }
        world.network.send(.webhook(WebhookDelivery(pspID: profile.id, body: claim, signature: signature, timestampSeconds: timestamp,
                                                    forgery: how < 2 ? .badSignature : .stale)),
                           to: world.gateway, kernel: kernel)
    }

    private func sendWebhook(_ record: (reference: String, kind: SettlementKind, status: SettlementStatus),
                             _ kernel: SimulationKernel<WorldMessage>) {
        let body = PSPWebhookPayload.settlementEventJSON(reference: record.reference,
                                                          type: PSPWebhookPayload.Kind(record.kind, record.status))
        let timestamp = (World.epochNanoseconds + kernel.now.nanoseconds) / 1_000_000_000
        let signature = webhookSigner.signature(body: body, timestampSeconds: timestamp)
        world.metrics.psp[index].webhooksSent += 1
        world.network.send(.webhook(WebhookDelivery(pspID: profile.id, body: body, signature: signature, timestampSeconds: timestamp)),
                           to: world.gateway, kernel: kernel)
    }

    /// The settlement report for everything settled so far, drawn once and
    /// handed out in parts (``nextSettlementPart(_:records:)``), read from
    /// ``WorldTruth`` in reference order: a PSP of a ten-million-payment run
    /// settled five million times, and neither the report nor its order is
    /// ever held whole.
    struct SettlementPlan {
        /// Records numbered below this were settled when the plan was drawn.
        var end: Int32
        /// Discrepancies by record number: 1 missing from the report, 2 its amount off by one.
        var flags: [Int32: UInt8]
        /// The last reference handed out; `nil` before the first part.
        var after: String?
        var finished = false
        let now: Int64
    }

    /// Draws the report's discrepancies — a few lines missing, a few amounts
    /// off, as real reports carry — in the order the outcomes were settled.
    func settlementPlan(now: Int64, random: RandomStream) -> SettlementPlan {
        injectedDiscrepancies.removeAll()
        var flags: [Int32: UInt8] = [:]
        world.truth.forEachRecord(psp: index, below: recordCount) { number, status, reference in
            // A failed attempt absent from a report is no discrepancy: only money movements go missing.
            guard status != .failed else { return }
            if random.bernoulli(profile.settlementMissingRate) {
                flags[number] = 1
                injectedDiscrepancies.append((reference, .missingAtPSP))
            } else if random.bernoulli(profile.settlementAmountErrorRate) {
                flags[number] = 2
                injectedDiscrepancies.append((reference, .amountMismatch))
            }
        }
        return SettlementPlan(end: recordCount, flags: flags, now: now)
    }

    /// The next part of the report: the lines of up to `limit` records in
    /// reference order, and the range of references it stands for (the
    /// last part's is open at the top, so the engine's attempts the PSP
    /// never saw are looked at too). `nil` once every part was handed out.
    func nextSettlementPart(_ plan: inout SettlementPlan, records limit: Int) -> (report: SettlementReport, references: ReferenceRange)? {
        guard !plan.finished else { return nil }
        // One more than a part holds tells whether another part follows.
        var records = world.truth.records(psp: index, below: plan.end, after: plan.after, limit: limit + 1)
        let more = records.count > limit
        if more { records.removeLast() }
        var lines: [SettlementLine] = []
        lines.reserveCapacity(records.count)
        for record in records where plan.flags[record.number] != 1 {
            var amount = record.amount
            if plan.flags[record.number] == 2 { amount.minorUnits += 1 }
            lines.append(SettlementLine(pspID: profile.id, pspReference: record.reference, kind: record.kind, amount: amount,
                                        status: record.status, settledAtNanoseconds: record.settledNanoseconds))
        }
        let through = more ? records.last?.reference : nil
        let range = ReferenceRange(after: plan.after, through: through)
        plan.after = through
        plan.finished = !more
        return (SettlementReport(pspID: profile.id, periodStartNanoseconds: World.epochNanoseconds, periodEndNanoseconds: plan.now, lines: lines),
                range)
    }
}
