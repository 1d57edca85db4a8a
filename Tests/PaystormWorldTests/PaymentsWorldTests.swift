import Testing
@testable import PaystormWorld

/// A small world that runs in a few seconds of a debug build.
func smallWorld(payments: Int = 1_500, seed: UInt64 = 1, rate: Double = 300) -> WorldConfiguration {
    var configuration = WorldConfiguration()
    configuration.seed = seed
    configuration.payments = payments
    configuration.load = .constant(ratePerSecond: rate)
    configuration.clients.users = 20_000
    configuration.clients.merchants = 200
    configuration.service.replicas = 3
    configuration.healingSeconds = 90
    return configuration
}

func expectClean(_ report: WorldReport, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(report.violations == 0, "\(report.summary)", sourceLocation: sourceLocation)
    #expect(report.paymentsCompleted + report.paymentsFailed == report.paymentsCreated, "\(report.summary)", sourceLocation: sourceLocation)
    #expect(report.outstandingAtEnd == 0, sourceLocation: sourceLocation)
}

@Suite("Payments world: the real engine among modelled actors")
struct PaymentsWorldTests {
    @Test("a fault-free run ends with every payment terminal, books settled and no violation")
    func baseline() throws {
        var phases: [PaymentsWorld.Phase] = []
        let report = try PaymentsWorld.run(smallWorld(), phaseEnded: { phases.append($0) })
        expectClean(report)
        #expect(phases == PaymentsWorld.Phase.allCases, "each phase ends once, in order")
        #expect(report.paymentsStarted == 1_500)
        #expect(report.paymentsCompleted > 1_300)
        #expect(report.requests >= 1_500)
        #expect(report.answered >= report.requests - report.timedOut - report.serverErrors - report.throttled)
        #expect(report.brokerProduced >= report.paymentsCreated)
        #expect(report.notificationsDelivered >= 2 * report.paymentsCreated)
        #expect(report.latency.count == 5 && report.latency[0].value > 0)
        // A payment needs at least one PSP round trip (median 150 ms) to become terminal.
        #expect(report.timeToTerminal.count == 5 && report.timeToTerminal[0].value > 0.100)
        #expect(report.psp[0].charges > 0 && report.psp[0].succeeded > 0 && report.psp[0].webhooksSent > 0)
        // PSP-side ambiguous replies happened and were settled without harm.
        #expect(report.psp.reduce(0) { $0 + $1.ambiguous } > 0)
        #expect(report.windows.count >= 5)
        #expect(report.windows.reduce(0) { $0 + $1.offered } == report.requests)
    }

