import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import PaystormScenario
import PaystormEngine
import PaystormServer
import PaystormWorld

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the payments API over HTTP: the engine on a durable SQLite file, PSP calls to a PSP over HTTP.",
        discussion: """
            Endpoints (openapi/paystorm.yaml): POST /payments, GET /payments/{id}, POST /refunds, \
            POST /webhook, GET /ledger, GET /health. Merchants authenticate with `Authorization: Bearer <key>`; \
            without --api-keys, `sk_test_<merchant_id>` is each merchant's key (development). \
            The database is SQLite in WAL mode, synchronous FULL: a payment is acknowledged only once committed. \
            Requests that arrive together share one commit (group commit). SIGTERM or SIGINT stops taking requests, \
            answers those in flight and drains the engine before exiting. One server a database: serve holds a lock on \
            it (<database>.lock) while it runs, and a second one on the same database, like one on a port already \
            taken, is refused (exit 64) before anything is written.

            Webhook secrets: --webhook-secrets FILE holds `name secret` lines (at least 16 characters each), one per \
            PSP in --psps (the secret it signs its webhooks with) and `notifications <secret>` (what merchant \
            notifications are signed with); give the sandbox the same file. Without it the public development \
            secrets are used, with which anyone could forge a webhook that completes a payment: serve then \
            refuses to listen on anything but a loopback --host. The same holds for the development keys: on \
            any other --host, give --api-keys and an --admin-key of your own.

            Dead letters: a merchant notification that failed every attempt, and an event a consumer (ledger, \
            wallet, notifications) refused, are parked, not dropped; `paystorm audit` lists them. Once their cause \
            is fixed, --replay-dead-letters hands each back once before serving: what is refused again stays parked, \
            with its new reason.

            Start a PSP first: `paystorm psp-sandbox --webhook-url http://127.0.0.1:8080/webhook`.
            """)

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 8080
    @Option(help: "The engine's SQLite database; the broker's is written beside it.") var database = "paystorm.sqlite"
    @Option(help: "Base URL of the PSPs.") var pspURL = "http://127.0.0.1:9090"
    @Option(help: "PSP ids in preference order, comma-separated.") var psps = "stripe,paypal"
    @Option(help: "POST merchant notifications here (e.g. the sandbox's /notifications); default: accepted in process.") var notifyURL: String?
    @Option(help: "A file of `merchant_id key` lines; turns off the sk_test_ keys.") var apiKeys: String?
    @Option(help: "The key that may read GET /ledger (the development default is accepted on loopback only).") var adminKey: String = ServerOptions.developmentAdminKey
    @Option(help: "A file of `name secret` lines: each PSP's webhook secret and `notifications <secret>`; required unless --host is loopback.") var webhookSecrets: String?
    @Option(help: "Requests per second per API key (0: no limit).") var rateLimit = 1_000.0
    @Option(help: "Seconds between reconciliations against the PSPs' settlement reports (0: off).") var reconcileEvery = 0.0
    @Option(help: "Seconds between checks of the journal head, logged as a witness for `paystorm audit --witness` when it moved (0: only at stop).") var witnessEvery = 60.0
    @Option(help: "HTTP connections to the PSPs, at most.") var pspConnections = 1_024
    @Option(help: "PEM certificate chain: serve HTTPS (with --tls-key).") var tlsCertificate: String?
    @Option(help: "PEM private key of --tls-certificate.") var tlsKey: String?
    @Flag(help: "Log only errors.") var quiet = false
    @Flag(help: "Before serving, send dead-lettered notifications again and hand parked events back to their consumers, once.") var replayDeadLetters = false

    func validate() throws {
        guard pspConnections >= 1 else { throw ValidationError("--psp-connections: expected at least 1") }
        guard psps.split(separator: ",", omittingEmptySubsequences: false).allSatisfy({ !$0.trimmingCharacters(in: .whitespaces).isEmpty }) else {
            throw ValidationError("--psps: expected comma-separated PSP ids, e.g. stripe,paypal")
        }
        guard (0...65_535).contains(port) else { throw ValidationError("--port: expected 0...65535, found \(port)") }
        guard rateLimit.isFinite && rateLimit >= 0 else {
            throw ValidationError("--rate-limit: expected requests per second >= 0 (0: no limit), found \(rateLimit)")
        }
        guard reconcileEvery == 0 || (1...86_400).contains(reconcileEvery) else {
            throw ValidationError("--reconcile-every: expected 0 (off) or seconds in 1...86400, found \(reconcileEvery)")
        }
        guard witnessEvery == 0 || (1...86_400).contains(witnessEvery) else {
            throw ValidationError("--witness-every: expected 0 (only at stop) or seconds in 1...86400, found \(witnessEvery)")
        }
    }

    func run() async throws {
        BenchServerChildren.stopWithParentIfAsked()
        var options = ServerOptions()
        options.host = host
        options.port = port
        options.databasePath = database
        options.pspURL = pspURL
        options.pspIDs = psps.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        options.notifyURL = notifyURL
        options.adminKey = adminKey
        options.rateLimit = rateLimit > 0 ? rateLimit : nil
        options.reconcileEverySeconds = reconcileEvery
        options.witnessEverySeconds = witnessEvery
        options.pspConnections = pspConnections
        options.tlsCertificatePath = tlsCertificate
        options.tlsKeyPath = tlsKey
        options.quiet = quiet
        options.replayDeadLetters = replayDeadLetters
        if let apiKeys {
            guard let text = try? String(contentsOfFile: apiKeys, encoding: .utf8) else {
                throw ValidationError("--api-keys: cannot read \(apiKeys)")
            }
            do {
                options.apiKeys = try APIKeys.parse(text, file: apiKeys, adminKey: adminKey)
            } catch {
                throw ValidationError("--api-keys: \(error)")
            }
            options.acceptsTestKeys = false
        }
        options.webhookSecrets = try webhookSecrets.map { try readWebhookSecrets($0, pspIDs: options.pspIDs, notifications: true) }
        do {
            try await PaymentServer.run(options)
        } catch let error as ServerError {
            throw ValidationError(error.description)
        }
    }
}

