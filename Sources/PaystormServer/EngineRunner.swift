import DequeModule
import Foundation
import HeapModule
import PaystormEngine
import PaystormStore

/// Engine time on the server: the wall clock, Unix-epoch nanoseconds. (The
/// simulator supplies virtual time instead; the engine reads no clock.)
public enum WallClock {
    public static func nanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    /// For timers and latency: never jumps with the wall clock.
    public static func monotonic() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}

/// The server host of the engine: one thread owns the engine and its SQLite
/// connection and performs its effects for real.
///
/// **Group commit.** Requests from the HTTP handlers, PSP replies, timers
/// and notification results queue in an inbox; the thread takes everything
/// queued (up to ``maximumBatch``) and runs it in one SQLite transaction
/// (``PaymentEngine/inBatch(_:)``, each call still all-or-nothing: a
/// refused call writes nothing, and storage failing half-way through one
/// rolls back the batch). Answers and effects are released only after the commit, so
/// an acknowledged payment is on disk, and the cost of a durable commit is
/// shared by every request that arrived while the last one ran.
///
/// **Effects.** PSP calls go to the ``PSPPort``, notifications to the
/// ``NotificationPort``; their answers come back through the inbox. Timers
/// are kept in a heap on wall time and fire as inbox jobs. The outbox relay
/// and the ledger, wallet and notification consumers run on the same thread
/// between batches, through the ``EventBroker``.
public final class EngineRunner: @unchecked Sendable {
    /// What an HTTP handler asks of the engine.
    public enum Call: Sendable {
        case createPayment(CreatePaymentCommand)
        case createRefund(CreateRefundCommand)
        case payment(id: String, merchantID: String?)
        case refund(id: String)
        case ledger(LedgerQuery)
        case webhook(pspID: String, body: String, signature: String, timestampSeconds: Int64)
        /// With the mark to keep for the PSP (see ``PaymentEngine/reconcile(_:references:now:mark:)``).
        case reconcile(SettlementReport, mark: Int64? = nil)
        case status
    }

    public enum Answer: Sendable {
        case payment(PaymentView)
        case refund(RefundView)
        case ledger(LedgerPage)
        case webhook(WebhookOutcome)
        case reconciliation(ReconciliationResult)
        case status(Status)
    }

    /// What `GET /health` shows of the engine thread. The backlog, lag and
    /// dead-letter counts are read from storage by the `.status` call on the
    /// engine thread; ``EngineRunner/currentStatus`` leaves them 0.
    public struct Status: Sendable, Codable, Equatable {
        public var batches: Int
        public var calls: Int
        public var largestBatch: Int
        public var timersArmed: Int
        public var pspCallsInFlight: Int
        public var notificationsInFlight: Int
        /// PSP calls and notifications waiting for a free connection.
        public var outboundQueued: Int
        /// PSP calls dropped unsent after waiting past the engine's PSP timeout.
        public var pspCallsDropped: Int
        /// New payments and refunds refused unseen (503) while PSP calls
        /// waited longer than ``EngineRunner/sheddingWait`` for a connection.
        public var requestsShed: Int
        public var outboxRelayed: Int64
        /// Events in the outbox not relayed yet; -1 when the store could not say.
        public var outboxBacklog: Int
        public var consumerLag: Int
        /// Dead letters parked in the broker now, as stored: one per consumer
        /// group that parked a message (a message all three refused counts
        /// 3), also those parked before a restart, until replayed (`serve
        /// --replay-dead-letters`); -1 when the broker could not say.
        public var deadLetters: Int
        /// Notifications that failed every attempt and were not replayed
        /// since, as stored; -1 when the store could not say.
        public var notificationDeadLetters: Int
        public var engineErrors: Int
    }

    public typealias Reply = @Sendable (Result<Answer, EngineError>) -> Void

    enum Job {
        case call(Call, Reply)
        case pspReply(attemptID: Int64, sentAt: Int64, PSPOutcome)
        case notification(id: Int64, success: Bool)
        case timer(EngineTimer)

        var isCall: Bool {
            if case .call = self { return true }
            return false
        }
    }

