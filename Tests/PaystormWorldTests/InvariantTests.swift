import PaystormEngine
import Testing
@testable import PaystormWorld

@Suite("The world's table of checks")
struct InvariantTests {
    @Test("every check the engine's audit makes keeps its name in the world's table")
    func engineNames() {
        for engine in EngineAudit.Invariant.allCases {
            #expect(Invariant(engine).rawValue == engine.rawValue, "\(engine)")
            let named = Invariant.of(EngineAudit.Violation(invariant: engine.rawValue, subject: "s", detail: "d"))
            #expect(named.invariant.rawValue == engine.rawValue && named.detail == "d")
        }
        let unknown = Invariant.of(EngineAudit.Violation(invariant: "no-such-check", subject: "s", detail: "d"))
        #expect(unknown.invariant == .audit && unknown.detail == "[no-such-check] d", "kept, not lost")
    }
}
