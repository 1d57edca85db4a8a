import Foundation
import PaystormStatistics
import PaystormWorld

/// A capacity sweep: one scenario run over a grid of parameter values and
/// seeds. Finds the knee — the highest offered rate at which every threshold
/// still passes on every seed and the achieved rate keeps up — with the
/// interval to the next grid point, and fits the Universal Scalability Law
/// to throughput against concurrency (Little's law: achieved × mean latency).
public enum Sweep {
    /// A scenario parameter a sweep can vary.
    public enum Key: String, CaseIterable, Sendable, Codable {
        case rate = "load.rate"
        case replicas = "service.replicas"
        case workers = "service.workers"
        case apiServiceMedian = "service.api_service_median"
        case pspLatencyMedian = "psp.latency_median"
        case partitions = "broker.partitions"
        case payments = "payments"

        /// Sets the parameter; the world's own validation judges the value later.
        func apply(_ value: Double, to world: inout WorldConfiguration) {
            switch self {
            case .rate: world.load = .constant(ratePerSecond: value)
            case .replicas: world.service.replicas = Int(value.rounded())
            case .workers: world.service.workersPerReplica = Int(value.rounded())
            case .apiServiceMedian: world.service.apiServiceMedianSeconds = value
            case .pspLatencyMedian: for index in world.psps.indices { world.psps[index].latencyMedianSeconds = value }
            case .partitions: world.broker.partitions = Int(value.rounded())
            case .payments: world.payments = Int(value.rounded())
            }
        }

        var isInteger: Bool { self == .replicas || self == .workers || self == .partitions || self == .payments }
    }

    /// `KEY=FROM..TO[:STEP|xFACTOR]`, e.g. `load.rate=200..1600:200`, `service.replicas=1..8x2`.
    public struct Axis: Sendable, Equatable, Codable {
        public var key: Key
        public var values: [Double]