    @Test("the window the run ends in is closed too: a window longer than the run reports its latency")
    func lastWindowClosed() throws {
        var configuration = smallWorld(payments: 300)
        configuration.windowSeconds = 3_600
        let report = try PaymentsWorld.run(configuration)
        expectClean(report)
        let window = try #require(report.windows.first)
        #expect(report.windows.count == 1)
        #expect(window.answered == report.answered && window.answered > 0)
        #expect(window.latencyP50Seconds > 0 && window.latencyP99Seconds >= window.latencyP50Seconds
                && window.latencyMaxSeconds >= window.latencyP99Seconds, "\(window)")
    }

    @Test("the same seed gives the same trace and report; another seed does not")
    func determinism() throws {
        var configuration = smallWorld(payments: 600)
        configuration.faults = [ScheduledFault(atSeconds: 0.5, durationSeconds: 1, kind: .replicaCrash(replica: 0))]
        configuration.buggify.enabled = true
        configuration.buggify.fireProbability = 0.01
        let (first, second) = try PaymentsWorld.selfCheck(configuration)
        #expect(first.traceHash == second.traceHash)
        #expect(first.summary == second.summary)
        configuration.seed = 2
        let other = try PaymentsWorld.run(configuration)
        #expect(other.traceHash != first.traceHash)
    }

    @Test("a scratch-file store gives the same run as an in-memory one")
    func scratchStore() throws {
        var configuration = smallWorld(payments: 400)
        let memory = try PaymentsWorld.run(configuration)
        configuration.scratchDatabasePath = "/tmp/paystorm-world-test-\(configuration.seed).sqlite"
        let file = try PaymentsWorld.run(configuration)
        #expect(file.traceHash == memory.traceHash)
        #expect(file.violations == 0)
    }

    @Test("a settlement report reconciled in parts gives the result of the whole: every reference in exactly one part")
    func settlementInParts() throws {
        var configuration = smallWorld(payments: 800)
        for index in configuration.psps.indices {
            configuration.psps[index].settlementMissingRate = 0.03
            configuration.psps[index].settlementAmountErrorRate = 0.03
        }
        let whole = try PaymentsWorld.run(configuration)
        configuration.settlementPartRecords = 7
        let parts = try PaymentsWorld.run(configuration)
        expectClean(whole)
        expectClean(parts)  // liveness: every injected discrepancy was classified
        func described(_ report: WorldReport) -> [String] {
            report.reconciliation.map { "\($0.psp) matched \($0.matched) \($0.discrepancies.map { "\($0.kind)=\($0.count)" })" }
        }
        #expect(described(parts) == described(whole))
        // The first PSP took the payments (the second stands by for failover): a hundred-odd parts.
        #expect(whole.reconciliation.count == 2 && whole.reconciliation[0].matched > 500 && !whole.reconciliation[0].discrepancies.isEmpty,
                "\(described(whole))")
    }

    /// One replica of 8 workers at 5 ms a request, offered 2,000/s: it sheds.
    func overloadedReplica(payments: Int, queueCapacity: Int) -> WorldConfiguration {
        var configuration = smallWorld(payments: payments, rate: 2_000)
        configuration.service.replicas = 1
        configuration.service.workersPerReplica = 8
        configuration.service.queueCapacity = queueCapacity
        configuration.service.apiServiceMedianSeconds = 0.005
        return configuration
    }

    /// An overloaded replica sheds with 503s, and the network duplicates
    /// some replies. Each 503 is retried once: a second copy of it, or one
    /// for an attempt already retried, must not leave the request waiting
    /// out its timeout, which was longer here than any answer could take.
    @Test("a duplicated 503 never leaves a request waiting for its timeout")
    func duplicatedSheddingReplies() throws {
        var configuration = overloadedReplica(payments: 6_000, queueCapacity: 500)
        configuration.network.duplicationRate = 0.05
        configuration.clients.timeoutSeconds = 20
        let report = try PaymentsWorld.run(configuration)
        #expect(report.serverErrors + report.retries > 100 && report.networkDuplicated > 100, "\(report.summary)")
        let slowest = report.windows.map(\.latencyMaxSeconds).max() ?? 0
        #expect(report.timedOut == 0 && slowest < 10, "slowest answer \(slowest) s, \(report.timedOut) timed out")
    }

    /// A webhook a full accept queue refuses is lost; the report used to
    /// fold it into the queue overflows only, so a PSP's webhooks sent and
    /// the webhooks applied differed with nothing to say where the rest went.
    @Test("webhooks refused by a full accept queue are counted as dropped")
    func droppedWebhooksCounted() throws {
        let report = try PaymentsWorld.run(overloadedReplica(payments: 3_000, queueCapacity: 200))
        #expect(report.violations == 0, "\(report.summary)")
        #expect(report.webhooksDropped > 0 && report.webhooksDropped < report.queueOverflows, "\(report.summary)")
        let sent = report.psp.reduce(0) { $0 + $1.webhooksSent }
        #expect(report.webhooksApplied + report.webhooksRejected + report.webhooksDropped <= sent + report.networkDuplicated, "\(report.summary)")
    }

    /// Fraudsters start bursts of payments on their own timers; the last
    /// payment a burst starts must not let an arrival start one more.
    @Test("a run starts exactly the payments asked for, fraud bursts and all", arguments: UInt64(1)...6)
    func exactPaymentCount(seed: UInt64) throws {
        var configuration = smallWorld(payments: 300, seed: seed)
        configuration.clients.fraudulentUserShare = 0.3
        configuration.healingSeconds = configuration.minimumHealingSeconds
        let report = try PaymentsWorld.run(configuration)
        #expect(report.paymentsStarted == 300)
    }

    @Test("invalid configurations are refused with the field named")
    func validation() {
        var configuration = smallWorld()
        configuration.payments = 0
        #expect(throws: WorldConfigurationError(field: "payments", expected: "1...100000000, got 0")) { try configuration.validate() }
        configuration = smallWorld()
        configuration.psps[1].id = "stripe"
        #expect { try configuration.validate() } throws: { ($0 as? WorldConfigurationError)?.field == "psps[1].id" }
        configuration = smallWorld()
        configuration.faults = [ScheduledFault(atSeconds: 1, durationSeconds: 1, kind: .replicaCrash(replica: 9))]
        #expect { try configuration.validate() } throws: { ($0 as? WorldConfigurationError)?.field == "faults[0].replica" }
        configuration = smallWorld()
        configuration.psps[0].declineRate = 0.9
        configuration.psps[0].transientErrorRate = 0.2
        #expect { try configuration.validate() } throws: { ($0 as? WorldConfigurationError)?.field == "psps[0].rates" }
        // Faults that could never happen: a partition naming no actor, a start after the load.
        configuration = smallWorld()
        configuration.faults = [ScheduledFault(atSeconds: 1, durationSeconds: 5, kind: .partition(from: "replicas", to: "psp.stripe", oneWay: false))]
        #expect { try configuration.validate() } throws: {
            let error = $0 as? WorldConfigurationError
            return error?.field == "faults[0].from" && error!.expected.contains("replica.0") && error!.expected.contains("\"replicas\", which names none")
        }
        configuration.faults = [ScheduledFault(atSeconds: 1, durationSeconds: 5, kind: .partition(from: "replica", to: "psp.strip", oneWay: false))]
        #expect(throws: Never.self) { try configuration.validate() }
        configuration.faults = [ScheduledFault(atSeconds: 500, durationSeconds: 5, kind: .pspOutage(psp: "stripe"))]
        #expect(throws: WorldConfigurationError(field: "faults[0].at", expected: "a time before the load ends, about 5.0 s for 1500 payments at this load; a fault from 500 s on would never happen")) {
            try configuration.validate()
        }
        configuration = smallWorld()
        configuration.load = .ramp(from: 0, to: 0, overSeconds: 10)
        #expect { try configuration.validate() } throws: { ($0 as? WorldConfigurationError)?.field == "load" }
        // Healing shorter than the engine's own waits: 20 s to the next status
        // query and its 2 s timeout; at the second PSP 4 tries of 5 s backoff
        // and 2 s timeout, and a void (7 s); 7.5 s of notification retries;
        // 1 s for the run's step.
        configuration = smallWorld()
        #expect(configuration.minimumHealingSeconds == 66)
        configuration.healingSeconds = 65
        #expect { try configuration.validate() } throws: {
            let error = $0 as? WorldConfigurationError
            return error?.field == "healing" && error!.expected.hasPrefix("at least 66 s") && error!.expected.hasSuffix("got 65 s")
        }
        configuration.healingSeconds = 66
        #expect(throws: Never.self) { try configuration.validate() }
    }

    /// A sink that fails every other delivery dead-letters a replayed
    /// notification anew, and those of payments settled late in healing
    /// after the first replay: healing replays until it ends, so none is
    /// left. (One replay left some in every seed, at any healing.)
    @Test("healing replays the dead letters until it ends", arguments: UInt64(1)...2)
    func deadLettersReplayedToTheEnd(seed: UInt64) throws {
        var configuration = smallWorld(payments: 3_000, seed: seed)
        configuration.notificationFailureRate = 0.5
        configuration.faults = [ScheduledFault(atSeconds: 2, durationSeconds: 8, kind: .pspOutage(psp: "stripe"))]
        configuration.healingSeconds = configuration.minimumHealingSeconds
        let report = try PaymentsWorld.run(configuration)
        expectClean(report)
        #expect(report.notificationsFailed > 1_000, "\(report.summary)")
    }

    /// The shortest healing is enough: faults up to the end of the load —
    /// the first PSP down, the second browned out and cut off from the
    /// replicas — leave payments a correct engine is still rightly waiting
    /// on, and every one settles before liveness is judged. (With 30 s of
    /// healing some were still processing.)
    @Test("the shortest healing allowed settles every payment a correct engine was waiting on", arguments: UInt64(4)...6)
    func shortestHealingIsEnough(seed: UInt64) throws {
        var configuration = smallWorld(payments: 6_000, seed: seed)
        configuration.faults = [
            ScheduledFault(atSeconds: 5, durationSeconds: 15, kind: .pspOutage(psp: "stripe")),
            ScheduledFault(atSeconds: 10, durationSeconds: 10, kind: .pspBrownout(psp: "paypal", latencyFactor: 4, errorRate: 0.3)),
            ScheduledFault(atSeconds: 12, durationSeconds: 8, kind: .partition(from: "replica", to: "psp.paypal", oneWay: false)),
        ]
        configuration.healingSeconds = configuration.minimumHealingSeconds
        expectClean(try PaymentsWorld.run(configuration))
    }
}