    struct ArmedTimer: Comparable {
        var deadline: Int64
        var sequence: Int64
        var timer: EngineTimer
        static func < (a: Self, b: Self) -> Bool { (a.deadline, a.sequence) < (b.deadline, b.sequence) }
        static func == (a: Self, b: Self) -> Bool { a.sequence == b.sequence }
    }

    /// Calls per SQLite transaction, at most.
    public var maximumBatch = 256
    /// PSP replies, timers and notification results per transaction while
    /// requests may be waiting.
    public var internalChunk = 64
    /// Events the relay and each consumer take per round, at most: a round
    /// holds up the requests that arrive meanwhile, so it is kept short, and
    /// a backlog is worked off over several rounds between requests.
    public var maximumEvents = 256
    /// PSP calls out at once, at most (the HTTP client's connections to the
    /// PSPs); the rest wait here, oldest first. A call that waited longer
    /// than the engine's PSP timeout is dropped unsent: the engine already
    /// treats it as ambiguous, and its status query will find that it never
    /// landed. Without this bound a slow PSP grows the HTTP client's own
    /// queue without limit.
    public var maximumOutbound = 1_024
    /// Notifications out at once, at most; the rest wait here, oldest first,
    /// and are never dropped (the engine retries a failed one, then
    /// dead-letters it). Apart from the PSP calls' bound: a slow merchant
    /// endpoint must not hold the connections that payments need, nor make
    /// the runner shed payments while the PSPs are healthy.
    public var maximumNotificationsOut = EngineRunner.defaultNotificationsOut
    /// The default of ``maximumNotificationsOut``: the size of the server's notification connection pool.
    public static let defaultNotificationsOut = 1_024
    /// Load shedding: while the oldest PSP call waiting for a connection has
    /// waited this long, new payments and refunds are refused at once
    /// (``EngineError/overloaded(_:)``, 503 with `Retry-After`) instead of
    /// queued. The PSPs are the bottleneck then: a call that waits past the
    /// engine's PSP timeout is dropped anyway, and every payment taken on
    /// meanwhile would only add status queries and timers to the backlog —
    /// the feedback that made an overloaded server answer fewer requests
    /// the more it was offered. `nil` turns shedding off. Default: half the
    /// engine's PSP timeout.
    public var sheddingWait: Duration?

    let engine: PaymentEngine
    let broker: any EventBroker
    let psp: any PSPPort
    let notifier: any NotificationPort
    let log: @Sendable (String) -> Void

    // Shared with other threads, under `condition`.
    private let condition = NSCondition()
    private var inbox: [Job] = []
    private var stopRequested = false
    private var stopped = false
    private var pspInFlight = 0
    private var notificationsInFlight = 0
    private var status = Status(batches: 0, calls: 0, largestBatch: 0, timersArmed: 0, pspCallsInFlight: 0,
                                notificationsInFlight: 0, outboundQueued: 0, pspCallsDropped: 0, requestsShed: 0, outboxRelayed: 0,
                                outboxBacklog: 0, consumerLag: 0, deadLetters: 0, notificationDeadLetters: 0, engineErrors: 0)
    /// Set by the engine thread while the oldest PSP call waiting for a
    /// connection has waited past ``sheddingWait``.
    private var shedding = false
    private var stopWaiters: [@Sendable () -> Void] = []

