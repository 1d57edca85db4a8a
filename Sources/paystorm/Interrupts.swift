import Dispatch
import Foundation

/// Removes this process's scratch databases when it is interrupted.
///
/// A world's scratch database is removed when its run ends, but a run
/// stopped by Ctrl-C or SIGTERM never gets there, and a reference world
/// leaves gigabytes behind. Each command that runs worlds registers the
/// directory their scratch databases go to; on SIGINT or SIGTERM the files
/// of this process there (`paystorm-…-<pid>.sqlite…`, the names the runs
/// give them) are removed, and the signal then ends the process as it
/// would have, so the shell and a seed farm still see which signal it was.
///
/// The CLI host only: the simulation itself takes no signals.
enum ScratchCleanup {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var directories: Set<String> = []
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    /// `directory`, whose scratch files of this process are removed if it
    /// is interrupted from now on.
    static func registered(_ directory: String) -> String {
        lock.lock()
        defer { lock.unlock() }
        directories.insert(directory)
        if sources.isEmpty {
            sources = Interrupts.handle { number in
                removeFiles()
                signal(number, SIG_DFL)
                kill(getpid(), number)
            }
        }
        return directory
    }

    /// This process's scratch files in the registered directories.
    private static func files() -> [String] {
        lock.lock()
        let registered = directories
        lock.unlock()
        let marker = "-\(getpid()).sqlite"
        return registered.sorted().flatMap { directory in
            ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasPrefix("paystorm-") && $0.contains(marker) }
                .map { (directory as NSString).appendingPathComponent($0) }
        }
    }

    private static func removeFiles() {
        for file in files() { try? FileManager.default.removeItem(atPath: file) }
    }
}

/// SIGINT and SIGTERM handled on a dispatch queue instead of ending the
/// process at once: for the CLI's hosts, which have processes or files to
/// clean up first. Keep the sources returned: a released source stops.
enum Interrupts {
    /// A signal the process was started with ignored (a job a
    /// non-interactive shell put in the background ignores SIGINT) stays
    /// ignored.
    static func handle(_ handler: @escaping @Sendable (Int32) -> Void) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].compactMap { number in
            var current = sigaction()
            sigaction(number, nil, &current)
            // SIG_IGN is the handler whose address is 1; a C function pointer is not Equatable in Swift.
            if let handler = current.__sigaction_handler.sa_handler,
               unsafeBitCast(handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { return nil }
            // A signal source sees the signal only once its default action (ending the process) is off.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            return source
        }
    }
}
