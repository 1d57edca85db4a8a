import AsyncHTTPClient
import Crypto
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PaystormEngine
import PaystormStore
import ServiceLifecycle

/// Everything `paystorm serve` is told.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// The engine's SQLite database (WAL); the broker's sits beside it.
    public var databasePath = "paystorm.sqlite"
    /// Base URL of the PSPs (`paystorm psp-sandbox`).
    public var pspURL = "http://127.0.0.1:9090"
    public var pspIDs = ["stripe", "paypal"]
    /// Where merchant notifications are POSTed; `nil` accepts them in process.
    public var notifyURL: String?
    public var apiKeys: [String: String] = [:]
    /// What PSP webhooks and merchant notifications are signed with; `nil`
    /// for the public development defaults, accepted on loopback only.
    public var webhookSecrets: WebhookSecrets?
    public var adminKey = ServerOptions.developmentAdminKey
    public var acceptsTestKeys = true
    /// Requests per second per API key; `nil` for no limit.
    public var rateLimit: Double? = 1_000
    /// Seconds between reconciliations against each PSP's settlement report; 0 turns it off.
    public var reconcileEverySeconds = 0.0
    /// Seconds between checks of the journal head, logged when it moved
    /// (``JournalWitnessLog``); 0 turns it off. The head is logged at stop either way.
    public var witnessEverySeconds = 60.0
    /// PEM files: with both, the API is served over HTTPS only.
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    public var brokerPartitions = 8
    /// HTTP connections to the PSPs, at most: a PSP answering in 150 ms at
    /// 5,000 calls/s has 750 calls open.
    public var pspConnections = 1_024
    /// How long a transaction waits for a lock another connection to the
    /// database holds before it fails: the engine thread waits meanwhile.
    public var busyTimeoutMilliseconds = 250
    /// A connection that sends nothing for this long — idle between
    /// requests, or stalled in the middle of one — is closed. Longer than
    /// the 60 s for which AsyncHTTPClient's pools (the sandbox's webhooks,
    /// `paystorm load`) keep an idle connection, so that the client, not the
    /// server, closes one it is about to reuse.
    public var idleTimeout: TimeAmount = .seconds(75)
    /// How long a graceful shutdown waits for the HTTP server to close its
    /// connections before closing them: then the engine drains.
    public var shutdownTimeout: Duration = .seconds(30)
    public var quiet = false
    /// Before serving, hand every dead letter back once (``EngineRunner/replayDeadLetters()``).
    public var replayDeadLetters = false

    public init() {}

    public var brokerPath: String { Self.brokerPath(beside: databasePath) }

    /// The broker's database of the server whose engine database is `databasePath`.
    public static func brokerPath(beside databasePath: String) -> String {
        URL(fileURLWithPath: databasePath).deletingPathExtension().path + "-broker.sqlite"
    }

    public var keyPath: String { databasePath + ".vault-keys" }

    /// The development keys — `sk_test_<merchant_id>` for any merchant and
    /// `sk_admin_dev` for the ledger — are public like the development
    /// webhook secrets: refused unless ``host`` is a loopback address.
    public func checkKeysFitHost() throws(ServerError) {
        guard !WebhookSecrets.isLoopback(host) else { return }
        if acceptsTestKeys {
            throw ServerError("--host \(host) is not a loopback address: give --api-keys FILE. Without it any `sk_test_<merchant_id>` "
                              + "is that merchant's key, and anyone who reaches the server could pay and refund as any merchant")
        }
        if adminKey == Self.developmentAdminKey {
            throw ServerError("--host \(host) is not a loopback address: give --admin-key. The development key \(Self.developmentAdminKey) "
                              + "is public; with it anyone who reaches the server could read the whole ledger")
        }
    }

    public static let developmentAdminKey = "sk_admin_dev"

    /// Refuses what would fail only once the server had made its database
    /// and keys: a URL that is not http(s), a database path that is a
    /// directory or in a directory that does not exist. (A PSP named twice is
    /// refused by ``engineConfiguration()``, a merchant given the admin key
    /// by ``APIKeys/parse(_:file:adminKey:)``, which names the line.)
    public func validate() throws(ServerError) {
        try Self.checkHTTPURL(pspURL, option: "--psp-url")
        if let notifyURL { try Self.checkHTTPURL(notifyURL, option: "--notify-url") }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: databasePath, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ServerError("--database: \(databasePath) is a directory; expected the path of a database file (made if absent)")
        }
        let directory = URL(fileURLWithPath: databasePath).deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ServerError("--database: no directory \(directory) to hold \(databasePath)")
        }
    }

    /// Refuses `text` unless it is an `http://` or `https://` URL with a host.
    public static func checkHTTPURL(_ text: String, option: String) throws(ServerError) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = url.host, !host.isEmpty else {
            throw ServerError("\(option): expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:9090, found \"\(text)\"")
        }
    }

    /// The secrets in force: those configured, else the development
    /// defaults — refused unless ``host`` is a loopback address, since they
    /// are public and would let anyone who reaches the server forge a PSP
    /// webhook that completes a payment.
    public func secrets() throws(ServerError) -> WebhookSecrets {
        if let webhookSecrets { return webhookSecrets }
        guard WebhookSecrets.isLoopback(host) else {
            throw ServerError("--host \(host) is not a loopback address: give --webhook-secrets FILE. The development webhook secrets "
                              + "are public; with them anyone who reaches the server could forge a PSP webhook that completes a payment")
        }
        return .development(pspIDs: pspIDs)
    }

    /// The engine's configuration: the PSPs in preference order with their
    /// webhook secrets, and the merchant notifications' secret.
    public func engineConfiguration() throws(ServerError) -> EngineConfiguration {
        var seen: Set<String> = []
        if let twice = pspIDs.first(where: { !seen.insert($0).inserted }) {
            throw ServerError("--psps: \(twice) is given more than once; name each PSP once, in preference order")
        }
        let inForce = try secrets()
        do throws(APIWire.BadRequest) {
            try inForce.require(pspIDs: pspIDs, notifications: true, file: "--webhook-secrets")
        } catch {
            throw ServerError("--webhook-secrets: \(error.message)")
        }
        var configuration = EngineConfiguration(psps: pspIDs.map { .init(id: $0, webhookSecret: inForce.psps[$0]!) })
        configuration.merchantWebhookSecret = inForce.notifications!
        do throws(EngineError) {
            try configuration.validate()
        } catch {
            throw ServerError("the engine's configuration: \(error)")
        }
        return configuration
    }
}

