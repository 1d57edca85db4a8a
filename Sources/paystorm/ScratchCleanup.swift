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

    /// Removes this process's scratch files in `directory` if it is
    /// interrupted from now on.
    static func register(directory: String) {
        lock.lock()
        defer { lock.unlock() }
        directories.insert(directory)
        guard sources.isEmpty else { return }
        for number in [SIGINT, SIGTERM] {
            // Delivered to the source instead of ending the process at once.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                removeFiles()
                signal(number, SIG_DFL)
                kill(getpid(), number)
            }
            source.resume()
            sources.append(source)
        }
    }

    /// This process's scratch files in the registered directories.
    static func files() -> [String] {
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
