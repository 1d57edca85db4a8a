import ArgumentParser

@main
struct Paystorm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paystorm",
        abstract: "A payments engine and the deterministic simulator that tests it under faults.",
        subcommands: [Run.self, Validate.self, Fuzz.self, Replay.self, Shrink.self, Compare.self, Claim.self, SweepCommand.self, Merge.self, Serve.self, Sandbox.self, Load.self, Audit.self, Demo.self, Bench.self])
}
