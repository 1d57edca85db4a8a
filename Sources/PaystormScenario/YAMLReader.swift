import Foundation
import Yams

/// Bad input in a scenario file: where (file, line, column) and what was
/// expected. Never a crash, never a stack trace.
public struct ScenarioError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    public var message: String

    public init(file: String, line: Int?, column: Int?, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var location = file
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        return "\(location): \(message)"
    }
}

/// A YAML node with its path in the document, read field by field so that
/// every problem is reported at its line and column: unknown keys, wrong
/// types, out-of-range values.
struct YAMLValue {
    let node: Node
    /// Dotted path from the root, for messages (`psps[1].latency_median`).
    let path: String
    let file: String

    func error(_ message: String) -> ScenarioError {
        ScenarioError(file: file, line: node.mark?.line, column: node.mark?.column, message: message)
    }

    func expected(_ what: String) -> ScenarioError {
        let found: String = switch node {
        case let .scalar(scalar): "\"\(scalar.string)\""
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
        return error("\(path): expected \(what), found \(found)")
    }

    var scalar: String? {
        if case let .scalar(scalar) = node { return scalar.string }
        return nil
    }

    /// The mapping's entries, refusing keys outside `allowed` (the message lists them).
    func mapping(allowed: [String]) throws(ScenarioError) -> [String: YAMLValue] {
        guard case let .mapping(mapping) = node else { throw expected("a mapping with keys \(allowed.joined(separator: ", "))") }
        var result: [String: YAMLValue] = [:]
        for (key, value) in mapping {
            guard case let .scalar(name) = key else {
                throw YAMLValue(node: key, path: path, file: file).error("\(path): keys must be plain words")
            }
            guard allowed.contains(name.string) else {
                let near = allowed.min { distance($0, name.string) < distance($1, name.string) }
                let hint = near.map { distance($0, name.string) <= 3 ? " (did you mean \"\($0)\"?)" : "" } ?? ""
                throw YAMLValue(node: key, path: path, file: file)
                    .error("unknown key \"\(name.string)\" in \(path.isEmpty ? "the scenario" : path)\(hint); expected one of: \(allowed.joined(separator: ", "))")
            }
            guard result[name.string] == nil else {
                throw YAMLValue(node: key, path: path, file: file).error("key \"\(name.string)\" appears twice in \(path.isEmpty ? "the scenario" : path)")
            }
            result[name.string] = YAMLValue(node: value, path: path.isEmpty ? name.string : "\(path).\(name.string)", file: file)
        }
        return result
    }

    func list() throws(ScenarioError) -> [YAMLValue] {
        guard case let .sequence(sequence) = node else { throw expected("a list") }
        return sequence.enumerated().map { YAMLValue(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    func string() throws(ScenarioError) -> String {
        guard let text = scalar, !text.isEmpty else { throw expected("a string") }
        return text
    }

    func bool() throws(ScenarioError) -> Bool {
        switch scalar?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw expected("true or false")
        }
    }

    func int(_ range: ClosedRange<Int>) throws(ScenarioError) -> Int {
        guard let text = scalar, let value = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw expected("a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        guard range.contains(value) else {
            throw error("\(path): \(value) is out of range; expected \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// A seed: any whole number a UInt64 holds, as `--seed` takes.
    func seed() throws(ScenarioError) -> UInt64 {
        guard let text = scalar, let value = UInt64(text.replacingOccurrences(of: "_", with: "")) else {
            throw expected("a whole number in 0...\(UInt64.max)")
        }
        return value
    }

    func double(_ range: ClosedRange<Double>, what: String = "a number") throws(ScenarioError) -> Double {
        guard let text = scalar, let value = Double(text.replacingOccurrences(of: "_", with: "")), value.isFinite else {
            throw expected("\(what) in [\(Self.format(range.lowerBound)), \(Self.format(range.upperBound))]")
        }
        guard range.contains(value) else {
            throw error("\(path): \(Self.format(value)) is out of range; expected [\(Self.format(range.lowerBound)), \(Self.format(range.upperBound))]")
        }
        return value
    }

    /// A probability: `0.02` or `2%`.
    func probability() throws(ScenarioError) -> Double {
        guard let text = scalar else { throw expected("a probability such as 0.02 or 2%") }
        if text.hasSuffix("%") {
            guard let percent = Double(text.dropLast()), percent >= 0, percent <= 100 else {
                throw expected("a percentage in [0%, 100%]")
            }
            return percent / 100
        }
        return try double(0...1, what: "a probability (0.02 or 2%)")
    }

    /// A duration: `150ms`, `2s`, `1.5m`, `1h`, or a number of seconds.
    func seconds(_ range: ClosedRange<Double> = 0...(86_400 * 30)) throws(ScenarioError) -> Double {
        guard let text = scalar, let value = Self.parseDuration(text) else {
            throw expected("a duration such as 150ms, 2s, 5m or 1h")
        }
        guard range.contains(value) else {
            throw error("\(path): \(text) is out of range; expected \(Self.format(range.lowerBound)) s to \(Self.format(range.upperBound)) s")
        }
        return value
    }

    static func parseDuration(_ text: String) -> Double? {
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3_600)]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for (suffix, scale) in units where trimmed.hasSuffix(suffix) {
            guard let number = Double(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), number.isFinite, number >= 0 else {
                return nil
            }
            return number * scale
        }
        guard let number = Double(trimmed), number.isFinite, number >= 0 else { return nil }
        return number
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// `text` as a double-quoted YAML scalar on one line, which reads back
    /// as exactly `text`: backslashes, quotes and control characters escaped.
    static func quoted(_ text: String) -> String {
        var escaped = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: escaped += String(format: "\\x%02X", scalar.value)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return "\"" + escaped + "\""
    }
}

/// Edit distance, for "did you mean" hints.
func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
