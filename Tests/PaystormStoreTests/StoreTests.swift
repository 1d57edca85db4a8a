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
}
