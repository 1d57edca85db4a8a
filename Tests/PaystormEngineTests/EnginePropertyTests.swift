import Foundation
import GRDB
import Testing
@testable import PaystormEngine

/// A PSP that keeps the truth, idempotent by key like a real one: a key's
/// first definite outcome (charged, declined, voided) is final, and a
/// request that arrives after its key was voided is refused.
struct TruthfulPSP {
    enum Final { case done, declined, voided }
    var outcome: [String: Final] = [:]
    var chargedAt: [String: String] = [:]   // charge key → PSP

    enum Mode { case normal, decline, transient, rateLimited, lostReply, lostRequest }

    /// Performs `call` as `mode` says; `nil` when no reply comes back.
    mutating func handle(_ call: PSPRequest, _ mode: Mode) -> PSPOutcome? {
        let key = call.idempotencyKey
        if mode == .lostRequest { return nil }
        if mode == .transient { return .transientError("503") }
        if mode == .rateLimited { return .rateLimited }
        let reply: PSPOutcome
        switch call.operation {
        case .charge, .refund:
            switch outcome[key] {
            case .done: reply = .succeeded(pspReference: "ref-\(key)")
            case .declined: reply = .declined(reason: "do_not_honor")
            case .voided: reply = .voided
            case nil where mode == .decline:
                outcome[key] = .declined
                reply = .declined(reason: "do_not_honor")
            case nil:
                outcome[key] = .done
                if call.operation == .charge { chargedAt[key] = call.pspID }
                reply = .succeeded(pspReference: "ref-\(key)")
            }
        case .status:
            switch outcome[key] {
            case .done: reply = .succeeded(pspReference: "ref-\(key)")
            case .declined: reply = .declined(reason: "failed")
            case .voided: reply = .voided
            case nil: reply = .notFound
            }
        case .cancel:
            switch outcome[key] {
            case .done: reply = .succeeded(pspReference: "ref-\(key)")
            case .declined: reply = .declined(reason: "do_not_honor")
            case .voided: reply = .voided
            case nil:
                outcome[key] = .voided
                reply = .voided
            }
        }
        return mode == .lostReply ? nil : reply
    }

    /// Payment ids charged, with how many distinct PSPs charged each.
    var pspsPerPayment: [String: Int] {
        var result: [String: Int] = [:]
        for key in chargedAt.keys { result[String(key.split(separator: ":")[0]), default: 0] += 1 }
        return result
    }
}