        public static func parse(_ text: String) throws(SweepError) -> Axis {
            let grammar = "KEY=FROM..TO[:STEP|xFACTOR], e.g. load.rate=200..1600:200 or service.replicas=1..8x2"
            guard let equals = text.firstIndex(of: "=") else { throw SweepError("\"\(text)\": expected \(grammar)") }
            let name = String(text[..<equals])
            guard let key = Key(rawValue: name) else {
                throw SweepError("unknown sweep key \"\(name)\"; expected one of: \(Key.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var spec = String(text[text.index(after: equals)...])
            var step: Double?
            var factor: Double?
            if let colon = spec.lastIndex(of: ":") {
                step = parseNumber(String(spec[spec.index(after: colon)...]), key: key)
                spec = String(spec[..<colon])
                guard let step, step > 0 else { throw SweepError("\(name): the step must be a number > 0") }
            } else if let x = spec.lastIndex(of: "x"), spec[..<x].contains("..") {
                factor = Double(spec[spec.index(after: x)...])
                spec = String(spec[..<x])
                guard let factor, factor > 1 else { throw SweepError("\(name): the factor must be a number > 1") }
            }
            let bounds = spec.components(separatedBy: "..")
            guard bounds.count == 2, let from = parseNumber(bounds[0], key: key), let to = parseNumber(bounds[1], key: key) else {
                throw SweepError("\"\(text)\": expected \(grammar)")
            }
            guard from.isFinite, to.isFinite else { throw SweepError("\(name): \(bounds[0])..\(bounds[1]) is not a range of finite numbers") }
            guard from > 0, from <= to else { throw SweepError("\(name): empty range \(bounds[0])..\(bounds[1]) (need 0 < FROM <= TO)") }
            if key.isInteger {
                // A factor's values are rounded to whole numbers; given ones must be whole already.
                for (given, value) in [(bounds[0], from), (bounds[1], to)] where value != value.rounded() {
                    throw SweepError("\(name) takes whole numbers; \(given) is not one")
                }
                if let step, step != step.rounded() {
                    throw SweepError("\(name) takes whole numbers; the step \(YAMLValue.format(step)) is not one")
                }
            }
            var values: [Double] = []
            if step == nil && factor == nil {
                // No step: the two ends.
                values = from == to ? [from] : [from, to]
            } else {
                var value = from
                while value <= to * (1 + 1e-9) && values.count <= 10_000 {
                    values.append(value)
                    value = factor.map { value * $0 } ?? value + step!
                }
            }
            if key.isInteger {
                values = values.map { $0.rounded() }
                // `apply` converts each value to Int, which traps on one out of Int's range.
                guard values.allSatisfy({ Int(exactly: $0) != nil }) else {
                    throw SweepError("\(name): \(bounds[1]) is too large for a whole number (at most \(Int.max))")
                }
            }
            values = values.reduce(into: []) { if $0.last != $1 { $0.append($1) } }
            guard values.count <= 10_000 else { throw SweepError("\(name): more than 10,000 values") }
            return Axis(key: key, values: values)
        }

        static func parseNumber(_ text: String, key: Key) -> Double? {
            key == .apiServiceMedian || key == .pspLatencyMedian ? YAMLValue.parseDuration(text) : Double(text)
        }
    }

    /// One grid point × seed, as measured.
    public struct Point: Sendable, Equatable, Codable {
        public var index: Int
        public var settings: [String: Double]
        public var seed: UInt64
        public var status: String
        public var exitCode: Int32
        public var offeredPerSecond: Double
        public var achievedPerSecond: Double
        public var p99Seconds: Double
        public var p99LowerSeconds: Double?
        public var p99UpperSeconds: Double?
        public var meanLatencySeconds: Double
        public var availabilityLowerBound: Double
        public var violations: Int
        public var thresholds: [ThresholdVerdict]
        /// Little's law: achieved × mean latency.
        public var concurrency: Double { achievedPerSecond * meanLatencySeconds }
    }

    /// The grid: the cartesian product of the axes, each point with every seed.
    public static func grid(_ axes: [Axis], seeds: ClosedRange<UInt64>) -> [(index: Int, settings: [Key: Double], seed: UInt64)] {
        var combinations: [[Key: Double]] = [[:]]
        for axis in axes {
            combinations = combinations.flatMap { partial in axis.values.map { partial.merging([axis.key: $0]) { $1 } } }
        }
        var result: [(Int, [Key: Double], UInt64)] = []
        for (index, settings) in combinations.enumerated() {
            for seed in seeds { result.append((index, settings, seed)) }
        }
        return result
    }

    /// Runs one grid point with one seed.
    public static func run(_ scenario: Scenario, index: Int, settings: [Key: Double], seed: UInt64,
                           scratchDirectory: String? = nil) throws -> Point {
        var configured = scenario
        for (key, value) in settings.sorted(by: { $0.key.rawValue < $1.key.rawValue }) { key.apply(value, to: &configured.world) }
        do {
            try configured.world.validate()
        } catch {
            throw SweepError("grid point \(index) (\(describe(settings))): \(error)")
        }
        let run = try ScenarioRun.run(configured, seed: seed, scratchDirectory: scratchDirectory)
        let document = run.document
        let p99 = try run.report.latencyQuantile(0.99)
        return Point(index: index, settings: Dictionary(uniqueKeysWithValues: settings.map { ($0.key.rawValue, $0.value) }), seed: seed,
                     status: document.verdict.status, exitCode: document.verdict.exitCode,
                     offeredPerSecond: document.requests.offeredPerSecond, achievedPerSecond: document.requests.achievedPerSecond,
                     p99Seconds: p99?.value ?? 0, p99LowerSeconds: p99?.lower, p99UpperSeconds: p99?.upper,
                     meanLatencySeconds: run.report.latencyMean, availabilityLowerBound: document.requests.availabilityLowerBound,
                     violations: document.violationTotal, thresholds: document.thresholds)
    }

    /// A grid point's settings as `key=value, …`, keys in order.
    public static func describe(_ settings: [Key: Double]) -> String {
        describe(Dictionary(uniqueKeysWithValues: settings.map { ($0.key.rawValue, $0.value) }))
    }

    /// A point's settings as a run's file keeps them (``Point/settings``).
    public static func describe(_ settings: [String: Double]) -> String {
        settings.sorted { $0.key < $1.key }.map { "\($0.key)=\(YAMLValue.format($0.value))" }.joined(separator: ", ")
    }
}

/// A sweep's merged result: `sweep.json`. Shards merge into exactly the
/// document a single run would write.
public struct SweepResult: Sendable, Equatable, Codable {
    public static let schema = "paystorm.sweep/1"

