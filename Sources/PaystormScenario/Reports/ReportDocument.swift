import Foundation
import PaystormStatistics
import PaystormWorld

/// Everything a run's reports show, in one versioned, Codable document:
/// `report.json` is this, encoded with sorted keys; the Markdown, HTML, CSV
/// and JUnit reports are rendered from it. No wall-clock figure appears in
/// it, so the same scenario, seed and build give byte-identical reports.
/// The schema is documented in `Reports/README.md`.
public struct ReportDocument: Codable, Sendable, Equatable {
    public static let schema = "paystorm.report/1"

    /// The trace hash of a run measured against a live server (`paystorm
    /// load`): no trace, and nothing to replay.
    public static let measuredTraceHash = "measured"

    /// Whether this run was measured against a live server, not simulated.
    public var isMeasured: Bool { simulation.traceHash == Self.measuredTraceHash }

    public var schema: String
    public var paystormVersion: String
    public var scenario: ScenarioInfo
    public var seed: UInt64
    public var verdict: Verdict
    public var thresholds: [ThresholdVerdict]
    public var requests: Requests
    public var latency: [Quantile]
    public var timeToTerminal: [Quantile]
    public var payments: Payments
    public var psps: [PSP]
    public var fraud: Fraud
    public var infrastructure: Infrastructure
    public var reconciliation: [Reconciliation]
    public var faults: [Fault]
    public var buggify: Buggify
    /// The first violations found, in full (up to 1,000 of each kind).
    public var violations: [ViolationRecord]
    /// Every violation found, per kind and invariant, the ones not kept in
    /// `violations` included. Absent from reports written before it existed:
    /// read the totals through `violationCounts(_:)` and `violationTotal`.
    public var violationCounts: ViolationCounts?
    public var windows: [WorldMetrics.Window]
    public var simulation: Simulation
    /// How samples are treated as independent, for the confidence statements.
    public var independence: String

    public struct ScenarioInfo: Codable, Sendable, Equatable {
        public var name: String
        public var description: String
        /// SHA-256 prefix of the scenario file: with the seed and version it names the run.
        public var hash: String
        public var file: String
        public var expectation: String
        public var expectedExit: Int32?
    }

    public struct Verdict: Codable, Sendable, Equatable {
        /// passed, threshold-failed, invariant-violated, liveness-failed, inconclusive.
        public var status: String
        public var exitCode: Int32
        public var summary: String
        /// For `expect: fail` scenarios: whether the run failed the way the scenario documents.
        public var asExpected: Bool
    }

    public struct Requests: Codable, Sendable, Equatable {
        public var total: Int
        public var answered: Int
        public var clientErrors: Int
        public var serverErrors: Int
        public var timedOut: Int
        public var throttled: Int
        public var retries: Int
        public var unfinished: Int
        public var offeredPerSecond: Double
        public var achievedPerSecond: Double
        public var availability: Double
        public var availabilityLowerBound: Double
        public var confidence: Double
    }

    public struct Quantile: Codable, Sendable, Equatable {
        public var percentile: Double
        public var seconds: Double
        public var lowerSeconds: Double?
        public var upperSeconds: Double?
    }

    /// What became of the payments. A run measured against a live server
    /// (`paystorm load`) sees answers only, not what became of a payment
    /// after its answer: it leaves `completed`, `failed` and
    /// `notTerminalAtEnd` out (`nil`) rather than report zeros.
    public struct Payments: Codable, Sendable, Equatable {
        public var started: Int
        public var created: Int
        public var completed: Int?
        public var failed: Int?
        public var notTerminalAtEnd: Int?
        public var refundsRequested: Int
        public var refundsAccepted: Int
    }

    public struct PSP: Codable, Sendable, Equatable {
        public var id: String
        public var charges: Int, refunds: Int, statusQueries: Int, cancels: Int
        public var succeeded: Int, declined: Int, transientErrors: Int, rateLimited: Int, ambiguous: Int, unanswered: Int
        public var webhooksSent: Int
        /// Calls answered "void" (from Paystorm 0.7.0; before, voids were
        /// counted as declines and this is absent).
        public var voided: Int? = nil
        /// Calls that reached the PSP (network losses excluded, duplicates
        /// included), and status queries for a key it never saw (both from
        /// Paystorm 0.8.1; before, these were absent and `succeeded` also
        /// counted the ambiguous calls). From 0.8.1 every received call has
        /// exactly one outcome: succeeded, declined, voided, not found,
        /// transient, rate-limited, ambiguous or unanswered.
        public var received: Int? = nil
        public var notFound: Int? = nil
    }

    public struct Fraud: Codable, Sendable, Equatable {
        public var truePositives: Int, falsePositives: Int, falseNegatives: Int, trueNegatives: Int
        public var precision: Double?
        public var recall: Double?
    }

