import Foundation

/// An exclusive, advisory lock on a server's database, held for as long as
/// the server runs: a `flock` on `<database>.lock`, beside it. Two servers on
/// one database would both relay its outbox, run its consumers and recover
/// its attempts; the second is refused before it writes anything.
///
/// The lock file is named from the database's real path, so another path to
/// the same database (`./a.sqlite`, a symbolic link) meets it too; the kernel releases it
/// when the process ends however it ends (`kill -9` included): a lock file
/// left behind holds nothing. It is not SQLite's own locking, which is
/// per transaction and lets a second server in between them.
public final class DatabaseLock: Sendable {
    public let path: String
    private let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// The lock file of the database at `databasePath`.
    /// The file's real path (symbolic links and `.` and `..` resolved)
    /// with `.lock` added, so every path to one database names one lock file.
    /// For a database not made yet, its directory's real path and its name.
    public static func lockPath(of databasePath: String) -> String {
        func real(_ path: String) -> String? {
            guard let resolved = realpath(path, nil) else { return nil }
            defer { free(resolved) }
            return String(cString: resolved)
        }
        if let file = real(databasePath) { return file + ".lock" }
        let directory = (databasePath as NSString).deletingLastPathComponent
        let name = (databasePath as NSString).lastPathComponent
        guard let resolved = real(directory.isEmpty ? "." : directory) else { return databasePath + ".lock" }
        return (resolved as NSString).appendingPathComponent(name) + ".lock"
    }

    /// Takes the lock of the database at `databasePath`, making its lock
    /// file if need be, or throws a ``ServerError`` naming the database when
    /// another process holds it. Never waits.
    public static func acquire(databasePath: String) throws(ServerError) -> DatabaseLock {
        let path = lockPath(of: databasePath)
        // A lock file removed and made again between the open and the flock
        // would leave this process locking a file no one else opens: then it tries again.
        for _ in 0..<8 {
            let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                throw ServerError("--database: cannot open the lock file \(path): \(String(cString: strerror(errno)))")
            }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
                let error = errno
                close(descriptor)
                if error == EWOULDBLOCK {
                    throw ServerError("--database: \(databasePath) is in use by another paystorm serve, which holds its lock \(path); "
                                      + "stop it first, or give this server another --database")
                }
                throw ServerError("--database: cannot lock \(path): \(String(cString: strerror(error)))")
            }
            var opened = stat(), named = stat()
            if fstat(descriptor, &opened) == 0, stat(path, &named) == 0, opened.st_dev == named.st_dev, opened.st_ino == named.st_ino {
                return DatabaseLock(path: path, descriptor: descriptor)
            }
            close(descriptor)
        }
        throw ServerError("--database: the lock file \(path) keeps being replaced while this server takes it")
    }
}