    // The engine thread's own.
    /// Engine time: the wall clock when the runner was made, advanced by the
    /// monotonic clock. Timers run on the monotonic clock; were engine time
    /// the wall clock itself, a step back of the wall clock (NTP) would make
    /// a PSP timeout fire "early" by engine time, be taken for a stale timer
    /// and dropped, and leave its attempt in flight until a restart. It
    /// drifts from the wall clock when the machine is suspended (the
    /// monotonic clock stops) or the wall clock is stepped: what must agree
    /// with other machines' clocks — a webhook's timestamp — is checked
    /// against the wall clock instead.
    private let clockAnchor: (wall: Int64, monotonic: Int64)
    /// The engine's own work (PSP replies, timers, notification results) of
    /// a batch that rolled back — storage failing under it — to run again
    /// after ``retryPause``: none of it happened, and nothing else would
    /// bring it back before a restart.
    private var retries = Deque<(due: Int64, job: Job)>()
    private let retryPause: Int64 = 1_000_000_000
    private var timers = Heap<ArmedTimer>()
    private var timerSequence: Int64 = 0
    /// The sequence of each PSP attempt's timer in `timers`, and those of
    /// the ones the engine since said were spent (``EngineEffect/cancelTimer(_:)``):
    /// they stay in the heap until due, then are dropped instead of run.
    private var attemptTimers: [EngineTimer: Int64] = [:]
    private var cancelledTimers: Set<Int64> = []
    private var relayCursor: Int64 = 0
    private var moreEvents = false
    private var outboundCalls = Deque<(request: PSPRequest, queuedAt: Int64)>()
    private var outboundNotifications = Deque<NotificationMessage>()
    /// Whether anything queued could be sent now. Under `condition`.
    private var canSend: Bool {
        (!outboundCalls.isEmpty && pspInFlight < maximumOutbound)
            || (!outboundNotifications.isEmpty && notificationsInFlight < maximumNotificationsOut)
    }
    private var droppedCalls = 0
    private var sheddingNow = false
    private var started = false

    /// What ``replayDeadLetters()`` did.
    public struct DeadLetterReplay: Sendable, Equatable {
        /// Dead-lettered notifications sent again, each from its first attempt.
        public var notifications = 0
        /// Parked events their consumer group took this time (applied, or
        /// found applied already), and so removed from its dead letters.
        public var events = 0
        /// Parked events their group refused again: still dead letters, each
        /// with this refusal as its reason.
        public var stillFailing: [BrokerDeadLetter] = []
    }

    /// Hands every dead letter back once, before ``start()``: the engine's
    /// dead-lettered notifications are sent again (see
    /// ``PaymentEngine/replayDeadLetters(limit:now:)``), and each event a
    /// consumer group parked in the broker goes to that group's consumer
    /// again — the operator's replay once the cause is fixed (`paystorm
    /// serve --replay-dead-letters`). Every group's events are applied in
    /// one engine transaction; a letter leaves the broker only after it
    /// committed, so a crash in between replays it again, which the
    /// consumers' idempotency absorbs. An event refused again stays, with
    /// the new reason.
    public func replayDeadLetters() throws(EngineError) -> DeadLetterReplay {
        precondition(!started, "dead letters are replayed before the runner starts")
        var replay = DeadLetterReplay()
        let now = engineNow()
        replay.notifications = try engine.replayDeadLetters(limit: .max, now: now)
        do {
            for consumer in EngineConsumer.allCases {
                let letters = try broker.deadLetters(group: consumer.rawValue, limit: .max)
                guard !letters.isEmpty else { continue }
                var taken: [BrokerDelivery] = []
                var refused: [BrokerDeadLetter] = []
                try engine.inBatch {
                    for letter in letters {
                        do {
                            try engine.consume(try TransactionEvent.decode(letter.delivery.payload), by: consumer, now: now)
                            taken.append(letter.delivery)
                        } catch {
                            refused.append(BrokerDeadLetter(group: letter.group, delivery: letter.delivery, reason: "\(error)"))
                        }
                    }
                }
                for delivery in taken { try broker.resolveDeadLetter(group: consumer.rawValue, delivery) }
                for letter in refused { try broker.deadLetter(group: letter.group, letter.delivery, reason: letter.reason) }
                replay.events += taken.count
                replay.stillFailing += refused
            }
        } catch let error as EngineError {
            throw error
        } catch {
            throw .storage("replaying the broker's dead letters: \(error)")
        }
        return replay
    }

