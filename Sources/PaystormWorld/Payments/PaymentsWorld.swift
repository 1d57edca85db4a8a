import Foundation
import GRDB
import PaystormEngine
import PaystormKernel
import PaystormStatistics
import PaystormStore

/// The payments world: the real engine, replicated over one SQLite store,
/// among modelled clients, gateway, PSPs, network, broker and consumers,
/// with faults, driven by the kernel in virtual time; checked all along and
/// again after a healing phase.
public enum PaymentsWorld {
    /// Virtual seconds of load between two commits of the held transaction.
    static let loadStretchSeconds = 10

    /// Runs one world to the end of its healing phase.
    /// The stretches of a run, in order, for a host that times them
    /// (``run(_:progress:phaseEnded:)``): the run itself reads no clock.
    /// Together they are the whole run but for removing the scratch file.
    public enum Phase: String, CaseIterable, Sendable {
        /// Setting the world up, then until every payment has been started, faults and all.
        case load
        /// The safety audit of the whole database once the load ended.
        case auditAfterLoad = "audit after load"
        /// The first half of the healing time: faults end, dead letters are
        /// replayed, consumers catch up.
        case healing
        /// Each PSP's settlement report against the engine's records, then
        /// the rest of the healing time.
        case reconciliation = "reconciliation and the rest of healing"
        /// Liveness, the final audit and the cross-check with the PSPs, and the report.
        case finalChecks = "final checks"
    }