/// `paystorm serve`: the engine behind the design's HTTP API.
public enum PaymentServer {
    /// Asks the PSP at `baseURL` which wire version it speaks (its
    /// `GET /health`, header ``PSPWire/versionHeader``) and refuses to start
    /// against one that speaks another: its answers would be misread. Then
    /// refuses any of `pspIDs` it does not serve: asked for that PSP's
    /// settlement report over an empty period (a read, without the latency
    /// or the random draws of a call), the sandbox answers 404 `no PSP foo
    /// here` — as it would every call, and every payment routed there would
    /// wait. A PSP not up yet is only noted; each answer is checked as it comes.
    public static func checkPSPWire(client: HTTPClient, baseURL: String, pspIDs: [String] = [], log: @Sendable (String) -> Void) async throws {
        let base = HTTPPSPAdapter.trimmed(baseURL)
        let response: HTTPClientResponse
        do {
            response = try await client.execute(HTTPClientRequest(url: base + "/health"), timeout: .seconds(2))
            _ = try await response.body.collect(upTo: 1 << 16)
        } catch {
            log("the PSP at \(base) does not answer yet (\(error)); its wire version is checked on each answer")
            return
        }
        guard response.status == .ok else {
            log("the PSP at \(base) answers GET /health with \(response.status.code); its wire version is checked on each answer")
            return
        }
        if let problem = PSPWire.versionMismatch(response.headers.first(name: PSPWire.versionHeader), from: base) {
            throw ServerError("--psp-url: \(problem)")
        }
        for psp in pspIDs {
            let path = "/psp/\(psp)/settlement?from_ns=0&to_ns=0"
            let answer: HTTPClientResponse
            let body: ByteBuffer
            do {
                answer = try await client.execute(HTTPClientRequest(url: base + path), timeout: .seconds(2))
                body = try await answer.body.collect(upTo: 1 << 16)
            } catch {
                log("the PSP at \(base) does not answer GET \(path) (\(error)); PSP \(psp) is checked on each answer")
                continue
            }
            if answer.status == .notFound {
                throw ServerError("--psps: the PSP at \(base) does not serve PSP \(psp): GET \(path) answered 404 "
                                  + "(\(PSPWire.errorMessage(Data(buffer: body)))); give --psps only the PSPs it serves")
            }
        }
    }

