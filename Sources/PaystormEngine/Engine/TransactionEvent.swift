import Foundation

/// A state change published through the outbox. Consumers are idempotent
/// by ``eventID``. Carries no card data.
public struct TransactionEvent: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable {
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

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    /// Canonical JSON (sorted keys), as stored in the outbox.
    public func json() -> String {
        // Encoding a flat struct of strings and integers cannot fail.
        String(decoding: try! Self.encoder.encode(self), as: UTF8.self)
    }

    public static func decode(_ json: String) throws -> TransactionEvent {
        try JSONDecoder().decode(TransactionEvent.self, from: Data(json.utf8))
    }
}
