/// Thresholds and blocklists for ``FraudDetector``.
///
/// Every count limit is "most allowed": an attempt is flagged when the count
/// *including it* is above the limit, so with a limit of 5 the fifth attempt
/// in a window passes and the sixth is flagged. Each velocity rule has a
/// review limit and a higher (or equal) decline limit. Amount limits are
/// per ISO 4217 code in that currency's minor units and are never converted:
/// a currency without an entry has no amount limit. All bounds are checked
/// by ``validate()``; ``FraudDetector/init(rules:)`` refuses rules that fail it.
public struct FraudRules: Sendable, Equatable {
    /// Length of the sliding window for attempts per user, nanoseconds.
    public var userVelocityWindowNanoseconds: Int64
    /// Most attempts per user in the window before review.
    public var userVelocityReviewLimit: Int
    /// Most attempts per user in the window before decline.
    public var userVelocityDeclineLimit: Int

    /// Length of the sliding window for attempts per card token, nanoseconds.
    public var cardVelocityWindowNanoseconds: Int64
    /// Most attempts per card in the window before review.
    public var cardVelocityReviewLimit: Int
    /// Most attempts per card in the window before decline.
    public var cardVelocityDeclineLimit: Int

    /// Length of the sliding window for distinct cards per user (card testing), nanoseconds.
    public var distinctCardsWindowNanoseconds: Int64
    /// Most distinct cards one user may try in the window before review.
    public var distinctCardsPerUserReviewLimit: Int
    /// Most distinct cards one user may try in the window before decline.
    public var distinctCardsPerUserDeclineLimit: Int

    /// Review amounts above this, per currency code, in minor units.
    public var reviewAmountMinorByCurrency: [String: Int64]
    /// Decline amounts above this, per currency code, in minor units.
    public var declineAmountMinorByCurrency: [String: Int64]

    /// Review when the amount is more than this many standard deviations
    /// above the user's mean completed amount in that currency.
    public var deviationZScoreThreshold: Double
    /// Completed payments needed in a user+currency history before the
    /// deviation rule applies (at least 2, for a sample deviation).
    public var deviationMinimumHistory: Int
    /// The least standard deviation the deviation rule uses, as a fraction
    /// of the user's mean: a user whose amounts never vary (zero spread)
    /// is still held to the rule, and a spread of a few cents does not make
    /// the next cent unusual. At the default 0.1 and 4σ, a user who always
    /// pays 10.00 is reviewed above 14.00. Zero turns the floor off (a
    /// history without spread then never flags).
    public var deviationMinimumSpread: Double

    public var blockedUserIDs: Set<String>
    public var blockedCardTokens: Set<String>
    /// Six-digit bank identification numbers.
    public var blockedBINs: Set<String>

    /// Most keys each table of the detector tracks: users, cards, and
    /// user+currency amount histories each hold at most this many, and the
    /// oldest-inserted key is dropped (and counted) to make room.
    public var maxTrackedKeys: Int

    public init(
        userVelocityWindowNanoseconds: Int64 = 3_600 * FraudRules.nanosecondsPerSecond,
        userVelocityReviewLimit: Int = 10,
        userVelocityDeclineLimit: Int = 20,
        cardVelocityWindowNanoseconds: Int64 = 3_600 * FraudRules.nanosecondsPerSecond,
        cardVelocityReviewLimit: Int = 5,
        cardVelocityDeclineLimit: Int = 10,
        distinctCardsWindowNanoseconds: Int64 = 86_400 * FraudRules.nanosecondsPerSecond,
        distinctCardsPerUserReviewLimit: Int = 3,
        distinctCardsPerUserDeclineLimit: Int = 5,
        reviewAmountMinorByCurrency: [String: Int64] = ["USD": 500_000, "EUR": 500_000, "GBP": 400_000, "JPY": 700_000],
        declineAmountMinorByCurrency: [String: Int64] = ["USD": 2_500_000, "EUR": 2_500_000, "GBP": 2_000_000, "JPY": 3_500_000],
        deviationZScoreThreshold: Double = 4.0,
        deviationMinimumHistory: Int = 10,
        deviationMinimumSpread: Double = 0.1,
        blockedUserIDs: Set<String> = [],
        blockedCardTokens: Set<String> = [],
        blockedBINs: Set<String> = [],
        maxTrackedKeys: Int = 1_000_000
    ) {
        self.userVelocityWindowNanoseconds = userVelocityWindowNanoseconds
        self.userVelocityReviewLimit = userVelocityReviewLimit
        self.userVelocityDeclineLimit = userVelocityDeclineLimit
        self.cardVelocityWindowNanoseconds = cardVelocityWindowNanoseconds
        self.cardVelocityReviewLimit = cardVelocityReviewLimit
        self.cardVelocityDeclineLimit = cardVelocityDeclineLimit
        self.distinctCardsWindowNanoseconds = distinctCardsWindowNanoseconds
        self.distinctCardsPerUserReviewLimit = distinctCardsPerUserReviewLimit
        self.distinctCardsPerUserDeclineLimit = distinctCardsPerUserDeclineLimit
        self.reviewAmountMinorByCurrency = reviewAmountMinorByCurrency
        self.declineAmountMinorByCurrency = declineAmountMinorByCurrency
        self.deviationZScoreThreshold = deviationZScoreThreshold
        self.deviationMinimumHistory = deviationMinimumHistory
        self.deviationMinimumSpread = deviationMinimumSpread
        self.blockedUserIDs = blockedUserIDs
        self.blockedCardTokens = blockedCardTokens
        self.blockedBINs = blockedBINs
        self.maxTrackedKeys = maxTrackedKeys
    }

