import ArgumentParser

@main
struct Paystorm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paystorm",
        abstract: "A payments engine and the deterministic simulator that tests it under faults.",
        subcommands: [Run.self, Validate.self, Claim.self, Demo.self, Bench.self])
}
