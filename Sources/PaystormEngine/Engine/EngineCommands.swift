/// `POST /payments`, as the engine receives it from a host. Fields carry
/// the wire names in error messages.
public struct CreatePaymentCommand: Sendable {
    public var userID: String
    public var merchantID: String
    /// Decimal string in the currency's major unit, e.g. "10.50".
    public var amount: String
    /// ISO 4217 code.
    public var currency: String
    public var card: CardInput
    public var idempotencyKey: String

    public init(userID: String, merchantID: String, amount: String, currency: String, card: CardInput, idempotencyKey: String) {
        self.userID = userID
        self.merchantID = merchantID
        self.amount = amount
        self.currency = currency
        self.card = card
        self.idempotencyKey = idempotencyKey
    }
}

/// Card details as sent by the client. The CVV lives only in this value,
/// for the duration of one command.
public struct CardInput: Sendable, CustomStringConvertible {
    public var number: String
    public var expiry: String
    public var cvv: String

    public init(number: String, expiry: String, cvv: String) {
        self.number = number
        self.expiry = expiry
        self.cvv = cvv
    }

    /// Never prints the number or the CVV.
    public var description: String { "card(…\(number.suffix(4)))" }
}

/// `POST /refunds`.
public struct CreateRefundCommand: Sendable {
    public var merchantID: String
    public var paymentID: String
    /// Decimal string in the payment's currency.
    public var amount: String
    public var idempotencyKey: String

    public init(merchantID: String, paymentID: String, amount: String, idempotencyKey: String) {
        self.merchantID = merchantID
        self.paymentID = paymentID
        self.amount = amount
        self.idempotencyKey = idempotencyKey
    }
}

/// `GET /ledger` filters; results are ordered by journal sequence and paged
/// with an opaque cursor (the last sequence seen).
public struct LedgerQuery: Sendable, Equatable {
    public var account: String?
    public var transactionID: String?
    public var fromNanoseconds: Int64?
    public var toNanoseconds: Int64?
    public var afterSequence: Int64
    public var limit: Int

    public init(account: String? = nil, transactionID: String? = nil, fromNanoseconds: Int64? = nil,
                toNanoseconds: Int64? = nil, afterSequence: Int64 = 0, limit: Int = 100) {
        self.account = account
        self.transactionID = transactionID
        self.fromNanoseconds = fromNanoseconds
        self.toNanoseconds = toNanoseconds
        self.afterSequence = afterSequence
        self.limit = limit
    }
}