    /// Defaults for a card-present-and-online mix: 10/20 attempts per user and
    /// 5/10 per card an hour, 3/5 distinct cards per user a day, 5,000/25,000
    /// USD or EUR, a 4σ deviation (σ at least a tenth of the mean) after 10
    /// payments, a million keys per table.
    public static let standard = FraudRules()

    public static let nanosecondsPerSecond: Int64 = 1_000_000_000
    /// Windows are between one second and this (a year) long.
    public static let maximumWindowNanoseconds: Int64 = 366 * 86_400 * nanosecondsPerSecond
    /// Per-key memory is limit + 1 timestamps, so limits stay small.
    public static let maximumCountLimit = 10_000
    public static let maximumTrackedKeys = 100_000_000

    /// Checks every field; the error names the first field that is wrong,
    /// in declaration order (dictionary and set entries in sorted order).
    /// - Complexity: O(c log c + b log b) for c currency entries and b blocked BINs.
    public func validate() throws(FraudRulesError) {
        let second = Self.nanosecondsPerSecond
        let limit = Int64(Self.maximumCountLimit)
        try Self.check("userVelocityWindowNanoseconds", userVelocityWindowNanoseconds, second, Self.maximumWindowNanoseconds)
        try Self.check("userVelocityReviewLimit", Int64(userVelocityReviewLimit), 1, limit)
        try Self.check("userVelocityDeclineLimit", Int64(userVelocityDeclineLimit), 1, limit)
        try Self.ordered("userVelocityReviewLimit", Int64(userVelocityReviewLimit), Int64(userVelocityDeclineLimit))
        try Self.check("cardVelocityWindowNanoseconds", cardVelocityWindowNanoseconds, second, Self.maximumWindowNanoseconds)
        try Self.check("cardVelocityReviewLimit", Int64(cardVelocityReviewLimit), 1, limit)
        try Self.check("cardVelocityDeclineLimit", Int64(cardVelocityDeclineLimit), 1, limit)
        try Self.ordered("cardVelocityReviewLimit", Int64(cardVelocityReviewLimit), Int64(cardVelocityDeclineLimit))
        try Self.check("distinctCardsWindowNanoseconds", distinctCardsWindowNanoseconds, second, Self.maximumWindowNanoseconds)
        try Self.check("distinctCardsPerUserReviewLimit", Int64(distinctCardsPerUserReviewLimit), 1, limit)
        try Self.check("distinctCardsPerUserDeclineLimit", Int64(distinctCardsPerUserDeclineLimit), 1, limit)
        try Self.ordered("distinctCardsPerUserReviewLimit", Int64(distinctCardsPerUserReviewLimit), Int64(distinctCardsPerUserDeclineLimit))
        try Self.checkAmounts("reviewAmountMinorByCurrency", reviewAmountMinorByCurrency)
        try Self.checkAmounts("declineAmountMinorByCurrency", declineAmountMinorByCurrency)
        for code in reviewAmountMinorByCurrency.keys.sorted() {
            guard let review = reviewAmountMinorByCurrency[code], let decline = declineAmountMinorByCurrency[code] else { continue }
            try Self.ordered("reviewAmountMinorByCurrency[\(code)]", review, decline)
        }
        guard deviationZScoreThreshold.isFinite && deviationZScoreThreshold > 0 else {
            throw .thresholdNotPositive(field: "deviationZScoreThreshold", value: deviationZScoreThreshold)
        }
        try Self.check("deviationMinimumHistory", Int64(deviationMinimumHistory), 2, 1_000_000)
        guard deviationMinimumSpread.isFinite && deviationMinimumSpread >= 0 && deviationMinimumSpread <= 10 else {
            throw .spreadOutOfRange(field: "deviationMinimumSpread", value: deviationMinimumSpread)
        }
        for bin in blockedBINs.sorted() {
            let utf8 = bin.utf8
            guard utf8.count == 6 && utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                throw .malformedBIN(field: "blockedBINs", bin: bin)
            }
        }
        try Self.check("maxTrackedKeys", Int64(maxTrackedKeys), 1, Int64(Self.maximumTrackedKeys))
    }

    private static func check(_ field: String, _ value: Int64, _ minimum: Int64, _ maximum: Int64) throws(FraudRulesError) {
        guard value >= minimum && value <= maximum else {
            throw .outOfRange(field: field, value: value, minimum: minimum, maximum: maximum)
        }
    }

    private static func ordered(_ reviewField: String, _ review: Int64, _ decline: Int64) throws(FraudRulesError) {
        guard review <= decline else { throw .reviewAboveDecline(field: reviewField, review: review, decline: decline) }
    }

    private static func checkAmounts(_ field: String, _ limits: [String: Int64]) throws(FraudRulesError) {
        for code in limits.keys.sorted() {
            guard let currency = Currency(code: code) else { throw .unknownCurrency(field: field, code: code) }
            let minor = limits[code]!
            guard minor > 0 && minor <= Money.maximumMajorUnits * currency.minorUnitsPerMajor else {
                throw .amountOutOfRange(field: field, code: code, minorUnits: minor)
            }
        }
    }
}