    /// - Parameters:
    ///   - progress: called every virtual second with the share of payments started.
    ///   - phaseEnded: called as each ``Phase`` ends, in order.
    public static func run(_ configuration: WorldConfiguration, progress: ((Double) -> Void)? = nil,
                           phaseEnded: ((Phase) -> Void)? = nil) throws -> WorldReport {
        try configuration.validate()
        let location: Store.Location = configuration.scratchDatabasePath.map {
            .scratch(path: $0, cacheMebibytes: configuration.databaseCacheMebibytes)
        } ?? .memory
        let store = try PaymentEngine.openStore(location, allowsHeldTransactions: true)
        let truthPath = configuration.scratchDatabasePath.map { $0 + "-truth" }
        defer {
            for path in [configuration.scratchDatabasePath, truthPath].compactMap({ $0 }) {
                for suffix in ["", "-journal"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            }
        }
        let truth = try WorldTruth(path: truthPath, cacheMebibytes: max(1, configuration.databaseCacheMebibytes / 16))
        let world = try World(configuration: configuration, store: store, truth: truth)
        let kernel = world.kernel

        let clients = try ClientPopulation(world: world)
        world.clients = world.spawn(clients, name: "clients")
        let gateway = Gateway(world: world)
        world.gateway = world.spawn(gateway, name: "gateway")
        var replicas: [Replica] = []
        for index in 0..<configuration.service.replicas {
            let replica = Replica(world: world, index: index)
            replicas.append(replica)
            world.replicas.append(world.spawn(replica, name: "replica.\(index)"))
        }
        var psps: [PSP] = []
        for (index, profile) in configuration.psps.enumerated() {
            let psp = PSP(world: world, index: index, profile: profile)
            psps.append(psp)
            world.pspIndexByID[profile.id] = index
            world.psps.append(world.spawn(psp, name: "psp.\(profile.id)"))
        }
        world.pspModels = psps
        let broker = Broker(world: world)
        world.broker = world.spawn(broker, name: "broker")
        world.relay = world.spawn(OutboxRelay(world: world), name: "relay")
        var consumers: [ActorAddress] = []
        for (group, consumer) in World.groups.enumerated() {
            world.consumers.append((0..<configuration.broker.consumersPerGroup).map { member in
                world.spawn(Consumer(world: world, group: group, member: member), name: "consumer.\(consumer.rawValue).\(member)")
            })
            consumers += world.consumers[group]
        }
        let sink = NotificationSink(world: world)
        world.sink = world.spawn(sink, name: "notifications")
        let injector = FaultInjector(world: world)
        injector.replicaActors = replicas
        injector.pspActors = psps
        injector.brokerActor = broker
        let injectorAddress = world.spawn(injector, name: "faults")
        let monitor = Monitor(world: world)
        monitor.replicaActors = replicas
        monitor.brokerActor = broker
        let monitorAddress = world.spawn(monitor, name: "monitor")
        precondition(world.network.names == configuration.actorNames, "the actors spawned are not those partitions are validated against")

        kernel.inject(.arrival, to: world.clients, at: .zero)
        kernel.inject(.healthTick, to: world.gateway, at: .zero)
        kernel.inject(.brokerTick, to: world.broker, at: .zero)
        kernel.inject(.relayPoll, to: world.relay, at: .zero)
        for member in consumers { kernel.inject(.heartbeatTick, to: member, at: .zero) }
        kernel.inject(.sample, to: monitorAddress, at: .zero + SimDuration(seconds: configuration.windowSeconds))
        for (index, fault) in configuration.faults.enumerated() {
            kernel.inject(.fault(index: Int32(index), starting: true), to: injectorAddress, at: .zero + SimDuration(seconds: fault.atSeconds))
            kernel.inject(.fault(index: Int32(index), starting: false), to: injectorAddress, at: .zero + SimDuration(seconds: fault.endSeconds))
        }
        if let sabotage = configuration.sabotage, sabotage == .doubleCharge {
            replicas[0].doubleChargesToSabotage = 1
            replicas[0].host.keepsLastCharge = true
        }
        if configuration.sabotage == .refundMisread { world.refundRepliesToMisread = 1 }
        if configuration.sabotage == .failoverWhileAmbiguous { world.failoversToSabotage = 1 }
        if configuration.sabotage == .notificationDropped { world.notificationEventsToDrop = 1 }
        if configuration.sabotage == .idempotencyForgotten { world.idempotencyRecordsToForget = 1 }
        if configuration.sabotage == .refundIdempotencyForgotten { world.refundIdempotencyRecordsToForget = .max }

        // Every engine call of a stretch of virtual time joins one held
        // transaction, committed as the stretch ends: a scratch database's
        // commits mark nothing, and each call's own commit wrote the pages it
        // touched to the file again (about an eighth of a run). What the
        // actors see is unchanged, and so is the trace.
        //
        // During the load a stretch is `loadStretchSeconds` long. A commit
        // writes every page the stretch dirtied, and each stretch first copies
        // those pages to its rollback journal, so a page written to every
        // second (the tables' last leaves, the indexes' hot ones) cost a copy
        // and a write every second. With ten seconds the reference run of a
        // million payments writes 5.9 GB instead of 12.4 GB; the dirty pages
        // wait in the page cache, and peak memory stays where it was.
        try store.beginHeldTransaction()
        func advance(until deadline: SimInstant, commit: Bool = true) throws {
            kernel.run(until: deadline)
            do throws(StoreError) {
                if let failure = truth.failure { throw failure }
                if commit { try store.commitHeldTransactionAndContinue() }
            } catch {
                throw StoreError(path: error.path, operation: "\(error.operation) at t=\(kernel.now.seconds) s (seed \(configuration.seed))",
                                 message: error.message)
            }
        }

        // Load phase: until every payment has been started.
        var step = SimInstant.zero
        // Host-level sabotage is set up above; the others write to the store mid-run.
        var sabotaged = !(configuration.sabotage?.writesStoreMidRun ?? false)
        let sabotageAt = SimDuration(seconds: configuration.expectedLoadSeconds / 2)
        var secondsHeld = 0
        while !clients.arrivalsDone {
            step = step + .seconds(1)
            secondsHeld += 1
            let commit = secondsHeld == Self.loadStretchSeconds
            if commit { secondsHeld = 0 }
            try advance(until: step, commit: commit)
            if !sabotaged && kernel.now >= .zero + sabotageAt {
                sabotaged = true
                try applySabotage(configuration.sabotage!, store: store, leakedCard: world.checker.cards.items.first)
            }
            progress?(Double(clients.paymentsStarted) / Double(configuration.payments))
        }
        let loadEnd = clients.arrivalsEndedAt ?? kernel.now
        if !sabotaged { try applySabotage(configuration.sabotage!, store: store, leakedCard: world.checker.cards.items.first) }
        phaseEnded?(.load)
        world.checker.audit(final: false)
        phaseEnded?(.auditAfterLoad)

        // Healing: faults end, BUGGIFY stops, dead letters are replayed, then reconciliation.
        world.healing = true
        world.healingBeganSeconds = kernel.now.seconds
        world.buggify.suspended = true
        injector.endAll(kernel)
        world.network.clearFaults()
        // Whatever BUGGIFY left down comes back up.
        for member in world.replicas + world.consumers.flatMap({ $0 }) + [world.relay] where !kernel.isRunning(member) {
            kernel.restart(member)
        }
        let healing = SimDuration(seconds: configuration.healingSeconds)
        try advance(until: loadEnd + SimDuration(nanoseconds: healing.nanoseconds / 3))
        kernel.inject(.heal, to: world.broker, at: kernel.now)
        for member in world.consumers[2] { kernel.inject(.heal, to: member, at: kernel.now) }
        try advance(until: loadEnd + SimDuration(nanoseconds: healing.nanoseconds / 2))
        phaseEnded?(.healing)
        // What is left — reconciliation and the final audits — reads whole
        // tables once. The page cache that served the load is of little use
        // to it, and SQLite sizes its sorter by the same setting: at a million
        // payments the two were a quarter of the run's peak memory, beside a
        // million-line report. A quarter of the cache is kept.
        if configuration.scratchDatabasePath != nil {
            try store.queue.inDatabase { db in
                try db.execute(sql: "PRAGMA cache_size = -\(max(1, configuration.databaseCacheMebibytes / 4) * 1024)")
            }
        }
        // One PSP's settlement report at a time, and each in parts of
        // consecutive references, each reconciled before the next is made:
        // a whole report and the engine's records for it grew with the run
        // and were the largest things it held at the end.
        let random = RandomStream(rootSeed: configuration.seed, stream: "settlement")
        var injected: [String: [(reference: String, kind: DiscrepancyKind)]] = [:]
        for psp in psps {
            var plan = psp.settlementPlan(now: world.engineNow(), random: random)
            injected[psp.profile.id] = psp.injectedDiscrepancies
            var part = 0
            while let (report, references) = psp.nextSettlementPart(&plan, records: configuration.settlementPartRecords) {
                kernel.inject(.reconcile(SettlementReportBox(report: report, references: references, part: part)),
                              to: world.replicas[0], at: kernel.now)
                try advance(until: kernel.now)
                part += 1
            }
            try advance(until: kernel.now + .seconds(1))
        }
        try advance(until: loadEnd + healing)
        try store.commitHeldTransaction()
        progress?(1)
        phaseEnded?(.reconciliation)

        if configuration.sabotage == .reconciliationMislabelled {
            try store.queue.write { try $0.execute(sql: "UPDATE reconciliation_item SET kind = 'statusMismatch'") }
        }
        // Liveness, then the final safety audit and the cross-check with the PSPs' truth.
        let liveness = try livenessViolations(world: world, broker: broker, injected: injected)
        let nonTerminal = try store.read { db in
            try Int.fetchOne(db, sql: """
                SELECT (SELECT COUNT(*) FROM payment WHERE status NOT IN ('completed', 'failed'))
                     + (SELECT COUNT(*) FROM refund WHERE status NOT IN ('succeeded', 'failed'))
                """) ?? 0
        }
        world.checker.audit(final: true)
        world.checker.crossCheck()
        if let failure = truth.failure {
            throw StoreError(path: failure.path, operation: "\(failure.operation) after healing (seed \(configuration.seed))", message: failure.message)
        }
        world.checker.collectTrails()
        monitor.closeLastWindow(kernel: kernel)
        let report = try WorldReport(world: world, clients: clients, gateway: gateway, broker: broker, sink: sink, monitor: monitor,
                                     liveness: liveness, nonTerminal: nonTerminal, loadEndSeconds: loadEnd.seconds)
        phaseEnded?(.finalChecks)
        return report
    }

    /// Runs the configuration twice and compares the trace hashes.
    public static func selfCheck(_ configuration: WorldConfiguration) throws -> (first: WorldReport, second: WorldReport) {
        var second = configuration
        if let path = configuration.scratchDatabasePath { second.scratchDatabasePath = path + ".again" }
        return (try run(configuration), try run(second))
    }

    /// What must hold once the world has healed: the first 1,000 violations
    /// in full (at most 100 of each kind of notification), and every one counted.
    static func livenessViolations(world: World, broker: Broker, injected: [String: [(reference: String, kind: DiscrepancyKind)]]) throws
        -> (kept: [Violation], counts: [Invariant: Int]) {
        var found: [Violation] = []
        var counts: [Invariant: Int] = [:]
        let seconds = world.kernel.now.seconds
        func add(_ invariant: Invariant, _ subject: String, _ detail: String, keepAtMost: Int = 1_000) {
            counts[invariant, default: 0] += 1
            guard found.count < 1_000, counts[invariant]! <= keepAtMost else { return }
            found.append(Violation(invariant: invariant.rawValue, subject: subject, virtualSeconds: seconds, seed: world.configuration.seed,
                                   detail: detail, trail: []))
        }
        try world.store.read { db in
            // Cursors: every row is counted, and only the kept ones are held.
            // A scan in storage order, the few open rows sorted after: ordered
            // by the id's index instead, SQLite would look every row up from
            // it, one random read a payment in a store larger than memory.
            let payments = try Row.fetchCursor(db, sql: """
                SELECT payment_id, status FROM payment NOT INDEXED WHERE status NOT IN ('completed', 'failed') ORDER BY payment_id
                """)
            while let row = try payments.next() {
                add(.paymentTerminal, row["payment_id"], "still \(row["status"] as String) after healing")
            }
            let refunds = try Row.fetchCursor(db, sql: """
                SELECT refund_id, status FROM refund NOT INDEXED WHERE status NOT IN ('succeeded', 'failed') ORDER BY refund_id
                """)
            while let row = try refunds.next() {
                add(.refundTerminal, row["refund_id"], "still \(row["status"] as String) after healing")
            }
            let last = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(sequence), 0) FROM outbox") ?? 0
            let cursor = try Int64.fetchOne(db, sql: "SELECT published_through FROM outbox_cursor WHERE id = 1") ?? 0
            if cursor != last { add(.outboxPublished, "outbox", "published through \(cursor) of \(last)") }
            for violation in try EngineAudit.settled(db) {
                let (invariant, detail) = Invariant.of(violation)
                add(invariant, violation.subject, detail)
            }
            let dead = try PaymentEngine.deadLetterCount(in: db)
            if dead > 0 { add(.deadLettersDrained, "notifications", "\(dead) dead letter(s) left after the replay") }
            // An event's two notifications share a row (``NotificationRecipient``).
            let pending = try Row.fetchCursor(db, sql: """
                SELECT n.notification_id, n.event_id, n.user_state, n.user_attempts, n.merchant_state, n.merchant_attempts
                FROM notification n WHERE n.user_state = 'pending' OR n.merchant_state = 'pending' ORDER BY n.notification_id
                """)
            while let row = try pending.next() {
                for recipient in NotificationRecipient.allCases where row["\(recipient.rawValue)_state"] == "pending" {
                    add(.notificationDelivered, "notification \(recipient.notificationID(row: row["notification_id"]))",
                        "to the \(recipient.rawValue) of event \(row["event_id"] as String) still pending after \(row["\(recipient.rawValue)_attempts"] as Int) attempt(s)",
                        keepAtMost: 100)
                }
            }
            // Every state change told to its user and its merchant: a
            // notification never made leaves no pending row to find.
            let unsent = try Row.fetchCursor(db, sql: """
                SELECT o.event_id, COALESCE((n.user_state = 'delivered') + (n.merchant_state = 'delivered'), 0) AS delivered
                FROM outbox o LEFT JOIN notification n ON n.event_id = o.event_id
                WHERE delivered < 2 ORDER BY o.sequence
                """)
            while let row = try unsent.next() {
                let event: String = row["event_id"]
                add(.notificationSent, String(event.drop { $0 != ":" }.dropFirst()),
                    "event \(event) reached \(row["delivered"] as Int) of its 2 recipients after healing", keepAtMost: 100)
            }
            // Each discrepancy the PSP put in its report, classified as what it is.
            for (psp, discrepancies) in injected.sorted(by: { $0.key < $1.key }) {
                for (reference, kind) in discrepancies {
                    let kinds = try String.fetchAll(db, sql: "SELECT kind FROM reconciliation_item WHERE psp_id = ? AND psp_reference = ? ORDER BY kind",
                                                    arguments: [psp, reference])
                    if !kinds.contains(kind.rawValue) {
                        add(.reconciliationClassified, reference, kinds.isEmpty
                            ? "a settlement discrepancy at \(psp) (\(kind.rawValue)) was not classified"
                            : "a settlement discrepancy at \(psp) (\(kind.rawValue)) was classified as \(kinds.joined(separator: ", "))")
                    }
                }
            }
        }
        if broker.lag > 0 { add(.consumerLag, "broker", "\(broker.lag) event(s) not committed after healing") }
        if broker.deadLetterDepth > 0 { add(.deadLettersDrained, "broker", "\(broker.deadLetterDepth) event(s) left in the dead-letter topics") }
        for index in found.indices { found[index].trail = world.checker.trail(of: found[index].subject) }
        return (found, counts)
    }

