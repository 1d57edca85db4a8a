import ArgumentParser

extension Paystorm {
    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a small demo simulation.")
        func run() throws { print("demo") }
    }
}
