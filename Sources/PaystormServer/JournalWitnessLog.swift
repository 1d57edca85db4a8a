import PaystormEngine
import ServiceLifecycle

/// Logs the journal's stored head every `every` seconds when it moved: a
/// trail of witnesses (``Ledger/Witness``) for `paystorm audit --witness`,
/// also from a server that never stops cleanly — the head logged at stop is
/// the last of them. Kept outside the database (in the log), each shows
/// later whether the entries up to it were rewritten or cut.
struct JournalWitnessLog: Service {
    let every: Double
    let log: @Sendable (String) -> Void
    /// The stored head now; `nil` while the journal is empty.
    let head: @Sendable () async throws -> Ledger.Witness?

    /// The heads logged: a line for a head not logged last time.
    struct Trail {
        private(set) var last: Ledger.Witness?

        mutating func line(for head: Ledger.Witness?) -> String? {
            guard let head, head != last else { return nil }
            last = head
            return "journal head: \(head) (a witness: `paystorm audit --witness \(head)` checks the journal still gives it)"
        }
    }

    func run() async throws {
        var trail = Trail()
        while await nextRound(after: every) {
            do {
                if let line = trail.line(for: try await head()) { log(line) }
            } catch is CancellationError {
                return  // the read was given up as the server stops: nothing is wrong with the journal
            } catch {
                log("journal head: cannot read it: \(error)")
            }
        }
    }
}
