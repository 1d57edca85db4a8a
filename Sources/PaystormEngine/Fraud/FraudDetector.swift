/// One payment attempt as the fraud detector sees it.
public struct FraudSignal: Sendable, Equatable {
    public var userID: String
    public var merchantID: String
    /// The vault token of the card (never the number).
    public var cardToken: String
    /// The first six digits of the card number.
    public var cardBIN: String
    public var amount: Money
    /// Engine time of the attempt, nanoseconds; non-decreasing across calls.
    public var timeNanoseconds: Int64

    public init(userID: String, merchantID: String, cardToken: String, cardBIN: String, amount: Money, timeNanoseconds: Int64) {
        self.userID = userID
        self.merchantID = merchantID
        self.cardToken = cardToken
        self.cardBIN = cardBIN
        self.amount = amount
        self.timeNanoseconds = timeNanoseconds
    }
}

/// Why an attempt was flagged. A decision lists its reasons in the order the
/// cases are declared here, each rule at most once, at its most severe level.
public enum FraudReason: Sendable, Equatable, CustomStringConvertible {
    case blockedUser(String)
    case blockedCard(String)
    case blockedBIN(String)
    /// Attempts by the user in the window, this one included (capped at the
    /// decline limit + 1, the most the detector keeps).
    case userVelocity(count: Int, limit: Int, windowSeconds: Int64)
    case cardVelocity(count: Int, limit: Int, windowSeconds: Int64)
    /// Card testing: distinct cards the user tried in the window, this one included.
    case distinctCardsPerUser(count: Int, limit: Int, windowSeconds: Int64)
    case amountAboveReview(amountMinor: Int64, limitMinor: Int64, currency: String)
    case amountAboveDecline(amountMinor: Int64, limitMinor: Int64, currency: String)
    /// The amount lies `zScore` sample standard deviations above the user's mean.
    case unusualAmount(zScore: Double, threshold: Double)

    public var description: String {
        switch self {
        case let .blockedUser(id): return "user \"\(id)\" is blocklisted"
        case let .blockedCard(token): return "card \"\(token)\" is blocklisted"
        case let .blockedBIN(bin): return "card BIN \"\(bin)\" is blocklisted"
        case let .userVelocity(count, limit, window):
            return "user made \(count) attempts in \(window) s; the limit is \(limit)"
        case let .cardVelocity(count, limit, window):
            return "card was used in \(count) attempts in \(window) s; the limit is \(limit)"
        case let .distinctCardsPerUser(count, limit, window):
            return "user tried \(count) distinct cards in \(window) s; the limit is \(limit)"
        case let .amountAboveReview(amount, limit, code):
            return "amount \(Self.format(amount, code)) is above the review limit \(Self.format(limit, code))"
        case let .amountAboveDecline(amount, limit, code):
            return "amount \(Self.format(amount, code)) is above the decline limit \(Self.format(limit, code))"
        case let .unusualAmount(zScore, threshold):
            return "amount is \((zScore * 100).rounded() / 100) standard deviations above the user's mean; the threshold is \(threshold)"
        }
    }

    private static func format(_ minor: Int64, _ code: String) -> String {
        guard let currency = Currency(code: code) else { return "\(minor) minor units of \(code)" }
        return Money(minorUnits: minor, currency: currency).description
    }
}

/// What to do with an attempt.
public enum FraudDecision: Sendable, Equatable {
    case approve
    /// Hold for a human or a step-up check.
    case review([FraudReason])
    case decline([FraudReason])

    /// Every finding, in ``FraudReason`` declaration order; empty for `.approve`.
    public var reasons: [FraudReason] {
        switch self {
        case .approve: return []
        case let .review(reasons), let .decline(reasons): return reasons
        }
    }
}

