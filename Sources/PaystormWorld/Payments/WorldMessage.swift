import PaystormEngine
import PaystormKernel

/// An API call from a client, as it travels client → gateway → replica.
/// A class so the message enum stays small; never mutated after sending.
final class APIRequest {
    enum Body {
        case pay(CreatePaymentCommand)
        case refund(CreateRefundCommand)
    }

    let requestID: Int64
    let attempt: Int32
    let client: ActorAddress
    let apiKeyValid: Bool
    let body: Body

    init(requestID: Int64, attempt: Int32, client: ActorAddress, apiKeyValid: Bool, body: Body) {
        self.requestID = requestID
        self.attempt = attempt
        self.client = client
        self.apiKeyValid = apiKeyValid
        self.body = body
    }
}

/// What a client hears back.
enum APIReply: Equatable {
    case payment(paymentID: String, status: PaymentStatus, replayed: Bool, failureReason: String?)
    case refund(refundID: String, status: RefundStatus, replayed: Bool)
    /// An HTTP error: 4xx for the client's mistakes, 429 throttled, 5xx the service's fault.
    case error(status: Int, message: String)
}

/// A signed PSP webhook on its way to the service.
final class WebhookDelivery {
    let pspID: String
    let body: String
    let signature: String
    let timestampSeconds: Int64
    /// How it is not authentic, if a forgery fault made it: the world's
    /// knowledge, never the engine's.
    let forgery: Forgery?

    enum Forgery {
        /// Signed under another secret, or its body altered after signing: refused at any clock.
        case badSignature
        /// Signed by the PSP at a time long past: refused by a receiver whose clock is not as far behind.
        case stale
    }

    init(pspID: String, body: String, signature: String, timestampSeconds: Int64, forgery: Forgery? = nil) {
        self.pspID = pspID
        self.body = body
        self.signature = signature
        self.timestampSeconds = timestampSeconds
        self.forgery = forgery
    }
}

/// Events from the outbox relay to the broker.
final class ProduceBatch {
    let messages: [OutboxMessage]
    init(messages: [OutboxMessage]) { self.messages = messages }
}

/// Events from one broker partition to one consumer.
final class DeliveryBatch {
    let group: Int
    /// `-1` for a replay of the group's dead-letter topic (nothing to commit).
    let partition: Int
    let generation: Int64
    let firstOffset: Int64
    /// The group's committed offset when the batch was sent: where a member
    /// new to the partition (or to the generation) starts.
    let committed: Int64
    let events: [TransactionEvent]

    init(group: Int, partition: Int, generation: Int64, firstOffset: Int64, committed: Int64, events: [TransactionEvent]) {
        self.group = group
        self.partition = partition
        self.generation = generation
        self.firstOffset = firstOffset
        self.committed = committed
        self.events = events
    }
}

/// An event a consumer sends to its group's dead-letter topic, at its offset
/// in the partition it came from.
struct DeadLetter {
    let offset: Int64
    let event: TransactionEvent
}

/// A settlement report on its way to a replica.
final class SettlementReportBox {
    let report: SettlementReport
    /// The references this part of the report stands for.
    let references: ReferenceRange
    /// 0 for a report's first part: later parts add to its result.
    let part: Int
    init(report: SettlementReport, references: ReferenceRange = .all, part: Int = 0) {
        self.report = report
        self.references = references
        self.part = part
    }
}

/// Every message of the payments world. Timers are messages an actor sends itself.
enum WorldMessage: SimMessage {
    // Clients
    case arrival
    /// The next payment of a fraudster's card-testing burst.
    case burstNext(user: Int32, remaining: Int32)
    case clientTimeout(requestID: Int64, attempt: Int32)
    case clientRetry(requestID: Int64)
    case apiReply(requestID: Int64, attempt: Int32, reply: APIReply)
    // Gateway and replicas
    case apiRequest(APIRequest)
    case healthTick
    case healthCheck(round: Int64)
    case healthReply(replica: Int32, round: Int64)
    case workDone(job: Int64)
    /// A PSP's answer to a call, with the call's stamp (``PSPRequest/sentAtNanoseconds``).
    case pspReply(attemptID: Int64, sentAt: Int64, outcome: PSPOutcome)
    case webhook(WebhookDelivery)
    case engineTimer(EngineTimer)
    // PSPs
    case pspCall(PSPRequest, replyTo: ActorAddress)
    case pspProcess(call: Int64)
    case pspWebhookDue(record: Int32, duplicate: Bool)
    /// A forged webhook about `record`, made the way `how` says (0 a wrong
    /// secret, 1 altered after signing, 2 signed an hour ago).
    case pspForgedWebhookDue(record: Int32, how: UInt8)
    // Outbox relay and broker
    case relayPoll
    case relayTimeout(through: Int64)
    case produce(ProduceBatch)
    case produceAck(through: Int64)
    case brokerTick
    case deliver(DeliveryBatch)
    /// Commits a partition's offset, with the events of the committed range
    /// that go to the group's dead-letter topic (poisoned, or refused by the
    /// engine). One message, so a lost or stale commit loses neither: the
    /// range is redelivered and judged again.
    case commit(group: Int32, partition: Int32, generation: Int64, offset: Int64, deadLetters: [DeadLetter])
    case heartbeat(group: Int32, member: Int32)
    // Consumers and the notification sink
    case consumerWorkDone
    case heartbeatTick
    case notify(NotificationMessage, replyTo: ActorAddress)
    case notifyResult(notificationID: Int64, success: Bool)
    /// No answer to a notification delivery in time.
    case notifyTimeout(notificationID: Int64, attempt: Int32)
    /// A consumer (re)starting joins its group.
    case joinGroup(group: Int32, member: Int32)
    // The world itself
    case fault(index: Int32, starting: Bool)
    case sample
    /// Healing: replay dead letters (consumers, broker).
    case heal
    /// Healing: reconcile the engine with a PSP's settlement report (a replica does it).
    case reconcile(SettlementReportBox)