struct Sandbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "psp-sandbox",
        abstract: "Run local PSPs over HTTP with the simulated PSPs' behaviour profiles.",
        discussion: """
            Each PSP answers POST /psp/{id}/{charge|refund|status|cancel} (openapi/psp-sandbox.yaml): idempotent per key, \
            lognormal latency, declines, 503 transient errors, 429 rate limits, and the ambiguous failure (charged, \
            then 504). It sends signed webhooks to --webhook-url, serves settlement reports at \
            GET /psp/{id}/settlement, takes merchant notifications at POST /notifications, and reports what it did \
            (including any payment charged twice) at GET /stats. Webhooks are signed with the secrets of \
            --webhook-secrets FILE (the server's file: a `<psp> <secret>` line for each PSP), else with the public \
            development secrets that `serve` accepts on loopback only.
            """)

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 9090
    @Option(help: "Where to POST webhooks (the server's /webhook); none when absent.") var webhookURL: String?
    @Option(help: "The server's --webhook-secrets file: each PSP it names is served and signs its webhooks with its secret there (default: every PSP, with the public development secrets).") var webhookSecrets: String?
    /// Which behaviour the sandbox's PSPs (stripe and paypal) have.
    enum Profile: String, CaseIterable, ExpressibleByArgument {
        /// The simulator's stripe and paypal profiles.
        case `default`
        /// Each of them at its best (``PSPProfile/ideal``).
        case ideal
    }

    @Option(help: "The PSPs' behaviour: default (the simulator's stripe and paypal profiles) or ideal (fast, no errors, no webhooks).")
    var profile: Profile = .default
    @Option(help: "Override: median latency, seconds.") var latencyMedian: Double?
    @Option(help: "Override: share of transient errors.") var transientErrorRate: Double?
    @Option(help: "Override: share of ambiguous outcomes (charged, reply lost).") var ambiguousRate: Double?
    @Option(help: "Override: share of declines.") var declineRate: Double?
    @Option(help: "Share of merchant notifications that fail.") var notificationFailureRate = 0.02
    @Option(help: "Seed of the sandbox's random choices.") var seed: UInt64 = 1
    @Option(help: "HTTP connections for webhooks back to the server, at most (kept open and reused).") var webhookConnections = 512

    func validate() throws {
        _ = try profiles()
        guard (0...65_535).contains(port) else { throw ValidationError("--port: expected 0...65535, found \(port)") }
        if let webhookURL {
            do {
                try ServerOptions.checkHTTPURL(webhookURL, option: "--webhook-url")
            } catch {
                throw ValidationError(error.description)
            }
        }
        guard (0...1).contains(notificationFailureRate) else {
            throw ValidationError("--notification-failure-rate: expected a share in 0...1, found \(notificationFailureRate)")
        }
        guard (1...65_536).contains(webhookConnections) else {
            throw ValidationError("--webhook-connections: expected 1...65536, found \(webhookConnections)")
        }
    }

    /// The PSP profiles with the overrides applied.
    func profiles() throws -> [PSPProfile] {
        var profiles: [PSPProfile] = [.stripeLike, .paypalLike]
        if profile == .ideal { profiles = profiles.map(\.ideal) }
        func rate(_ value: Double?, _ name: String) throws -> Double? {
            guard let value else { return nil }
            guard (0...1).contains(value) else { throw ValidationError("--\(name): expected a share in 0...1, found \(value)") }
            return value
        }
        for index in profiles.indices {
            if let value = latencyMedian {
                guard value > 0 && value <= 60 else { throw ValidationError("--latency-median: expected seconds in (0, 60], found \(value)") }
                profiles[index].latencyMedianSeconds = value
            }
            if let value = try rate(transientErrorRate, "transient-error-rate") { profiles[index].transientErrorRate = value }
            if let value = try rate(ambiguousRate, "ambiguous-rate") { profiles[index].ambiguousRate = value }
            if let value = try rate(declineRate, "decline-rate") { profiles[index].declineRate = value }
        }
        return profiles
    }

    func run() async throws {
        BenchServerChildren.stopWithParentIfAsked()
        do {
            try await serve()
        } catch let error as ServerError {
            // A secrets file that names none of its PSPs, a port in use: bad input.
            throw ValidationError(error.description)
        }
    }

    func serve() async throws {
        let secrets = try webhookSecrets.map { try readWebhookSecrets($0, pspIDs: [], notifications: false) }
        let profiles = try PSPSandbox.profiles(try profiles(), signedBy: secrets)
        // AsyncHTTPClient's default pool keeps 8 connections per host: at a
        // thousand webhooks a second the sandbox spent more CPU opening
        // connections past that and dropping timed-out webhooks from the
        // pool's queue than on its PSPs.
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: webhookConnections)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        let sandbox = PSPSandbox(profiles: profiles, webhookURL: webhookURL, webhookSecrets: secrets, notificationFailureRate: notificationFailureRate,
                                 seed: seed, client: client, webhookConnections: webhookConnections)
        let host = self.host, port = self.port, names = profiles.map(\.id).joined(separator: ", ")
        let server = PSPSandboxServer(sandbox: sandbox, host: host, port: port) { bound in
            FileHandle.standardError.write(Data("paystorm psp-sandbox: \(names) on http://\(host):\(bound)\n".utf8))
        }
        // The webhook client is shut down however the server ends: left to
        // its deinit, it stopped the process with a fatal error after every
        // SIGTERM (webhooks still on their way fail, and are counted).
        do {
            try await server.runUntilSignalled()
        } catch {
            try? await client.shutdown()
            await sandbox.shutdown()
            throw error
        }
        await sandbox.shutdown()
        try await client.shutdown()
    }
}