    public struct Knee: Sendable, Equatable, Codable {
        /// The other axes' settings this knee belongs to.
        public var settings: [String: Double]
        /// The highest offered rate where every seed passed and kept up (nil: none did).
        public var lastPassingRate: Double?
        /// The next rate on the grid, where something failed (nil: none failed).
        public var firstFailingRate: Double?
        public var explanation: String
    }

    public struct Scalability: Sendable, Equatable, Codable {
        public var lambda: Double, lambdaError: Double
        public var sigma: Double, sigmaError: Double
        public var kappa: Double, kappaError: Double
        public var peakConcurrency: Double?
        public var points: Int
    }

    public var schema: String
    public var paystormVersion: String
    public var scenario: String
    public var scenarioHash: String
    public var axes: [Sweep.Axis]
    public var seeds: [UInt64]
    public var points: [Sweep.Point]
    public var knees: [Knee]
    public var scalability: Scalability?
    public var note: String?

    /// Builds the result from every point (in any order, from any shards).
    public static func merge(scenarioName: String, scenarioHash: String, axes: [Sweep.Axis], seeds: [UInt64], points: [Sweep.Point]) -> SweepResult {
        let sorted = points.sorted { ($0.index, $0.seed) < ($1.index, $1.seed) }
        var result = SweepResult(schema: schema, paystormVersion: PaystormScenario.paystormVersion, scenario: scenarioName, scenarioHash: scenarioHash,
                                 axes: axes, seeds: seeds, points: sorted, knees: [], scalability: nil, note: nil)
        result.knees = knees(sorted, axes: axes)
        // Little's law gives concurrency only where the system keeps up: saturated
        // points (queues growing through the run) are left out of the fit.
        let usable = sorted.filter { $0.concurrency > 0 && $0.achievedPerSecond > 0 && $0.exitCode == 0 }
        if usable.count >= 4, let fit = try? UniversalScalability.fit(concurrency: usable.map(\.concurrency), throughput: usable.map(\.achievedPerSecond)) {
            result.scalability = Scalability(lambda: fit.lambda, lambdaError: fit.lambdaError, sigma: fit.sigma, sigmaError: fit.sigmaError,
                                             kappa: fit.kappa, kappaError: fit.kappaError, peakConcurrency: fit.peakConcurrency, points: usable.count)
        } else {
            result.note = "no Universal Scalability Law fit: it needs at least 4 passing points (unsaturated, so Little's law holds) and a fit that converges"
        }
        return result
    }

    /// Along `load.rate`, for each setting of the other axes.
    static func knees(_ points: [Sweep.Point], axes: [Sweep.Axis]) -> [Knee] {
        guard axes.contains(where: { $0.key == .rate }) else { return [] }
        let rateKey = Sweep.Key.rate.rawValue
        var groups: [[String: Double]: [Sweep.Point]] = [:]
        for point in points {
            var others = point.settings
            others[rateKey] = nil
            groups[others, default: []].append(point)
        }
        func canonical(_ settings: [String: Double]) -> String {
            settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        }
        return groups.keys.sorted { canonical($0) < canonical($1) }.map { others in
            let byRate = Dictionary(grouping: groups[others]!, by: { $0.settings[rateKey]! })
            var lastPassing: Double?
            var firstFailing: Double?
            for rate in byRate.keys.sorted() {
                let seedsAtRate = byRate[rate]!
                let keptUp = seedsAtRate.allSatisfy { $0.achievedPerSecond >= 0.95 * $0.offeredPerSecond }
                if seedsAtRate.allSatisfy({ $0.exitCode == 0 }) && keptUp {
                    if firstFailing == nil { lastPassing = rate }
                } else if firstFailing == nil {
                    firstFailing = rate
                }
            }
            let explanation: String = switch (lastPassing, firstFailing) {
            case let (pass?, fail?): "every threshold passes on every seed up to \(YAMLValue.format(pass))/s; at \(YAMLValue.format(fail))/s one fails or throughput falls behind: the knee is in [\(YAMLValue.format(pass)), \(YAMLValue.format(fail))) per second"
            case let (pass?, nil): "every rate up to \(YAMLValue.format(pass))/s passes: the knee is above the grid"
            case let (nil, fail?): "already the lowest rate, \(YAMLValue.format(fail))/s, fails: the knee is below the grid"
            default: "no points"
            }
            return Knee(settings: others, lastPassingRate: lastPassing, firstFailingRate: firstFailing, explanation: explanation)
        }
    }
}

public struct SweepError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