    /// Binds `host:port` and lets it go again, so that a port another
    /// process holds refuses the start before the database, the vault keys
    /// and the engine are made (port 0 is always free).
    public static func checkCanListen(host: String, port: Int) async throws(ServerError) {
        guard port != 0 else { return }
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port).get()
            try await channel.close()
        } catch {
            throw listenError(host: host, port: port, error)
        }
    }

    static func listenError(host: String, port: Int, _ error: any Error) -> ServerError {
        let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
        return ServerError("cannot listen on \(host):\(port): \(reason); choose another --port or --host")
    }

    /// What `serve --replay-dead-letters` says it did, a line each.
    static func replayReport(_ replay: EngineRunner.DeadLetterReplay) -> [String] {
        var lines = ["dead letters replayed: \(replay.notifications) notification(s) sent again, \(replay.events) event(s) taken by their consumers, "
                     + "\(replay.stillFailing.count) refused again"]
        for letter in replay.stillFailing.prefix(20) { lines.append("  still a dead letter of \(letter)") }
        if replay.stillFailing.count > 20 { lines.append("  … and \(replay.stillFailing.count - 20) more (paystorm audit lists them)") }
        return lines
    }

    /// Opens the store and broker, recovers, and serves until SIGTERM or
    /// SIGINT; then drains in-flight work and returns.
    public static func run(_ options: ServerOptions) async throws {
        let quiet = options.quiet
        let log: @Sendable (String) -> Void = { line in
            if !quiet { FileHandle.standardError.write(Data("paystorm serve: \(line)\n".utf8)) }
        }
        let server = try httpServer(certificate: options.tlsCertificatePath, key: options.tlsKeyPath, idleTimeout: options.idleTimeout)
        let configuration = try options.engineConfiguration()
        try options.checkKeysFitHost()
        try options.validate()
        // Before anything is written: a refused start leaves no database or keys behind.
        try await checkPSPWire(client: .shared, baseURL: options.pspURL, pspIDs: options.pspIDs, log: log)
        try await checkCanListen(host: options.host, port: options.port)
        // Held until this function returns: the process's life as a server.
        let locks = try [DatabaseLock.acquire(databasePath: options.databasePath), DatabaseLock.acquire(databasePath: options.brokerPath)]
        defer { withExtendedLifetime(locks) {} }
        if options.webhookSecrets == nil {
            log("webhook secrets: the public development defaults, on loopback only (--webhook-secrets FILE sets real ones)")
        }
        let keys = try vaultKeys(at: options.keyPath, log: log)
        let engine = try PaymentEngine(store: .file(path: options.databasePath), configuration: configuration,
                                       vaultEncryptionKey: keys.encryption, vaultTokenKey: keys.token)
        let broker = try SQLiteBroker(.file(path: options.brokerPath), partitions: options.brokerPartitions,
                                      retainedFor: EngineConsumer.allCases.map(\.rawValue))
        // Another connection holding a lock for a moment (an audit, sqlite3) makes a batch
        // wait for it rather than fail at once; a batch that fails is answered with a 503.
        for store in [engine.store, broker.store] {
            try await store.queue.writeWithoutTransaction { try $0.execute(sql: "PRAGMA busy_timeout = \(options.busyTimeoutMilliseconds)") }
        }
        let clients = OutboundClients(pspURL: options.pspURL, pspConnections: options.pspConnections,
                                      notifyURL: options.notifyURL, notificationConnections: EngineRunner.defaultNotificationsOut)
        let notifier: any NotificationPort = options.notifyURL.map {
            HTTPNotifier(url: $0, client: clients.notifications, plain: clients.notificationsPlain)
        } ?? AcceptingNotifier()
        let psp = HTTPPSPAdapter(baseURL: options.pspURL, client: clients.psp, plain: clients.pspPlain, onWireMismatch: { log("PSP calls: \($0)") },
                                 onNotServed: { line in FileHandle.standardError.write(Data("paystorm serve: error: \(line)\n".utf8)) })
        let runner = EngineRunner(engine: engine, broker: broker, psp: psp, notifier: notifier, log: log)
        runner.maximumOutbound = options.pspConnections
        let resumed = try Reconciliation.resumed(engine, pspIDs: options.pspIDs)
        if options.replayDeadLetters {
            // Asked for: said even under --quiet.
            let replay = try runner.replayDeadLetters()
            for line in replayReport(replay) { FileHandle.standardError.write(Data("paystorm serve: \(line)\n".utf8)) }
        }
        try runner.start()

        let api = PaystormAPI(runner: runner,
                              keys: APIKeys(merchants: options.apiKeys, adminKey: options.adminKey, acceptsTestKeys: options.acceptsTestKeys),
                              limiter: options.rateLimit.map { RateLimiter(rate: $0, burst: max(1, $0)) },
                              pspIDs: Set(options.pspIDs))
        var logger = Logger(label: "paystorm") { RenderWhenLogged(label: $0) }
        logger.logLevel = options.quiet ? .error : .notice
        var services: [any Service] = [EngineService(runner: runner, clients: clients, log: log)]
        if options.reconcileEverySeconds > 0 {
            services.append(Reconciliation(runner: runner, pspIDs: options.pspIDs, every: options.reconcileEverySeconds,
                                           resumed: resumed, log: log) {
                [client = clients.psp, url = options.pspURL] psp, from, to in
                try await SandboxClient.settlementLines(client: client, baseURL: url, pspID: psp, from: from, to: to)
            })
        }
        let journalHead: @Sendable () async throws -> Ledger.Witness? = { [queue = engine.store.queue] in
            try await queue.read { try Ledger.head(in: $0) }
        }
        // Under --quiet nothing would be logged: no reads for it either.
        if options.witnessEverySeconds > 0 && !options.quiet {
            services.append(JournalWitnessLog(every: options.witnessEverySeconds, log: log, head: journalHead))
        }
        let scheme = options.tlsCertificatePath == nil ? "http" : "https"
        let app = Application(router: api.router(),
                              server: server,
                              configuration: .init(address: .hostname(options.host, port: options.port), serverName: "paystorm"),
                              services: services,
                              onServerRunning: { channel in
                                  log("listening on \(scheme)://\(options.host):\(channel.localAddress?.port ?? options.port) (database \(options.databasePath))")
                              },
                              logger: logger)
        var group = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = options.shutdownTimeout
        do {
            try await ServiceGroup(configuration: group).run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            // Taken since ``checkCanListen(host:port:)`` found it free.
            throw listenError(host: options.host, port: options.port, error)
        }
        // What the journal was when the server stopped, to keep elsewhere: `paystorm audit --witness` checks it later.
        if let head = try? await journalHead() {
            log("journal head at stop: \(head) (keep it outside the database; `paystorm audit --witness \(head)` checks the journal still gives it)")
        }
        log("stopped")
    }

    /// Plain HTTP/1.1, or HTTPS with the certificate chain and private key
    /// in the PEM files given (both or neither); a connection silent for
    /// `idleTimeout` is closed, also in the middle of a request.
    public static func httpServer(certificate: String?, key: String?, idleTimeout: TimeAmount? = ServerOptions().idleTimeout) throws -> HTTPServerBuilder {
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: idleTimeout))
        switch (certificate, key) {
        case (nil, nil):
            return http1
        case let (certificate?, key?):
            let chain: [NIOSSLCertificate]
            let privateKey: NIOSSLPrivateKey
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certificate)
            } catch {
                throw ServerError("--tls-certificate: cannot read a PEM certificate chain from \(certificate): \(error)")
            }
            guard !chain.isEmpty else { throw ServerError("--tls-certificate: \(certificate) holds no certificate") }
            do {
                privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            } catch {
                throw ServerError("--tls-key: cannot read a PEM private key from \(key): \(error)")
            }
            let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                        privateKey: .privateKey(privateKey))
            do {
                return try .tls(http1, tlsConfiguration: configuration)
            } catch {
                throw ServerError("TLS: the certificate and key do not make a server configuration: \(error)")
            }
        default:
            throw ServerError("TLS needs both --tls-certificate and --tls-key")
        }
    }

    /// The vault's two keys: read from `path`, or made and written there
    /// (mode 0600) on the first start. Losing them loses every stored card.
    static func vaultKeys(at path: String, log: (String) -> Void) throws -> (encryption: Data, token: Data) {
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count == 64 else {
                throw ServerError("vault key file \(path) holds \(data.count) bytes; 64 expected (two 32-byte keys)")
            }
            return (data.prefix(32), data.suffix(32))
        }
        let data = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) } + SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw ServerError("cannot write the vault key file \(path)")
        }
        log("made new vault keys in \(path)")
        return (data.prefix(32), data.suffix(32))
    }
}

