import ArgumentParser
import Foundation
import PaystormScenario

@main
struct Paystorm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paystorm",
        abstract: "A payments engine and the deterministic simulator that tests it under faults.",
        subcommands: [Run.self, Validate.self, Fuzz.self, Replay.self, Shrink.self, Compare.self, Claim.self, SweepCommand.self, Merge.self, Serve.self, Sandbox.self, Load.self, Audit.self, Demo.self, Bench.self])

    /// ArgumentParser's own `main`, except for a ``ValidationError`` thrown
    /// once a command runs: that is a problem met while running (a server
    /// that does not answer, a file that cannot be read), and ArgumentParser
    /// would print it under the usage of `paystorm` itself. It gets one line
    /// naming the problem, and exit 64 as before. Arguments wrong in
    /// themselves are refused by each command's `validate()`, under that
    /// command's usage.
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try await asyncParseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var command = command
                try command.run()
            }
        } catch let error as ValidationError {
            FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
            exit(withError: ExitCode(ExitStatus.badInput.rawValue))
        } catch {
            exit(withError: error)
        }
    }
}
