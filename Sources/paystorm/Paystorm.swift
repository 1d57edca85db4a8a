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
            command = try await asyncParseAsRoot(negativeValuesJoined(Array(CommandLine.arguments.dropFirst())))
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

    /// `--rate -5` as `--rate=-5`, and a list that starts with one
    /// (`--rates -5,10`). ArgumentParser reads a word that starts with a
    /// dash as the next option, so a negative number given to an option
    /// used to be refused as "Missing value for '--rate <rate>'", which
    /// sends the user looking for a value they did give. Joined, the number
    /// reaches the option's own check, which names the range it expects.
    /// Words after `--` are left alone.
    static func negativeValuesJoined(_ arguments: [String]) -> [String] {
        var joined: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let word = arguments[index]
            if word == "--" {
                joined += arguments[index...]
                break
            }
            let next = arguments.index(after: index)
            if word.hasPrefix("--"), !word.contains("="), next < arguments.endIndex,
               arguments[next].wholeMatch(of: /-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(,.*)?/) != nil {
                joined.append(word + "=" + arguments[next])
                index = arguments.index(after: next)
            } else {
                joined.append(word)
                index = next
            }
        }
        return joined
    }
}
