import Crypto
import Foundation
import GRDB

/// The body of a PSP webhook, as PSPs send it to `POST /webhook`.
public struct PSPWebhookPayload: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case chargeSucceeded = "charge.succeeded"
        case chargeFailed = "charge.failed"
        case refundSucceeded = "refund.succeeded"
        case refundFailed = "refund.failed"
    }

    public var eventID: String
    public var type: Kind
    /// The PSP idempotency key the engine sent with the call.
    public var pspReference: String
    public var chargeID: String?
    public var reason: String?

    enum CodingKeys: String, CodingKey {
        case eventID = "event_id", type, pspReference = "psp_reference", chargeID = "charge_id", reason
    }

    public init(eventID: String, type: Kind, pspReference: String, chargeID: String? = nil, reason: String? = nil) {
        self.eventID = eventID
        self.type = type
        self.pspReference = pspReference
        self.chargeID = chargeID
        self.reason = reason
    }
}

extension PSPWebhookPayload {
    /// Why `body` is not a webhook event, for the PSP's integrator: the field
    /// at fault and what it may be, not a Swift `DecodingError`.
    static func problem(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func field(_ path: [any CodingKey], _ key: (any CodingKey)? = nil) -> String {
            (path + (key.map { [$0] } ?? [])).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case let .keyNotFound(key, context):
            return "\(field(context.codingPath, key)) is required"
        case let .valueNotFound(_, context):
            return "\(field(context.codingPath)): expected \(expected(context.codingPath)), found null"
        case let .typeMismatch(_, context):
            guard !context.codingPath.isEmpty else { return "the body must be a JSON object of event_id, type and psp_reference" }
            return "\(field(context.codingPath)): expected \(expected(context.codingPath))"
        case let .dataCorrupted(context):
            guard !context.codingPath.isEmpty else { return "the body is not valid JSON" }
            if context.codingPath.last?.stringValue == CodingKeys.type.stringValue {
                return "\(field(context.codingPath)): \(context.debugDescription)"
            }
            return "\(field(context.codingPath)): expected \(expected(context.codingPath))"
        @unknown default:
            return "not a webhook event"
        }
    }

    /// What the field at `path` holds, in words.
    private static func expected(_ path: [any CodingKey]) -> String {
        guard path.count == 1, let key = CodingKeys(stringValue: path[0].stringValue) else { return "an object of event_id, type and psp_reference" }
        return key == .type ? "a string, one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))" : "a string"
    }

    /// The synthesized decoding, but for `type`: one not known names the
    /// types that are, instead of "Cannot initialize Kind from invalid String value".
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        eventID = try container.decode(String.self, forKey: .eventID)
        let type = try container.decode(String.self, forKey: .type)
        guard let kind = Kind(rawValue: type) else {
            throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription:
                "\"\(type)\" is not a webhook event type; expected one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.type = kind
        pspReference = try container.decode(String.self, forKey: .pspReference)
        chargeID = try container.decodeIfPresent(String.self, forKey: .chargeID)
        reason = try container.decodeIfPresent(String.self, forKey: .reason)
    }
}

extension PSPWebhookPayload.Kind {
    /// The event a PSP announces for an attempt it settled.
    public init(_ kind: SettlementKind, _ status: SettlementStatus) {
        switch (kind, status) {
        case (.charge, .captured): self = .chargeSucceeded
        case (.charge, _): self = .chargeFailed
        case (.refund, .refunded): self = .refundSucceeded
        case (.refund, _): self = .refundFailed
        }
    }
}

extension PSPWebhookPayload {
    /// The body a PSP sends for the attempt with idempotency key `reference`:
    /// one event per attempt (`evt-<reference>`), so a resent webhook is a
    /// duplicate. Written directly; the reference is the engine's own key.
    public static func settlementEventJSON(reference: String, type: Kind) -> String {
        "{\"event_id\":\"evt-\(reference)\",\"type\":\"\(type.rawValue)\",\"psp_reference\":\"\(reference)\"}"
    }
}

