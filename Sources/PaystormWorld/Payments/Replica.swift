import DequeModule
import PaystormEngine
import PaystormKernel

/// One payment-service replica: an instance of the real engine over the
/// shared store, with a pool of workers and a bounded queue, so queueing and
/// saturation emerge from the service-time model. A crash loses the queue,
/// the work in service and the engine's soft state; a restart opens a fresh
/// engine and calls ``PaymentEngine/recover(now:)``, which resumes every open
/// PSP attempt from SQLite.
final class Replica: SimActor {
    typealias Message = WorldMessage

    enum Job {
        case api(APIRequest)
        case pspReply(attemptID: Int64, sentAt: Int64, outcome: PSPOutcome)
        case webhook(WebhookDelivery)
        case timer(EngineTimer)
    }

    unowned let world: World
    let index: Int
    let model: ServiceModel
    let host: EngineHost
    private var queue = Deque<Job>()
    private var inService: [Int64: Job] = [:]
    private var nextJob: Int64 = 0
    /// Deliberate double charges still to commit (checker self-test).
    var doubleChargesToSabotage = 0

    init(world: World, index: Int) {
        self.world = world
        self.index = index
        name = "replica.\(index)"
        model = world.configuration.service
        host = EngineHost(world: world)
    }

    /// Built once: every engine call names its replica.
    let name: String
    /// Work queued or in service.
    var depth: Int { queue.count + inService.count }

    func receive(_ message: WorldMessage, from sender: ActorAddress, kernel: SimulationKernel<WorldMessage>) {
        switch message {
        case let .apiRequest(request): enqueue(.api(request), kernel)
        case let .pspReply(attemptID, sentAt, outcome): enqueue(.pspReply(attemptID: attemptID, sentAt: sentAt, outcome: outcome), kernel)
        case let .webhook(delivery): enqueue(.webhook(delivery), kernel)
        case let .engineTimer(timer):
            world.timerFired(timer, at: kernel.currentActor)
            enqueue(.timer(timer), kernel)
        case let .reconcile(box):
            let result = host.run(name, kernel) { engine throws(EngineError) in
                try engine.reconcile(box.report, references: box.references, now: host.now)
            }
            if case let .success(reconciliation) = result { world.reconciled(pspID: box.report.pspID, reconciliation, part: box.part) }
            host.report(result, name)
        case let .healthCheck(round):
            world.network.send(.healthReply(replica: Int32(index), round: round), to: sender, kernel: kernel)
        case let .workDone(id):
            guard let job = inService.removeValue(forKey: id) else { return }
            execute(job, kernel)
            startWork(kernel)
        default:
            _ = host.handle(message, subject: name, kernel)  // notification results after a recovery
        }
    }

    func crashed() {
        world.forgetTimers(of: world.kernel.currentActor)
        world.metrics.lostInCrashes += depth
        queue.removeAll()
        inService.removeAll()
    }

    func restarted(kernel: SimulationKernel<WorldMessage>) {
        host.reset()
        host.report(host.run(name, kernel) { engine throws(EngineError) in try engine.recover(now: host.now) }, name)
    }

    /// Requests from outside (API calls, webhooks) meet the bounded accept
    /// queue; the engine's own work (PSP replies, timers) is never refused,
    /// as in a real process, where nothing would re-arm a dropped timer.
    private func enqueue(_ job: Job, _ kernel: SimulationKernel<WorldMessage>) {
        switch job {
        case .api, .webhook:
            guard queue.count < model.queueCapacity else {
                world.metrics.queueOverflows += 1
                if case let .api(request) = job {
                    reply(request, .error(status: 503, message: "replica \(index) overloaded"), kernel)
                } else {
                    world.metrics.webhooksDropped += 1
                }
                return  // a refused webhook is a lost webhook: status queries and reconciliation cover it
            }
        case .pspReply, .timer:
            break
        }
        queue.append(job)
        startWork(kernel)
    }

    private func startWork(_ kernel: SimulationKernel<WorldMessage>) {
        while inService.count < model.workersPerReplica, let job = queue.popFirst() {
            let id = nextJob
            nextJob += 1
            inService[id] = job
            let median: Double
            if case .api = job { median = model.apiServiceMedianSeconds } else { median = model.internalServiceMedianSeconds }
            let seconds = kernel.random.lognormal(median: median, sigma: model.serviceSigma)
            kernel.setTimer(after: SimDuration(seconds: seconds), .workDone(job: id))
        }
    }

