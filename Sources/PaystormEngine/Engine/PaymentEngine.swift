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
    var pending: [EngineEffect] = []
    public internal(set) var counters = EngineCounters()

    /// Opens the engine on `store` (running its migrations).
    /// - Parameters:
    ///   - vaultEncryptionKey, vaultTokenKey: 32 bytes each, from the host's key store.
    public init(store location: Store.Location, configuration: EngineConfiguration,
                vaultEncryptionKey: Data, vaultTokenKey: Data) throws(EngineError) {
        try configuration.validate()
        do {
            self.store = try Store(location) { EngineSchema.register(in: &$0) }
            self.vault = try CardVault(encryptionKey: vaultEncryptionKey, tokenKey: vaultTokenKey)
        } catch let error as StoreError {
            throw .storage(error.description)
        } catch {
            throw .storage("\(error)")
        }
        self.configuration = configuration
        self.fraud = FraudDetector(rules: configuration.fraudRules)
        for route in configuration.psps { breakers[route.id] = CircuitBreaker() }
    }

    /// The effects queued since the last call, in the order they arose.
    public func takeEffects() -> [EngineEffect] {
        defer { pending.removeAll(keepingCapacity: true) }
        return pending
    }

    /// Runs `body` in one write transaction; its effects are queued only if
    /// it commits. Errors come out as ``EngineError``.
    func transaction<T>(_ body: (Database, inout [EngineEffect]) throws -> T) throws(EngineError) -> T {
        var effects: [EngineEffect] = []
        do {
            let value = try store.queue.write { db in try body(db, &effects) }
            pending.append(contentsOf: effects)
            return value
        } catch let error as EngineError {
            throw error
        } catch let error as LedgerError {
            throw .storage(error.description)
        } catch let error as CardVaultError {
            throw .storage(error.description)
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Next value of a named counter (payment and refund ids): deterministic,
    /// shared by every engine instance on the same store.
    func nextID(_ name: String, in db: Database) throws -> Int64 {
        try db.run("INSERT INTO counter (name, value) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1", [name])
        return try db.value("SELECT value FROM counter WHERE name = ?", as: Int64.self, [name])!
    }

    /// Hex SHA-256 of `parts`, length-prefixed so no two lists collide.
    static func digest(_ parts: [String]) -> String {
        var hasher = SHA256()
        for part in parts {
            withUnsafeBytes(of: Int64(part.utf8.count).bigEndian) { hasher.update(bufferPointer: $0) }
            hasher.update(data: Data(part.utf8))
        }
        return Hex.encode(hasher.finalize())
    }

    /// Exponential backoff with deterministic jitter: base·2^(try−1), capped,
    /// then scaled into [50%, 100%] by a hash of the attempt and try — the
    /// spread of random jitter without a random number generator.
    func backoff(attemptID: Int64, try attempt: Int, base: Int64, cap: Int64) -> Int64 {
        let exponent = min(max(attempt - 1, 0), 30)
        let raw = min(cap, base << exponent)
        var mix = UInt64(bitPattern: attemptID) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(attempt) &* 0xBF58_476D_1CE4_E5B9
        mix ^= mix >> 31
        let fraction = Double(mix % 1_000) / 1_000  // 0.000 ... 0.999
        return raw / 2 + Int64(Double(raw / 2) * fraction)
    }
}

/// Per-PSP circuit breaker: opens after consecutive failures, lets one call
/// through after the open period (half-open), closes on success.
struct CircuitBreaker {
    var consecutiveFailures = 0
    var openUntilNanoseconds: Int64 = .min

    func allows(now: Int64) -> Bool { now >= openUntilNanoseconds }

    mutating func recordSuccess() {
        consecutiveFailures = 0
        openUntilNanoseconds = .min
    }

    mutating func recordFailure(now: Int64, threshold: Int, openFor: Int64) {
        consecutiveFailures += 1
        if consecutiveFailures >= threshold { openUntilNanoseconds = now + openFor }
    }
}
