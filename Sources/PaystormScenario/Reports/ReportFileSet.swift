import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Replaces a set of report files in one directory as nearly at once as
/// POSIX allows: every file is first written whole under a temporary name
/// beside its target, and only when all are written is each renamed over its
/// target with rename(2), which replaces one file atomically. A failure
/// while writing removes the temporaries and leaves the previous set as it
/// was; a reader never sees a half-written file, and sees a mix of old and
/// new files only during the renames, which cannot fail for want of space
/// (a rename that fails all the same — a target turned into a directory —
/// leaves the files before it new and the rest old, and says which).
enum ReportFileSet {
    /// Where `path` is written before it is renamed into place.
    static func temporaryPath(_ path: String) -> String { path + ".partial" }

    /// Writes `files` (name and contents) into `directory`, creating it if needed.
    /// - Complexity: O(total bytes), plus two system calls per file.
    static func replace(_ files: [(name: String, text: String)], in directory: String) throws(ReportWriteError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ReportWriteError(path: directory, operation: "create the directory", message: error.localizedDescription)
        }
        let paths = files.map { (directory as NSString).appendingPathComponent($0.name) }
        var written: [String] = []
        func removeTemporaries() {
            for path in written { unlink(temporaryPath(path)) }
        }
        for (path, file) in zip(paths, files) {
            do {
                try Data(file.text.utf8).write(to: URL(fileURLWithPath: temporaryPath(path)))
            } catch {
                // A write that failed part-way (no space left) leaves its temporary too.
                unlink(temporaryPath(path))
                removeTemporaries()
                throw ReportWriteError(path: temporaryPath(path), operation: "write", message: error.localizedDescription)
            }
            written.append(path)
        }
        for (index, path) in paths.enumerated() where rename(temporaryPath(path), path) != 0 {
            let message = String(cString: strerror(errno))
            written = Array(paths[index...])
            removeTemporaries()
            throw ReportWriteError(path: path, operation: "rename \(temporaryPath(path)) over", message: message)
        }
    }
}

/// A report file that could not be written: which, doing what, and why.
public struct ReportWriteError: Error, CustomStringConvertible {
    public var path: String
    public var operation: String
    public var message: String
    public var description: String { "cannot \(operation) \(path): \(message)" }
}