public struct ServerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The server's HTTP clients, each with a connection pool of its own: one
/// for the PSPs, one for the merchant notifications. With one pool, a
/// notification URL on the PSP's host and port (the sandbox's
/// `/notifications`) made PSP calls queue behind notifications for a
/// connection and time out in the queue.
struct OutboundClients: Sendable {
    let psp: HTTPClient
    /// The PSP calls' own kept-alive connections when the PSP is at a plain
    /// `http://` URL (the settlement reports still go through `psp`).
    let pspPlain: KeepAliveHTTPClient.Target?
    let notifications: HTTPClient
    /// The notifications' own kept-alive connections when they go to a plain `http://` URL.
    let notificationsPlain: KeepAliveHTTPClient.Target?

    /// - Parameters:
    ///   - pspURL: the PSPs' base URL; `nil` or not plain `http://`: the
    ///     calls go through `psp` too.
    ///   - notifyURL: where notifications go; `nil` or not plain `http://`:
    ///     through `notifications`.
    ///   - pspConnections: the PSP calls out at once, at most (the runner's
    ///     ``EngineRunner/maximumOutbound``); the pool has one connection
    ///     more, for the reconciliation's settlement reports.
    ///   - notificationConnections: the notifications out at once, at most
    ///     (``EngineRunner/maximumNotificationsOut``).
    init(pspURL: String?, pspConnections: Int, notifyURL: String? = nil, notificationConnections: Int) {
        func client(connections: Int) -> HTTPClient {
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
            configuration.timeout = .init(connect: .seconds(1), read: .seconds(5))
            return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        }
        psp = client(connections: pspConnections + 1)
        pspPlain = pspURL.flatMap {
            KeepAliveHTTPClient.Target(plainURL: $0, loop: MultiThreadedEventLoopGroup.singleton.next(), connections: pspConnections,
                                       connectTimeout: .seconds(1))
        }
        notifications = client(connections: notificationConnections)
        notificationsPlain = notifyURL.flatMap {
            KeepAliveHTTPClient.Target(plainURL: $0, loop: MultiThreadedEventLoopGroup.singleton.next(), connections: notificationConnections,
                                       connectTimeout: .seconds(1))
        }
    }