    /// A broken engine's footprint, written behind the engine's back in a
    /// transaction of its own, between two held ones.
    /// - Parameter leakedCard: a card the engine took, for the card-number leak.
    static func applySabotage(_ sabotage: Sabotage, store: Store, leakedCard: String?) throws {
        try store.commitHeldTransaction()
        try writeSabotage(sabotage, store: store, leakedCard: leakedCard)
        try store.beginHeldTransaction()
    }

    private static func writeSabotage(_ sabotage: Sabotage, store: Store, leakedCard: String?) throws {
        try store.queue.write { db in
            let completed = try String.fetchOne(db, sql: "SELECT payment_id FROM payment WHERE status = 'completed' ORDER BY payment_id LIMIT 1")
            switch sabotage {
            case .unbalancedPosting:
                // One debit with no credit, chained as if it were a real
                // entry: the head moves to it, so the engine's next entry
                // follows it instead of colliding with its sequence.
                try db.execute(sql: """
                    INSERT INTO journal_entry (entry_id, transaction_id, time_ns, previous_hash, hash)
                    SELECT 'sabotage', 'sabotage', 0, hash, hash FROM journal_head WHERE id = 1
                    """)
                let sequence = db.lastInsertedRowID
                try db.execute(sql: """
                    INSERT INTO journal_posting (entry_sequence, line, account, side, amount_minor, currency)
                    VALUES (?, 0, 'platform:fees', 'debit', 100, 'USD')
                    """, arguments: [sequence])
                try db.execute(sql: "UPDATE journal_head SET sequence = ? WHERE id = 1", arguments: [sequence])
            case .journalRewritten:
                try db.execute(sql: "DROP TRIGGER journal_entry_append_only_update")
                try db.execute(sql: "UPDATE journal_entry SET transaction_id = transaction_id || '-rewritten' WHERE sequence = (SELECT MIN(sequence) FROM journal_entry)")
            case .terminalLeft:
                // A completed payment published as failed as well.
                guard let completed else { return }
                try db.execute(sql: """
                    INSERT INTO outbox (event_id, topic, partition_key, payload, created_ns)
                    SELECT replace(event_id, 'payment.completed', 'payment.failed'), topic, partition_key,
                           replace(payload, 'payment.completed', 'payment.failed'), created_ns
                    FROM outbox WHERE event_id = 'payment.completed:' || ?
                    """, arguments: [completed])
            case .overRefund:
                guard let completed else { return }
                try db.execute(sql: """
                    INSERT INTO refund (refund_id, payment_id, merchant_id, amount_minor, currency, status, psp_id, created_ns, updated_ns)
                    SELECT 'ref-sabotage', payment_id, merchant_id, captured_minor + 1, currency, 'processing', psp_id, 0, 0 FROM payment WHERE payment_id = ?
                    """, arguments: [completed])
            case .cardNumberInClear:
                // A card that really went in, as an engine logging its requests would leak it.
                guard let card = leakedCard else { return }
                try db.execute(sql: "INSERT INTO audit_log (subject_id, action, reason, created_ns) VALUES ('debug', 'log', ?, 0)",
                               arguments: ["card \(card)"])
            case .stuckPayment:
                try db.execute(sql: """
                    INSERT INTO payment (payment_id, user_id, merchant_id, amount_minor, currency, status, card_token,
                        card_masked, fraud_decision, created_ns, updated_ns)
                    VALUES ('pay-999999999', 'u-0', 'm-0', 100, 'USD', 'processing', 'tok', '411111******1111', 'approve', 0, 0)
                    """)
            case .walletDrift:
                try db.execute(sql: "UPDATE wallet SET balance_minor = balance_minor + 100, gross_minor = gross_minor + 100 WHERE (merchant_id, currency) = (SELECT merchant_id, currency FROM wallet ORDER BY merchant_id, currency LIMIT 1)")
            default:
                // The others live in the engine hosts (``Sabotage/writesStoreMidRun``).
                preconditionFailure("sabotage \(sabotage) writes nothing to the store")
            }
        }
    }
}

