import Foundation
import PaystormStatistics
import PaystormWorld

/// Swarm testing: each seed draws its own faults and knobs from the
/// scenario's world — which faults, when, how long, which BUGGIFY sites, how
/// lossy the links — so a farm of seeds explores configurations no one wrote
/// down. The draw depends only on the seed and the scenario.
public enum Swarm {
    public static func configure(_ base: WorldConfiguration, seed: UInt64) -> WorldConfiguration {
        var world = base
        world.seed = seed
        let random = RandomStream(rootSeed: seed, stream: "swarm")
        // Faults start during the load (healing ends them): a start drawn
        // past it would be a fault that never happens.
        let load = base.expectedLoadSeconds
        let psps = base.psps.map(\.id)
        var faults = base.faults
        for _ in 0..<(1 + random.uniformInt(below: 4)) {
            let at = random.uniform() * load * 0.8
            let duration = 2 + random.uniform() * min(60, load / 3)
            let kind: ScheduledFault.Kind
            switch random.uniformInt(below: 9) {
            case 0: kind = .pspOutage(psp: psps[random.uniformInt(below: psps.count)])
            case 1: kind = .pspBrownout(psp: psps[random.uniformInt(below: psps.count)], latencyFactor: 2 + random.uniform() * 8,
                                        errorRate: random.uniform() * 0.4)
            case 2: kind = .partition(from: "replica", to: "psp.\(psps[random.uniformInt(below: psps.count)])", oneWay: random.bernoulli(0.5))
            case 3: kind = .replicaCrash(replica: random.uniformInt(below: base.service.replicas))
            case 4: kind = .brokerPartitionDown(partition: random.uniformInt(below: base.broker.partitions))
            case 5: kind = .consumerCrash(group: ["ledger", "wallet", "notification"][random.uniformInt(below: 3)],
                                          index: random.uniformInt(below: base.broker.consumersPerGroup))
            case 6: kind = .webhookStorm(psp: psps[random.uniformInt(below: psps.count)], count: 100 + random.uniformInt(below: 5_000))
            case 7: kind = .clockSkew(replica: random.uniformInt(below: base.service.replicas), offsetSeconds: random.uniform() * 10 - 5)
            default: kind = .relayCrash
            }
            faults.append(ScheduledFault(atSeconds: (at * 1_000).rounded() / 1_000, durationSeconds: (duration * 1_000).rounded() / 1_000, kind: kind))
        }
        world.faults = faults
        world.buggify.enabled = true
        world.buggify.enableProbability = 0.5
        world.buggify.fireProbability = [0.0005, 0.001, 0.005][random.uniformInt(below: 3)]
        if random.bernoulli(0.3) { world.network.lossRate = random.uniform() * 0.01 }
        if random.bernoulli(0.3) { world.network.duplicationRate = random.uniform() * 0.01 }
        return world
    }
}

/// Delta debugging (ddmin) over a run's fault schedule: the smallest subset
/// of faults under which the run still ends with the same failure.
public enum Shrinker {
    public struct Outcome: Sendable {
        public var original: [ScheduledFault]
        public var minimal: [ScheduledFault]
        public var runs: Int
        public var status: ExitStatus
    }

    /// - Parameter fails: runs a world with the given faults; whether it fails the same way.
    /// - Returns: the smallest schedule found, the runs spent, and whether it
    ///   is 1-minimal (no single fault, or chunk ddmin tried, could go):
    ///   `false` when `runLimit` ran out first.
    public static func shrink(_ faults: [ScheduledFault], runLimit: Int = 64,
                              fails: ([ScheduledFault]) throws -> Bool) rethrows -> (minimal: [ScheduledFault], runs: Int, proven: Bool) {
        var current = faults
        var granularity = 2
        var runs = 0
        var proven = false
        search: while true {
            if current.count < 2 {
                proven = true
                break
            }
            let chunk = Int((Double(current.count) / Double(granularity)).rounded(.up))
            var reduced = false, triedAll = true
            // Try each complement (drop one chunk), the ddmin step that keeps progress steady.
            for start in stride(from: 0, to: current.count, by: chunk) {
                let complement = Array(current[..<start]) + Array(current[min(current.count, start + chunk)...])
                guard !complement.isEmpty else { continue }
                guard runs < runLimit else {
                    triedAll = false
                    break
                }
                runs += 1
                if try fails(complement) {
                    current = complement
                    granularity = max(granularity - 1, 2)
                    reduced = true
                    break
                }
            }
            if reduced { continue }
            if !triedAll { break search }  // the budget ran out
            if granularity >= current.count {
                proven = true
                break
            }
            granularity = min(current.count, granularity * 2)
        }
        // One fault left: the failure may need none.
        if proven && current.count == 1 {
            if runs < runLimit {
                runs += 1
                if try fails([]) { current = [] }
            } else {
                proven = false
            }
        }
        return (current, runs, proven)
    }

