import Foundation

/// How a child process ended. A signal's number is not an exit status: a
/// child killed by signal 4 did not report a liveness failure.
public enum ChildTermination: Sendable, Equatable, CustomStringConvertible {
    /// It exited with this status.
    case exited(Int32)
    /// A signal ended it: a crash, a trap, a kill.
    case signalled(Int32)

    public var description: String {
        switch self {
        case .exited(let status):
            return "exited \(status)"
        case .signalled(let signal):
            let name = strsignal(signal).map { String(cString: $0) }
            return "killed by signal \(signal)\(name.map { " (\($0))" } ?? "")"
        }
    }
}

/// One child process's end: how it ended and what it wrote to standard error.
public struct ChildOutcome: Sendable, Equatable {
    public var termination: ChildTermination
    /// The start of its standard error (at most ``ChildProcesses/errorOutputLimitBytes``).
    public var errorOutput: String

    public init(termination: ChildTermination, errorOutput: String) {
        self.termination = termination
        self.errorOutput = errorOutput
    }

    /// How it ended, then the first lines of its standard error, indented:
    /// what a message about a failed child shows.
    public var explanation: String {
        let lines = errorOutput.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }
        var text = termination.description
        for line in lines.prefix(12) { text += "\n    " + line }
        if lines.count > 12 { text += "\n    … (\(lines.count - 12) more line(s))" }
        return text
    }
}

/// The child processes a seed farm or a parallel sweep fans out to.
public enum ChildProcesses {
    /// The most of a child's standard error kept.
    public static let errorOutputLimitBytes = 16_384

    /// The running executable's own file, however it was started: a bare
    /// name found on `PATH`, a relative path, a symbolic link.
    /// `CommandLine.arguments[0]` is none of these reliably.
    public static func currentExecutable() throws -> String {
        #if os(Linux)
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        #endif
        if let path = Bundle.main.executablePath { return path }
        throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "cannot find the running executable's path"])
    }

    /// Runs `executable` once per argument list, at most `jobs` at a time,
    /// its standard output discarded and its standard error kept; `finished`
    /// is told how many have ended so far. If a child cannot be started, the
    /// ones running are terminated before the error is thrown.
    /// - Returns: each child's outcome, in the order of `argumentLists`.
    public static func run(_ executable: String, _ argumentLists: [[String]], jobs: Int,
                           finished: (Int) -> Void = { _ in }) throws -> [ChildOutcome] {
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("paystorm-children-XXXXXX").utf8CString)
        guard let created = mkdtemp(&template) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "cannot create a directory for child processes' output in \(NSTemporaryDirectory())"])
        }
        let logs = String(cString: created)
        defer { try? FileManager.default.removeItem(atPath: logs) }
        func logPath(_ index: Int) -> String { (logs as NSString).appendingPathComponent("\(index).stderr") }

        var outcomes = [ChildOutcome?](repeating: nil, count: argumentLists.count)
        var next = 0, done = 0
        var running: [(index: Int, process: Process)] = []
        while next < argumentLists.count || !running.isEmpty {
            while running.count < max(1, jobs), next < argumentLists.count {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = argumentLists[next]
                process.standardOutput = FileHandle.nullDevice
                do {
                    guard FileManager.default.createFile(atPath: logPath(next), contents: nil) else {
                        throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "cannot create \(logPath(next))"])
                    }
                    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath(next)))
                    process.standardError = log
                    try process.run()
                    try log.close()
                } catch {
                    for child in running { child.process.terminate() }
                    for child in running { child.process.waitUntilExit() }
                    throw error
                }
                running.append((next, process))
                next += 1
            }
            if let position = running.firstIndex(where: { !$0.process.isRunning }) {
                let child = running.remove(at: position)
                child.process.waitUntilExit()
                let status = child.process.terminationStatus
                let termination: ChildTermination = child.process.terminationReason == .uncaughtSignal ? .signalled(status) : .exited(status)
                let errorOutput = FileHandle(forReadingAtPath: logPath(child.index)).map { handle in
                    defer { try? handle.close() }
                    return String(decoding: (try? handle.read(upToCount: errorOutputLimitBytes)) ?? Data(), as: UTF8.self)
                } ?? ""
                outcomes[child.index] = ChildOutcome(termination: termination, errorOutput: errorOutput)
                done += 1
                finished(done)
            } else {
                usleep(20_000)
            }
        }
        // The loop ends only once every child has been started and has ended.
        return outcomes.map { $0! }
    }
}