@Suite("Payment engine: invariants over random command sequences")
struct EnginePropertyTests {
    /// With spent timers fired (every stale timer harmless) and dropped (no
    /// timer the engine called spent was still needed).
    @Test("safety holds at every step and liveness after healing", arguments: 0..<24, [false, true])
    func randomSequences(seed: Int, dropsCancelledTimers: Bool) throws {
        var random = SplitMix(seed: UInt64(seed) &* 7919 &+ 1)
        func chance(_ percent: UInt64) -> Bool { random.next() % 100 < percent }
        func pick<T>(_ items: [T]) -> T { items[Int(random.next() % UInt64(items.count))] }

        let h = try EngineHarness()
        h.dropsCancelledTimers = dropsCancelledTimers
        var psp = TruthfulPSP()
        var webhookEvents: [(psp: String, payload: PSPWebhookPayload)] = []
        var deliveredEvents: [TransactionEvent] = []

        func check(_ step: Int) throws {
            let violations = try h.safetyViolations()
            #expect(violations.isEmpty, "seed \(seed) step \(step): \(violations)")
            for (payment, count) in psp.pspsPerPayment {
                #expect(count <= 1, "seed \(seed): \(payment) charged at \(count) PSPs")
            }
        }

        for step in 0..<250 {
            switch random.next() % 10 {
            case 0, 1:  // a payment, with keys reused for retries and conflicts
                let key = "k\(random.next() % 40)"
                let amount = chance(10) ? "77.00" : "\(10 + random.next() % 5).00"
                _ = try? h.pay(key: key, user: "u-\(random.next() % 30)", amount: amount)
            case 2, 3, 4:  // the PSP handles some call, in any order, maybe badly
                guard !h.calls.isEmpty else { break }
                let call = h.calls.remove(at: Int(random.next() % UInt64(h.calls.count)))
                let mode: TruthfulPSP.Mode = switch random.next() % 10 {
                case 0...4: .normal
                case 5: .decline
                case 6: .transient
                case 7: .rateLimited
                case 8: .lostReply
                default: .lostRequest
                }
                if chance(15) { h.calls.append(call) }  // the network duplicates the request
                if let reply = psp.handle(call, mode) {
                    try h.reply(reply, to: call)
                    if case .succeeded = reply, call.operation == .charge || call.operation == .refund, chance(50) {
                        let type: PSPWebhookPayload.Kind = call.operation == .charge ? .chargeSucceeded : .refundSucceeded
                        webhookEvents.append((call.pspID, PSPWebhookPayload(eventID: "evt-\(call.idempotencyKey)", type: type, pspReference: call.idempotencyKey)))
                    }
                }
            case 5:  // time passes
                h.advance(by: Int64(random.next() % 3_000_000_000))
                try h.fireDueTimers()
            case 6:  // concurrent refunds on a completed payment
                let completed = try h.read { try String.fetchAll($0, sql: "SELECT payment_id FROM payment WHERE status = 'completed'") }
                guard !completed.isEmpty else { break }
                let paymentID = pick(completed)
                for _ in 0..<(1 + random.next() % 3) {
                    _ = try? h.refund(paymentID, amount: "\(1 + random.next() % 9).00", key: "r\(random.next() % 60)")
                }
            case 7:  // webhooks: late, duplicated, reordered
                guard !webhookEvents.isEmpty else { break }
                let index = Int(random.next() % UInt64(webhookEvents.count))
                let event = webhookEvents[index]
                if !chance(30) { webhookEvents.remove(at: index) }
                let secret = event.psp == "stripe" ? "whsec-stripe" : "whsec-paypal"
                _ = try h.webhook(event.payload, psp: event.psp, secret: secret)
            case 8:  // consumers: in order, then redeliveries
                try h.drainOutbox()
                deliveredEvents = h.published.map(\.event)
                if let event = deliveredEvents.randomElementDeterministic(&random) {
                    for consumer in EngineConsumer.allCases { #expect(try h.engine.consume(event, by: consumer, now: h.now) == false) }
                }
            default:  // notifications succeed or fail
                for message in h.notifications.suffix(4) {
                    try h.engine.notificationDelivered(message.notificationID, success: chance(70), now: h.now)
                }
                h.collect()
            }
            try check(step)
        }

        // Heal: the PSP answers every call truthfully, time runs until quiet.
        for _ in 0..<400 {
            while let call = h.takeCall() {
                if let reply = psp.handle(call, .normal) { try h.reply(reply, to: call) }
            }
            if h.timers.isEmpty { break }
            h.now = max(h.now, h.timers.map(\.at).min()!)
            try h.fireDueTimers()
        }
        try h.drainOutbox()
        try check(-1)
        let open = try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM payment WHERE status NOT IN ('completed', 'failed')") }
        #expect(open == 0, "seed \(seed): payments left open after healing")
        let openRefunds = try h.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM refund WHERE status NOT IN ('succeeded', 'failed')") }
        #expect(openRefunds == 0, "seed \(seed): refunds left open after healing")
        let settled = try h.settledViolations()
        #expect(settled.isEmpty, "seed \(seed): \(settled)")
        // The engine agrees with the PSP's truth about every payment.
        let rows = try h.read { try Row.fetchAll($0, sql: "SELECT payment_id, status, psp_id FROM payment") }
        for row in rows {
            let paymentID: String = row["payment_id"]
            let charges = psp.chargedAt.filter { $0.key.hasPrefix(paymentID + ":") }
            switch row["status"] as String {
            case "completed": #expect(charges.count == 1 && charges.first?.value == row["psp_id"], "seed \(seed): \(paymentID) completed but charged \(charges)")
            default: #expect(charges.isEmpty, "seed \(seed): \(paymentID) failed although charged \(charges)")
            }
        }
        let refunds = try h.read { try Row.fetchAll($0, sql: "SELECT refund_id, status, psp_id FROM refund") }
        for row in refunds {
            let key = "\(row["refund_id"] as String):\(row["psp_id"] as String)"
            let done = psp.outcome[key] == .done
            #expect(done == (row["status"] as String == "succeeded"), "seed \(seed): refund \(key) is \(row["status"] as String) but the PSP says \(String(describing: psp.outcome[key]))")
        }
    }
}

extension Array {
    func randomElementDeterministic(_ random: inout SplitMix) -> Element? {
        isEmpty ? nil : self[Int(random.next() % UInt64(count))]
    }
}
