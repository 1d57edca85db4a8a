import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
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
            answers those in flight and drains the engine before exiting.

            Start a PSP first: `paystorm psp-sandbox --webhook-url http://127.0.0.1:8080/webhook`.
            """)

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 8080
    @Option(help: "The engine's SQLite database; the broker's is written beside it.") var database = "paystorm.sqlite"
    @Option(help: "Base URL of the PSPs.") var pspURL = "http://127.0.0.1:9090"
    @Option(help: "PSP ids in preference order, comma-separated.") var psps = "stripe,paypal"
    @Option(help: "POST merchant notifications here (e.g. the sandbox's /notifications); default: accepted in process.") var notifyURL: String?
    @Option(help: "A file of `merchant_id key` lines; turns off the sk_test_ keys.") var apiKeys: String?
    @Option(help: "The key that may read GET /ledger.") var adminKey = "sk_admin_dev"
    @Option(help: "Requests per second per API key (0: no limit).") var rateLimit = 1_000.0
    @Option(help: "Seconds between reconciliations against the PSPs' settlement reports (0: off).") var reconcileEvery = 0.0
    @Flag(help: "Log only errors.") var quiet = false

    func run() async throws {
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
        options.quiet = quiet
        guard !options.pspIDs.isEmpty, options.pspIDs.allSatisfy({ !$0.isEmpty }) else {
            throw ValidationError("--psps: expected comma-separated PSP ids, e.g. stripe,paypal")
        }
        guard (0...65_535).contains(port) else { throw ValidationError("--port: expected 0...65535, found \(port)") }
        if let apiKeys {
            guard let text = try? String(contentsOfFile: apiKeys, encoding: .utf8) else {
                throw ValidationError("--api-keys: cannot read \(apiKeys)")
            }
            do {
                options.apiKeys = try APIKeys.parse(text, file: apiKeys)
            } catch {
                throw ValidationError("--api-keys: \(error)")
            }
            options.acceptsTestKeys = false
        }
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
            (including any payment charged twice) at GET /stats.
            """)

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 9090
    @Option(help: "Where to POST webhooks (the server's /webhook); none when absent.") var webhookURL: String?
    @Option(help: "Profile: stripe,paypal (the simulator's defaults), or ideal (fast, no errors).") var profile = "default"
    @Option(help: "Override: median latency, seconds.") var latencyMedian: Double?
    @Option(help: "Override: share of transient errors.") var transientErrorRate: Double?
    @Option(help: "Override: share of ambiguous outcomes (charged, reply lost).") var ambiguousRate: Double?
    @Option(help: "Override: share of declines.") var declineRate: Double?
    @Option(help: "Share of merchant notifications that fail.") var notificationFailureRate = 0.02
    @Option(help: "Seed of the sandbox's random choices.") var seed: UInt64 = 1

    func run() async throws {
        var profiles: [PSPProfile] = [.stripeLike, .paypalLike]
        switch profile {
        case "default": break
        case "ideal":
            for index in profiles.indices {
                profiles[index].latencyMedianSeconds = 0.001
                profiles[index].latencySigma = 0
                profiles[index].declineRate = 0
                profiles[index].transientErrorRate = 0
                profiles[index].rateLimitRate = 0
                profiles[index].ambiguousRate = 0
                profiles[index].webhookRate = 0
            }
        default: throw ValidationError("--profile: expected default or ideal, found \"\(profile)\"")
        }
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
        _ = try rate(notificationFailureRate, "notification-failure-rate")
        let sandbox = PSPSandbox(profiles: profiles, webhookURL: webhookURL, notificationFailureRate: notificationFailureRate,
                                 seed: seed, client: HTTPClient(eventLoopGroupProvider: .singleton))
        let host = self.host, port = self.port, names = profiles.map(\.id).joined(separator: ", ")
        let app = Application(router: sandbox.router(),
                              configuration: .init(address: .hostname(host, port: port), serverName: "paystorm-psp-sandbox"),
                              onServerRunning: { channel in
                                  FileHandle.standardError.write(Data("paystorm psp-sandbox: \(names) on http://\(host):\(channel.localAddress?.port ?? port)\n".utf8))
                              })
        try await app.runService()
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a server's database: every safety invariant, the ledger's hash chain, acknowledged payments, double charges.",
        discussion: """
            Run it on a stopped server's database (after `kill -9`, too). Exit 0 when everything holds, 3 when an \
            invariant is violated, 64 on bad input. With --settled it also checks what holds once every event was \
            consumed (wallets equal the journal): stop the server gracefully first, so it drains.
            """)

    @Option(help: "The server's SQLite database.") var database: String
    @Option(help: "A file of payment ids the server acknowledged, one per line (from `paystorm load --acknowledged`).") var acknowledged: String?
    @Option(help: "The PSP sandbox to ask for payments charged twice (GET /stats).") var sandbox: String?
    @Flag(help: "Also check the invariants of a drained server.") var settled = false

    func run() async throws {
        guard FileManager.default.fileExists(atPath: database) else {
            throw ValidationError("--database: no file at \(database)")
        }
        var ids: [String] = []
        if let acknowledged {
            guard let text = try? String(contentsOfFile: acknowledged, encoding: .utf8) else {
                throw ValidationError("--acknowledged: cannot read \(acknowledged)")
            }
            ids = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
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
            findings = try ServerAudit.run(databasePath: database, acknowledged: ids, settled: settled, doubleCharged: doubleCharged)
        } catch {
            throw ValidationError("--database: \(error)")
        }
        print("audit of \(database): \(findings.payments) payments, \(findings.journalEntries) journal entries, \(findings.acknowledged) acknowledged ids checked\(sandbox.map { ", double charges asked of \($0)" } ?? "")")
        for violation in findings.violations { print("VIOLATION \(violation)") }
        if findings.violations.isEmpty {
            print("all invariants hold\(settled ? " (safety and settled)" : " (safety)")")
        } else {
            print("\(findings.violations.count) violations")
            throw ExitCode(3)
        }
    }
}