    func shutdown() async {
        try? await pspPlain?.client.shutdown().get()
        try? await notificationsPlain?.client.shutdown().get()
        try? await psp.shutdown()
        try? await notifications.shutdown()
    }
}

/// Runs beside the HTTP server: on graceful shutdown (after the server has
/// stopped taking requests and answered those in flight) it drains the
/// engine thread, then closes the HTTP clients.
struct EngineService: Service {
    let runner: EngineRunner
    let clients: OutboundClients
    let log: @Sendable (String) -> Void

    func run() async throws {
        try? await gracefulShutdown()
        log("draining in-flight work")
        await runner.stop()
        await clients.shutdown()
    }
}

/// Waits `seconds` before a service's next round, or less: `false` when the
/// service should return instead. A graceful shutdown ends the wait at once
/// (the server drains its engine only after the services beside it have
/// returned), and so does cancellation (a cancelled task's sleep returns at
/// once: its loop must end, not spin).
func nextRound(after seconds: Double) async -> Bool {
    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(seconds)) }
    return !Task.isShuttingDownGracefully && !Task.isCancelled
}

/// Fetches each PSP's settlement report every `every` seconds and reconciles it.
struct Reconciliation: Service {
    let runner: EngineRunner
    let pspIDs: [String]
    let every: Double
    /// Per PSP, the end (Unix nanoseconds) of the last period reconciled
    /// before this server started, from the engine's store: the first round
    /// goes on from there, less the overlap, instead of from this start, so
    /// a restart passes no period over. A PSP absent starts here.
    let resumed: [String: Int64]
    let log: @Sendable (String) -> Void
    /// The lines of a PSP's settlement report stamped in `[from, to)`, Unix nanoseconds.
    let fetchLines: @Sendable (_ pspID: String, _ from: Int64, _ to: Int64) async throws -> [SettlementLine]