    public struct Infrastructure: Codable, Sendable, Equatable {
        public var webhooksApplied: Int, webhooksRejected: Int
        public var queueOverflows: Int, lostInCrashes: Int
        public var gatewayUnauthorized: Int, gatewayThrottled: Int, gatewayUnavailable: Int
        public var brokerProduced: Int, consumerRedeliveries: Int, rebalances: Int, brokerDeadLetters: Int
        public var notificationsDelivered: Int, notificationsFailed: Int
        public var networkSent: Int, networkLost: Int, networkDuplicated: Int, networkPartitioned: Int
        public var crashes: Int, restarts: Int
        /// Webhooks refused by a full accept queue, lost (from Paystorm 0.8.1).
        public var webhooksDropped: Int? = nil
    }

    public struct Reconciliation: Codable, Sendable, Equatable {
        public var psp: String
        public var matched: Int
        public var discrepancies: [String: Int]
    }

    public struct Fault: Codable, Sendable, Equatable {
        public var label: String
        public var atSeconds: Double
        public var endSeconds: Double
        /// When healing cut the fault short: before its end, or before its
        /// start (it never acted). Absent for a fault that acted as
        /// scheduled, and in reports of Paystorm before 0.7.0.
        public var cutAtSeconds: Double?

        /// The fault as scheduled, whatever the run made of it.
        public var scheduled: Fault { Fault(label: label, atSeconds: atSeconds, endSeconds: endSeconds) }
        public var acted: Bool { cutAtSeconds.map { $0 > atSeconds } ?? true }
        /// When it stopped acting: its end, or where healing cut it.
        public var actedUntilSeconds: Double { min(endSeconds, cutAtSeconds ?? endSeconds) }
        /// What the run made of it, if not the schedule; `nil` if it acted as scheduled.
        public var cutNote: String? {
            guard let cut = cutAtSeconds else { return nil }
            let at = ReportFormat.trimmed(cut)
            return acted ? "cut at \(at) s: healing began" : "never acted: healing began at \(at) s, before it was due"
        }
    }

    /// A run's fault schedule as its report lists it (as scheduled).
    public static func faults(_ faults: [ScheduledFault]) -> [Fault] {
        faults.map { Fault(label: $0.label, atSeconds: $0.atSeconds, endSeconds: $0.endSeconds) }
    }

    /// A run's faults as its report lists them: each as scheduled, and where
    /// healing cut it short (`windows` from ``WorldReport/faultWindows``).
    public static func faults(_ faults: [ScheduledFault], windows: [FaultWindow], healingBeganSeconds: Double) -> [Fault] {
        zip(faults, windows).map { fault, window in
            var listed = Fault(label: fault.label, atSeconds: fault.atSeconds, endSeconds: fault.endSeconds)
            // Cut only where healing ended it before its own end: a time that
            // went through virtual nanoseconds need not equal `at + for`.
            if window.startedSeconds == nil {
                listed.cutAtSeconds = healingBeganSeconds
            } else if window.endedByHealing, let ended = window.endedSeconds, ended < fault.endSeconds - 1e-6 {
                listed.cutAtSeconds = ended
            }
            return listed
        }
    }

    public struct Buggify: Codable, Sendable, Equatable {
        public var enabled: [String]
        public var fired: [String: Int]
    }

    public struct ViolationRecord: Codable, Sendable, Equatable {
        /// safety or liveness.
        public var kind: String
        public var invariant: String
        public var subject: String
        public var virtualSeconds: Double
        public var seed: UInt64
        public var detail: String
        public var trail: [String]
    }

    public struct ViolationCounts: Codable, Sendable, Equatable {
        /// Invariant name → violations found, for each kind; an invariant that held is absent.
        public var safety: [String: Int]
        public var liveness: [String: Int]
    }

    public struct Simulation: Codable, Sendable, Equatable {
        public var virtualSeconds: Double
        public var loadEndSeconds: Double
        public var events: Int
        /// The run's trace hash; ``ReportDocument/measuredTraceHash`` for a run against a live server.
        public var traceHash: String
        public var safetyViolationCount: Int
    }
}

extension ReportDocument {
    /// Every violation found per invariant, of `kind` ("safety" or
    /// "liveness"), or of both kinds when `kind` is nil. A report written
    /// before `violationCounts` existed has only the kept ones to count.
    /// - Complexity: O(n) in the number of invariants, or of kept violations for an older report.
    public func violationCounts(_ kind: String? = nil) -> [String: Int] {
        guard let counts = violationCounts else {
            let kept = violations.filter { kind == nil || $0.kind == kind }
            return Dictionary(grouping: kept, by: \.invariant).mapValues(\.count)
        }
        switch kind {
        case "safety": return counts.safety
        case "liveness": return counts.liveness
        case nil: return counts.safety.merging(counts.liveness, uniquingKeysWith: +)
        default: return [:]
        }
    }

    /// Every safety violation found, kept or only counted.
    public var safetyViolationTotal: Int { simulation.safetyViolationCount }

    /// Every liveness violation found, kept or only counted.
    public var livenessViolationTotal: Int { violationCounts("liveness").values.reduce(0, +) }

    /// Every violation found, kept or only counted.
    public var violationTotal: Int { safetyViolationTotal + livenessViolationTotal }
}