extension PSPWebhookPayload {
    /// Reads a body exactly as ``settlementEventJSON(reference:type:)``
    /// writes it — no escapes, no control characters, the event id made
    /// from the reference — without a JSON decoder; `nil` for any other body,
    /// which the decoder then reads. (Decoding was a tenth of a webhook's
    /// cost in the simulated world.)
    static func settlementEvent(fromJSON body: String) -> PSPWebhookPayload? {
        let parts = body.utf8.split(separator: UInt8(ascii: "\""), omittingEmptySubsequences: false)
        guard parts.count == 13,
              parts[0].elementsEqual("{".utf8), parts[1].elementsEqual("event_id".utf8), parts[2].elementsEqual(":".utf8),
              parts[4].elementsEqual(",".utf8), parts[5].elementsEqual("type".utf8), parts[6].elementsEqual(":".utf8),
              parts[8].elementsEqual(",".utf8), parts[9].elementsEqual("psp_reference".utf8), parts[10].elementsEqual(":".utf8),
              parts[12].elementsEqual("}".utf8),
              let type = Kind(rawValue: String(decoding: parts[7], as: UTF8.self)),
              !parts[11].isEmpty, !parts[11].contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\\") }),
              parts[3].starts(with: "evt-".utf8), parts[3].dropFirst(4).elementsEqual(parts[11])
        else { return nil }
        let reference = String(decoding: parts[11], as: UTF8.self)
        return PSPWebhookPayload(eventID: "evt-" + reference, type: type, pspReference: reference)
    }
}

/// A PSP's webhook key, scheduled once: signing or checking a webhook costs
/// one HMAC of its body. The signature is hex HMAC-SHA256 of
/// `"<timestamp>.<body>"` under the PSP's webhook secret.
public struct WebhookSigner {
    private let keyed: HMAC<SHA256>

    public init(secret: String) {
        keyed = HMAC<SHA256>(key: SymmetricKey(data: Data(secret.utf8)))
    }

    public func signature(body: String, timestampSeconds: Int64) -> String {
        var mac = keyed
        var prefix = "\(timestampSeconds)."
        prefix.withUTF8 { mac.update(data: UnsafeRawBufferPointer($0)) }
        var body = body
        body.withUTF8 { mac.update(data: UnsafeRawBufferPointer($0)) }
        return Hex.encode(mac.finalize())
    }
}

/// The signer only ever signs with a copy of its scheduled key (`var mac =
/// keyed`), and the copy's first update copies the key's state (HMAC's hash
/// is copy-on-write): threads sharing a signer never write to shared memory.
extension WebhookSigner: @unchecked Sendable {}

/// The checks a PSP webhook passes before anything of it is read: a known
/// PSP, a timestamp within the tolerance of the receiver's clock, and the
/// signature under that PSP's secret. The engine runs them, as the
/// authority; a server runs them first on its request threads too, so that
/// forged or stale webhooks never queue for the engine's thread.
public struct WebhookVerifier: Sendable {
    /// Each PSP's webhook key, by PSP id.
    let signers: [String: WebhookSigner]
    public let toleranceSeconds: Int64

    /// - Precondition: the PSP ids of `configuration` are unique (``EngineConfiguration/validate()``).
    public init(_ configuration: EngineConfiguration) {
        signers = Dictionary(uniqueKeysWithValues: configuration.psps.map { ($0.id, WebhookSigner(secret: $0.webhookSecret)) })
        toleranceSeconds = configuration.webhookToleranceSeconds
    }