/// Real-time fraud scoring: blocklists, sliding-window velocity per user and
/// per card, distinct cards per user, amount limits per currency, and
/// deviation from the user's completed amounts.
///
/// Deterministic and sans-I/O: time comes in with each signal, nothing is
/// random, and no hash-table order is ever observed. Memory is bounded: each
/// key keeps at most limit + 1 timestamps, each table at most
/// ``FraudRules/maxTrackedKeys`` keys, dropping the oldest-inserted key first.
///
/// A blocklist hit or a decline-level limit declines; otherwise any finding
/// reviews. Either way the decision carries every finding.
public final class FraudDetector {
    public let rules: FraudRules
    /// Keys dropped, over all tables, because a table held ``FraudRules/maxTrackedKeys``.
    public private(set) var evictions: Int = 0

    private var users: FraudKeyTable<String, UserActivity>
    /// Keyed by ``cardKey(_:)`` of the token, not the token's text.
    private var cards: FraudKeyTable<UInt64, TimestampWindow>
    private var histories: FraudKeyTable<HistoryKey, AmountHistory>
    private var lastTimeNanoseconds: Int64 = .min
    /// The clock and eviction count when the open transaction began (see
    /// ``beginTransaction()``); `nil` when none is open.
    private var transactionStart: (lastTimeNanoseconds: Int64, evictions: Int)?

    /// - Precondition: `rules.validate()` does not throw.
    public init(rules: FraudRules) {
        do { try rules.validate() } catch { preconditionFailure("invalid fraud rules: \(error)") }
        self.rules = rules
        users = FraudKeyTable(capacity: rules.maxTrackedKeys)
        cards = FraudKeyTable(capacity: rules.maxTrackedKeys)
        histories = FraudKeyTable(capacity: rules.maxTrackedKeys)
    }

    /// Users, cards and user+currency histories currently tracked; each is at most ``FraudRules/maxTrackedKeys``.
    public var trackedUsers: Int { users.count }
    public var trackedCards: Int { cards.count }
    public var trackedHistories: Int { histories.count }

    /// Decides for one attempt and records it in the velocity windows (every
    /// attempt counts, approved or not).
    ///
    /// A window of length W at time t holds the attempts at times in (t − W, t]:
    /// an attempt exactly W old has expired; attempts at equal times all count.
    /// A signal earlier than the previous one (a host clock stepping back) is
    /// judged at the previous time, so windows never run backwards.
    /// - Complexity: O(d) for d = ``FraudRules/distinctCardsPerUserDeclineLimit``,
    ///   plus amortised O(1) hash lookups.
    public func assess(_ signal: FraudSignal) -> FraudDecision {
        let now = max(signal.timeNanoseconds, lastTimeNanoseconds)
        lastTimeNanoseconds = now
        var reasons: [FraudReason] = []
        var decline = false

        if rules.blockedUserIDs.contains(signal.userID) { reasons.append(.blockedUser(signal.userID)); decline = true }
        if rules.blockedCardTokens.contains(signal.cardToken) { reasons.append(.blockedCard(signal.cardToken)); decline = true }
        if rules.blockedBINs.contains(signal.cardBIN) { reasons.append(.blockedBIN(signal.cardBIN)); decline = true }

        let cardKey = Self.cardKey(signal.cardToken)
        let user = userSlot(signal.userID)
        let card = cardSlot(cardKey)
        users.willChange(user)
        cards.willChange(card)
        let userCount = users.values[user].attempts.record(now, cutoff: Self.cutoff(now, rules.userVelocityWindowNanoseconds),
                                                           capacity: rules.userVelocityDeclineLimit + 1)
        let cardCount = cards.values[card].record(now, cutoff: Self.cutoff(now, rules.cardVelocityWindowNanoseconds),
                                                  capacity: rules.cardVelocityDeclineLimit + 1)
        let distinct = users.values[user].cards.record(cardKey, now, cutoff: Self.cutoff(now, rules.distinctCardsWindowNanoseconds),
                                                        capacity: rules.distinctCardsPerUserDeclineLimit + 1)

        let perSecond = FraudRules.nanosecondsPerSecond
        if let hit = Self.exceeded(userCount, rules.userVelocityReviewLimit, rules.userVelocityDeclineLimit) {
            reasons.append(.userVelocity(count: userCount, limit: hit.limit, windowSeconds: rules.userVelocityWindowNanoseconds / perSecond))
            decline = decline || hit.decline
        }
        if let hit = Self.exceeded(cardCount, rules.cardVelocityReviewLimit, rules.cardVelocityDeclineLimit) {
            reasons.append(.cardVelocity(count: cardCount, limit: hit.limit, windowSeconds: rules.cardVelocityWindowNanoseconds / perSecond))
            decline = decline || hit.decline
        }
        if let hit = Self.exceeded(distinct, rules.distinctCardsPerUserReviewLimit, rules.distinctCardsPerUserDeclineLimit) {
            reasons.append(.distinctCardsPerUser(count: distinct, limit: hit.limit,
                                                 windowSeconds: rules.distinctCardsWindowNanoseconds / perSecond))
            decline = decline || hit.decline
        }

        let amount = signal.amount.minorUnits
        let code = signal.amount.currency.code
        if let limit = rules.declineAmountMinorByCurrency[code], amount > limit {
            reasons.append(.amountAboveDecline(amountMinor: amount, limitMinor: limit, currency: code))
            decline = true
        } else if let limit = rules.reviewAmountMinorByCurrency[code], amount > limit {
            reasons.append(.amountAboveReview(amountMinor: amount, limitMinor: limit, currency: code))
        }

        if let slot = histories.slot(of: HistoryKey(userID: signal.userID, currency: code)),
           let z = histories.values[slot].zScore(of: amount, minimumCount: rules.deviationMinimumHistory,
                                                  minimumSpread: rules.deviationMinimumSpread),
           z > rules.deviationZScoreThreshold {
            reasons.append(.unusualAmount(zScore: z, threshold: rules.deviationZScoreThreshold))
        }

        if decline { return .decline(reasons) }
        return reasons.isEmpty ? .approve : .review(reasons)
    }

