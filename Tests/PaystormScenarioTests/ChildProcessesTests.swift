import Foundation
import Testing
@testable import PaystormScenario

@Suite("Child processes: how each ended")
struct ChildProcessesTests {
    @Test("a child killed by a signal reads as that signal, never as an exit code; exit codes and standard error are kept, in order")
    func terminations() throws {
        let outcomes = try ChildProcesses.run("/bin/sh", [
            ["-c", "kill -KILL $$"],
            ["-c", "echo 'error: no such table' >&2; exit 3"],
            // What a Swift trap is on x86_64: signal 4 must not read as exit 4 (liveness failed).
            ["-c", "kill -ILL $$"],
            ["-c", "exit 0"],
        ], jobs: 2)
        #expect(outcomes.map(\.termination) == [.signalled(SIGKILL), .exited(3), .signalled(SIGILL), .exited(0)])
        #expect(outcomes[1].errorOutput == "error: no such table\n")
        #expect(outcomes[1].explanation == "exited 3\n    error: no such table")
        #expect(outcomes[0].explanation.hasPrefix("killed by signal 9"), "\(outcomes[0].explanation)")
        #expect(outcomes[3].errorOutput.isEmpty)
    }

    @Test("a child that cannot be started is an error, not an outcome")
    func missingExecutable() {
        #expect(throws: (any Error).self) { try ChildProcesses.run("/nonexistent/paystorm", [["run"]], jobs: 1) }
    }
}
