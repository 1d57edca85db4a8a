import Crypto
import Foundation
import GRDB
import PaystormStore

/// The payments engine, sans-I/O.
///
/// Every entry point takes the engine time (`now`, Unix-epoch nanoseconds,
/// supplied by the host) and runs in one SQLite transaction: either all of
/// its writes and effects happen or none do. Effects — PSP calls, timers,
/// outbox publishes, notifications — are queued and handed to the host by
/// ``takeEffects()``; the engine performs no I/O, reads no clock and draws no
/// random numbers, so the simulator and the server run the same code.
///
/// In-memory state (circuit breakers, fraud windows) is soft: a restarted
/// engine rebuilds what matters from SQLite with ``recover(now:)``.
public final class PaymentEngine {
    public let store: Store
    public let configuration: EngineConfiguration
    let vault: CardVault
    let fraud: FraudDetector
    var breakers: [String: CircuitBreaker] = [:]

    /// Whether a call to `pspID` may be made now (see ``CircuitBreaker``).
    func admit(_ pspID: String, now: Int64) -> Bool {
        breakers[pspID, default: CircuitBreaker()].admit(now: now, openFor: configuration.breakerOpenNanoseconds)
    }
    var pending: [EngineEffect] = []
    /// Set while ``inBatch(_:)`` runs: the connection of its transaction.
    var batchDatabase: Database?
    /// Effects of the batch's commands, released when the batch commits.
    var batchEffects: [EngineEffect] = []
    /// Set when a command of the batch failed after writing: the batch rolls back.
    var batchFailure: (any Error)?
    /// The hot statements, prepared on the store's connection.
    let statements: EngineStatements
    /// Merchant webhook signers (HMAC keyed per merchant), derived once per merchant.
    var merchantSigners = MerchantSigners()
    /// Each PSP's webhook key, and the timestamp tolerance.
    let webhookVerifier: WebhookVerifier
    public internal(set) var counters = EngineCounters()

    /// Opens the engine on a new store at `location` (running its migrations).
    /// - Parameters:
    ///   - vaultEncryptionKey, vaultTokenKey: 32 bytes each, from the host's key store.
    public convenience init(store location: Store.Location, configuration: EngineConfiguration,
                            vaultEncryptionKey: Data, vaultTokenKey: Data) throws(EngineError) {
        let store: Store
        do {
            store = try Self.openStore(location)
        } catch {
            throw .storage(error.description)
        }
        try self.init(sharing: store, configuration: configuration,
                      vaultEncryptionKey: vaultEncryptionKey, vaultTokenKey: vaultTokenKey)
    }

    /// Opens an engine instance on a store that other instances may share:
    /// the replicas of one payment service, each with its own breakers over
    /// the same SQLite database.
    ///
    /// - Parameter fraud: the fraud windows and histories, shared by the
    ///   replicas as a real service shares them in a cache: each replica
    ///   with its own saw a third of a user's attempts at three replicas, and
    ///   a restarted one saw none. `nil` gives this instance its own.
    /// - Precondition: the store was opened with ``openStore(_:)``; `fraud`
    ///   was made with this configuration's rules.
    public init(sharing store: Store, configuration: EngineConfiguration,
                vaultEncryptionKey: Data, vaultTokenKey: Data, fraud: FraudDetector? = nil) throws(EngineError) {
        try configuration.validate()
        precondition(fraud.map { $0.rules == configuration.fraudRules } ?? true, "a shared fraud detector must judge by this configuration's rules")
        do {
            self.vault = try CardVault(encryptionKey: vaultEncryptionKey, tokenKey: vaultTokenKey)
        } catch {
            throw .storage(error.description)
        }
        self.store = store
        self.configuration = configuration
        self.fraud = fraud ?? FraudDetector(rules: configuration.fraudRules)
        self.statements = EngineStatements(store: store)
        self.webhookVerifier = WebhookVerifier(configuration)  // PSP ids are unique: validated above
        for route in configuration.psps { breakers[route.id] = CircuitBreaker() }
    }