    /// Records the amount of a payment that completed, for the user's amount
    /// history (Welford mean and variance per user+currency).
    /// - Complexity: amortised O(1).
    public func recordCompleted(userID: String, amount: Money) {
        let key = HistoryKey(userID: userID, currency: amount.currency.code)
        let slot: Int
        if let existing = histories.slot(of: key) {
            slot = existing
        } else {
            let inserted = histories.insert(key, AmountHistory())
            if inserted.evicted { evictions += 1 }
            slot = inserted.slot
        }
        histories.willChange(slot)
        histories.values[slot].add(amount.minorUnits)
    }

    // MARK: - Transactions

    /// Starts recording what ``assess(_:)`` and ``recordCompleted(userID:amount:)``
    /// change, for ``rollBackTransaction()``: the engine's transaction that
    /// made them may roll back (a batch whose storage failed), and a payment
    /// that never happened must not count toward its user's velocity when
    /// the client retries it.
    /// - Precondition: no transaction is open.
    public func beginTransaction() {
        precondition(transactionStart == nil, "fraud detector transactions do not nest")
        transactionStart = (lastTimeNanoseconds, evictions)
        users.beginJournal()
        cards.beginJournal()
        histories.beginJournal()
    }

    /// Keeps what the open transaction changed and stops recording.
    public func commitTransaction() {
        transactionStart = nil
        users.endJournal()
        cards.endJournal()
        histories.endJournal()
    }

    /// Puts back what the open transaction changed: windows, histories,
    /// the keys it added or evicted, and the clock.
    public func rollBackTransaction() {
        guard let start = transactionStart else { return }
        users.rollBack()
        cards.rollBack()
        histories.rollBack()
        (lastTimeNanoseconds, evictions) = start
        transactionStart = nil
    }

    private func userSlot(_ id: String) -> Int {
        if let slot = users.slot(of: id) { return slot }
        let inserted = users.insert(id, UserActivity())
        if inserted.evicted { evictions += 1 }
        return inserted.slot
    }

    private func cardSlot(_ key: UInt64) -> Int {
        if let slot = cards.slot(of: key) { return slot }
        let inserted = cards.insert(key, TimestampWindow())
        if inserted.evicted { evictions += 1 }
        return inserted.slot
    }

