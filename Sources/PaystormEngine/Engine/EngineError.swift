/// Why the engine refused a command. Each case names the field or object at
/// fault; hosts map them to HTTP statuses or exit codes at their edge.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    /// A field is missing, malformed or out of range.
    case invalidField(field: String, message: String)
    /// The idempotency key was used before with a different request body.
    case idempotencyKeyReused(key: String)
    /// A request with this idempotency key is still being processed.
    case idempotencyConflict(key: String)
    case paymentNotFound(String)
    case refundNotFound(String)
    /// The payment is not in a state that allows the operation.
    case invalidState(String)
    /// The refund would take refunds past the captured amount.
    case refundExceedsCaptured(paymentID: String, requestedMinor: Int64, availableMinor: Int64, currency: String)
    /// Webhook signature or timestamp check failed.
    case webhookRejected(String)
    /// The store failed; the command had no effect.
    case storage(String)
    /// The engine's host refused the command without running it: it has
    /// more work queued than it can finish in time. Nothing was done.
    case overloaded(String)

    public var description: String {
        switch self {
        case let .invalidField(field, message): return "\(field): \(message)"
        case let .idempotencyKeyReused(key): return "idempotency_key \"\(key)\" was already used with a different request body"
        case let .idempotencyConflict(key): return "a request with idempotency_key \"\(key)\" is still in progress"
        case let .paymentNotFound(id): return "payment \(id) not found"
        case let .refundNotFound(id): return "refund \(id) not found"
        case let .invalidState(message): return message
        case let .refundExceedsCaptured(id, requested, available, code):
            // In the major units the merchant sent: "30.00 USD", not "3000 USD minor units".
            guard let currency = Currency(code: code) else {
                return "refund of \(requested) \(code) minor units on payment \(id) exceeds the \(available) still refundable"
            }
            let major = { (minor: Int64) in Money(minorUnits: minor, currency: currency).decimalString }
            return "refund of \(major(requested)) \(code) on payment \(id) exceeds the \(major(available)) \(code) still refundable"
        case let .webhookRejected(message): return "webhook rejected: \(message)"
        case let .storage(message): return "storage: \(message)"
        case let .overloaded(message): return "overloaded: \(message)"
        }
    }
}