    /// Opens (or creates) a store with the engine's schema.
    /// - Parameter allowsHeldTransactions: see ``Store/init(_:allowsHeldTransactions:migrations:)``.
    public static func openStore(_ location: Store.Location, allowsHeldTransactions: Bool = false) throws(StoreError) -> Store {
        try Store(location, allowsHeldTransactions: allowsHeldTransactions) { EngineSchema.register(in: &$0) }
    }

    /// The effects queued since the last call, in the order they arose.
    public func takeEffects() -> [EngineEffect] {
        defer { pending.removeAll(keepingCapacity: true) }
        return pending
    }

    /// The SQL this engine ran through its prepared statements since the
    /// last call, per statement: runs and SQLite virtual-machine
    /// instructions. They count work, not time, so they compare two builds
    /// on a machine too busy for their times to (`paystorm bench engine`
    /// prints them). Statements of the rare paths, run through GRDB, are not
    /// counted. Call it often enough that no statement runs more than 2³¹
    /// instructions in between (SQLite's counters are 32 bits), and like any
    /// other engine call: from the one thread that drives the engine, never
    /// during another call.
    public func takeSQLWork() -> [SQLWork] {
        statements.takeWork()
    }

    /// Runs `body` in one write transaction; its effects are queued only if
    /// it commits. Inside ``inBatch(_:)`` it runs in the batch's transaction
    /// instead (see there for how each command stays all-or-nothing).
    /// Errors come out as ``EngineError``.
    func transaction<T>(_ body: (Database, inout [EngineEffect]) throws -> T) throws(EngineError) -> T {
        var effects: [EngineEffect] = []
        do {
            if let db = batchDatabase {
                let value = try inBatchTransaction(db) { try body(db, &effects) }
                batchEffects.append(contentsOf: effects)
                return value
            }
            let value = try writeTransaction { db in try body(db, &effects) }
            pending.append(contentsOf: effects)
            return value
        } catch {
            throw Self.engineError(error)
        }
    }

    /// One command inside a batch, without a savepoint of its own. A command
    /// that fails before its first write leaves nothing behind, and every
    /// engine command checks before it writes, so only the storage failing
    /// under it can stop one half-way. That is noticed here (SQLite's count
    /// of changed rows moved, or SQLite ended the transaction) and the whole
    /// batch is rolled back: a batch commits whole commands only.
    ///
    /// Savepoints did the same work at a price: every page a command touched
    /// was first copied to the statement journal, about a fifth of an engine
    /// call in `paystorm bench engine`.
    private func inBatchTransaction<T>(_ db: Database, _ body: () throws -> T) throws -> T {
        guard batchFailure == nil, db.inTransaction else {
            throw EngineError.storage("the batch's transaction was ended by an earlier failure: \(batchFailure.map { "\($0)" } ?? "SQLite rolled it back")")
        }
        let changes = writesSoFar(db)
        do {
            return try body()
        } catch {
            if failedAfterWriting(db, changesBefore: changes) { batchFailure = error }
            throw error
        }
    }

    /// SQLite's count of changed rows and the writes the transaction has
    /// deferred to its commit (``EngineStatements/deferredWrites``).
    private func writesSoFar(_ db: Database) -> Int {
        db.changesSinceOpened + statements.deferredWrites
    }

    /// Whether a command that threw had written first — a row changed, or a
    /// write deferred to the commit (a ledger entry's balance changes before
    /// its postings failed) — or SQLite ended the transaction under it: either
    /// way the transaction it ran in must not commit.
    private func failedAfterWriting(_ db: Database, changesBefore: Int) -> Bool {
        writesSoFar(db) != changesBefore || !db.inTransaction
    }

