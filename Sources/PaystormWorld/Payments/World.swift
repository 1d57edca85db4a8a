import Foundation
import PaystormEngine
import PaystormKernel
import PaystormStore

/// What every actor of one payments world shares: the kernel, the links,
/// the checker, the metrics and everyone's address. Single-threaded, like
/// the kernel that drives it.
final class World {
    /// Engine time is Unix-epoch nanoseconds (card expiry is judged on it):
    /// virtual time zero is this instant (2026-09-21).
    static let epochNanoseconds: Int64 = 1_790_000_000 * 1_000_000_000

    let configuration: WorldConfiguration
    let kernel: SimulationKernel<WorldMessage>
    let network: Network
    let checker: InvariantChecker
    let metrics: WorldMetrics
    let buggify: Buggify
    let store: Store
    /// What the PSPs really did, outside the engine's store.
    let truth: WorldTruth
    let engineConfiguration: EngineConfiguration
    /// The replicas' fraud state, shared as a real service shares it in a
    /// cache that outlives any one replica.
    let fraud: FraudDetector

    var gateway = ActorAddress.environment
    var replicas: [ActorAddress] = []
    var psps: [ActorAddress] = []
    var pspIndexByID: [String: Int] = [:]
    /// The PSP actors themselves, by index: the checker reads their outcomes.
    var pspModels: [PSP] = []
    var broker = ActorAddress.environment
    var relay = ActorAddress.environment
    /// Consumers by group (ledger, wallet, notification), then member.
    var consumers: [[ActorAddress]] = []
    var sink = ActorAddress.environment
    var clients = ActorAddress.environment
    /// True once the healing phase began: faults stop, BUGGIFY is off.
    var healing = false
    /// Refund successes still to be read as declines (the `refundMisread` sabotage).
    var refundRepliesToMisread = 0
    /// Events the notification consumer still has to skip (the `notificationDropped` sabotage).
    var notificationEventsToDrop = 0
    /// Retried payment requests whose idempotency record a replica still has
    /// to lose (the `idempotencyForgotten` sabotage).
    var idempotencyRecordsToForget = 0
    var refundIdempotencyRecordsToForget = 0
    /// Ambiguous charges a host still has to fail over from at once (the
    /// `failoverWhileAmbiguous` sabotage).
    var failoversToSabotage = 0
    /// Timers of PSP attempts armed and not yet fired, with the actor they
    /// will wake: the engine says when one is spent (the attempt was moved
    /// on by an answer, on any replica, or by a webhook), and it is cancelled
    /// instead of waking a replica to be ignored. A crashed actor's entries
    /// go with its timers.
    var attemptTimers: [EngineTimer: (handle: TimerHandle, owner: ActorAddress, due: Int64)] = [:]
    /// Virtual creation time of each payment not terminal yet, by payment
    /// number: its time to terminal is measured once, and then it is
    /// forgotten (an array of every payment grew with the run).
    var createdAt: [Int: Int64] = [:]
    /// When each scheduled fault really started and ended, in virtual
    /// seconds: healing ends the ones still active, and a fault due after
    /// healing began never starts.
    var faultWindows: [FaultWindow]
    /// Virtual seconds when healing began.
    var healingBeganSeconds: Double?
    /// Reconciliation results of the healing phase, by PSP.
    var reconciliations: [(pspID: String, result: ReconciliationResult)] = []

    static let groups: [EngineConsumer] = [.ledger, .wallet, .notification]

    init(configuration: WorldConfiguration, store: Store, truth: WorldTruth) throws {
        self.configuration = configuration
        faultWindows = Array(repeating: FaultWindow(), count: configuration.faults.count)
        self.store = store
        self.truth = truth
        kernel = SimulationKernel(configuration: KernelConfiguration(rootSeed: configuration.seed, maxPendingEvents: 8_000_000),
                                  expectedEvents: 1 << 16)
        network = Network(model: configuration.network)
        checker = InvariantChecker(seed: configuration.seed, truth: truth)
        metrics = WorldMetrics(windowSeconds: configuration.windowSeconds, pspIDs: configuration.psps.map(\.id))
        buggify = Buggify(model: configuration.buggify, rootSeed: configuration.seed)
        engineConfiguration = configuration.engineConfiguration
        fraud = FraudDetector(rules: engineConfiguration.fraudRules)
        checker.store = store
        let kernel = self.kernel
        checker.now = { kernel.now }
    }

    static func webhookSecret(_ pspID: String) -> String { "whsec-\(pspID)" }

    /// A new engine instance over the shared store (one per replica, relay, consumer).
    func makeEngine() -> PaymentEngine {
        // The keys are fixed test keys: a simulation's vault protects nothing real.
        try! PaymentEngine(sharing: store, configuration: engineConfiguration,
                           vaultEncryptionKey: Data(repeating: 0x5A, count: 32), vaultTokenKey: Data(repeating: 0xA5, count: 32),
                           fraud: fraud)
    }

    /// A timer came back to `actor`: no longer one to cancel — unless the
    /// entry is a later timer of the same identity, due another time.
    func timerFired(_ timer: EngineTimer, at actor: ActorAddress) {
        guard timer.isAttemptTimer, let armed = attemptTimers[timer], armed.owner == actor, armed.due == kernel.now.nanoseconds else { return }
        attemptTimers[timer] = nil
    }

    /// `actor` crashed, and its timers with it.
    func forgetTimers(of actor: ActorAddress) {
        attemptTimers = attemptTimers.filter { $0.value.owner != actor }
    }

    /// Engine time now, with an actor's clock offset.
    func engineNow(skew: Int64 = 0) -> Int64 { Self.epochNanoseconds + kernel.now.nanoseconds + skew }

    func spawn(_ actor: any SimActor<WorldMessage>, name: String) -> ActorAddress {
        let address = kernel.spawn(actor, name: name)
        network.names.append(name)
        precondition(network.names.count == Int(address.index) + 1)
        return address
    }

    /// Which broker partition a merchant's events go to (FNV-1a, stable across runs and builds).
    func partition(of merchantID: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in merchantID.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return Int(hash % UInt64(configuration.broker.partitions))
    }
}