    func trace(into hasher: inout TraceHasher) {
        switch self {
        case .arrival: hasher.combine(UInt64(1))
        case let .burstNext(user, remaining): hasher.combine(UInt64(31)); hasher.combine(user); hasher.combine(remaining)
        case let .clientTimeout(id, attempt): hasher.combine(UInt64(2)); hasher.combine(id); hasher.combine(attempt)
        case let .clientRetry(id): hasher.combine(UInt64(3)); hasher.combine(id)
        case let .apiReply(id, attempt, reply):
            hasher.combine(UInt64(4)); hasher.combine(id); hasher.combine(attempt)
            switch reply {
            case let .payment(paymentID, status, replayed, _): hasher.combine(paymentID); hasher.combine(status.rawValue); hasher.combine(replayed)
            case let .refund(refundID, status, replayed): hasher.combine(refundID); hasher.combine(status.rawValue); hasher.combine(replayed)
            case let .error(status, _): hasher.combine(status)
            }
        case let .apiRequest(request): hasher.combine(UInt64(5)); hasher.combine(request.requestID); hasher.combine(request.attempt)
        case .healthTick: hasher.combine(UInt64(6))
        case let .healthCheck(round): hasher.combine(UInt64(7)); hasher.combine(round)
        case let .healthReply(replica, round): hasher.combine(UInt64(8)); hasher.combine(replica); hasher.combine(round)
        case let .workDone(job): hasher.combine(UInt64(9)); hasher.combine(job)
        case let .pspReply(attemptID, _, outcome):
            hasher.combine(UInt64(10)); hasher.combine(attemptID)
            switch outcome {
            case .succeeded: hasher.combine(UInt64(1))
            case .declined: hasher.combine(UInt64(2))
            case .transientError: hasher.combine(UInt64(3))
            case .rateLimited: hasher.combine(UInt64(4))
            case .notFound: hasher.combine(UInt64(5))
            case .pending: hasher.combine(UInt64(6))
            case .voided: hasher.combine(UInt64(7))
            }
        case let .webhook(delivery): hasher.combine(UInt64(11)); hasher.combine(delivery.body)
        case let .engineTimer(timer):
            hasher.combine(UInt64(12))
            switch timer {
            // The send time is the engine's own, from the attempt's row: the id names the timer.
            case let .pspTimeout(id, _): hasher.combine(UInt64(1)); hasher.combine(id)
            case let .retry(id): hasher.combine(UInt64(2)); hasher.combine(id)
            case let .statusQuery(id): hasher.combine(UInt64(3)); hasher.combine(id)
            case let .notificationRetry(id): hasher.combine(UInt64(4)); hasher.combine(id)
            case .idempotencyPurge: hasher.combine(UInt64(5))
            }
        case let .pspCall(request, replyTo):
            hasher.combine(UInt64(13)); hasher.combine(request.attemptID); hasher.combine(request.operation.rawValue); hasher.combine(replyTo.index)
        case let .pspProcess(call): hasher.combine(UInt64(14)); hasher.combine(call)
        case let .pspWebhookDue(record, duplicate): hasher.combine(UInt64(15)); hasher.combine(record); hasher.combine(duplicate)
        case let .pspForgedWebhookDue(record, how): hasher.combine(UInt64(40)); hasher.combine(record); hasher.combine(UInt64(how))
        case .relayPoll: hasher.combine(UInt64(16))
        case let .relayTimeout(through): hasher.combine(UInt64(17)); hasher.combine(through)
        case let .produce(batch): hasher.combine(UInt64(18)); hasher.combine(batch.messages.first?.sequence ?? 0); hasher.combine(batch.messages.count)
        case let .produceAck(through): hasher.combine(UInt64(19)); hasher.combine(through)
        case .brokerTick: hasher.combine(UInt64(20))
        case let .deliver(batch):
            hasher.combine(UInt64(21)); hasher.combine(batch.group); hasher.combine(batch.partition)
            hasher.combine(batch.firstOffset); hasher.combine(batch.events.count)
        case let .commit(group, partition, generation, offset, deadLetters):
            hasher.combine(UInt64(22)); hasher.combine(group); hasher.combine(partition); hasher.combine(generation); hasher.combine(offset)
            for letter in deadLetters { hasher.combine(letter.offset); hasher.combine(letter.event.eventID) }
        case let .heartbeat(group, member): hasher.combine(UInt64(23)); hasher.combine(group); hasher.combine(member)
        case .consumerWorkDone: hasher.combine(UInt64(25))
        case .heartbeatTick: hasher.combine(UInt64(26))
        case let .notify(message, replyTo): hasher.combine(UInt64(27)); hasher.combine(message.notificationID); hasher.combine(replyTo.index)
        case let .notifyResult(id, success): hasher.combine(UInt64(28)); hasher.combine(id); hasher.combine(success)
        case let .fault(index, starting): hasher.combine(UInt64(29)); hasher.combine(index); hasher.combine(starting)
        case .sample: hasher.combine(UInt64(30))
        case .heal: hasher.combine(UInt64(32))
        case let .notifyTimeout(id, attempt): hasher.combine(UInt64(34)); hasher.combine(id); hasher.combine(attempt)
        case let .joinGroup(group, member): hasher.combine(UInt64(35)); hasher.combine(group); hasher.combine(member)
        case let .reconcile(box): hasher.combine(UInt64(33)); hasher.combine(box.report.pspID); hasher.combine(box.report.lines.count)
        }
    }
}