    /// The scenario file `original` with `world`'s seed and faults in place
    /// of its own, and for a swarm run (`swarm`) the knobs the swarm drew:
    /// BUGGIFY's settings and the network's. Run as it is, it makes the run
    /// `world` makes. With `description`, that replaces the file's own
    /// (which may say "no faults" of a file that now has some). The blocks
    /// it replaces are cut out at the top level; everything else, comments
    /// too, is kept.
    public static func scenarioText(_ original: String, world: WorldConfiguration, swarm: Bool, description: String? = nil) -> String {
        var replaced: Set<String> = ["seed", "faults"]
        if description != nil { replaced.insert("description") }
        if swarm { replaced.formUnion(["buggify", "network"]) }
        var kept: [Substring] = []
        var cutting = false
        // "\r\n" is one Character: split on it too. A block goes on through
        // indented lines, comments and a list's items at the key's own column.
        for line in original.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let continues = line.first == " " || line.first == "\t" || line.first == "-" || line.isEmpty || line.hasPrefix("#")
            if !continues {
                let key = line.prefix { $0 != ":" }.trimmingCharacters(in: .whitespaces)
                cutting = replaced.contains(key.trimmingCharacters(in: CharacterSet(charactersIn: "\"'")))
            }
            if !cutting { kept.append(line) }
        }
        while kept.last?.isEmpty == true { kept.removeLast() }
        var text = kept.joined(separator: "\n") + "\n\n"
        if let description { text += "description: \(YAMLValue.quoted(description))\n" }
        text += "seed: \(world.seed)\n"
        if swarm {
            text += "buggify: { enabled: \(world.buggify.enabled), enable_probability: \(YAMLValue.format(world.buggify.enableProbability)), "
                + "fire_probability: \(YAMLValue.format(world.buggify.fireProbability)) }\n"
            text += "network: { latency_median: \(YAMLValue.format(world.network.latencyMedianSeconds)), "
                + "latency_sigma: \(YAMLValue.format(world.network.latencySigma)), loss_rate: \(YAMLValue.format(world.network.lossRate)), "
                + "duplication_rate: \(YAMLValue.format(world.network.duplicationRate)) }\n"
        }
        return text + yaml(world.faults)
    }

    /// The faults as scenario YAML, to paste into a file: every value as the
    /// run had it, so the file's run is that run.
    public static func yaml(_ faults: [ScheduledFault]) -> String {
        guard !faults.isEmpty else { return "faults: []\n" }
        // Seconds as a plain number: exact, where a unit would need a fixed number of decimals.
        func s(_ value: Double) -> String { YAMLValue.format(value) }
        var lines = ["faults:"]
        for fault in faults {
            let head = "  - { at: \(s(fault.atSeconds)), for: \(s(fault.durationSeconds)), kind: "
            switch fault.kind {
            case let .pspOutage(psp): lines.append(head + "psp_outage, psp: \(psp) }")
            case let .pspBrownout(psp, factor, rate):
                lines.append(head + "psp_brownout, psp: \(psp), latency_factor: \(YAMLValue.format(factor)), error_rate: \(YAMLValue.format(rate)) }")
            case let .partition(from, to, oneWay): lines.append(head + "partition, from: \(from), to: \(to), one_way: \(oneWay) }")
            case let .replicaCrash(replica): lines.append(head + "replica_crash, replica: \(replica) }")
            case let .brokerPartitionDown(partition): lines.append(head + "broker_partition_down, partition: \(partition) }")
            case let .consumerCrash(group, index): lines.append(head + "consumer_crash, group: \(group), index: \(index) }")
            case let .webhookStorm(psp, count): lines.append(head + "webhook_storm, psp: \(psp), count: \(count) }")
            case let .webhookForgery(psp, count): lines.append(head + "webhook_forgery, psp: \(psp), count: \(count) }")
            case let .clockSkew(replica, offset): lines.append(head + "clock_skew, replica: \(replica), offset: \(YAMLValue.format(offset)) }")
            case .relayCrash: lines.append(head + "relay_crash }")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Two runs side by side, with a significance test per metric. The units are
/// the metrics windows of each run (or the seeds of two farms): Welch's t
/// on their per-window values.
public enum Comparison {
    public struct Row: Sendable {
        public var metric: String
        public var a: String
        public var b: String
        public var change: String
        /// Welch's p-value over windows, when both sides have at least two.
        public var pValue: Double?
        public var significant: Bool
    }

    /// A warning when the two runs were offered loads more than 5% apart:
    /// their rates and latencies then differ by the load, not only by the
    /// system. Nil when the loads match.
    public static func loadWarning(_ a: ReportDocument, _ b: ReportDocument) -> String? {
        let x = a.requests.offeredPerSecond, y = b.requests.offeredPerSecond
        guard max(x, y) > 0, abs(x - y) > 0.05 * max(x, y) else { return nil }
        return String(format: "note: A was offered %.1f/s and B %.1f/s: rates and latencies below differ by the load as well as by the system", x, y)
    }

    public static func compare(_ a: ReportDocument, _ b: ReportDocument, alpha: Double = 0.05) -> [Row] {
        func windows(_ d: ReportDocument, _ value: (WorldMetrics.Window) -> Double?) -> [Double] {
            d.windows.filter { $0.startSeconds < d.simulation.loadEndSeconds }.compactMap(value)
        }
        /// A report's window length (windows are consecutive and equal).
        func width(_ d: ReportDocument) -> Double {
            d.windows.count >= 2 ? d.windows[1].startSeconds - d.windows[0].startSeconds : 1
        }
        /// `series` gives a window's value from the window and its length in seconds.
        func row(_ metric: String, _ x: Double, _ y: Double, format: (Double) -> String,
                 series: ((WorldMetrics.Window, Double) -> Double?)? = nil) -> Row {
            var p: Double?
            if let series {
                let left = windows(a) { series($0, width(a)) }, right = windows(b) { series($0, width(b)) }
                if left.count >= 2, right.count >= 2, let sa = try? Summary(left), let sb = try? Summary(right),
                   sa.standardDeviation > 0 || sb.standardDeviation > 0 {
                    p = (try? WelchTest(sa, sb))?.pValue
                }
            }
            let change = x == 0 ? (y == 0 ? "=" : "new") : String(format: "%+.1f%%", (y - x) / abs(x) * 100)
            return Row(metric: metric, a: format(x), b: format(y), change: change, pValue: p, significant: (p ?? 1) < alpha)
        }
        /// A row with a side that has no value (no answer to take a latency
        /// from, or a figure a measured run cannot see): "n/a", no change, no test.
        func rowOrNA(_ metric: String, _ x: Double?, _ y: Double?, format: @escaping (Double) -> String,
                 series: ((WorldMetrics.Window, Double) -> Double?)? = nil) -> Row {
            guard let x, let y else {
                return Row(metric: metric, a: x.map(format) ?? "n/a", b: y.map(format) ?? "n/a", change: "—", pValue: nil, significant: false)
            }
            return row(metric, x, y, format: format, series: series)
        }
        func ms(_ v: Double) -> String { String(format: "%.1f ms", v * 1_000) }
        func q(_ d: ReportDocument, _ percentile: Double, terminal: Bool = false) -> Double? {
            (terminal ? d.timeToTerminal : d.latency).first { abs($0.percentile - percentile) < 1e-9 }?.seconds
        }
        /// A figure of the simulation only: a measured run (`paystorm load`) sees answers, not the server's inside.
        func simulated(_ d: ReportDocument, _ value: Double) -> Double? { d.isMeasured ? nil : value }
        return [
            rowOrNA("latency p50", q(a, 50), q(b, 50), format: ms) { window, _ in window.answered > 0 ? window.latencyP50Seconds : nil },
            rowOrNA("latency p99", q(a, 99), q(b, 99), format: ms) { window, _ in window.answered > 0 ? window.latencyP99Seconds : nil },
            rowOrNA("latency p99.9", q(a, 99.9), q(b, 99.9), format: ms),
            // A measured run sees acknowledgements, not terminal states.
            rowOrNA("time to terminal p99", q(a, 99, terminal: true), q(b, 99, terminal: true), format: ms),
            row("availability", a.requests.availability, b.requests.availability, format: { Threshold.percent($0) }) { window, _ in
                let finished = window.answered + window.failed
                return finished > 0 ? Double(window.answered) / Double(finished) : nil
            },
            // Per second: two reports may have windows of different lengths.
            // The offered rate first: an achieved rate that differs because
            // the load did is not a change in the system.
            row("offered rate", a.requests.offeredPerSecond, b.requests.offeredPerSecond, format: { String(format: "%.1f/s", $0) }) {
                window, seconds in Double(window.offered) / seconds
            },
            row("achieved rate", a.requests.achievedPerSecond, b.requests.achievedPerSecond, format: { String(format: "%.1f/s", $0) }) {
                window, seconds in Double(window.answered) / seconds
            },
            rowOrNA("retries", simulated(a, Double(a.requests.retries)), simulated(b, Double(b.requests.retries)), format: { String(Int($0)) }),
            rowOrNA("consumer lag", simulated(a, Double(a.windows.map(\.consumerLag).max() ?? 0)), simulated(b, Double(b.windows.map(\.consumerLag).max() ?? 0)),
                format: { "max \(Int($0))" }) { window, _ in Double(window.consumerLag) },
            rowOrNA("violations", simulated(a, Double(a.violationTotal)), simulated(b, Double(b.violationTotal)), format: { String(Int($0)) }),
        ]
    }
}
