import Foundation
import GRDB
import Testing
@testable import PaystormStore

@Suite("SQLite store")
struct StoreTests {
    @Test func inMemoryStoreMigrates() throws {
        let store = try Store(.memory)
        #expect(try store.appliedMigrations() == ["v1-store-metadata"])
    }

    @Test func fileStoreUsesWALAndSurvivesReopen() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("paystorm-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("paystorm.sqlite").path
        do {
            let store = try Store(.file(path: path))
            let mode = try store.queue.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
            #expect(mode == "wal")
            try store.queue.write { try $0.execute(sql: "INSERT INTO store_metadata (key, value) VALUES ('k', 'v')") }
        }
        let reopened = try Store(.file(path: path))
        let value = try reopened.queue.read { try String.fetchOne($0, sql: "SELECT value FROM store_metadata WHERE key = 'k'") }
        #expect(value == "v")
        #expect(try reopened.appliedMigrations() == ["v1-store-metadata"])
    }

    /// The store runs the SQLite built into the executable (CSQLite), not the system's: the
    /// version and options are that build's, with lookaside memory and without secure delete.
    @Test func storeRunsTheBuiltInSQLite() throws {
        let store = try Store(.memory)
        let (version, options) = try store.read { db in
            (try String.fetchOne(db, sql: "SELECT sqlite_version()"), try String.fetchAll(db, sql: "PRAGMA compile_options"))
        }
        #expect(version == "3.54.1")
        #expect(!options.contains { $0.hasPrefix("OMIT_LOOKASIDE") })
        #expect(!options.contains { $0.hasPrefix("SECURE_DELETE") })
        #expect(options.contains("DEFAULT_MEMSTATUS=0"))
        #expect(options.contains("THREADSAFE=1"))
    }

    @Test func unopenablePathGivesANamedError() {
        do {
            _ = try Store(.file(path: "/nonexistent-dir/paystorm.sqlite"))
            Issue.record("opening a path in a missing directory should fail")
        } catch {
            #expect(error.description.contains("/nonexistent-dir/paystorm.sqlite"))
        }
    }

    @Test func preparedStatementInsertsAndReportsConstraintErrors() throws {
        let store = try Store(.memory)
        try store.queue.write { db in
            try db.execute(sql: "CREATE TABLE t (id TEXT PRIMARY KEY, amount INTEGER NOT NULL)")
            let insert = try PreparedStatement(db, sql: "INSERT INTO t (id, amount) VALUES (?, ?)")
            insert.bind("pay-1", at: 1)
            insert.bind(Int64(1050), at: 2)
            try insert.execute()
            insert.bind("pay-1", at: 1)
            insert.bind(Int64(7), at: 2)
            do {
                try insert.execute()
                Issue.record("a duplicate primary key must fail")
            } catch let error as StoreError {
                #expect(error.description.hasPrefix("database \":memory:\": cannot execute INSERT INTO t"))
                #expect(error.description.contains("UNIQUE constraint failed"))
            }
        }
        let rows = try store.queue.read { try Row.fetchAll($0, sql: "SELECT id, amount FROM t") }
        #expect(rows.count == 1)
        #expect(rows.first?["amount"] == 1050 as Int64)
    }

    @Test func preparedStatementCountsItsRunsAndInstructionsSinceItWasLastAsked() throws {
        let store = try Store(.memory)
        try store.queue.write { db in
            try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
            let insert = try PreparedStatement(db, sql: "INSERT INTO t (id, amount) VALUES (?, ?)")
            #expect(insert.takeWork() == (0, 0))
            for id in 1...3 {
                insert.bind(Int64(id), at: 1)
                insert.bind(Int64(100), at: 2)
                try insert.execute()
            }
            let three = insert.takeWork()
            #expect(three.runs == 3)
            #expect(three.instructions > 0)
            #expect(insert.takeWork() == (0, 0), "each call counts from the last")
            // The same work again: the same count.
            for id in 4...6 {
                insert.bind(Int64(id), at: 1)
                insert.bind(Int64(100), at: 2)
                try insert.execute()
            }
            #expect(insert.takeWork() == three)
        }
    }