    /// How long before now a round's period ends: attempts still in flight
    /// then are settled by the next round.
    static let settlingNanoseconds: Int64 = 10_000_000_000
    /// How far past its period's end a round reads the report: an attempt
    /// made just before the end reaches the PSP, which stamps its line, just
    /// after it (a retried one, seconds after it); without them the round
    /// reported it missing at the PSP. Less than ``settlingNanoseconds``, so
    /// that the PSP has stamped these lines by the time the round runs.
    static let lateLinesNanoseconds: Int64 = 5_000_000_000
    /// How far a round reaches back before the end of the last one that
    /// succeeded: lines a PSP adds to its report late, or stamps by a clock
    /// behind ours. A discrepancy seen again in the overlap is not recorded
    /// twice (the engine records each once per PSP, reference and kind).
    static let overlapNanoseconds: Int64 = 60_000_000_000
    /// The longest period one round reads: after a long stop, the rounds
    /// catch up an hour at a time instead of fetching the whole gap at once.
    static let maximumPeriodNanoseconds: Int64 = 3_600_000_000_000

    /// ``resumed``, read from the engine's store before the engine starts:
    /// the wall-clock ends of the last run's rounds.
    static func resumed(_ engine: PaymentEngine, pspIDs: [String]) throws(EngineError) -> [String: Int64] {
        try engine.reconciledThrough().filter { pspIDs.contains($0.key) }
    }

    /// Where each resumed PSP's rounds go on from: its last end, but never
    /// after `now` — an end a wrong clock put in the future would hold
    /// every round back until then.
    static func resumePoints(_ resumed: [String: Int64], now: Int64) -> [String: Int64] {
        resumed.mapValues { min($0, now) }
    }