    /// - Parameter clockAnchor: the wall and monotonic clocks read at one
    ///   instant, from which engine time runs (see ``clockAnchor``); `nil`
    ///   reads them now. A test sets an anchor off the wall clock to stand
    ///   for a clock that drifted.
    public init(engine: PaymentEngine, broker: any EventBroker, psp: any PSPPort, notifier: any NotificationPort,
                clockAnchor: (wall: Int64, monotonic: Int64)? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.clockAnchor = clockAnchor ?? (WallClock.nanoseconds(), WallClock.monotonic())
        self.engine = engine
        self.broker = broker
        self.psp = psp
        self.notifier = notifier
        self.log = log
        sheddingWait = .nanoseconds(engine.configuration.pspTimeoutNanoseconds / 2)
    }

    /// Engine time now (see ``clockAnchor``): Unix-epoch nanoseconds that never go back.
    func engineNow() -> Int64 {
        clockAnchor.wall + (WallClock.monotonic() - clockAnchor.monotonic)
    }

    /// How far engine time is ahead of the wall clock now; negative when
    /// behind (see ``clockAnchor``). A wall-clock time moved by it compares
    /// with the times the engine stamped (a reconciliation period with the
    /// attempts' creation times).
    public func engineTimeAheadOfWallNanoseconds() -> Int64 {
        engineNow() - WallClock.nanoseconds()
    }

    /// Starts the engine thread: it first recovers (re-arms every open PSP
    /// attempt and pending notification from SQLite) and arms the engine's
    /// periodic upkeep, then serves the inbox.
    public func start() throws(EngineError) {
        precondition(!started, "a runner starts once")
        started = true
        relayCursor = try engine.outboxCursor()
        try engine.recover(now: engineNow())
        engine.armMaintenance()
        perform(engine.takeEffects())
        let thread = Thread { [self] in loop() }
        thread.name = "paystorm-engine"
        thread.start()
    }

    /// Queues a call; `reply` runs on the engine thread after the commit.
    /// While the runner sheds load (see ``sheddingWait``) a new payment or
    /// refund is refused at once instead, on the caller's thread.
    public func submit(_ call: Call, reply: @escaping Reply) {
        condition.lock()
        if stopped {
            condition.unlock()
            reply(.failure(.overloaded("the engine has stopped")))
            return
        }
        condition.unlock()
        switch call {
        case .createPayment, .createRefund:
            condition.lock()
            if shedding {
                status.requestsShed += 1
                condition.unlock()
                reply(.failure(.overloaded("PSP calls are waiting for a connection longer than \(sheddingWait.map { "\($0)" } ?? "")")))
                return
            }
            condition.unlock()
        default:
            break
        }
        enqueue(.call(call, reply))
    }

    /// Queues a call and waits for its answer.
    public func perform(_ call: Call) async -> Result<Answer, EngineError> {
        await withCheckedContinuation { continuation in
            submit(call) { continuation.resume(returning: $0) }
        }
    }

