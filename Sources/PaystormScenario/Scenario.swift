import Crypto
import Foundation
import PaystormWorld
import Yams

/// A scenario file: a world, what it is for, and the thresholds that judge it.
/// The format is documented in `Scenarios/README.md` and described by
/// `Scenarios/scenario.schema.json`.
public struct Scenario: Sendable {
    public enum Expectation: String, Sendable {
        /// Every threshold and invariant holds.
        case pass
        /// Built to show a failure: the run must end with `expectedExit`.
        case fail
    }

    public var name: String
    public var description: String
    public var expectation: Expectation
    /// For `expect: fail`: the exit code the run must end with.
    public var expectedExit: Int32?
    public var world: WorldConfiguration
    public var thresholds: [Threshold]
    /// SHA-256 of the file's bytes: with the seed and the build it names a run exactly.
    public var hash: String
    public var file: String

    static let topKeys = ["name", "description", "expect", "expect_exit", "seed", "payments", "load", "clients", "gateway",
                          "service", "psps", "network", "broker", "notification_failure_rate", "faults", "buggify",
                          "healing", "audit_every", "window", "confidence", "thresholds"]

    /// Reads and checks a scenario file.
    public static func load(path: String) throws(ScenarioError) -> Scenario {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue {
            throw ScenarioError(file: path, line: nil, column: nil, message: "is a directory, not a scenario file")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ScenarioError(file: path, line: nil, column: nil, message: "cannot read the file: \((error as NSError).localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ScenarioError(file: path, line: nil, column: nil, message: "the file is not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    /// Parses scenario text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(ScenarioError) -> Scenario {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ScenarioError(file: file, line: nil, column: nil, message: "the file is empty; expected a scenario mapping")
            }
            root = node
        } catch let error as ScenarioError {
            throw error
        } catch let error as YamlError {
            throw Self.yamlError(error, file: file)
        } catch {
            throw ScenarioError(file: file, line: nil, column: nil, message: "malformed YAML: \(error)")
        }
        let top = try YAMLValue(node: root, path: "", file: file).mapping(allowed: topKeys)
        func required(_ key: String) throws(ScenarioError) -> YAMLValue {
            guard let value = top[key] else {
                throw ScenarioError(file: file, line: root.mark?.line, column: root.mark?.column, message: "missing required key \"\(key)\"")
            }
            return value
        }
        var world = WorldConfiguration()
        let name = try required("name").string()
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw try required("name").error("name: \"\(name)\" must be letters, digits, - or _ (it names the report directory)")
        }
        let description = try top["description"]?.string() ?? ""
        let expectation: Expectation
        if let value = top["expect"] {
            guard let parsed = Expectation(rawValue: try value.string()) else { throw value.expected("pass or fail") }
            expectation = parsed
        } else {
            expectation = .pass
        }
        let expectedExit = try top["expect_exit"].map { value throws(ScenarioError) in Int32(try value.int(2...5)) }
        if let value = top["expect_exit"], expectation != .fail {
            throw value.error("expect_exit applies only with expect: fail (a run expected to pass must exit 0)")
        }
        if expectation == .fail && expectedExit == nil {
            throw try required("expect").error("expect: fail needs expect_exit (the exit code the run must end with: 2 threshold failed, 3 invariant violated, 4 liveness failed, 5 inconclusive)")
        }
        if let value = top["seed"] { world.seed = try value.seed() }
        world.payments = try required("payments").int(1...100_000_000)
        world.load = try loadProfile(required("load"))
        if let value = top["clients"] { try clients(value, into: &world.clients) }
        if let value = top["gateway"] { try gateway(value, into: &world.gateway) }
        if let value = top["service"] { try service(value, into: &world.service) }
        if let value = top["psps"] { world.psps = try value.list().map { value throws(ScenarioError) in try psp(value) } }
        if let value = top["network"] { try network(value, into: &world.network) }
        if let value = top["broker"] { try broker(value, into: &world.broker) }
        if let value = top["notification_failure_rate"] { world.notificationFailureRate = try value.probability() }
        if let value = top["faults"] { world.faults = try value.list().map { value throws(ScenarioError) in try fault(value) } }
        if let value = top["buggify"] {
            let fields = try value.mapping(allowed: ["enabled", "enable_probability", "fire_probability"])
            world.buggify.enabled = try fields["enabled"]?.bool() ?? true
            if let v = fields["enable_probability"] { world.buggify.enableProbability = try v.probability() }
            if let v = fields["fire_probability"] { world.buggify.fireProbability = try v.double(0...0.5, what: "a probability") }
        }
        if let value = top["healing"] { world.healingSeconds = try value.seconds(0...86_400) }  // the world names its minimum
        if let value = top["audit_every"] { world.auditEverySeconds = try value.seconds() }
        if let value = top["window"] { world.windowSeconds = try value.seconds(0.001...3_600) }
        if let value = top["confidence"] { world.confidence = try value.probability() }
        var thresholds: [Threshold] = []
        for item in try top["thresholds"]?.list() ?? [] {
            let text = try item.string()
            do {
                thresholds.append(try Threshold.parse(text))
            } catch {
                throw item.error("\(item.path): \(error.message)")
            }
        }
        do {
            try world.validate()
        } catch {
            throw Self.locate(error, file: file, root: root)
        }
        var hasher = SHA256()
        hasher.update(data: Data(text.utf8))
        let hash = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        return Scenario(name: name, description: description, expectation: expectation, expectedExit: expectedExit,
                        world: world, thresholds: thresholds, hash: String(hash.prefix(16)), file: file)
    }

    // MARK: - Sections

    static func loadProfile(_ value: YAMLValue) throws(ScenarioError) -> LoadProfile {
        let fields = try value.mapping(allowed: ["profile", "rate", "from", "to", "over", "base", "peak", "at", "for", "mean", "amplitude", "period"])
        func rate(_ key: String) throws(ScenarioError) -> Double {
            guard let field = fields[key] else { throw value.error("\(value.path): this profile needs \"\(key)\"") }
            return try field.double(0...10_000_000, what: "a rate per second")
        }
        func time(_ key: String) throws(ScenarioError) -> Double {
            guard let field = fields[key] else { throw value.error("\(value.path): this profile needs \"\(key)\"") }
            return try field.seconds()
        }
        let kind = try fields["profile"]?.string() ?? "constant"
        let allowed: [String: [String]] = [
            "constant": ["profile", "rate"], "ramp": ["profile", "from", "to", "over"], "step": ["profile", "base", "peak", "at"],
            "spike": ["profile", "base", "peak", "at", "for"], "diurnal": ["profile", "mean", "amplitude", "period"],
        ]
        guard let keys = allowed[kind] else {
            throw (fields["profile"] ?? value).expected("a profile: constant, ramp, step, spike or diurnal")
        }
        for key in fields.keys.sorted() where !keys.contains(key) {
            throw fields[key]!.error("\(fields[key]!.path): not a field of the \(kind) profile; it takes \(keys.dropFirst().joined(separator: ", "))")
        }
        switch kind {
        case "ramp": return .ramp(from: try rate("from"), to: try rate("to"), overSeconds: try time("over"))
        case "step": return .step(base: try rate("base"), peak: try rate("peak"), atSeconds: try time("at"))
        case "spike": return .spike(base: try rate("base"), peak: try rate("peak"), atSeconds: try time("at"), forSeconds: try time("for"))
        case "diurnal":
            guard let amplitude = fields["amplitude"] else { throw value.error("\(value.path): this profile needs \"amplitude\"") }
            return .diurnal(mean: try rate("mean"), amplitude: try amplitude.double(0...1), periodSeconds: try time("period"))
        default: return .constant(ratePerSecond: try rate("rate"))
        }
    }

    static func clients(_ value: YAMLValue, into model: inout ClientModel) throws(ScenarioError) {
        let f = try value.mapping(allowed: ["users", "merchants", "zipf_exponent", "refund_share", "fraudulent_user_share",
                                            "reused_key_conflict_share", "timeout", "max_retries"])
        if let v = f["users"] { model.users = try v.int(1...100_000_000) }
        if let v = f["merchants"] { model.merchants = try v.int(1...10_000_000) }
        if let v = f["zipf_exponent"] { model.zipfExponent = try v.double(0...5) }
        if let v = f["refund_share"] { model.refundShare = try v.probability() }
        if let v = f["fraudulent_user_share"] { model.fraudulentUserShare = try v.probability() }
        if let v = f["reused_key_conflict_share"] { model.reusedKeyConflictShare = try v.probability() }
        if let v = f["timeout"] { model.timeoutSeconds = try v.seconds(0.001...3_600) }
        if let v = f["max_retries"] { model.maxRetries = try v.int(0...20) }
    }

    static func gateway(_ value: YAMLValue, into model: inout GatewayModel) throws(ScenarioError) {
        let f = try value.mapping(allowed: ["bad_api_key_share", "rate_limit", "burst", "health_check_interval"])
        if let v = f["bad_api_key_share"] { model.badAPIKeyShare = try v.probability() }
        if let v = f["rate_limit"] { model.rateLimitPerSecond = try v.double(0.001...100_000_000, what: "a rate per second") }
        if let v = f["burst"] { model.burst = try v.double(1...100_000_000) }
        if let v = f["health_check_interval"] { model.healthCheckIntervalSeconds = try v.seconds(0.01...600) }
    }

    static func service(_ value: YAMLValue, into model: inout ServiceModel) throws(ScenarioError) {
        let f = try value.mapping(allowed: ["replicas", "workers", "queue_capacity", "api_service_median", "internal_service_median", "service_sigma"])
        if let v = f["replicas"] { model.replicas = try v.int(1...256) }
        if let v = f["workers"] { model.workersPerReplica = try v.int(1...10_000) }
        if let v = f["queue_capacity"] { model.queueCapacity = try v.int(1...10_000_000) }
        if let v = f["api_service_median"] { model.apiServiceMedianSeconds = try v.seconds(0.000_001...60) }
        if let v = f["internal_service_median"] { model.internalServiceMedianSeconds = try v.seconds(0.000_001...60) }
        if let v = f["service_sigma"] { model.serviceSigma = try v.double(0...4) }
    }

    static func psp(_ value: YAMLValue) throws(ScenarioError) -> PSPProfile {
        let f = try value.mapping(allowed: ["id", "like", "latency_median", "latency_sigma", "decline_rate", "transient_error_rate",
                                            "rate_limit_rate", "ambiguous_rate", "webhook_rate", "webhook_delay_median",
                                            "webhook_duplicate_rate", "webhook_loss_rate", "settlement_amount_error_rate",
                                            "settlement_missing_rate"])
        var profile: PSPProfile
        switch try f["like"]?.string() {
        case nil, "stripe": profile = .stripeLike
        case "paypal": profile = .paypalLike
        default: throw f["like"]!.expected("stripe or paypal (the profile to start from)")
        }
        guard let id = f["id"] else { throw value.error("\(value.path): a PSP needs an \"id\"") }
        profile.id = try id.string()
        if let v = f["latency_median"] { profile.latencyMedianSeconds = try v.seconds(0.000_001...60) }
        if let v = f["latency_sigma"] { profile.latencySigma = try v.double(0...4) }
        if let v = f["decline_rate"] { profile.declineRate = try v.probability() }
        if let v = f["transient_error_rate"] { profile.transientErrorRate = try v.probability() }
        if let v = f["rate_limit_rate"] { profile.rateLimitRate = try v.probability() }
        if let v = f["ambiguous_rate"] { profile.ambiguousRate = try v.probability() }
        if let v = f["webhook_rate"] { profile.webhookRate = try v.probability() }
        if let v = f["webhook_delay_median"] { profile.webhookDelayMedianSeconds = try v.seconds(0.001...3_600) }
        if let v = f["webhook_duplicate_rate"] { profile.webhookDuplicateRate = try v.probability() }
        if let v = f["webhook_loss_rate"] { profile.webhookLossRate = try v.probability() }
        if let v = f["settlement_amount_error_rate"] { profile.settlementAmountErrorRate = try v.probability() }
        if let v = f["settlement_missing_rate"] { profile.settlementMissingRate = try v.probability() }
        return profile
    }

    static func network(_ value: YAMLValue, into model: inout NetworkModel) throws(ScenarioError) {
        let f = try value.mapping(allowed: ["latency_median", "latency_sigma", "loss_rate", "duplication_rate"])
        if let v = f["latency_median"] { model.latencyMedianSeconds = try v.seconds(0.000_001...10) }
        if let v = f["latency_sigma"] { model.latencySigma = try v.double(0...4) }
        if let v = f["loss_rate"] { model.lossRate = try v.double(0...0.99, what: "a probability") }
        if let v = f["duplication_rate"] { model.duplicationRate = try v.double(0...0.99, what: "a probability") }
    }

    static func broker(_ value: YAMLValue, into model: inout BrokerModel) throws(ScenarioError) {
        let f = try value.mapping(allowed: ["partitions", "consumers_per_group", "max_in_flight", "session_timeout", "redelivery_timeout"])
        if let v = f["partitions"] { model.partitions = try v.int(1...1_024) }
        if let v = f["consumers_per_group"] { model.consumersPerGroup = try v.int(1...64) }
        if let v = f["max_in_flight"] { model.maxInFlightPerPartition = try v.int(1...10_000) }
        if let v = f["session_timeout"] { model.sessionTimeoutSeconds = try v.seconds(0.01...600) }
        if let v = f["redelivery_timeout"] { model.redeliveryTimeoutSeconds = try v.seconds(0.01...600) }
    }

    static let faultKinds = ["psp_outage", "psp_brownout", "partition", "replica_crash", "broker_partition_down",
                             "consumer_crash", "webhook_storm", "webhook_forgery", "clock_skew", "relay_crash"]

    /// The keys of each fault kind besides `at`, `for` and `kind`.
    static let faultKeys: [String: [String]] = [
        "psp_outage": ["psp"], "psp_brownout": ["psp", "latency_factor", "error_rate"], "partition": ["from", "to", "one_way"],
        "replica_crash": ["replica"], "broker_partition_down": ["partition"], "consumer_crash": ["group", "index"],
        "webhook_storm": ["psp", "count"], "webhook_forgery": ["psp", "count"], "clock_skew": ["replica", "offset"], "relay_crash": [],
    ]

    /// Kinds that hold a state while they last, and so need a `for`. A crash
    /// may have none (down and straight back up, its work in flight lost), and
    /// a storm without one is spread over a second.
    static let lastingFaults: Set<String> = ["psp_outage", "psp_brownout", "partition", "broker_partition_down", "clock_skew"]

    static func fault(_ value: YAMLValue) throws(ScenarioError) -> ScheduledFault {
        let f = try value.mapping(allowed: ["at", "for", "kind", "psp", "latency_factor", "error_rate", "from", "to", "one_way",
                                            "replica", "partition", "group", "index", "count", "offset"])
        guard let kindValue = f["kind"] else { throw value.error("\(value.path): a fault needs a \"kind\": \(faultKinds.joined(separator: ", "))") }
        guard let at = f["at"] else { throw value.error("\(value.path): a fault needs \"at\" (when it starts, e.g. 60s)") }
        func need(_ key: String) throws(ScenarioError) -> YAMLValue {
            guard let field = f[key] else { throw value.error("\(value.path): a \(kindValue.scalar ?? "") fault needs \"\(key)\"") }
            return field
        }
        let kindName = try kindValue.string()
        // Each kind takes its own keys: another kind's key would be ignored, and the fault not be the one meant.
        if let keys = faultKeys[kindName] {
            for key in f.keys.sorted() where !["at", "for", "kind"].contains(key) && !keys.contains(key) {
                throw f[key]!.error("\(value.path): \"\(key)\" does not apply to a \(kindName) fault, which takes: "
                    + (["at", "for", "kind"] + keys).joined(separator: ", "))
            }
        }
        // A fault that holds a state needs to last: with no "for" it would end as it began.
        if lastingFaults.contains(kindName) {
            let duration = try need("for")
            guard try duration.seconds() > 0 else { throw duration.expected("a duration above 0 (how long the \(kindName) lasts, e.g. 30s)") }
        }
        let kind: ScheduledFault.Kind
        switch kindName {
        case "psp_outage": kind = .pspOutage(psp: try need("psp").string())
        case "psp_brownout":
            kind = .pspBrownout(psp: try need("psp").string(), latencyFactor: try need("latency_factor").double(1...1_000),
                                errorRate: try f["error_rate"]?.probability() ?? 0)
        case "partition":
            kind = .partition(from: try need("from").string(), to: try need("to").string(), oneWay: try f["one_way"]?.bool() ?? false)
        case "replica_crash": kind = .replicaCrash(replica: try need("replica").int(0...255))
        case "broker_partition_down": kind = .brokerPartitionDown(partition: try need("partition").int(0...1_023))
        case "consumer_crash": kind = .consumerCrash(group: try need("group").string(), index: try f["index"]?.int(0...63) ?? 0)
        case "webhook_storm": kind = .webhookStorm(psp: try need("psp").string(), count: try need("count").int(1...10_000_000))
        case "webhook_forgery": kind = .webhookForgery(psp: try need("psp").string(), count: try need("count").int(1...10_000_000))
        case "clock_skew": kind = .clockSkew(replica: try need("replica").int(0...255), offsetSeconds: try need("offset").double(-86_400...86_400))
        case "relay_crash": kind = .relayCrash
        default: throw kindValue.expected("a fault kind: \(faultKinds.joined(separator: ", "))")
        }
        return ScheduledFault(atSeconds: try at.seconds(), durationSeconds: try f["for"]?.seconds() ?? 0, kind: kind)
    }

    // MARK: - Errors

    /// A world validation error, placed at the YAML node it names where possible.
    static func locate(_ error: WorldConfigurationError, file: String, root: Node) -> ScenarioError {
        // Follow "faults[0].replica" down the document as far as it goes.
        var node: Node? = root
        for component in error.field.split(separator: ".") {
            let key = String(component.prefix { $0 != "[" })
            guard case let .mapping(mapping)? = node,
                  let value = mapping.first(where: { $0.key.string == key })?.value else { break }
            node = value
            if let open = component.firstIndex(of: "["), let index = Int(component[component.index(after: open)...].dropLast()) {
                guard case let .sequence(items) = value, index < items.count else { break }
                node = items[index]
            }
        }
        let mark = node?.mark ?? root.mark
        return ScenarioError(file: file, line: mark?.line, column: mark?.column, message: "\(error.field): expected \(error.expected)")
    }

    static func yamlError(_ error: YamlError, file: String) -> ScenarioError {
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let where_ = context.map { " \($0.text)" } ?? ""
            return ScenarioError(file: file, line: mark.line, column: mark.column, message: "malformed YAML: \(problem)\(where_)")
        default:
            return ScenarioError(file: file, line: nil, column: nil, message: "malformed YAML: \(error)")
        }
    }
}