extension World {
    func paymentCreated(_ paymentID: String, request: Int64, card: String, at nanoseconds: Int64) {
        metrics.paymentsCreated += 1
        checker.created(request: request, resourceID: paymentID)
        checker.cardTaken(card)
        guard let number = InvariantChecker.paymentNumber(paymentID) else { return }
        createdAt[number] = nanoseconds
    }

    /// The broker accepted `event`.
    ///
    /// A payment's time to terminal runs, in virtual time, from its creation
    /// until its first terminal event reaches the broker. The event's own
    /// time is the engine clock of the replica that made the change, skewed
    /// by a clock-skew fault: +30 s on one replica put that skew into p99.
    func published(_ event: TransactionEvent) {
        guard checker.published(event), let number = InvariantChecker.paymentNumber(event.paymentID),
              let created = createdAt.removeValue(forKey: number) else { return }
        let at = kernel.now.nanoseconds
        metrics.terminal(at: at, afterSeconds: Double(at - created) / 1e9, completed: event.kind == .paymentCompleted)
    }

    /// A part after a report's first adds to the first's result (parts
    /// cover consecutive references, so their items stay in order).
    func reconciled(pspID: String, _ result: ReconciliationResult, part: Int = 0) {
        guard part > 0, let last = reconciliations.indices.last, reconciliations[last].pspID == pspID else {
            reconciliations.append((pspID, result))
            return
        }
        reconciliations[last].result.matched += result.matched
        reconciliations[last].result.expectedAbsent += result.expectedAbsent
        reconciliations[last].result.items.append(contentsOf: result.items)
    }

    /// The outbox backlog and the dead letters not yet replayed.
    func storeGauges() -> (outboxBacklog: Int, deadLetters: Int) {
        (try? store.read { db in
            let backlog = try PaymentEngine.outboxBacklog(in: db)
            let dead = try PaymentEngine.deadLetterCount(in: db)
            return (backlog, dead)
        }) ?? (0, 0)
    }
}