    @Test func aReadLeavesTheConnectionsPreparedStatementsCompiled() throws {
        let store = try Store(.memory)
        let select = try store.queue.write { db in
            try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL); INSERT INTO t VALUES (1, 100)")
            return try PreparedStatement(db, sql: "SELECT amount FROM t WHERE id = ?")
        }
        func amount() throws -> Int64 {
            try store.queue.inDatabase { _ throws -> Int64 in
                select.bind(Int64(1), at: 1)
                defer { select.reset() }
                let found = try select.step()
                #expect(found)
                return select.int64(at: 0)
            }
        }
        #expect(try amount() == 100)
        let count = try store.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") }
        #expect(count == 1)
        #expect(try amount() == 100)
        #expect(select.reprepares == 0, "a read through the store must not expire the connection's statements")
        // GRDB's own read does (PRAGMA query_only): the counter sees it.
        _ = try store.queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") }
        #expect(try amount() == 100)
        #expect(select.reprepares == 1)
    }

    @Test func preparedStatementKeepsBoundTextUntilItIsBoundAgain() throws {
        let store = try Store(.memory)
        try store.queue.write { db in
            try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
            let insert = try PreparedStatement(db, sql: "INSERT INTO t (id, name) VALUES (?, ?)")
            let names = ["", "short", String(repeating: "long-", count: 40), "x", "café ☕"]
            for (id, name) in names.enumerated() {
                insert.bind(Int64(id), at: 1)
                insert.bind(name, at: 2)
                try insert.execute()
            }
            insert.bind(Int64(99), at: 1)  // the text bound for the last run is still bound
            try insert.execute()
            insert.bind(Int64(100), at: 1)
            insert.bind(nil as String?, at: 2)
            try insert.execute()
            let select = try PreparedStatement(db, sql: "SELECT name FROM t ORDER BY id")
            var read: [String?] = []
            while try select.step() { read.append(select.optionalText(at: 0)) }
            select.reset()
            #expect(read == names + ["café ☕", nil])
        }
    }

    /// B-tree balancing parks a page under the lock-byte page's number while
    /// it reorders pages. SQLite's own page cache then took every later commit
    /// for one that had to scan the whole cache; the wrapper skips those
    /// truncations. The data stay whole through them, through a rollback that
    /// shrinks the database (that truncation is passed on), and after it.
    @Test func commitsAfterBTreeBalancingSkipTheWholeCacheScan() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("paystorm-pcache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(.scratch(path: directory.appendingPathComponent("scratch.sqlite").path, cacheMebibytes: 8))
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func randomKey() -> [UInt8] {
            (0..<2).flatMap { _ -> [UInt8] in
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return withUnsafeBytes(of: z ^ (z >> 31)) { Array($0) }
            }
        }
        let commits = 3_000
        let before = Store.pageCacheCounts
        try store.queue.writeWithoutTransaction { db in
            try db.execute(sql: "CREATE TABLE item (key BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID")
            let insert = try PreparedStatement(db, sql: "INSERT INTO item (key, body) VALUES (?, zeroblob(300))")
            for _ in 0..<commits {
                try db.execute(sql: "BEGIN IMMEDIATE")
                insert.bind(Data(randomKey()), at: 1)
                try insert.execute()
                try db.execute(sql: "COMMIT")
            }
        }
        let committed = Store.pageCacheCounts
        #expect(committed.parked > before.parked, "random keys should make B-tree balancing park pages")
        #expect(committed.skipped - before.skipped >= Int64(commits), "every commit's truncation is needless")

        let (grown, pages, afterRollback) = try store.queue.writeWithoutTransaction { db -> (Int, Int, Int) in
            let pages = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            try db.execute(sql: "BEGIN IMMEDIATE")
            let insert = try PreparedStatement(db, sql: "INSERT INTO item (key, body) VALUES (?, zeroblob(300))")
            for _ in 0..<2_000 {
                insert.bind(Data(randomKey()), at: 1)
                try insert.execute()
            }
            let grown = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            try db.execute(sql: "ROLLBACK")
            let afterRollback = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            insert.bind(Data(randomKey()), at: 1)
            try insert.execute()
            return (grown, pages, afterRollback)
        }
        #expect(grown > pages)
        #expect(afterRollback == pages)
        #expect(Store.pageCacheCounts.passed > committed.passed, "the rollback's truncation drops pages past the end")
        let (count, integrity) = try store.queue.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM item"), try String.fetchOne(db, sql: "PRAGMA integrity_check"))
        }
        #expect(count == commits + 1)
        #expect(integrity == "ok")
    }
}
