import PaystormEngine
import PaystormKernel
import PaystormStatistics

/// The open-loop client population: arrivals from the load profile
/// (Poisson, thinned for non-constant rates), merchants with Zipf skew,
/// users uniform, a share of refunds of earlier payments, fraudsters who
/// test stolen cards in bursts or try odd amounts, client timeouts and
/// retries that reuse the idempotency key, and a rare client bug that reuses
/// a key with a different body.
final class ClientPopulation: SimActor {
    typealias Message = WorldMessage

    struct Pending {
        var body: APIRequest.Body
        var intendedNanoseconds: Int64
        var attempt: Int32
        var fraudulent: Bool
        /// This request reuses another's key with a different body: only a refusal is right.
        var conflicting: Bool
    }

    struct RecentPayment {
        var paymentID: String
        var merchantID: String
        var amountMinor: Int64
        var currency: Currency
        var createdNanoseconds: Int64
        var key: String
    }

    unowned let world: World
    let model: ClientModel
    let load: LoadProfile
    let merchants: ZipfDistribution
    let fraudulentUsers: Int
    private(set) var paymentsStarted = 0
    private var nextRequestID: Int64 = 0
    private var pending: [Int64: Pending] = [:]
    /// Answered payment requests by request id (bounded), to check replays.
    private var answeredPayments: [Int64: String] = [:]
    private var answeredOrder: [Int64] = []
    private var answeredHead = 0
    private var recent: [RecentPayment] = []
    private var recentHead = 0
    static let recentCapacity = 100_000
    static let answeredCapacity = 100_000
    /// Currencies in the mix, with their weights.
    static let currencies: [(Currency, Double)] = [(.usd, 0.70), (.eur, 0.20), (Currency(code: "GBP")!, 0.07), (.jpy, 0.03)]
    let currencyChoice: DiscreteDistribution
    var arrivalsDone = false
    /// When the last payment was started.
    var arrivalsEndedAt: SimInstant?

    init(world: World) throws {
        self.world = world
        model = world.configuration.clients
        load = world.configuration.load
        merchants = try ZipfDistribution(n: model.merchants, exponent: model.zipfExponent)
        fraudulentUsers = Int(Double(model.users) * model.fraudulentUserShare)
        currencyChoice = try DiscreteDistribution(weights: Self.currencies.map(\.1))
    }