    /// A card token as the detector keeps it: 64-bit FNV-1a of its UTF-8
    /// bytes. A token is 36 bytes of text that would each take an allocation
    /// per tracked card; two distinct tokens share a key with probability
    /// 2⁻⁶⁴ (at a million cards, about 3·10⁻⁸ that any pair does), and then
    /// only their velocity counts merge. Deterministic, unlike `hashValue`.
    static func cardKey(_ token: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in token.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// The limit a count is over, the decline limit first; `nil` within both.
    private static func exceeded(_ count: Int, _ review: Int, _ decline: Int) -> (limit: Int, decline: Bool)? {
        if count > decline { return (decline, true) }
        return count > review ? (review, false) : nil
    }

    /// Times at or before the cutoff have left the window.
    private static func cutoff(_ now: Int64, _ window: Int64) -> Int64 {
        let (value, overflow) = now.subtractingReportingOverflow(window)
        return overflow ? .min : value
    }
}

/// A dictionary from key to a slot in a fixed-capacity array. Slots fill in
/// insertion order and, once full, are reused round-robin, so the victim is
/// always the oldest-inserted key without ever iterating the dictionary.
struct FraudKeyTable<Key: Hashable, Value> {
    private var slotByKey: [Key: Int] = [:]
    private var keys: [Key] = []
    /// Mutated in place through a slot index.
    var values: [Value] = []
    private var nextVictim = 0
    let capacity: Int
    /// Changes since ``beginJournal()``, oldest first; `nil` when not recording.
    private var journal: [Change]?

    private enum Change {
        /// `values[slot]` before a change in place.
        case value(slot: Int, before: Value)
        /// A key appended at `slot`, the last one.
        case appended(slot: Int)
        /// A key put at `slot` in place of the evicted `key`.
        case replaced(slot: Int, key: Key, value: Value, nextVictim: Int)
    }

    init(capacity: Int) {
        precondition(capacity > 0, "a fraud key table needs capacity > 0, got \(capacity)")
        self.capacity = capacity
        let reserved = min(capacity, 4_096)
        slotByKey.reserveCapacity(reserved)
        keys.reserveCapacity(reserved)
        values.reserveCapacity(reserved)
    }

    var count: Int { keys.count }

    func slot(of key: Key) -> Int? { slotByKey[key] }

    mutating func beginJournal() { journal = [] }

    mutating func endJournal() { journal = nil }

    /// To be called before `values[slot]` is changed in place.
    mutating func willChange(_ slot: Int) {
        journal?.append(.value(slot: slot, before: values[slot]))
    }

    /// Undoes every change since ``beginJournal()``, newest first, and stops recording.
    mutating func rollBack() {
        guard let changes = journal else { return }
        journal = nil
        for change in changes.reversed() {
            switch change {
            case let .value(slot, before):
                values[slot] = before
            case let .appended(slot):
                precondition(slot == keys.count - 1, "fraud key table journal out of step with its slots")
                slotByKey[keys.removeLast()] = nil
                values.removeLast()
            case let .replaced(slot, key, value, victim):
                slotByKey[keys[slot]] = nil
                keys[slot] = key
                values[slot] = value
                slotByKey[key] = slot
                nextVictim = victim
            }
        }
    }

    /// Adds a key that is not present, evicting the oldest-inserted key when full.
    mutating func insert(_ key: Key, _ value: Value) -> (slot: Int, evicted: Bool) {
        assert(slotByKey[key] == nil, "key inserted twice into a fraud key table")
        if keys.count < capacity {
            keys.append(key)
            values.append(value)
            slotByKey[key] = keys.count - 1
            journal?.append(.appended(slot: keys.count - 1))
            return (keys.count - 1, false)
        }
        let slot = nextVictim
        journal?.append(.replaced(slot: slot, key: keys[slot], value: values[slot], nextVictim: nextVictim))
        nextVictim = nextVictim + 1 == capacity ? 0 : nextVictim + 1
        let removed = slotByKey.removeValue(forKey: keys[slot])
        precondition(removed == slot, "fraud key table index out of step with its slots")
        keys[slot] = key
        values[slot] = value
        slotByKey[key] = slot
        return (slot, true)
    }
}

/// The most recent attempt times of one key. The newest is kept inline and
/// the older ones, oldest first, in an array that grows only as the key is
/// used: most keys make one attempt, and their windows allocate nothing.
/// (Preallocated rings of limit + 1 times were most of the memory of a
/// million-payment simulation.)
struct TimestampWindow {
    private var newest: Int64 = 0
    private var hasNewest = false
    /// Oldest first; every time here is at most `newest`.
    private var older: [Int64] = []

