import PaystormEngine
import PaystormKernel

/// The simulation host of one engine instance, shared by every actor that
/// runs the engine (replicas, consumers, the relay): it performs the
/// engine's effects as messages in virtual time and feeds back what comes of
/// them — PSP replies, timers, notification results, and a delivery timeout
/// for notifications whose answer never came (a lost link is a failure the
/// engine retries, not a notification pending forever).
final class EngineHost {
    unowned let world: World
    private(set) var engine: PaymentEngine
    /// Notifications sent and not yet answered: id → attempt, and the timer
    /// of its delivery timeout (cancelled when the answer comes: most do).
    private var awaiting: [Int64: (attempt: Int, timeout: TimerHandle)] = [:]
    /// The last charge this host sent, kept only while `keepsLastCharge` (the double-charge sabotage).
    var keepsLastCharge = false
    private(set) var lastCharge: PSPRequest?
    /// Refund attempts this host sent, kept only while the `refundMisread` sabotage has one to misread.
    private(set) var refundAttempts: Set<Int64> = []
    /// Clock offset of this host (a clock-skew fault).
    var skewNanoseconds: Int64 = 0
    static let notificationTimeout = SimDuration.seconds(5)

    init(world: World) {
        self.world = world
        engine = world.makeEngine()
    }

    var now: Int64 { world.engineNow(skew: skewNanoseconds) }

    /// A crash: the engine's soft state and what was awaited are gone.
    func reset() {
        engine = world.makeEngine()
        awaiting.removeAll()
    }

    /// Runs one engine call, records an unexpected error as a violation, and
    /// performs the effects — unless `crashBeforeEffects` says the process
    /// died right after the commit.
    /// - Returns: the call's value, if it did not throw.
    @discardableResult
    func run<T>(_ subject: String, _ kernel: SimulationKernel<WorldMessage>,
                         crashBeforeEffects: Bool = false, _ body: (PaymentEngine) throws(EngineError) -> T) -> Result<T, EngineError> {
        let result: Result<T, EngineError>
        do {
            result = .success(try body(engine))
        } catch {
            result = .failure(error)
        }
        let effects = engine.takeEffects()
        if crashBeforeEffects { return result }
        perform(effects, kernel)
        return result
    }

    /// Handles the messages every engine host answers; `false` for any other.
    func handle(_ message: WorldMessage, subject: String, _ kernel: SimulationKernel<WorldMessage>) -> Bool {
        switch message {
        case let .pspReply(attemptID, sentAt, outcome):
            let now = self.now
            report(run(subject, kernel) { engine throws(EngineError) in
                try engine.pspReplied(attemptID: attemptID, outcome: outcome, now: now, sentAtNanoseconds: sentAt)
            }, subject)
        case let .engineTimer(timer):
            world.timerFired(timer, at: kernel.currentActor)
            let now = self.now
            report(run(subject, kernel) { engine throws(EngineError) in try engine.timerFired(timer, now: now) }, subject)
        case let .notifyResult(id, success):
            guard let sent = awaiting.removeValue(forKey: id) else { return true }  // timed out already
            kernel.cancel(sent.timeout)
            if success { world.metrics.notificationsSent += 1 } else { world.metrics.notificationsFailed += 1 }
            let now = self.now
            report(run(subject, kernel) { engine throws(EngineError) in try engine.notificationDelivered(id, success: success, now: now) }, subject)
        case let .notifyTimeout(id, attempt):
            guard awaiting[id]?.attempt == Int(attempt) else { return true }
            awaiting[id] = nil
            world.metrics.notificationsFailed += 1
            let now = self.now
            report(run(subject, kernel) { engine throws(EngineError) in try engine.notificationDelivered(id, success: false, now: now) }, subject)
        default:
            return false
        }
        return true
    }

    func report<T>(_ result: Result<T, EngineError>, _ subject: String) {
        if case let .failure(error) = result { world.checker.record(.engineError, subject, error.description) }
    }

    /// Sends a call to PSP #`index`; a charge is shown to the checker first.
    private func sendPSPCall(_ request: PSPRequest, to index: Int, _ kernel: SimulationKernel<WorldMessage>) {
        if request.operation == .charge {
            let psps = world.pspModels
            world.checker.chargeSent(paymentID: String(request.idempotencyKey.prefix { $0 != ":" }), pspIndex: index) { other, number in
                psps[other].chargeOutcome(paymentNumber: number)
            }
        }
        world.network.send(.pspCall(request, replyTo: kernel.currentActor), to: world.psps[index], kernel: kernel)
    }

    /// A broken engine: while its charge is ambiguous (it is asking the PSP
    /// for the status), it also charges the next PSP. Its reply belongs to
    /// no attempt.
    private func sabotageFailover(from query: PSPRequest, _ kernel: SimulationKernel<WorldMessage>) {
        guard query.idempotencyKey.hasPrefix("pay-"), world.psps.count > 1, let current = world.pspIndexByID[query.pspID] else { return }
        let next = (current + 1) % world.psps.count
        var charge = query
        charge.attemptID = -1
        charge.operation = .charge
        charge.pspID = world.configuration.psps[next].id
        charge.idempotencyKey = query.idempotencyKey.prefix { $0 != ":" } + ":" + charge.pspID
        world.failoversToSabotage -= 1
        sendPSPCall(charge, to: next, kernel)
    }

    /// Performs effects on behalf of the actor now running.
    func perform(_ effects: [EngineEffect], _ kernel: SimulationKernel<WorldMessage>) {
        for effect in effects {
            switch effect {
            case let .callPSP(request):
                guard let index = world.pspIndexByID[request.pspID] else { continue }
                world.metrics.pspCall(index, request.operation)
                if keepsLastCharge && request.operation == .charge { lastCharge = request }
                if world.refundRepliesToMisread > 0 && request.operation == .refund { refundAttempts.insert(request.attemptID) }
                sendPSPCall(request, to: index, kernel)
                if world.failoversToSabotage > 0 && request.operation == .status { sabotageFailover(from: request, kernel) }
            case let .armTimer(timer, after):
                let delay = SimDuration(nanoseconds: max(0, after))
                let handle = kernel.setTimer(after: delay, .engineTimer(timer))
                if timer.isAttemptTimer { world.attemptTimers[timer] = (handle, kernel.currentActor, kernel.now.nanoseconds &+ delay.nanoseconds) }
            case let .cancelTimer(timer):
                if let armed = world.attemptTimers.removeValue(forKey: timer) { kernel.cancel(armed.handle) }
            case .publish:
                break  // the relay produces what it polled itself
            case let .sendNotification(message):
                world.network.send(.notify(message, replyTo: kernel.currentActor), to: world.sink, kernel: kernel)
                let timeout = kernel.setTimer(after: Self.notificationTimeout,
                                              .notifyTimeout(notificationID: message.notificationID, attempt: Int32(message.attempt)))
                // A resend replaces the attempt it follows, whose timeout can no longer matter.
                if let earlier = awaiting.updateValue((message.attempt, timeout), forKey: message.notificationID) { kernel.cancel(earlier.timeout) }
            }
        }
    }
}
