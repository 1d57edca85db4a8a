import Foundation
import PaystormEngine

/// The JSON of the HTTP API (`openapi/paystorm.yaml`): requests are read
/// field by field so every problem names the field and what was expected;
/// responses are Codable with the wire's snake_case names.
public enum APIWire {
    /// A request the server refuses before the engine sees it.
    public struct BadRequest: Error, Equatable, CustomStringConvertible {
        public var field: String?
        public var message: String
        public var description: String { field.map { "\($0): \(message)" } ?? message }
    }

    // MARK: Requests

    /// A JSON object from a request body, or a ``BadRequest`` saying why not:
    /// also when a key is repeated within one of its objects, at any depth.
    public static func object(_ body: Data) throws(BadRequest) -> [String: Any] {
        guard !body.isEmpty else { throw BadRequest(field: nil, message: "the request body is empty; a JSON object was expected") }
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: body, options: [])
        } catch {
            throw BadRequest(field: nil, message: "the request body is not valid JSON (\(Self.reason(error)))")
        }
        guard let object = value as? [String: Any] else {
            throw BadRequest(field: nil, message: "the request body must be a JSON object, found \(typeName(value))")
        }
        // JSONSerialization kept the last value of a repeated key; which one the client meant is not for the server to guess.
        if let repeated = JSONRepeatedKey.first(in: body) {
            throw BadRequest(field: repeated, message: "given more than once; each field may appear once")
        }
        return object
    }

    /// Field access with errors that name the field path.
    struct Reader {
        let object: [String: Any]
        let path: String
        let known: Set<String>

        init(_ object: [String: Any], path: String = "", known: Set<String>) throws(BadRequest) {
            self.object = object
            self.path = path
            self.known = known
            // Sorted only when one is unknown, to name the first of them.
            guard object.keys.allSatisfy(known.contains) else {
                let key = object.keys.sorted().first { !known.contains($0) }!
                throw BadRequest(field: path + key, message: "unknown field; expected one of \(known.sorted().joined(separator: ", "))")
            }
        }

        func string(_ key: String, maxLength: Int = 255) throws(BadRequest) -> String {
            guard let value = object[key], !(value is NSNull) else {
                throw BadRequest(field: path + key, message: "is required")
            }
            guard let text = value as? String, !(value is NSNumber) else {
                throw BadRequest(field: path + key, message: "expected a string, found \(APIWire.typeName(value))")
            }
            guard text.utf8.count <= maxLength else {
                throw BadRequest(field: path + key, message: "is longer than \(maxLength) bytes")
            }
            return text
        }

        func object(_ key: String, known: Set<String>) throws(BadRequest) -> Reader {
            guard let value = object[key], !(value is NSNull) else {
                throw BadRequest(field: path + key, message: "is required")
            }
            guard let nested = value as? [String: Any] else {
                throw BadRequest(field: path + key, message: "expected an object, found \(APIWire.typeName(value))")
            }
            return try Reader(nested, path: path + key + ".", known: known)
        }
    }

    /// `POST /payments`, in the design's shape.
    public static func createPayment(_ body: Data) throws(BadRequest) -> CreatePaymentCommand {
        if let command = plainCreatePayment(body) { return command }
        return try createPaymentFieldByField(body)
    }

    /// ``createPayment(_:)`` for any body, through `JSONSerialization`.
    static func createPaymentFieldByField(_ body: Data) throws(BadRequest) -> CreatePaymentCommand {
        let root = try Reader(try object(body), known: ["user_id", "merchant_id", "amount", "currency", "payment_method", "idempotency_key"])
        let method = try root.object("payment_method", known: ["type", "details"])
        let type = try method.string("type")
        guard type == "card" else {
            throw BadRequest(field: "payment_method.type", message: "\"\(type)\" is not supported; expected \"card\"")
        }
        let details = try method.object("details", known: ["card_number", "expiry_date", "cvv"])
        return CreatePaymentCommand(
            userID: try root.string("user_id"), merchantID: try root.string("merchant_id"),
            amount: try root.string("amount", maxLength: 40), currency: try root.string("currency", maxLength: 3),
            card: CardInput(number: try details.string("card_number", maxLength: 40), expiry: try details.string("expiry_date", maxLength: 10),
                            cvv: try details.string("cvv", maxLength: 10)),
            idempotencyKey: try root.string("idempotency_key"))
    }

    /// The common `POST /payments` body read without `JSONSerialization`
    /// (about a twentieth of the server's CPU a payment in a profile; 2%
    /// less CPU measured in `bench server`): every value a string of
    /// printable ASCII without escapes, every key known and given once, the
    /// card type `"card"`, every length within its limit, any whitespace
    /// between tokens. `nil` for any other body, which
    /// ``createPayment(_:)`` then reads field by field, accepting it or
    /// naming what is wrong. What this accepts, that reads the same way.
    static func plainCreatePayment(_ body: Data) -> CreatePaymentCommand? {
        var userID: String?, merchantID: String?, amount: String?, currency: String?, idempotencyKey: String?
        var type: String?, number: String?, expiry: String?, cvv: String?
        var method = false, details = false
        func card(_ key: String, _ reader: inout PlainJSONCursor) -> Bool {
            switch key {
            case "card_number": reader.plainString(into: &number, limit: 40)
            case "expiry_date": reader.plainString(into: &expiry, limit: 10)
            case "cvv": reader.plainString(into: &cvv, limit: 10)
            default: false
            }
        }
        func paymentMethod(_ key: String, _ reader: inout PlainJSONCursor) -> Bool {
            switch key {
            case "type": return reader.plainString(into: &type, limit: 255)
            case "details":
                guard !details else { return false }
                details = true
                return reader.object(card)
            default: return false
            }
        }
        let read = body.withUnsafeBytes { raw in
            PlainJSONCursor.object(in: raw) { key, reader in
                switch key {
                case "user_id": return reader.plainString(into: &userID, limit: 255)
                case "merchant_id": return reader.plainString(into: &merchantID, limit: 255)
                case "amount": return reader.plainString(into: &amount, limit: 40)
                case "currency": return reader.plainString(into: &currency, limit: 3)
                case "idempotency_key": return reader.plainString(into: &idempotencyKey, limit: 255)
                case "payment_method":
                    guard !method else { return false }
                    method = true
                    return reader.object(paymentMethod)
                default: return false
                }
            }
        }
        guard read, type == "card", let userID, let merchantID, let amount, let currency, let idempotencyKey,
              let number, let expiry, let cvv else { return nil }
        return CreatePaymentCommand(userID: userID, merchantID: merchantID, amount: amount, currency: currency,
                                    card: CardInput(number: number, expiry: expiry, cvv: cvv), idempotencyKey: idempotencyKey)
    }

    /// `POST /refunds`; the merchant comes from the API key.
    public static func createRefund(_ body: Data, merchantID: String) throws(BadRequest) -> CreateRefundCommand {
        let root = try Reader(try object(body), known: ["payment_id", "amount", "idempotency_key"])
        return CreateRefundCommand(merchantID: merchantID, paymentID: try root.string("payment_id"),
                                   amount: try root.string("amount", maxLength: 40), idempotencyKey: try root.string("idempotency_key"))
    }

    /// `GET /ledger` query parameters, in the order given. A parameter
    /// given twice, or a filter with nothing to match, is refused: which of
    /// two limits applies, or what an empty account means, is not for the
    /// server to guess.
    public static func ledgerQuery(_ pairs: [(key: String, value: String)]) throws(BadRequest) -> LedgerQuery {
        let known: Set<String> = ["account", "transaction_id", "from_ns", "to_ns", "cursor", "limit"]
        var parameters: [String: String] = [:]
        for (key, value) in pairs {
            guard known.contains(key) else {
                throw BadRequest(field: key, message: "unknown query parameter; expected one of \(known.sorted().joined(separator: ", "))")
            }
            guard parameters.updateValue(value, forKey: key) == nil else {
                throw BadRequest(field: key, message: "given more than once")
            }
        }
        for key in ["account", "transaction_id"] where parameters[key]?.isEmpty == true {
            throw BadRequest(field: key, message: "empty; leave the parameter out to match every \(key == "account" ? "account" : "transaction")")
        }
        func integer(_ key: String, in range: ClosedRange<Int64>) throws(BadRequest) -> Int64? {
            guard let text = parameters[key] else { return nil }
            guard let value = Int64(text), range.contains(value) else {
                throw BadRequest(field: key, message: "expected an integer in \(range.lowerBound)...\(range.upperBound), found \"\(text)\"")
            }
            return value
        }
        return LedgerQuery(account: parameters["account"], transactionID: parameters["transaction_id"],
                           fromNanoseconds: try integer("from_ns", in: 0...Int64.max), toNanoseconds: try integer("to_ns", in: 0...Int64.max),
                           afterSequence: try integer("cursor", in: 0...Int64.max) ?? 0, limit: Int(try integer("limit", in: 1...1_000) ?? 100))
    }

    // MARK: Responses

    public struct Payment: Codable, Equatable, Sendable {
        public var paymentID: String
        public var status: String
        public var merchantID: String
        public var userID: String
        public var amount: String
        public var currency: String
        public var card: String
        public var psp: String?
        public var failureReason: String?
        public var refunded: String
        public var replayed: Bool

        enum CodingKeys: String, CodingKey {
            case paymentID = "payment_id", status, merchantID = "merchant_id", userID = "user_id", amount, currency, card, psp
            case failureReason = "failure_reason", refunded, replayed
        }

        public init(_ view: PaymentView) {
            paymentID = view.paymentID
            status = view.status.rawValue
            merchantID = view.merchantID
            userID = view.userID
            amount = view.amount.decimalString
            currency = view.amount.currency.code
            card = view.cardMasked
            psp = view.pspID
            failureReason = view.failureReason
            refunded = Money(minorUnits: view.refundedMinor, currency: view.amount.currency).decimalString
            replayed = view.replayed
        }
    }

    public struct Refund: Codable, Equatable, Sendable {
        public var refundID: String
        public var paymentID: String
        public var status: String
        public var amount: String
        public var currency: String
        public var failureReason: String?
        public var replayed: Bool

        enum CodingKeys: String, CodingKey {
            case refundID = "refund_id", paymentID = "payment_id", status, amount, currency, failureReason = "failure_reason", replayed
        }

        public init(_ view: RefundView) {
            refundID = view.refundID
            paymentID = view.paymentID
            status = view.status.rawValue
            amount = view.amount.decimalString
            currency = view.amount.currency.code
            failureReason = view.failureReason
            replayed = view.replayed
        }
    }

    public struct LedgerPage: Codable, Equatable, Sendable {
        public struct Entry: Codable, Equatable, Sendable {
            public var sequence: Int64
            public var entryID: String
            public var transactionID: String
            public var timeNs: Int64
            public var postings: [Posting]
            public var hash: String
            enum CodingKeys: String, CodingKey {
                case sequence, entryID = "entry_id", transactionID = "transaction_id", timeNs = "time_ns", postings, hash
            }
        }

        public struct Posting: Codable, Equatable, Sendable {
            public var account: String
            public var side: String
            public var amount: String
            public var currency: String
        }

        public var entries: [Entry]
        public var nextCursor: Int64?
        enum CodingKeys: String, CodingKey { case entries, nextCursor = "next_cursor" }

        public init(_ page: PaystormEngine.LedgerPage) {
            entries = page.entries.map { entry in
                Entry(sequence: entry.sequence, entryID: entry.entryID, transactionID: entry.transactionID, timeNs: entry.timeNanoseconds,
                      postings: entry.postings.map {
                          Posting(account: $0.account.name, side: $0.side.rawValue, amount: $0.amount.decimalString, currency: $0.amount.currency.code)
                      },
                      hash: entry.hash)
            }
            nextCursor = page.nextCursor
        }
    }

    public struct WebhookResult: Codable, Equatable, Sendable {
        public var outcome: String
    }

    /// Every error body: `{"error": {"code": …, "message": …, "field": …}}`.
    public struct ErrorBody: Codable, Equatable, Sendable {
        public struct Detail: Codable, Equatable, Sendable {
            public var code: String
            public var message: String
            public var field: String?
        }
        public var error: Detail

        public init(code: String, message: String, field: String? = nil) {
            error = Detail(code: code, message: message, field: field)
        }
    }

    /// The HTTP status and error body for an engine refusal.
    public static func error(_ error: EngineError) -> (status: Int, body: ErrorBody) {
        switch error {
        case let .invalidField(field, message): return (422, ErrorBody(code: "invalid_field", message: message, field: field))
        case .idempotencyKeyReused: return (422, ErrorBody(code: "idempotency_key_reused", message: error.description, field: "idempotency_key"))
        case .idempotencyConflict: return (409, ErrorBody(code: "idempotency_conflict", message: error.description, field: "idempotency_key"))
        case .invalidState: return (409, ErrorBody(code: "invalid_state", message: error.description))
        case .refundExceedsCaptured: return (409, ErrorBody(code: "refund_exceeds_captured", message: error.description, field: "amount"))
        case .paymentNotFound: return (404, ErrorBody(code: "payment_not_found", message: error.description))
        case .refundNotFound: return (404, ErrorBody(code: "refund_not_found", message: error.description))
        case .webhookRejected: return (400, ErrorBody(code: "webhook_rejected", message: error.description))
        case .storage: return (503, ErrorBody(code: "unavailable", message: "the store could not commit; nothing was done, retry with the same idempotency key"))
        case .overloaded: return (503, ErrorBody(code: "overloaded", message: "\(error.description); nothing was done, retry with the same idempotency key"))
        }
    }

    static func typeName(_ value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case let number as NSNumber: return String(cString: number.objCType) == "c" ? "a boolean" : "a number"
        case is String: return "a string"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        default: return "\(type(of: value))"
        }
    }

    static func reason(_ error: any Error) -> String {
        let text = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
        return text
    }
}
