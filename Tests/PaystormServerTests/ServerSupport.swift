import Foundation
import PaystormEngine
import PaystormStore
@testable import PaystormServer

/// A PSP that answers every call at once: charges and refunds succeed
/// (unless the amount is in `declineMinor`), status queries find them, and
/// every call is recorded.
final class InstantPSP: PSPPort, @unchecked Sendable {
    private let lock = NSLock()
    private var _calls: [PSPRequest] = []
    let declineMinor: Set<Int64>

    init(declineMinor: Set<Int64> = []) { self.declineMinor = declineMinor }

    var calls: [PSPRequest] { lock.withLock { _calls } }

    func call(_ request: PSPRequest, reply: @escaping @Sendable (PSPOutcome?) -> Void) {
        lock.withLock { _calls.append(request) }
        if declineMinor.contains(request.amount.minorUnits) && request.operation == .charge {
            reply(.declined(reason: "do_not_honor"))
        } else {
            reply(.succeeded(pspReference: "ref-\(request.idempotencyKey)"))
        }
    }
}

/// A temporary directory for one test's databases, removed at deinit.
final class TemporaryDirectory {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "paystorm-server-test-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}

enum ServerFixture {
    static let pspIDs = ["stripe", "paypal"]

    static func configuration() -> EngineConfiguration {
        let secrets = WebhookSecrets.development(pspIDs: pspIDs)
        return EngineConfiguration(psps: pspIDs.map { .init(id: $0, webhookSecret: secrets.psps[$0]!) })
    }

    /// No PSP timeout within a test, however slow the machine or however long
    /// a test task waits to be scheduled: calls in flight stay in flight, and
    /// are neither turned into status queries nor dropped as too old.
    static func patientConfiguration() -> EngineConfiguration {
        var configuration = configuration()
        configuration.pspTimeoutNanoseconds = 3_600_000_000_000
        return configuration
    }

    static func engine(at path: String, configuration: EngineConfiguration = configuration()) throws -> PaymentEngine {
        try PaymentEngine(store: .file(path: path), configuration: configuration,
                          vaultEncryptionKey: Data(repeating: 1, count: 32), vaultTokenKey: Data(repeating: 2, count: 32))
    }

    static func brokerPath(in directory: TemporaryDirectory) -> String { ServerOptions.brokerPath(beside: directory.file("engine.sqlite")) }

    /// A runner over a file database in `directory`, not started.
    static func runner(in directory: TemporaryDirectory, psp: any PSPPort = InstantPSP(),
                       notifier: any NotificationPort = AcceptingNotifier(),
                       configuration: EngineConfiguration = configuration(),
                       clockAnchor: (wall: Int64, monotonic: Int64)? = nil,
                       log: @escaping @Sendable (String) -> Void = { _ in }) throws -> EngineRunner {
        // Where `paystorm serve` keeps it: an audit of the engine's database finds it.
        let broker = try SQLiteBroker(.file(path: brokerPath(in: directory)), partitions: 4,
                                      retainedFor: EngineConsumer.allCases.map(\.rawValue))
        return EngineRunner(engine: try engine(at: directory.file("engine.sqlite"), configuration: configuration), broker: broker,
                            psp: psp, notifier: notifier, clockAnchor: clockAnchor, log: log)
    }

    /// The API over `runner`, with the development keys (`sk_test_<merchant>`, `sk_admin_dev`).
    static func api(_ runner: EngineRunner, limiter: RateLimiter? = nil) -> PaystormAPI {
        PaystormAPI(runner: runner, keys: APIKeys(adminKey: "sk_admin_dev", acceptsTestKeys: true), limiter: limiter, pspIDs: Set(pspIDs))
    }

    static func paymentJSON(merchant: String = "m1", key: String, amount: String = "10.50", user: String = "u1",
                            card: String = "4111111111111111") -> String {
        """
        {"user_id":"\(user)","merchant_id":"\(merchant)","amount":"\(amount)","currency":"USD",\
        "payment_method":{"type":"card","details":{"card_number":"\(card)","expiry_date":"12/39","cvv":"123"}},\
        "idempotency_key":"\(key)"}
        """
    }

    static func command(merchant: String = "m1", key: String, amount: String = "10.50", user: String = "u1",
                        card: String = "4111111111111111") -> CreatePaymentCommand {
        CreatePaymentCommand(userID: user, merchantID: merchant, amount: amount, currency: "USD",
                             card: CardInput(number: card, expiry: "12/39", cvv: "123"), idempotencyKey: key)
    }

    /// Waits (up to `seconds`) until `condition` holds.
    static func eventually(_ seconds: Double = 60, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return try await condition()
    }
}

/// Lines a runner logged, read from the test.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ line: String) { lock.withLock { lines.append(line) } }
    func contains(_ text: String) -> Bool { lock.withLock { lines.contains { $0.contains(text) } } }
    var all: [String] { lock.withLock { lines } }
}

/// A merchant endpoint that never answers: every notification stays out.
final class StuckNotifier: NotificationPort, @unchecked Sendable {
    private let lock = NSLock()
    private var taken = 0
    var count: Int { lock.withLock { taken } }
    func deliver(_ message: NotificationMessage, done: @escaping @Sendable (Bool) -> Void) { lock.withLock { taken += 1 } }
}

/// A merchant endpoint that accepts every notification `delaySeconds` after it was sent.
final class SlowNotifier: NotificationPort, @unchecked Sendable {
    let delaySeconds: Double
    private let lock = NSLock()
    private var taken = 0
    private var answered = 0
    init(delaySeconds: Double) { self.delaySeconds = delaySeconds }
    /// Notifications sent to it, and those it has answered.
    var counts: (taken: Int, answered: Int) { lock.withLock { (taken, answered) } }
    func deliver(_ message: NotificationMessage, done: @escaping @Sendable (Bool) -> Void) {
        lock.withLock { taken += 1 }
        DispatchQueue.global().asyncAfter(deadline: .now() + delaySeconds) { [self] in
            lock.withLock { answered += 1 }
            done(true)
        }
    }
}
