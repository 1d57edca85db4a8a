import ArgumentParser
import PaystormWorld

extension Paystorm {
    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the queueing demo world: clients, servers, a crash and a restart, in virtual time.",
            discussion: """
                Open-loop Poisson clients send requests to servers with worker pools and \
                bounded queues; server 0 crashes at 40% of the run and restarts at 50%. \
                Prints latency percentiles with order-statistic confidence intervals, a \
                Clopper-Pearson availability bound and the trace hash. The same seed always \
                gives the same output.
                """)

        @Option(help: "Root seed.") var seed: UInt64 = 1
        @Option(help: "Requests to send.") var requests: Int = 200_000
        @Option(help: "Offered load, requests per second.") var rate: Double = 2_000
        @Option(help: "Servers.") var servers: Int = 4
        @Option(help: "Workers per server.") var workers: Int = 8
        @Option(help: "Wait-queue capacity per server.") var queue: Int = 200
        @Flag(help: "Run without the server crash.") var noCrash = false

        var configuration: QueueingDemo.Configuration {
            var config = QueueingDemo.Configuration()
            config.seed = seed
            config.requests = requests
            config.ratePerSecond = rate
            config.servers = servers
            config.workersPerServer = workers
            config.queueCapacity = queue
            if noCrash { config.crashWindow = nil }
            return config
        }

        func validate() throws {
            do {
                try configuration.validate()
            } catch {
                throw ValidationError(error.description)
            }
        }

        func run() throws {
            print(render(try QueueingDemo.run(configuration)))
        }

        func render(_ r: QueueingDemo.Report) -> String {
            var lines: [String] = []
            lines.append("queueing demo  seed=\(r.seed)  virtual time=\(format(r.virtualSeconds, 3)) s  events=\(r.events)")
            lines.append("requests: sent \(r.sent), succeeded \(r.succeeded), rejected \(r.rejected), timed out \(r.timedOut), outstanding \(r.outstanding)")
            let confidence = format(r.confidence * 100, 0)
            lines.append("availability >= \(format(r.availabilityLowerBound * 100, 4))% at \(confidence)% confidence (Clopper-Pearson)")
            lines.append("latency (ms, \(confidence)% order-statistic interval):")
            for q in r.latency {
                let lower = q.lower.map { format($0 * 1000, 2) } ?? "n/a (too few samples)"
                let upper = q.upper.map { format($0 * 1000, 2) } ?? "n/a (too few samples)"
                let label = "p" + trimmed(q.probability * 100)
                lines.append("  \(label.padding(toLength: 8, withPad: " ", startingAt: 0)) \(format(q.value * 1000, 2))  [\(lower), \(upper)]")
            }
            let c = r.counters
            lines.append("kernel: delivered \(c.delivered), timers cancelled \(c.timersCancelled), dropped by crash \(c.droppedByCrash), dropped while down \(c.droppedWhileDown), crashes \(c.crashes), restarts \(c.restarts), mailbox overflows \(c.mailboxOverflows), refused from crashed actors \(c.refusedFromCrashedActor), event-list overflows \(c.eventListOverflows), queue overflows \(r.queueOverflows), lost in crashes \(r.lostInCrashes)")
            lines.append("trace hash: \(r.traceHash)")
            return lines.joined(separator: "\n")
        }

        func trimmed(_ value: Double) -> String {
            var text = format(value, 2)
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
            return text
        }
    }
}