/// Reads `--webhook-secrets FILE` and checks it has a secret for each of
/// `pspIDs` (and for merchant notifications, when `notifications`).
func readWebhookSecrets(_ path: String, pspIDs: [String], notifications: Bool) throws -> WebhookSecrets {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("--webhook-secrets: cannot read \(path)")
    }
    do {
        let secrets = try WebhookSecrets.parse(text, file: path)
        try secrets.require(pspIDs: pspIDs, notifications: notifications, file: path)
        return secrets
    } catch {
        throw ValidationError("--webhook-secrets: \(error)")
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a server's database: every safety invariant, the ledger's hash chain, acknowledged payments, double charges.",
        discussion: """
            Run it on a stopped server's database (after `kill -9`, too). Exit 0 when everything holds, 3 when an \
            invariant is violated, 64 on bad input. With --settled it also checks what holds once every event was \
            consumed (wallets equal the journal): stop the server gracefully first, so it drains.

            It lists the dead letters too — notifications that failed every attempt, events a consumer refused — \
            which `paystorm serve --replay-dead-letters` hands back once their cause is fixed. They are accounted \
            for, not violations; a refused ledger or wallet event shows as one under --settled, as wallets that \
            no longer equal the journal.

            The audit prints the journal's head as SEQUENCE:HASH. Keep it outside the database (a ticket, another \
            system's log): whoever can write the database can edit the journal and recompute every hash, or cut its \
            newest entries, and the chain alone still verifies. A later `--witness SEQUENCE:HASH` fails the audit \
            when the journal no longer reproduces that hash after that entry.
            """)

    @Option(help: "The server's SQLite database.") var database: String
    @Option(help: "A file of payment ids the server acknowledged, one per line (from `paystorm load --acknowledged`).") var acknowledged: String?
    @Option(help: "The PSP sandbox to ask for payments charged twice (GET /stats).") var sandbox: String?
    @Flag(help: "Also check the invariants of a drained server.") var settled = false
    @Option(name: .customLong("witness"), help: ArgumentHelp("A journal head an earlier audit printed, SEQUENCE:HASH, that the journal must still reproduce (repeatable).", valueName: "sequence:hash"))
    var witnesses: [String] = []

    func run() async throws {
        guard FileManager.default.fileExists(atPath: database) else {
            throw ValidationError("--database: no file at \(database)")
        }
        var heads: [Ledger.Witness] = []
        for text in witnesses {
            guard let witness = Ledger.Witness(text) else {
                throw ValidationError("--witness: expected SEQUENCE:HASH, an entry number from 1 and a chain hash of 64 hex digits, as an audit prints it; got '\(text)'")
            }
            if let other = heads.first(where: { $0.sequence == witness.sequence }) {
                guard other == witness else { throw ValidationError("--witness: two hashes for entry #\(witness.sequence): \(other) and \(witness)") }
                continue
            }
            heads.append(witness)
        }
        var ids: [String] = []
        if let acknowledged {
            guard let text = try? String(contentsOfFile: acknowledged, encoding: .utf8) else {
                throw ValidationError("--acknowledged: cannot read \(acknowledged)")
            }
            ids = ServerAudit.acknowledgedIDs(text)
        }
        var doubleCharged: [String] = []
        if let sandbox {
            let client = HTTPClient.shared
            do {
                let response = try await client.execute(HTTPClientRequest(url: sandbox + "/stats"), timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 64 << 20)
                doubleCharged = try JSONDecoder().decode(PSPSandbox.Stats.self, from: Data(buffer: body)).doubleCharged
            } catch {
                throw ValidationError("--sandbox: cannot read \(sandbox)/stats: \(error)")
            }
        }
        let findings: ServerAudit.Findings
        do {
            findings = try ServerAudit.run(databasePath: database, acknowledged: ids, settled: settled, doubleCharged: doubleCharged,
                                           witnesses: heads)
        } catch {
            throw ValidationError("--database: \(error)")
        }
        print("audit of \(database): \(findings.payments) payments, \(findings.journalEntries) journal entries, \(findings.acknowledged) acknowledged ids checked\(sandbox.map { ", double charges asked of \($0)" } ?? "")")
        if !heads.isEmpty && !findings.violations.contains(where: { $0.invariant == "ledger" }) {
            print("witnesses: the journal reproduces \(heads.count) head\(heads.count == 1 ? "" : "s") kept outside it")
        }
        if let head = findings.journalHead { print("journal head: \(head) (keep it outside the database: a later audit with --witness and this value fails if the journal up to #\(head.sequence) was changed)") }
        for line in ServerAudit.deadLetterReport(findings) { print(line) }
        for violation in findings.violations { print("VIOLATION \(violation)") }
        if findings.violations.isEmpty {
            print("all invariants hold\(settled ? " (safety and settled)" : " (safety)")")
        } else {
            print("\(findings.violations.count) violations")
            throw ExitCode(3)
        }
    }
}

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open-loop load against a running server, reported like a simulated run.",
        discussion: """
            Requests follow a schedule fixed in advance (Poisson arrivals at --rate, from --seed) and each is sent at \
            its time whatever the earlier ones are doing; latency runs from the scheduled time, so a slow server \
            cannot hide by slowing the generator (no coordinated omission). Writes report.json, report.md, \
            report.html, timeseries.csv and junit.xml to --out, so `paystorm compare` can set a measured run beside \
            a simulated one. Exit 0 when every --threshold passes, 2 when one fails, 5 when one is inconclusive.

            Example: paystorm load http://127.0.0.1:8080 --rate 2500 --duration 30 --threshold 'p(99)<25ms'
            """)

    @Argument(help: "The server's base URL.") var url: String
    @Option(help: "Requests per second offered.") var rate: Double
    @Option(help: "Seconds of load.") var duration: Double
    @Option(help: "Shares of payments, refunds and reads, as weights divided by their sum, e.g. payments=0.8,refunds=0.1,reads=0.1.") var mix = "payments=1"
    @Option(help: "Arrivals: poisson or constant.") var arrivals = "poisson"
    @Option(help: "Distinct merchants (keys sk_test_m0 … ).") var merchants = 20
    @Option(help: "HTTP connections, at most.") var connections = 64
    @Option(help: "Seconds before a request counts as unanswered.") var timeout = 10.0
    @Option(help: "Seed of the schedule and the request bodies.") var seed: UInt64 = 1
    @Option(name: .customLong("threshold"), help: "A threshold in the scenarios' syntax, e.g. 'p(99)<25ms' (repeatable).") var thresholds: [String] = []
    @Option(help: "Report directory.") var out = "Reports/load"
    @Option(help: "Write the ids of acknowledged payments here, one per line (for `paystorm audit`).") var acknowledged: String?
    @Flag(help: "No progress line.") var quiet = false

    func validate() throws {
        guard rate > 0, rate <= 1_000_000 else { throw ValidationError("--rate: expected requests per second in (0, 1000000], found \(rate)") }
        guard duration > 0, duration <= 86_400 else { throw ValidationError("--duration: expected seconds in (0, 86400], found \(duration)") }
        guard rate * duration <= Double(LoadGenerator.maximumRequests) else {
            throw ValidationError("--rate \(rate) for --duration \(duration) s is \(Int(rate * duration)) requests; the schedule is kept in memory, "
                                  + "at most \(LoadGenerator.maximumRequests) a run")
        }
        guard merchants >= 1 else { throw ValidationError("--merchants: expected at least 1") }
        guard connections >= 1 else { throw ValidationError("--connections: expected at least 1") }
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout: expected seconds > 0") }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ValidationError("URL: expected http://host:port, found \"\(url)\"")
        }
        _ = try parsedThresholds()
        _ = try options()
    }

    func parsedThresholds() throws -> [Threshold] {
        let parsed: [Threshold]
        do {
            parsed = try thresholds.map { text throws(ThresholdSyntaxError) in try Threshold.parse(text) }
        } catch {
            throw ValidationError("--threshold: \(error)")
        }
        // Judged from zeros it never measured, such a threshold would pass whatever the server did.
        if let index = parsed.firstIndex(where: { !$0.isMeasuredFromOutside }) {
            throw ValidationError("--threshold '\(thresholds[index])': a load run sees the answers, not the invariants, "
                + "the payments' ends or fraud; check those on the server's database with `paystorm audit`")
        }
        return parsed
    }

    /// The generator's options from the command's: the mix as shares, the arrivals.
    func options() throws -> LoadGenerator.Options {
        var options = LoadGenerator.Options(url: url, rate: rate, durationSeconds: duration)
        var shares = ["payments": 0.0, "refunds": 0.0, "reads": 0.0]
        var given: Set<String> = []
        for part in mix.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, shares[pair[0]] != nil, let value = Double(pair[1]), value >= 0, value.isFinite else {
                throw ValidationError("--mix: expected payments=X,refunds=Y,reads=Z with shares >= 0, found \"\(part)\"")
            }
            guard given.insert(pair[0]).inserted else { throw ValidationError("--mix: \(pair[0]) is given twice") }
            shares[pair[0]] = value
        }
        let sum = shares.values.reduce(0, +)
        guard sum > 0 else { throw ValidationError("--mix: the shares add up to 0") }
        options.paymentShare = shares["payments"]! / sum
        options.refundShare = shares["refunds"]! / sum
        switch arrivals {
        case "poisson": options.poisson = true
        case "constant": options.poisson = false
        default: throw ValidationError("--arrivals: expected poisson or constant, found \"\(arrivals)\"")
        }
        return options
    }

    func run() async throws {
        let parsed = try parsedThresholds()
        var options = try options()
        options.merchants = merchants
        options.connections = connections
        options.timeoutSeconds = timeout
        options.seed = seed

        // A server that is not there is bad input, not a measurement of 0% availability.
        do {
            _ = try await LoadGenerator.health(url)
        } catch {
            throw ValidationError("\(error)")
        }
        let showProgress = !quiet && isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["CI"] == nil
        var progress: (@Sendable (Int, Int) -> Void)?
        if showProgress {
            progress = { done, total in FileHandle.standardError.write(Data("\rload: \(done)/\(total) sent".utf8)) }
        }
        let result = try await LoadGenerator.run(options, progress: progress)
        if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }

        let measurement = LoadMeasurement(
            target: url, description: "paystorm load \(url) --rate \(rate) --duration \(duration) --mix \(mix) --arrivals \(arrivals)",
            seed: seed, durationSeconds: duration, elapsedSeconds: result.elapsedSeconds,
            maximumSendLagSeconds: result.maximumSendLagSeconds, acknowledgedPayments: result.acknowledged.count,
            requests: result.samples.map(Self.request))
        let document = measurement.document(thresholds: parsed)
        try ReportWriter.write(document, to: out)
        if let acknowledged {
            try (result.acknowledged.joined(separator: "\n") + "\n").write(toFile: acknowledged, atomically: true, encoding: .utf8)
        }
        let r = document.requests
        func ms(_ p: Double) -> String {
            document.latency.first { $0.percentile == p }.map { String(format: "%.2f ms", $0.seconds * 1_000) } ?? "n/a"
        }
        print(String(format: "load: %d requests offered at %.1f/s for %.0f s; %d answered (%.1f/s; %d of them 4xx), %d 5xx, %d 429, %d unanswered",
                     r.total, r.offeredPerSecond, duration, r.answered, r.achievedPerSecond, r.clientErrors, r.serverErrors, r.throttled, r.timedOut))
        print("latency from scheduled send: p50 \(ms(50)), p90 \(ms(90)), p99 \(ms(99)), p99.9 \(ms(99.9)); generator lag at worst \(String(format: "%.1f ms", result.maximumSendLagSeconds * 1_000))")
        if result.unsent > 0 {
            print("of the unanswered, \(result.unsent) were never sent within half their timeout: all \(connections) connections were busy (the server answered too slowly for this rate; --connections raises the limit), or the generator fell behind (its lag is below)")
        }
        print("acknowledged payments: \(result.acknowledged.count)")
        // Counted as answered (the server worked as specified), but a generator refused this often is not measuring what it meant to.
        if r.total > 0 && r.clientErrors * 10 >= r.total {
            FileHandle.standardError.write(Data(("warning: \(r.clientErrors) of \(r.total) requests were refused with a 4xx. "
                + "If this database has seen `paystorm load --seed \(seed)` before, its idempotency keys repeat: give each run its own --seed.\n").utf8))
        }
        for verdict in document.thresholds {
            print("  \(verdict.outcome.rawValue.uppercased()) \(verdict.threshold): \(verdict.observed) — \(verdict.detail)")
        }
        print("verdict: \(document.verdict.status) (exit \(document.verdict.exitCode)); reports in \(out)")
        if document.verdict.exitCode != 0 { throw ExitCode(document.verdict.exitCode) }
    }

    static func request(_ sample: LoadGenerator.Sample) -> LoadMeasurement.Request {
        LoadMeasurement.Request(dueSeconds: Double(sample.intendedNanoseconds) / 1e9, latencySeconds: Double(sample.latencyNanoseconds) / 1e9,
                                status: Int(sample.status), kind: kind(sample.kind))
    }

    static func kind(_ kind: LoadGenerator.Kind) -> LoadMeasurement.Request.Kind {
        switch kind {
        case .payment: .payment
        case .refund: .refund
        case .read: .read
        }
    }
}
