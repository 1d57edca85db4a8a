/// A ledger account: a name such as `merchant:m-42` or `external:psp:stripe`.
///
/// Accounts under `external:` stand for money outside Paystorm (card
/// networks, PSPs, customers); they are the only ones allowed to go negative.
public struct LedgerAccount: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let name: String

    public init(_ name: String) {
        precondition(!name.isEmpty && name.utf8.count <= 200, "ledger account names are 1...200 bytes")
        self.name = name
    }

    /// Whether the account models the outside world and may go negative.
    public var isExternal: Bool { name.hasPrefix("external:") }

    public static func < (lhs: LedgerAccount, rhs: LedgerAccount) -> Bool { lhs.name < rhs.name }
    public var description: String { name }

    public static func merchant(_ id: String) -> LedgerAccount { LedgerAccount("merchant:\(id)") }
    public static func psp(_ id: String) -> LedgerAccount { LedgerAccount("external:psp:\(id)") }
    public static let platformFees = LedgerAccount("platform:fees")
}

/// One side of a journal entry. Balances are credits minus debits, so a
/// credit raises an account and a debit lowers it.
public struct LedgerPosting: Hashable, Sendable {
    public enum Side: String, Sendable, CaseIterable {
        case debit, credit
    }

    public var account: LedgerAccount
    public var side: Side
    /// Always > 0.
    public var amount: Money

    public init(_ side: Side, _ account: LedgerAccount, _ amount: Money) {
        self.side = side
        self.account = account
        self.amount = amount
    }

    public static func debit(_ account: LedgerAccount, _ amount: Money) -> LedgerPosting { .init(.debit, account, amount) }
    public static func credit(_ account: LedgerAccount, _ amount: Money) -> LedgerPosting { .init(.credit, account, amount) }
}

/// A balanced set of postings for one business event (a capture, a refund).
public struct JournalEntry: Hashable, Sendable {
    /// Unique id of the entry, e.g. `capture:pay-17`; posting the same id twice is refused.
    public var id: String
    /// The payment or refund this entry belongs to.
    public var transactionID: String
    /// Engine time of the posting, nanoseconds.
    public var timeNanoseconds: Int64
    public var postings: [LedgerPosting]

    public init(id: String, transactionID: String, timeNanoseconds: Int64, postings: [LedgerPosting]) {
        self.id = id
        self.transactionID = transactionID
        self.timeNanoseconds = timeNanoseconds
        self.postings = postings
    }

    /// Checks the entry: at least two postings, every amount > 0, and for
    /// every currency Σ debits = Σ credits.
    public func validate() throws(LedgerError) {
        guard postings.count >= 2 else { throw .tooFewPostings(entry: id, count: postings.count) }
        // Net and debits per currency. An entry has a handful of postings in
        // one or two currencies: a short array beats two dictionaries.
        var totals: [(code: String, net: Int64, debits: Int64)] = []
        for posting in postings {
            guard posting.amount.minorUnits > 0 else {
                throw .nonPositiveAmount(entry: id, account: posting.account.name, amount: posting.amount.minorUnits)
            }
            let code = posting.amount.currency.code
            let index: Int
            if let known = totals.firstIndex(where: { $0.code == code }) {
                index = known
            } else {
                totals.append((code, 0, 0))
                index = totals.count - 1
            }
            let (sum, overflow) = totals[index].net.addingReportingOverflow(
                posting.side == .credit ? posting.amount.minorUnits : -posting.amount.minorUnits)
            guard !overflow else { throw .overflow(entry: id, currency: code) }
            totals[index].net = sum
            if posting.side == .debit { totals[index].debits += posting.amount.minorUnits }
        }
        // The first unbalanced currency in code order is reported.
        for total in totals.sorted(by: { $0.code < $1.code }) where total.net != 0 {
            throw .unbalanced(entry: id, currency: total.code, debits: total.debits, credits: total.debits + total.net)
        }
    }
}

/// Why the ledger refused an entry or failed a check; each names the entry or account.
public enum LedgerError: Error, Equatable, CustomStringConvertible {
    case tooFewPostings(entry: String, count: Int)
    case nonPositiveAmount(entry: String, account: String, amount: Int64)
    case unbalanced(entry: String, currency: String, debits: Int64, credits: Int64)
    case overflow(entry: String, currency: String)
    case duplicateEntry(String)
    case wouldGoNegative(entry: String, account: String, currency: String, balance: Int64)
    case chainBroken(sequence: Int64, entry: String)
    case headMismatch(stored: String, recomputed: String)
    /// The chain after entry `sequence` is not the hash kept outside the database.
    case witnessMismatch(sequence: Int64, witnessed: String, recomputed: String)
    /// A witness names an entry the journal no longer has.
    case witnessBeyondJournal(sequence: Int64, entries: Int)
    case storage(String)

    public var description: String {
        switch self {
        case let .tooFewPostings(entry, count):
            return "journal entry \(entry) has \(count) posting(s); at least two are needed"
        case let .nonPositiveAmount(entry, account, amount):
            return "journal entry \(entry) posts \(amount) to \(account); amounts must be > 0"
        case let .unbalanced(entry, currency, debits, credits):
            return "journal entry \(entry) is unbalanced in \(currency): debits \(debits) != credits \(credits)"
        case let .overflow(entry, currency):
            return "journal entry \(entry) overflows 64-bit minor units in \(currency)"
        case let .duplicateEntry(entry):
            return "journal entry \(entry) was already posted"
        case let .wouldGoNegative(entry, account, currency, balance):
            return "journal entry \(entry) would take \(account) to \(balance) \(currency); only external accounts may go negative"
        case let .chainBroken(sequence, entry):
            return "journal hash chain broken at entry #\(sequence) (\(entry)): stored hash does not match its contents"
        case let .headMismatch(stored, recomputed):
            return "journal head \(stored) does not match the recomputed chain \(recomputed)"
        case let .witnessMismatch(sequence, witnessed, recomputed):
            return "journal entry #\(sequence) was witnessed with chain hash \(witnessed), the journal now gives \(recomputed): the journal up to #\(sequence) is not the one witnessed (changed and rehashed, or the witness is another database's)"
        case let .witnessBeyondJournal(sequence, entries):
            return "journal entry #\(sequence) was witnessed, the journal now has \(entries) entries: entries were removed and the head moved back"
        case let .storage(message):
            return "ledger storage: \(message)"
        }
    }
}