    private func execute(_ job: Job, _ kernel: SimulationKernel<WorldMessage>) {
        // BUGGIFY: the process dies right after the engine committed, before
        // any effect or answer left it.
        let crash = world.buggify.fires(.replicaCrashAfterCommit)
        let now = host.now
        var answer: (APIRequest, APIReply)?
        switch job {
        case let .api(request):
            let result = host.run(name, kernel, crashBeforeEffects: crash) { engine throws(EngineError) in
                try handle(request, engine: engine, now: now, kernel)
            }
            switch result {
            case let .success(reply): answer = (request, reply)
            case let .failure(error): answer = (request, Self.httpError(error))
            }
            if doubleChargesToSabotage > 0 && !crash { sabotageDoubleCharge(kernel) }
        case let .pspReply(attemptID, sentAt, reply):
            var outcome = reply
            if world.refundRepliesToMisread > 0, case .succeeded = outcome, host.refundAttempts.contains(attemptID) {
                world.refundRepliesToMisread -= 1
                outcome = .declined(reason: "sabotage: a refund paid out, read as declined")
            }
            host.report(host.run(name, kernel, crashBeforeEffects: crash) { engine throws(EngineError) in
                try engine.pspReplied(attemptID: attemptID, outcome: outcome, now: now, sentAtNanoseconds: sentAt)
            }, name)
        case let .webhook(delivery):
            // A forgery this replica must refuse: any with a bad signature; a
            // stale one only if this replica's clock (a skew fault may hold it
            // back an hour) puts its timestamp outside the tolerance.
            let mustRefuse: Bool = switch delivery.forgery {
            case nil: false
            case .badSignature: true
            case .stale: abs(now / 1_000_000_000 - delivery.timestampSeconds) > world.engineConfiguration.webhookToleranceSeconds
            }
            var (signature, timestamp) = (delivery.signature, delivery.timestampSeconds)
            if mustRefuse && world.configuration.sabotage == .webhookUnverified {
                // An engine that does not verify: as if the forgery were signed by the PSP, now by this replica's clock.
                timestamp = now / 1_000_000_000
                signature = WebhookSigner(secret: World.webhookSecret(delivery.pspID)).signature(body: delivery.body, timestampSeconds: timestamp)
            }
            let result = host.run(name, kernel, crashBeforeEffects: crash) { engine throws(EngineError) in
                try engine.receiveWebhook(pspID: delivery.pspID, body: delivery.body, signature: signature,
                                          timestampSeconds: timestamp, now: now)
            }
            switch result {
            case let .success(outcome):
                world.metrics.webhooksApplied += 1
                if mustRefuse {
                    world.checker.record(.webhookAuthenticated, delivery.pspID,
                                         "a forged webhook (\(delivery.body)) was taken, not refused: \(outcome.rawValue)")
                }
            case .failure(.webhookRejected): world.metrics.webhooksRejected += 1
            case .failure: host.report(result, name)
            }
        case let .timer(timer):
            host.report(host.run(name, kernel, crashBeforeEffects: crash) { engine throws(EngineError) in
                try engine.timerFired(timer, now: now)
            }, name)
        }
        if crash {
            kernel.scheduleRestart(of: kernel.currentActor, at: kernel.now + .seconds(1))
            kernel.crash(kernel.currentActor)
            return
        }
        if let (request, reply) = answer { self.reply(request, reply, kernel) }
    }

    private func handle(_ request: APIRequest, engine: PaymentEngine, now: Int64,
                        _ kernel: SimulationKernel<WorldMessage>) throws(EngineError) -> APIReply {
        switch request.body {
        case let .pay(command):
            if world.idempotencyRecordsToForget > 0 && request.attempt > 0,
               try forgetIdempotencyRecord(merchantID: command.merchantID, key: command.idempotencyKey) {
                world.idempotencyRecordsToForget -= 1
            }
            let view = try engine.createPayment(command, now: now)
            if !view.replayed {
                world.paymentCreated(view.paymentID, request: request.requestID, card: command.card.number, at: kernel.now.nanoseconds)
            } else {
                // A replay must name what the request created, not only say it is one.
                world.checker.created(request: request.requestID, resourceID: view.paymentID)
            }
            return .payment(paymentID: view.paymentID, status: view.status, replayed: view.replayed, failureReason: view.failureReason)
        case let .refund(command):
            if world.refundIdempotencyRecordsToForget > 0 && request.attempt > 0,
               try forgetIdempotencyRecord(merchantID: command.merchantID, key: command.idempotencyKey) {
                world.refundIdempotencyRecordsToForget -= 1
            }
            let view = try engine.createRefund(command, now: now)
            world.checker.created(request: request.requestID, resourceID: view.refundID)
            return .refund(refundID: view.refundID, status: view.status, replayed: view.replayed)
        }
    }

    /// The HTTP status a host maps each engine error to.
    static func httpError(_ error: EngineError) -> APIReply {
        switch error {
        case .invalidField: return .error(status: 400, message: error.description)
        case .idempotencyKeyReused: return .error(status: 422, message: error.description)
        case .idempotencyConflict, .invalidState, .refundExceedsCaptured: return .error(status: 409, message: error.description)
        case .paymentNotFound, .refundNotFound: return .error(status: 404, message: error.description)
        case .webhookRejected: return .error(status: 400, message: error.description)
        case .storage: return .error(status: 500, message: error.description)
        case .overloaded: return .error(status: 503, message: error.description)
        }
    }

    private func reply(_ request: APIRequest, _ reply: APIReply, _ kernel: SimulationKernel<WorldMessage>) {
        world.network.send(.apiReply(requestID: request.requestID, attempt: request.attempt, reply: reply), to: request.client, kernel: kernel)
    }

    /// A broken engine: it lost the idempotency record of a request being
    /// retried, so the retry creates a second payment.
    /// - Returns: whether there was a record to forget.
    private func forgetIdempotencyRecord(merchantID: String, key: String) throws(EngineError) -> Bool {
        do {
            return try world.store.queue.inDatabase { db in
                try db.execute(sql: "DELETE FROM idempotency_record WHERE merchant_id = ? AND idempotency_key = ?",
                               arguments: [merchantID, key])
                return db.changesCount > 0
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    /// A broken host: sends the last charge also to a second PSP under a fresh key.
    private func sabotageDoubleCharge(_ kernel: SimulationKernel<WorldMessage>) {
        if let request = host.lastCharge, world.psps.count > 1 {
            guard let current = world.pspIndexByID[request.pspID] else { return }
            var copy = request
            copy.pspID = world.configuration.psps[(current + 1) % world.psps.count].id
            copy.idempotencyKey = request.idempotencyKey.prefix { $0 != ":" } + ":" + copy.pspID + "-again"
            world.network.send(.pspCall(copy, replyTo: kernel.currentActor), to: world.psps[(current + 1) % world.psps.count], kernel: kernel)
            doubleChargesToSabotage -= 1
            return
        }
    }
}