    /// The period of a PSP's next round, `[from, to)` in Unix nanoseconds:
    /// from the end of its last reconciled period less the overlap (from
    /// `start` at first, never before it), up to ``settlingNanoseconds``
    /// before `now` and at most ``maximumPeriodNanoseconds`` long; `nil`
    /// while that is empty. A round reads only its period of the report,
    /// not everything since the server started.
    static func period(reconciledThrough: Int64?, start: Int64, now: Int64) -> (from: Int64, to: Int64)? {
        let from = reconciledThrough.map { max(start, $0 - overlapNanoseconds) } ?? start
        let to = min(now - settlingNanoseconds, from + maximumPeriodNanoseconds)
        return to > from ? (from, to) : nil
    }

    /// Reconciles `psp` over `[from, to)`, Unix nanoseconds: the engine
    /// expects the attempts it made in the period, and matches them against
    /// the lines stamped in it and up to ``lateLinesNanoseconds`` after it.
    ///
    /// The engine stamps its attempts with engine time, which drifts from
    /// the wall clock (a suspended VM, a stepped clock: see
    /// ``EngineRunner/engineTimeAheadOfWallNanoseconds()``); the PSP stamps
    /// its lines by the wall clock. So the period the engine is given is
    /// the round's, moved by the drift: it expects the attempts it made in
    /// the period by the wall clock, not those whose engine time falls in it.
    func round(psp: String, from: Int64, to: Int64) async throws -> ReconciliationResult {
        let lines = try await fetchLines(psp, from, to + Self.lateLinesNanoseconds)
        let drift = runner.engineTimeAheadOfWallNanoseconds()
        let report = SettlementReport(pspID: psp, periodStartNanoseconds: from + drift, periodEndNanoseconds: to + drift, lines: lines)
        // The round's end by the wall clock is kept with it: where a restart goes on from.
        switch await runner.perform(.reconcile(report, mark: to)) {
        case let .success(.reconciliation(result)): return result
        case let .failure(error): throw error
        default: preconditionFailure("the engine runner answered a reconciliation with something else")
        }
    }

    func run() async throws {
        let start = WallClock.nanoseconds()
        let points = Self.resumePoints(resumed, now: start)
        var reconciledThrough = points
        for (psp, through) in points.sorted(by: { $0.key < $1.key }) {
            let last = resumed[psp]!
            log("reconciliation with \(psp) resumes from \(through) ns, "
                + (last > through ? "not from the last run's end, which lies in the future (\(last) ns)" : "where the last run left it"))
        }
        while await nextRound(after: every) {
            for psp in pspIDs {
                // A resumed PSP's rounds may reach back before this start, to the overlap before its last period's end.
                let floor = points[psp].map { $0 - Self.overlapNanoseconds } ?? start
                guard let (from, to) = Self.period(reconciledThrough: reconciledThrough[psp], start: floor, now: WallClock.nanoseconds()) else { continue }
                do {
                    let result = try await round(psp: psp, from: from, to: to)
                    // A failed round is not passed over: the next one starts where this one did.
                    reconciledThrough[psp] = to
                    log("reconciled \(psp) for [\(from), \(to)) ns: \(result.matched) matched, \(result.items.count) discrepancies")
                } catch {
                    log("reconciliation with \(psp) failed: \(error)")
                }
            }
        }
    }
}

/// swift-log's standard-error handler, with the metadata kept here and
/// rendered only for a message that is written. Hummingbird gives every
/// request's logger a request id, and `StreamLogHandler` renders all its
/// metadata to text on every change: about 2% of the server's CPU at
/// 2,500 payments a second, for lines that a server at `.notice` (or
/// `--quiet`) never writes.
struct RenderWhenLogged: LogHandler {
    /// Writes each line; given all its metadata with the line, through no provider of its own.
    private var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String) {
        stream = StreamLogHandler.standardError(label: label)
        metadataProvider = stream.metadataProvider
        stream.metadataProvider = nil
    }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Hands the stream its metadata as `StreamLogHandler` orders it: this
    /// handler's, then the provider's, then the message's, each over the one before.
    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, provided in provided } }
        if let explicit = event.metadata { merged.merge(explicit) { _, explicit in explicit } }
        var event = event
        event.metadata = merged
        stream.log(event: event)
    }
}