    var count: Int { hasNewest ? older.count + 1 : 0 }

    /// Drops times at or before `cutoff`, records `now` (dropping the oldest
    /// beyond `capacity`) and returns how many times the window holds.
    /// - Precondition: `now` is at least every time recorded before; `capacity` ≥ 1.
    /// - Complexity: O(capacity).
    mutating func record(_ now: Int64, cutoff: Int64, capacity: Int) -> Int {
        if hasNewest {
            if newest <= cutoff {
                older = []
            } else {
                var expired = 0
                while expired < older.count && older[expired] <= cutoff { expired += 1 }
                if expired > 0 { older.removeFirst(expired) }
                older.append(newest)
                if older.count >= capacity { older.removeFirst(older.count - capacity + 1) }
            }
        }
        newest = now
        hasNewest = true
        return older.count + 1
    }
}

/// The most recently seen distinct cards of one user (by ``FraudDetector/cardKey(_:)``),
/// the most recent inline. Keeping only the `capacity` most recent is exact
/// up to that count: a dropped card was seen before every kept one, so it
/// would expire first.
struct DistinctCardWindow {
    private var newestCard: UInt64 = 0
    private var newestSeen: Int64 = 0
    private var hasNewest = false
    /// Least recent first, none of them `newestCard`, each seen at most at `newestSeen`.
    private var older: [(card: UInt64, lastSeen: Int64)] = []

    /// - Returns: distinct cards seen in the window, `card` included, at most `capacity`.
    /// - Precondition: `now` is at least every time recorded before; `capacity` ≥ 1.
    /// - Complexity: O(capacity).
    mutating func record(_ card: UInt64, _ now: Int64, cutoff: Int64, capacity: Int) -> Int {
        if hasNewest {
            if newestSeen <= cutoff {
                older = []
            } else {
                var expired = 0
                while expired < older.count && older[expired].lastSeen <= cutoff { expired += 1 }
                if expired > 0 { older.removeFirst(expired) }
                if newestCard != card {
                    if let index = older.firstIndex(where: { $0.card == card }) { older.remove(at: index) }
                    older.append((newestCard, newestSeen))
                    if older.count >= capacity { older.removeFirst(older.count - capacity + 1) }
                }
            }
        }
        newestCard = card
        newestSeen = now
        hasNewest = true
        return older.count + 1
    }
}

struct UserActivity {
    var attempts = TimestampWindow()
    var cards = DistinctCardWindow()
}

struct HistoryKey: Hashable {
    var userID: String
    var currency: String
}

/// Welford's running mean and sum of squared deviations: O(1) memory and
/// numerically stable. Statistics, not money, so `Double` is fine here.
struct AmountHistory {
    private(set) var count = 0
    private(set) var mean = 0.0
    private var sumSquares = 0.0

    mutating func add(_ minorUnits: Int64) {
        let x = Double(minorUnits)
        count += 1
        let delta = x - mean
        mean += delta / Double(count)
        sumSquares += delta * (x - mean)
    }

    /// Sample standard deviation; zero below two amounts.
    var standardDeviation: Double { count < 2 ? 0 : (sumSquares / Double(count - 1)).squareRoot() }

    /// How many deviations `minorUnits` lies from the mean, the deviation
    /// taken as at least `minimumSpread` times the mean. `nil` with fewer
    /// than `minimumCount` amounts, or with no spread even after the floor.
    func zScore(of minorUnits: Int64, minimumCount: Int, minimumSpread: Double) -> Double? {
        let sd = max(standardDeviation, minimumSpread * mean)
        guard count >= minimumCount && sd > 0 else { return nil }
        return (Double(minorUnits) - mean) / sd
    }
}