/// Why ``FraudRules/validate()`` refused a configuration; every case names the field.
public enum FraudRulesError: Error, Equatable, CustomStringConvertible {
    case outOfRange(field: String, value: Int64, minimum: Int64, maximum: Int64)
    /// A review limit above its decline limit; `field` names the review limit.
    case reviewAboveDecline(field: String, review: Int64, decline: Int64)
    case unknownCurrency(field: String, code: String)
    case amountOutOfRange(field: String, code: String, minorUnits: Int64)
    case thresholdNotPositive(field: String, value: Double)
    case malformedBIN(field: String, bin: String)
    case spreadOutOfRange(field: String, value: Double)

    /// The configuration field at fault.
    public var field: String {
        switch self {
        case let .outOfRange(field, _, _, _), let .reviewAboveDecline(field, _, _), let .unknownCurrency(field, _),
             let .amountOutOfRange(field, _, _), let .thresholdNotPositive(field, _), let .malformedBIN(field, _),
             let .spreadOutOfRange(field, _):
            return field
        }
    }

    public var description: String {
        switch self {
        case let .outOfRange(field, value, minimum, maximum):
            return "fraud rule \(field) is \(value); expected \(minimum)...\(maximum)"
        case let .reviewAboveDecline(field, review, decline):
            return "fraud rule \(field) is \(review), above its decline limit \(decline); review must come first"
        case let .unknownCurrency(field, code):
            return "fraud rule \(field) has currency \"\(code)\", which is not a supported ISO 4217 code"
        case let .amountOutOfRange(field, code, minorUnits):
            return "fraud rule \(field)[\(code)] is \(minorUnits) minor units; expected > 0 and at most \(Money.maximumMajorUnits) \(code)"
        case let .thresholdNotPositive(field, value):
            return "fraud rule \(field) is \(value); expected a finite number > 0"
        case let .malformedBIN(field, bin):
            return "fraud rule \(field) holds \"\(bin)\"; a BIN is exactly six digits"
        case let .spreadOutOfRange(field, value):
            return "fraud rule \(field) is \(value); expected a fraction of the mean from 0 (no floor) to 10"
        }
    }
}