    /// Runs `body` in one transaction on the store's connection with
    /// statements prepared once. GRDB's `write` compiles BEGIN and COMMIT
    /// (through its authorizer) on every call and tracks the transaction's
    /// database region: in the simulator, where every delivery is one engine
    /// call, that was about a fifth of all the time.
    ///
    /// While the host holds a transaction open (``Store/beginHeldTransaction()``)
    /// the call joins it instead: no BEGIN or COMMIT of its own, and a
    /// failure after writing is reported to the store, which then refuses
    /// to commit.
    private func writeTransaction<T>(_ body: (Database) throws -> T) throws -> T {
        let joins = store.holdsTransaction
        return try store.queue.writeWithoutTransaction { db in
            if joins {
                guard db.inTransaction else {
                    let error = EngineError.storage("the store's held transaction was ended under its writers")
                    store.joinedWriterFailed(error)
                    throw error
                }
                // As a batch refuses commands after one failed half-way:
                // nothing is built on top of half a command.
                guard !store.heldTransactionFailed else {
                    throw EngineError.storage("the store's held transaction will be rolled back: an earlier command failed after writing")
                }
            } else {
                try statements(.begin, db).execute()
            }
            // What the transaction changed in memory goes back with its rows
            // (a half-open breaker's probe was not sent; a payment that never
            // happened does not count toward its user's velocity). Not in a held
            // transaction: a failure there rolls back commands that did commit
            // here, and the store refuses the whole stretch.
            let breakersBefore = breakers, countersBefore = counters
            if !joins { fraud.beginTransaction() }
            statements.defersWrites = true
            let changes = writesSoFar(db)
            defer { statements.forgetTransaction() }
            do {
                let value = try body(db)
                try statements.writeBack(db)
                if !joins {
                    try statements(.commit, db).execute()
                    fraud.commitTransaction()
                }
                return value
            } catch {
                if joins {
                    // Not undone here: the store refuses to commit the stretch.
                    if failedAfterWriting(db, changesBefore: changes) { store.joinedWriterFailed(error) }
                } else {
                    if db.inTransaction {
                        // Report the command's own error; SQLite may already have rolled back.
                        try? statements(.rollback, db).execute()
                    }
                    breakers = breakersBefore
                    counters = countersBefore
                    fraud.rollBackTransaction()
                }
                throw error
            }
        }
    }

    /// A read: inside a batch it sees the batch's uncommitted writes. Outside
    /// one it runs on the connection directly (each of the engine's reads is
    /// one statement or tolerates commits between its statements, and every
    /// write goes through the same connection).
    func read<T>(_ body: (Database) throws -> T) throws(EngineError) -> T {
        do {
            if let db = batchDatabase { return try body(db) }
            return try store.queue.inDatabase(body)
        } catch {
            throw Self.engineError(error)
        }
    }

    static func engineError(_ error: any Error) -> EngineError {
        switch error {
        case let error as EngineError: return error
        case let error as LedgerError: return .storage(error.description)
        case let error as CardVaultError: return .storage(error.description)
        default: return .storage("\(error)")
        }
    }

    /// Group commit: runs several engine calls in one SQLite transaction.
    /// Each call inside is still all-or-nothing: a call that throws has
    /// written nothing, and its error reaches `body`. Should a call fail
    /// after writing (only a storage failure can), the whole batch is rolled
    /// back and this throws that error. The effects of the whole batch are
    /// released only once the transaction commits — a durable store
    /// acknowledges nothing before that.
    ///
    /// - Precondition: batches do not nest.
    public func inBatch<T>(_ body: () throws -> T) throws(EngineError) -> T {
        precondition(batchDatabase == nil, "engine batches do not nest")
        defer { batchFailure = nil }
        do {
            let result = try writeTransaction { db in
                batchDatabase = db
                defer { batchDatabase = nil }
                let result = try body()
                if let failure = batchFailure {
                    throw EngineError.storage("a command failed after writing, so its batch was rolled back: \(Self.engineError(failure))")
                }
                return result
            }
            pending.append(contentsOf: batchEffects)
            batchEffects.removeAll(keepingCapacity: true)
            return result
        } catch {
            batchEffects.removeAll(keepingCapacity: true)
            throw Self.engineError(error)
        }
    }