    private func enqueue(_ job: Job) {
        condition.lock()
        inbox.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Stops taking new work and drains: the inbox, the PSP calls and
    /// notifications in flight (up to `grace`), the relay and the consumers.
    /// Returns once the engine thread has stopped.
    public func stop(grace: Duration = .seconds(10)) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if stopped {
                condition.unlock()
                continuation.resume()
                return
            }
            stopRequested = true
            let (seconds, attoseconds) = grace.components
            drainDeadline = WallClock.monotonic() + max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
            stopWaiters.append { continuation.resume() }
            condition.signal()
            condition.unlock()
        }
    }

    private var drainDeadline: Int64 = .max

    public var currentStatus: Status {
        condition.lock()
        defer { condition.unlock() }
        var status = self.status
        status.pspCallsInFlight = pspInFlight
        status.notificationsInFlight = notificationsInFlight
        return status
    }

    // MARK: - The engine thread

    private func loop() {
        var jobs: [Job] = []
        while true {
            condition.lock()
            while inbox.isEmpty && !moreEvents && !canSend {
                if stopRequested && pspInFlight + notificationsInFlight == 0 { break }
                if stopRequested && WallClock.monotonic() >= drainDeadline { break }
                // Wake for the next timer or retry, the drain deadline, and at
                // least once a second for the relay (a failed round is retried
                // then). A drain runs no timers (recovery re-arms them), so
                // they do not wake it; nor does a timer the engine called spent.
                while let top = timers.min, cancelledTimers.remove(top.sequence) != nil { _ = timers.removeMin() }
                let work = stopRequested ? Int64.max : min(timers.min?.deadline ?? .max, retries.first?.due ?? .max)
                let wake = min(work, stopRequested ? drainDeadline : .max, WallClock.monotonic() + 1_000_000_000)
                let seconds = Double(wake - WallClock.monotonic()) / 1e9
                if seconds <= 0 { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
                if WallClock.monotonic() >= wake { break }
            }
            swap(&jobs, &inbox)
            let stopping = stopRequested
            condition.unlock()

            let now = WallClock.monotonic()
            while let due = timers.min, due.deadline <= now, !stopping {
                let armed = timers.removeMin()
                if cancelledTimers.remove(armed.sequence) != nil { continue }
                if attemptTimers[armed.timer] == armed.sequence { attemptTimers[armed.timer] = nil }
                jobs.append(.timer(armed.timer))
            }
            while let retry = retries.first, retry.due <= now, !stopping {
                jobs.append(retries.removeFirst().job)
            }
            // Requests first, in transactions of their own: a client waits on
            // them; PSP replies, timers and notification results do not.
            let requests = jobs.filter(\.isCall)
            let others = jobs.filter { !$0.isCall }
            execute(requests, chunksOf: maximumBatch)
            // The engine's own work in smaller transactions, serving requests
            // that arrived meanwhile between them: a request waits for one
            // chunk at most, not for the whole backlog.
            execute(others, chunksOf: internalChunk, then: serveWaitingRequests)
            jobs.removeAll(keepingCapacity: true)
            relayAndConsume()
            sendOutbound()

            if stopping && !moreEvents {
                let outboundEmpty = outboundCalls.isEmpty && outboundNotifications.isEmpty
                let pastDeadline = WallClock.monotonic() >= drainDeadline
                condition.lock()
                // Idle as of now, after the pass: the pass itself may have
                // sent PSP calls or notifications, which the drain waits for.
                let idle = pspInFlight + notificationsInFlight == 0
                if inbox.isEmpty && (pastDeadline || (idle && outboundEmpty)) {
                    stopped = true
                    let waiters = stopWaiters
                    stopWaiters.removeAll()
                    condition.unlock()
                    log("engine stopped; \(timers.count - cancelledTimers.count) timers left to recovery")
                    waiters.forEach { $0() }
                    return
                }
                condition.unlock()
            }
        }
    }

    /// Runs the requests (only) that queued while the thread was busy.
    private func serveWaitingRequests() {
        condition.lock()
        guard inbox.contains(where: \.isCall) else {
            condition.unlock()
            return
        }
        let waiting = inbox.filter(\.isCall)
        inbox.removeAll(where: \.isCall)
        condition.unlock()
        execute(waiting, chunksOf: maximumBatch)
    }

    /// Runs `jobs` in transactions of at most `size` jobs each, calling
    /// `then` after each.
    private func execute(_ jobs: [Job], chunksOf size: Int, then: () -> Void = {}) {
        var start = 0
        while start < jobs.count {
            let end = min(jobs.count, start + size)
            execute(jobs[start..<end])
            start = end
            then()
        }
    }

    /// One group commit: every job in one transaction, then the answers and effects.
    private func execute(_ jobs: ArraySlice<Job>) {
        let now = engineNow()
        var answers: [(Reply, Result<Answer, EngineError>)] = []
        answers.reserveCapacity(jobs.count)
        var errors = 0
        do {
            try engine.inBatch {
                for job in jobs {
                    do throws(EngineError) {
                        switch job {
                        case let .call(call, reply):
                            answers.append((reply, .success(try answer(call, now: now))))
                        case let .pspReply(attemptID, sentAt, outcome):
                            try engine.pspReplied(attemptID: attemptID, outcome: outcome, now: now, sentAtNanoseconds: sentAt)
                        case let .notification(id, success):
                            try engine.notificationDelivered(id, success: success, now: now)
                        case let .timer(timer):
                            try engine.timerFired(timer, now: now)
                        }
                    } catch {
                        if case let .call(_, reply) = job {
                            answers.append((reply, .failure(error)))
                        } else {
                            errors += 1
                            log("engine error: \(error)")
                        }
                    }
                }
            }
        } catch {
            // The batch failed: nothing of it happened. Every client gets the
            // error — also when the transaction could not even begin (another
            // connection holds the write lock) and no call ran to be answered;
            // the engine's own work is tried again.
            log("batch of \(jobs.count) rolled back: \(error)")
            answers = jobs.compactMap { job in
                if case let .call(_, reply) = job { (reply, .failure(error)) } else { nil }
            }
            let due = WallClock.monotonic() + retryPause
            for job in jobs where !job.isCall { retries.append((due, job)) }
        }
        perform(engine.takeEffects())
        condition.lock()
        status.batches += 1
        status.calls += jobs.count
        status.largestBatch = max(status.largestBatch, jobs.count)
        status.engineErrors += errors
        condition.unlock()
        for (reply, result) in answers { reply(result) }
    }

    private func answer(_ call: Call, now: Int64) throws(EngineError) -> Answer {
        switch call {
        case let .createPayment(command): return .payment(try engine.createPayment(command, now: now))
        case let .createRefund(command): return .refund(try engine.createRefund(command, now: now))
        case let .payment(id, merchantID): return .payment(try engine.payment(id, merchantID: merchantID))
        case let .refund(id): return .refund(try engine.refund(id))
        case let .ledger(query): return .ledger(try engine.ledger(query))
        case let .webhook(pspID, body, signature, timestamp):
            return .webhook(try engine.receiveWebhook(pspID: pspID, body: body, signature: signature,
                                                      timestampSeconds: timestamp, now: now, wallNowNanoseconds: WallClock.nanoseconds()))
        case let .reconcile(report, mark): return .reconciliation(try engine.reconcile(report, now: now, mark: mark))
        case .status:
            var status = currentStatus
            status.timersArmed = timers.count - cancelledTimers.count
            status.outboundQueued = outboundCalls.count + outboundNotifications.count
            status.pspCallsDropped = droppedCalls
            status.outboxBacklog = (try? engine.outboxBacklog()) ?? -1
            status.consumerLag = (try? EngineConsumer.allCases.reduce(0) { $0 + (try broker.lag(group: $1.rawValue)) }) ?? -1
            status.deadLetters = (try? broker.deadLetterCount(group: nil)) ?? -1
            status.notificationDeadLetters = (try? engine.deadLetterCount()) ?? -1
            return .status(status)
        }
    }

    private func perform(_ effects: [EngineEffect]) {
        let now = WallClock.monotonic()
        for effect in effects {
            switch effect {
            case let .callPSP(request):
                outboundCalls.append((request, now))
            case let .sendNotification(message):
                outboundNotifications.append(message)
            case let .armTimer(timer, after):
                timerSequence += 1
                timers.insert(ArmedTimer(deadline: now + max(0, after), sequence: timerSequence, timer: timer))
                if timer.isAttemptTimer { attemptTimers[timer] = timerSequence }
            case let .cancelTimer(timer):
                if let sequence = attemptTimers.removeValue(forKey: timer) { cancelledTimers.insert(sequence) }
            case .publish:
                break  // the relay publishes what it polled itself
            }
        }
        sendOutbound()
    }

    /// Sends queued PSP calls while fewer than ``maximumOutbound`` are out,
    /// and queued notifications while fewer than ``maximumNotificationsOut`` are.
    private func sendOutbound() {
        let now = WallClock.monotonic()
        defer { updateShedding(now: now) }
        condition.lock()
        var freeForCalls = maximumOutbound - pspInFlight
        var freeForNotifications = maximumNotificationsOut - notificationsInFlight
        condition.unlock()
        while freeForCalls > 0, let (request, queuedAt) = outboundCalls.popFirst() {
            if now - queuedAt > engine.configuration.pspTimeoutNanoseconds {
                droppedCalls += 1
                continue
            }
            condition.lock()
            pspInFlight += 1
            condition.unlock()
            psp.call(request) { [self] outcome in
                condition.lock()
                pspInFlight -= 1
                if let outcome { inbox.append(.pspReply(attemptID: request.attemptID, sentAt: request.sentAtNanoseconds, outcome)) }
                condition.signal()
                condition.unlock()
            }
            freeForCalls -= 1
        }
        while freeForNotifications > 0, let message = outboundNotifications.popFirst() {
            condition.lock()
            notificationsInFlight += 1
            condition.unlock()
            notifier.deliver(message) { [self] success in
                condition.lock()
                notificationsInFlight -= 1
                inbox.append(.notification(id: message.notificationID, success: success))
                condition.signal()
                condition.unlock()
            }
            freeForNotifications -= 1
        }
    }

    /// Sheds load while the oldest waiting PSP call has waited past ``sheddingWait``.
    private func updateShedding(now: Int64) {
        var shed = false
        if let wait = sheddingWait, let oldest = outboundCalls.first {
            let (seconds, attoseconds) = wait.components
            shed = now - oldest.queuedAt > seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        }
        guard shed != sheddingNow else { return }
        sheddingNow = shed
        condition.lock()
        shedding = shed
        condition.unlock()
        log(shed ? "shedding load: PSP calls wait for a connection longer than \(sheddingWait!)" : "load shedding over")
    }

    /// The outbox relay, then the engine's three consumers, one round. The
    /// relay acknowledges the outbox only after the broker stored the events;
    /// the consumers commit their offsets only after the engine committed
    /// what they applied. A crash in between repeats work, which the
    /// consumers' idempotency by event id absorbs. One round is three
    /// durable commits whatever its size: the broker's append, the engine's
    /// (every consumer's events and the outbox acknowledgement), and the
    /// consumers' offsets.
    private func relayAndConsume() {
        moreEvents = false
        do {
            let messages = try engine.pollOutbox(after: relayCursor, limit: maximumEvents)
            _ = engine.takeEffects()  // the publish effects: this is the relay
            if !messages.isEmpty {
                try broker.produce(messages.map { BrokerRecord(topic: $0.topic, key: $0.partitionKey, payload: $0.event.json()) })
                moreEvents = messages.count == maximumEvents
            }
            var deliveries: [(EngineConsumer, [BrokerDelivery])] = []
            for consumer in EngineConsumer.allCases where try broker.lag(group: consumer.rawValue) > 0 {
                let polled = try broker.poll(group: consumer.rawValue, limit: maximumEvents)
                if !polled.isEmpty { deliveries.append((consumer, polled)) }
                moreEvents = moreEvents || polled.count == maximumEvents
            }
            guard !messages.isEmpty || !deliveries.isEmpty else { return }
            serveWaitingRequests()
            let now = engineNow()
            var poisoned: [(EngineConsumer, BrokerDelivery, String)] = []
            try engine.inBatch {
                if let last = messages.last { try engine.acknowledgeOutbox(through: last.sequence) }
                for (consumer, batch) in deliveries {
                    for delivery in batch {
                        do {
                            try engine.consume(try TransactionEvent.decode(delivery.payload), by: consumer, now: now)
                        } catch {
                            poisoned.append((consumer, delivery, "\(error)"))
                        }
                    }
                }
            }
            if let last = messages.last { relayCursor = last.sequence }
            perform(engine.takeEffects())
            for (consumer, delivery, reason) in poisoned {
                try broker.deadLetter(group: consumer.rawValue, delivery, reason: reason)
                log("\(consumer.rawValue) consumer: dead-lettered \(delivery.topic)/\(delivery.partition)@\(delivery.offset): \(reason)")
            }
            try broker.commit(deliveries.map { ($0.0.rawValue, $0.1) })
            condition.lock()
            status.outboxRelayed += Int64(messages.count)
            condition.unlock()
        } catch {
            log("relay or consumer round failed, to be retried: \(error)")
            moreEvents = false
        }
    }
}