    /// Throws ``EngineError/webhookRejected(_:)`` naming the first check that
    /// fails; `nowNanoseconds` is the receiver's clock, Unix time.
    /// - Complexity: one HMAC-SHA256 of `body`.
    public func verify(pspID: String, body: String, signature: String, timestampSeconds: Int64,
                       nowNanoseconds: Int64) throws(EngineError) {
        guard let signer = signers[pspID] else {
            throw .webhookRejected("unknown PSP \"\(pspID)\"")
        }
        let nowSeconds = nowNanoseconds / 1_000_000_000
        // Compared without subtracting: any Int64 a client sends is a timestamp to refuse, never an overflow.
        let tolerance = toleranceSeconds
        guard timestampSeconds >= nowSeconds - tolerance && timestampSeconds <= nowSeconds + tolerance else {
            throw .webhookRejected("timestamp \(timestampSeconds) is more than \(toleranceSeconds) s from now (\(nowSeconds))")
        }
        let expected = signer.signature(body: body, timestampSeconds: timestampSeconds)
        guard PaymentEngine.constantTimeEquals(expected, signature.lowercased()) else {
            throw .webhookRejected("signature does not match")
        }
    }
}

extension PaymentEngine {
    /// Signs a webhook body the way PSPs do here (see ``WebhookSigner``).
    public static func webhookSignature(body: String, timestampSeconds: Int64, secret: String) -> String {
        WebhookSigner(secret: secret).signature(body: body, timestampSeconds: timestampSeconds)
    }

    /// `POST /webhook`: verifies the signature and the timestamp, applies the
    /// event at most once per PSP event id, and never moves a payment or
    /// refund backwards. A bad signature or stale timestamp changes nothing.
    ///
    /// - Parameter wallNowNanoseconds: the clock the PSPs stamp their
    ///   webhooks by — Unix time — as the host read it, when engine time is
    ///   not that clock (the server's engine time runs on the monotonic
    ///   clock, and a suspended VM or a stepped wall clock leaves it behind
    ///   or ahead); `nil` checks the timestamp against `now`.
    public func receiveWebhook(pspID: String, body: String, signature: String, timestampSeconds: Int64,
                               now: Int64, wallNowNanoseconds: Int64? = nil) throws(EngineError) -> WebhookOutcome {
        try webhookVerifier.verify(pspID: pspID, body: body, signature: signature, timestampSeconds: timestampSeconds,
                                   nowNanoseconds: wallNowNanoseconds ?? now)
        let payload: PSPWebhookPayload
        do {
            payload = try PSPWebhookPayload.settlementEvent(fromJSON: body)
                ?? JSONDecoder().decode(PSPWebhookPayload.self, from: Data(body.utf8))
        } catch {
            throw .webhookRejected("body is not a webhook event: \(PSPWebhookPayload.problem(error))")
        }
        try Self.validateIdentifier(payload.eventID, field: "event_id", maxLength: 255)
        return try transaction { db, effects in
            let seen = try statements(.webhookSeen, db)
            seen.bind(pspID, at: 1)
            seen.bind(payload.eventID, at: 2)
            let duplicate = try seen.step()
            seen.reset()
            if duplicate {
                counters.duplicateWebhooks += 1
                return .duplicate
            }
            let outcome: WebhookOutcome
            if let attempt = try loadAttempt(pspID: pspID, key: payload.pspReference, in: db) {
                let matches = (attempt.subject == .payment) == (payload.type == .chargeSucceeded || payload.type == .chargeFailed)
                let result: PSPOutcome = switch payload.type {
                case .chargeSucceeded, .refundSucceeded: .succeeded(pspReference: payload.chargeID ?? payload.eventID)
                case .chargeFailed, .refundFailed: .declined(reason: payload.reason ?? "failed (webhook)")
                }
                if attempt.isOpen && matches {
                    try apply(result, to: attempt, now: now, in: db, effects: &effects)
                    outcome = .applied
                } else {
                    if matches { try auditContradiction(attempt, result, by: "webhook \(payload.eventID)", now: now, in: db) }
                    outcome = .ignored
                }
            } else {
                outcome = .unknownReference
            }
            let record = try statements(.insertWebhookEvent, db)
            record.bind(pspID, at: 1)
            record.bind(payload.eventID, at: 2)
            record.bind(now, at: 3)
            record.bind(outcome.rawValue, at: 4)
            try record.execute()
            return outcome
        }
    }

    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<x.count { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}