    /// Next value of a named counter (payment and refund ids): deterministic,
    /// shared by every engine instance on the same store.
    ///
    /// Read once per write transaction and stored once, before its commit
    /// (``EngineStatements/writeBack(_:)``): a group commit of 256 payments
    /// reads and writes its counter once, not 256 times. A transaction that
    /// rolls back draws nothing.
    func nextID(_ name: String, in db: Database) throws -> Int64 {
        try statements.nextValue(of: name, in: db)
    }

    /// Hex SHA-256 of `parts`, length-prefixed so no two lists collide.
    static func digest(_ parts: [String]) -> String {
        var hasher = SHA256()
        for var part in parts {
            withUnsafeBytes(of: Int64(part.utf8.count).bigEndian) { hasher.update(bufferPointer: $0) }
            part.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        }
        return Hex.encode(hasher.finalize())
    }

    /// The longest ``backoff(attemptID:try:base:cap:)`` can be: base·2^(try−1), at most `cap`.
    static func backoffCeiling(try attempt: Int, base: Int64, cap: Int64) -> Int64 {
        let exponent = min(max(attempt - 1, 0), 30)
        // base · 2^exponent ≤ cap exactly when base ≤ ⌊cap / 2^exponent⌋: no shift that could wrap.
        return base <= cap >> exponent ? base << exponent : cap
    }

    /// Exponential backoff with deterministic jitter: base·2^(try−1), capped,
    /// then scaled into [50%, 100%] by a hash of the attempt and try — the
    /// spread of random jitter without a random number generator.
    func backoff(attemptID: Int64, try attempt: Int, base: Int64, cap: Int64) -> Int64 {
        let raw = Self.backoffCeiling(try: attempt, base: base, cap: cap)
        var mix = UInt64(bitPattern: attemptID) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(attempt) &* 0xBF58_476D_1CE4_E5B9
        mix ^= mix >> 31
        let fraction = Double(mix % 1_000) / 1_000  // 0.000 ... 0.999
        return raw / 2 + Int64(Double(raw / 2) * fraction)
    }
}

/// Per-PSP circuit breaker. Closed, it lets every call through and counts
/// consecutive failures; at the threshold it opens for the open period.
/// After that it is half-open: exactly one call (the probe) goes through —
/// its success closes the breaker, its failure opens it again. A probe whose
/// outcome never comes back is replaced after another open period.
struct CircuitBreaker {
    var consecutiveFailures = 0
    var openUntilNanoseconds: Int64 = .min
    /// Set while a half-open probe is out: when it was let through.
    var probeSentAtNanoseconds: Int64?

    /// Whether a call may go to this PSP now; a half-open breaker admits one
    /// probe, so call this only for a call that will be made.
    mutating func admit(now: Int64, openFor: Int64) -> Bool {
        guard now >= openUntilNanoseconds else { return false }
        guard openUntilNanoseconds != .min else { return true }  // closed
        if let sent = probeSentAtNanoseconds, now < sent + openFor { return false }
        probeSentAtNanoseconds = now
        return true
    }

    mutating func recordSuccess() {
        consecutiveFailures = 0
        openUntilNanoseconds = .min
        probeSentAtNanoseconds = nil
    }

    mutating func recordFailure(now: Int64, threshold: Int, openFor: Int64) {
        consecutiveFailures += 1
        if consecutiveFailures >= threshold {
            openUntilNanoseconds = now + openFor
            probeSentAtNanoseconds = nil
        }
    }
}

/// What one prepared statement ran: see ``PaymentEngine/takeSQLWork()``.
public struct SQLWork: Sendable, Equatable {
    public var sql: String
    public var runs: Int
    public var instructions: Int

    public init(sql: String, runs: Int, instructions: Int) {
        self.sql = sql
        self.runs = runs
        self.instructions = instructions
    }
}
