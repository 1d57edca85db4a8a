/// Errors raised by the statistics module; each names the input at fault.
public enum StatisticsError: Error, Equatable, CustomStringConvertible {
    /// A parameter lies outside its domain (`name` = `value`, expected `expected`).
    case invalidParameter(name: String, value: String, expected: String)
    /// A computation needs at least `required` samples and got `actual`.
    case notEnoughSamples(required: Int, actual: Int)
    /// GSL rejected an input it should have accepted (status code and where).
    case gslFailure(function: String, status: Int)

    public var description: String {
        switch self {
        case let .invalidParameter(name, value, expected):
            return "invalid \(name) = \(value): expected \(expected)"
        case let .notEnoughSamples(required, actual):
            return "need at least \(required) samples, got \(actual)"
        case let .gslFailure(function, status):
            return "GSL \(function) failed with status \(status)"
        }
    }
}
