import Foundation

/// A state change published through the outbox. Consumers are idempotent
/// by ``eventID``. Carries no card data.
public struct TransactionEvent: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case paymentCompleted = "payment.completed"
        case paymentFailed = "payment.failed"
        case refundSucceeded = "refund.succeeded"
        case refundFailed = "refund.failed"
    }

    public var eventID: String
    public var kind: Kind
    public var paymentID: String
    public var refundID: String?
    public var merchantID: String
    public var userID: String
    public var amountMinor: Int64
    public var currency: String
    /// Fee charged on a capture, or fee returned on a refund.
    public var feeMinor: Int64
    public var pspID: String
    public var timeNanoseconds: Int64
    public var reason: String?

    /// Canonical JSON, as stored in the outbox: the bytes `JSONEncoder` with
    /// `.sortedKeys` produces (keys sorted, absent optionals omitted, `/`
    /// escaped), written by hand — `JSONEncoder` was a tenth of a payment's
    /// cost in `paystorm bench engine`.
    /// - Complexity: O(length of the output).
    public func json() -> String {
        var writer = CanonicalJSONWriter()
        writer.field("amountMinor", amountMinor)
        writer.field("currency", currency)
        writer.field("eventID", eventID)
        writer.field("feeMinor", feeMinor)
        writer.field("kind", kind.rawValue)
        writer.field("merchantID", merchantID)
        writer.field("paymentID", paymentID)
        writer.field("pspID", pspID)
        if let reason { writer.field("reason", reason) }
        if let refundID { writer.field("refundID", refundID) }
        writer.field("timeNanoseconds", timeNanoseconds)
        writer.field("userID", userID)
        return writer.finish()
    }

    /// Decodes an event from JSON, exactly as `JSONDecoder` does.
    ///
    /// Flat objects of plain ASCII strings and integers — what ``json()``
    /// writes — are read directly; anything else (escapes, whitespace,
    /// `null`s, non-ASCII, unknown or repeated keys) goes to `JSONDecoder`,
    /// so what is accepted and how it reads never changes.
    public static func decode(_ json: String) throws -> TransactionEvent {
        if let event = CanonicalJSONReader.transactionEvent(json) { return event }
        return try JSONDecoder().decode(TransactionEvent.self, from: Data(json.utf8))
    }
}