    var outstanding: Int { pending.count }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        switch message {
        case .arrival: arrival(kernel)
        case let .burstNext(user, remaining): burst(user: Int(user), remaining: Int(remaining), kernel)
        case let .apiReply(id, attempt, reply): replied(id, attempt: attempt, reply, kernel)
        case let .clientTimeout(id, attempt): timedOut(id, attempt: attempt, kernel)
        case let .clientRetry(id): retry(id, kernel)
        default: break
        }
    }

    // MARK: - Arrivals

    private func arrival(_ kernel: SimulationKernel<WorldMessage>) {
        let random = kernel.random
        let seconds = kernel.now.seconds
        // Thinning: candidates at the peak rate, each kept with rate(t)/peak.
        // A fraud burst may have started the last payment since this
        // arrival was scheduled: then it starts nothing.
        if paymentsStarted < world.configuration.payments, random.uniform() * load.peakRate <= load.rate(at: seconds) {
            if random.bernoulli(model.refundShare), let target = refundTarget(random, now: kernel.now.nanoseconds) {
                startRefund(of: target, random, kernel)
            } else {
                let user = random.uniformInt(below: model.users)
                if user < fraudulentUsers {
                    burst(user: user, remaining: 3 + random.uniformInt(below: 12), kernel)
                } else {
                    startPayment(user: user, fraudulent: false, random, kernel)
                }
            }
        }
        guard paymentsStarted < world.configuration.payments else {
            arrivalsDone = true
            arrivalsEndedAt = kernel.now
            world.metrics.answeredDuringLoad = world.metrics.answered
            return
        }
        kernel.setTimer(after: SimDuration(seconds: random.exponential(mean: 1 / load.peakRate)), .arrival)
    }

    /// A fraudster: card testing (a new card each time, small amounts, quick
    /// succession) or now and then one large, odd amount.
    private func burst(user: Int, remaining: Int, _ kernel: SimulationKernel<WorldMessage>) {
        guard paymentsStarted < world.configuration.payments else { return }
        startPayment(user: user, fraudulent: true, kernel.random, kernel)
        if remaining > 1 {
            kernel.setTimer(after: SimDuration(seconds: kernel.random.exponential(mean: 0.5)),
                            .burstNext(user: Int32(user), remaining: Int32(remaining - 1)))
        }
    }

    private func startPayment(user: Int, fraudulent: Bool, _ random: RandomStream, _ kernel: SimulationKernel<WorldMessage>) {
        paymentsStarted += 1
        let id = nextRequestID
        nextRequestID += 1
        let merchant = merchants.sample(random)
        let currency = Self.currencies[currencyChoice.sample(random)].0
        var majorAmount: Double
        var cardIndex = user
        if fraudulent {
            cardIndex = model.users + Int(random.uniformInt(below: 1 << 30))
            majorAmount = random.bernoulli(0.8) ? 1 + random.uniform() : 30_000 + random.uniform() * 20_000
        } else {
            majorAmount = min(20_000, random.lognormal(median: 40, sigma: 1.0))
        }
        if currency.exponent == 0 { majorAmount *= 150 }
        var key = "k-\(id)"
        var conflicting = false
        if !fraudulent, random.bernoulli(model.reusedKeyConflictShare),
           let old = reusableKey(random, merchantID: "m-\(merchant)", now: kernel.now.nanoseconds) {
            key = old
            conflicting = true
            majorAmount += 1
        }
        let command = CreatePaymentCommand(
            userID: "u-\(user)", merchantID: "m-\(merchant)", amount: Self.format(majorAmount, currency),
            currency: currency.code, card: CardInput(number: Self.cardNumber(cardIndex), expiry: "12/30", cvv: "123"),
            idempotencyKey: key)
        start(id, Pending(body: .pay(command), intendedNanoseconds: kernel.now.nanoseconds, attempt: 0,
                          fraudulent: fraudulent, conflicting: conflicting), kernel)
    }

    private func startRefund(of target: RecentPayment, _ random: RandomStream, _ kernel: SimulationKernel<WorldMessage>) {
        let id = nextRequestID
        nextRequestID += 1
        world.metrics.refundsRequested += 1
        let minor = random.bernoulli(0.5) ? target.amountMinor : max(1, Int64(Double(target.amountMinor) * random.uniform()))
        let command = CreateRefundCommand(merchantID: target.merchantID, paymentID: target.paymentID,
                                          amount: Money(minorUnits: minor, currency: target.currency).decimalString,
                                          idempotencyKey: "r-\(id)")
        start(id, Pending(body: .refund(command), intendedNanoseconds: kernel.now.nanoseconds, attempt: 0,
                          fraudulent: false, conflicting: false), kernel)
    }

    private func start(_ id: Int64, _ request: Pending, _ kernel: SimulationKernel<WorldMessage>) {
        pending[id] = request
        world.metrics.offered(at: kernel.now.nanoseconds)
        send(id, request, kernel)
    }

    private func send(_ id: Int64, _ request: Pending, _ kernel: SimulationKernel<WorldMessage>) {
        let valid = !kernel.random.bernoulli(world.configuration.gateway.badAPIKeyShare)
        world.network.send(.apiRequest(APIRequest(requestID: id, attempt: request.attempt, client: kernel.currentActor,
                                                  apiKeyValid: valid, body: request.body)),
                           to: world.gateway, kernel: kernel)
        kernel.setTimer(after: SimDuration(seconds: model.timeoutSeconds), .clientTimeout(requestID: id, attempt: request.attempt))
    }

    // MARK: - Answers

    private func replied(_ id: Int64, attempt: Int32, _ reply: APIReply, _ kernel: SimulationKernel<WorldMessage>) {
        guard let request = pending[id] else {
            // A late or duplicated answer: a payment must name the same payment as before.
            if case let .payment(paymentID, _, _, _) = reply, let first = answeredPayments[id], first != paymentID {
                world.checker.replayMismatch(key: "k-\(id)", first: first, later: paymentID)
            }
            return
        }
        switch reply {
        case let .payment(paymentID, status, _, failure):
            if request.conflicting {
                world.checker.keyReuseAccepted(key: request.key, paymentID: paymentID)
            }
            remember(id, paymentID: paymentID)
            if case let .pay(command) = request.body, !request.conflicting {
                scoreFraud(actual: request.fraudulent, declined: status == .failed && (failure?.hasPrefix("declined by fraud screening") ?? false))
                if status != .failed, let currency = Currency(code: command.currency),
                   let amount = try? Money.parse(command.amount, currency: currency) {
                    rememberRecent(RecentPayment(paymentID: paymentID, merchantID: command.merchantID, amountMinor: amount.minorUnits,
                                                 currency: currency, createdNanoseconds: kernel.now.nanoseconds, key: command.idempotencyKey))
                }
            }
            finish(id, request, ok: true, throttled: false, kernel)
        case .refund:
            world.metrics.refundsAccepted += 1
            finish(id, request, ok: true, throttled: false, kernel)
        case let .error(status, _):
            if status == 429 || status >= 500 {
                // Only the attempt in flight is retried: a second copy of a
                // reply (the network duplicates) or one to an attempt already
                // retried would schedule a retry no timer then sends, and the
                // request would wait out its whole timeout.
                guard attempt == request.attempt else { return }
                if status == 429 { world.metrics.throttledReplies += 1 }
                if request.attempt < model.maxRetries {
                    // Back off, then retry under the same key.
                    pending[id]!.attempt = -request.attempt - 1  // waiting: no attempt in flight
                    let delay = status == 429 ? 1.0 : 0.2 * Double(1 << min(Int(request.attempt), 6))
                    kernel.setTimer(after: SimDuration(seconds: delay * (0.5 + kernel.random.uniform())), .clientRetry(requestID: id))
                } else {
                    if status >= 500 { world.metrics.serverErrors += 1 }
                    finish(id, request, ok: false, throttled: status == 429, kernel)
                }
            } else {
                world.metrics.clientErrors += 1
                finish(id, request, ok: true, throttled: false, kernel)
            }
        }
    }

    private func timedOut(_ id: Int64, attempt: Int32, _ kernel: SimulationKernel<WorldMessage>) {
        guard let request = pending[id], request.attempt == attempt else { return }
        if attempt < model.maxRetries {
            pending[id]!.attempt = attempt + 1
            world.metrics.retries += 1
            send(id, pending[id]!, kernel)
        } else {
            world.metrics.timedOut += 1
            finish(id, request, ok: false, throttled: false, kernel)
        }
    }

    private func retry(_ id: Int64, _ kernel: SimulationKernel<WorldMessage>) {
        guard var request = pending[id], request.attempt < 0 else { return }
        request.attempt = -request.attempt
        pending[id] = request
        world.metrics.retries += 1
        send(id, request, kernel)
    }

    private func finish(_ id: Int64, _ request: Pending, ok: Bool, throttled: Bool, _ kernel: SimulationKernel<WorldMessage>) {
        pending[id] = nil
        world.metrics.finished(at: kernel.now.nanoseconds, latencySeconds: Double(kernel.now.nanoseconds - request.intendedNanoseconds) / 1e9,
                               answered: ok, throttled: throttled)
    }

    private func scoreFraud(actual: Bool, declined: Bool) {
        switch (actual, declined) {
        case (true, true): world.metrics.fraud.truePositives += 1
        case (false, true): world.metrics.fraud.falsePositives += 1
        case (true, false): world.metrics.fraud.falseNegatives += 1
        case (false, false): world.metrics.fraud.trueNegatives += 1
        }
    }

    // MARK: - Memory of earlier payments (bounded rings)

    private func remember(_ id: Int64, paymentID: String) {
        if answeredOrder.count < Self.answeredCapacity {
            answeredOrder.append(id)
        } else {
            answeredPayments[answeredOrder[answeredHead]] = nil
            answeredOrder[answeredHead] = id
            answeredHead = (answeredHead + 1) % Self.answeredCapacity
        }
        answeredPayments[id] = paymentID
    }

    private func rememberRecent(_ payment: RecentPayment) {
        if recent.count < Self.recentCapacity {
            recent.append(payment)
        } else {
            recent[recentHead] = payment
            recentHead = (recentHead + 1) % Self.recentCapacity
        }
    }

    /// A payment made at least 5 s ago (most are completed by then; the
    /// engine refuses a refund of one that is not, with a 409).
    private func refundTarget(_ random: RandomStream, now: Int64) -> RecentPayment? {
        guard !recent.isEmpty else { return nil }
        let candidate = recent[random.uniformInt(below: recent.count)]
        return now - candidate.createdNanoseconds >= 5_000_000_000 ? candidate : nil
    }

    /// A key answered at least 20 s ago for the same merchant (so the
    /// original is surely recorded, whatever the retries), to reuse with a
    /// different body.
    private func reusableKey(_ random: RandomStream, merchantID: String, now: Int64) -> String? {
        guard !recent.isEmpty else { return nil }
        let candidate = recent[random.uniformInt(below: recent.count)]
        guard candidate.merchantID == merchantID, now - candidate.createdNanoseconds >= 20_000_000_000 else { return nil }
        return candidate.key
    }

    // MARK: - Formatting

    /// `amount` in the currency's major unit, rounded to its exponent, as the API takes it.
    static func format(_ amount: Double, _ currency: Currency) -> String {
        var scale = 1.0
        for _ in 0..<currency.exponent { scale *= 10 }
        let minor = max(1, Int64((amount * scale).rounded()))
        return Money(minorUnits: minor, currency: currency).decimalString
    }

    /// A Luhn-valid 16-digit card number for `index`.
    static func cardNumber(_ index: Int) -> String {
        var digits = [UInt8](repeating: 0, count: 16)
        digits[0] = 4
        var value = index
        for position in stride(from: 14, through: 1, by: -1) {
            digits[position] = UInt8(value % 10)
            value /= 10
        }
        var sum = 0
        for position in 0..<15 {
            var digit = Int(digits[14 - position])
            if position % 2 == 0 {
                digit *= 2
                if digit > 9 { digit -= 9 }
            }
            sum += digit
        }
        digits[15] = UInt8((10 - sum % 10) % 10)
        return String(decoding: digits.map { $0 + 48 }, as: UTF8.self)
    }
}

extension ClientPopulation.Pending {
    var key: String {
        switch body {
        case let .pay(command): return command.idempotencyKey
        case let .refund(command): return command.idempotencyKey
        }
    }
}
