import GRDB
import PaystormStore

/// One message to publish: topics are partitioned by `key` (the merchant id).
public struct BrokerRecord: Sendable, Equatable {
    public var topic: String
    public var key: String
    public var payload: String

    public init(topic: String, key: String, payload: String) {
        self.topic = topic
        self.key = key
        self.payload = payload
    }
}

/// One message as a consumer group receives it.
public struct BrokerDelivery: Sendable, Equatable {
    public var topic: String
    public var partition: Int
    public var offset: Int64
    public var key: String
    public var payload: String
}

/// A message a consumer group parked, and why (the last failure's reason).
/// Described as `group: topic/partition@offset: reason`.
public struct BrokerDeadLetter: Sendable, Equatable, CustomStringConvertible {
    public var group: String
    public var delivery: BrokerDelivery
    public var reason: String

    public init(group: String, delivery: BrokerDelivery, reason: String) {
        self.group = group
        self.delivery = delivery
        self.reason = reason
    }

    public var description: String { "\(group): \(delivery.topic)/\(delivery.partition)@\(delivery.offset): \(reason)" }
}

/// The port the server's outbox relay and consumers talk to: a Kafka-like
/// log with partitions, consumer groups and committed offsets, delivering
/// at least once. ``SQLiteBroker`` is the durable local implementation; a
/// Kafka adapter would implement the same calls (a dead-letter topic per
/// group stands for the dead letters).
public protocol EventBroker: AnyObject {
    /// Appends the records durably, in order per partition; returns once they are stored.
    func produce(_ records: [BrokerRecord]) throws
    /// Up to `limit` messages the group has not committed, oldest first per partition.
    /// Until committed, the same messages are delivered again (to a group
    /// the broker retains messages for: see ``SQLiteBroker``).
    func poll(group: String, limit: Int) throws -> [BrokerDelivery]
    /// Commits each group's offsets past every delivery given, all groups at once.
    /// A delivery at an offset its partition never held is refused, and
    /// nothing is committed: an offset past the log's end would skip the
    /// messages still to come.
    func commit(_ groups: [(group: String, deliveries: [BrokerDelivery])]) throws
    /// Parks a message the group cannot process in its dead-letter topic;
    /// parking it again keeps one letter, with the new reason.
    func deadLetter(group: String, _ delivery: BrokerDelivery, reason: String) throws
    /// Up to `limit` of the group's dead letters, in log order (topic, partition, offset).
    func deadLetters(group: String, limit: Int) throws -> [BrokerDeadLetter]
    /// Removes a dead letter the group has since processed (a replay).
    func resolveDeadLetter(group: String, _ delivery: BrokerDelivery) throws
    /// Dead letters parked now: the group's, or (`nil`) every group's.
    func deadLetterCount(group: String?) throws -> Int
    /// Messages the group has not committed yet that the log still holds,
    /// over every partition; cheap enough to ask before every poll.
    func lag(group: String) throws -> Int
}

/// A durable, local broker on its own SQLite database (WAL, synchronous FULL):
/// topics of `partitions` partitions, each a log keyed by offset, appended
/// at its end and trimmed at its start, and one committed offset per group,
/// topic and partition. The partition of a key is a stable hash of it
/// (FNV-1a), the same in every process and run.
///
/// Retention: a message every one of the `retainedFor` groups has committed
/// is deleted by an offset commit — the one that let it go, or, for at
/// most ``maximumReleasedPerCommit`` at a time, the next ones — so a server
/// that runs for days keeps only what its consumers still owe. Delivery is
/// at least once for those groups. Any other group reads from the oldest
/// message left, as Kafka's `auto.offset.reset = earliest` does, and misses
/// what was trimmed before it read it: a group added to `retainedFor`
/// later, too. Offsets are never reused: a partition's next offset
/// survives its log being emptied (the committed offsets carry it).
public final class SQLiteBroker: EventBroker {
    public let store: Store
    public let partitions: Int
    /// The groups a message is kept for until each has committed it; empty keeps every message.
    public let retainedFor: [String]
    /// Messages one commit deletes at most: a log that grew before
    /// retention (or while a group stopped committing) is trimmed over many
    /// commits, each holding the engine thread only briefly.
    public var maximumReleasedPerCommit = 8_192
    /// Next offset of each (topic, partition), from the log and the committed offsets.
    private var ends: [PartitionID: Int64] = [:]
    /// Oldest offset each (topic, partition) still holds: retention deleted those below.
    private var starts: [PartitionID: Int64] = [:]
    /// Committed offset of each (group, topic, partition), cached from the table.
    private var committed: [String: [PartitionID: Int64]] = [:]
    /// Polls made by each group: where its next poll starts (``poll(group:limit:)``).
    private var pollTurns: [String: Int] = [:]

    struct PartitionID: Hashable, Comparable {
        var topic: String
        var partition: Int
        static func < (a: Self, b: Self) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
    }

    /// Opens (or creates) the broker's database.
    /// - Parameters:
    ///   - partitions: of every topic; fixed for the life of the database.
    ///   - retainedFor: the consumer groups a message is kept for (see the type's retention).
    public init(_ location: Store.Location, partitions: Int = 8, retainedFor: [String] = []) throws(StoreError) {
        precondition(partitions >= 1, "a topic needs at least one partition")
        self.partitions = partitions
        self.retainedFor = retainedFor
        store = try Store(location) { migrator in
            migrator.registerMigration("v1-broker") { db in
                try db.execute(sql: """
                    CREATE TABLE broker_message (
                        topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                        key TEXT NOT NULL, payload TEXT NOT NULL,
                        PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
                    CREATE TABLE broker_offset (
                        grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                        PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
                    CREATE TABLE broker_dead_letter (
                        grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                        payload TEXT NOT NULL, reason TEXT NOT NULL,
                        PRIMARY KEY (grp, topic, partition, offset)) WITHOUT ROWID;
                    """)
            }
            // A letter keeps its message's key, so that what is replayed is the message as delivered.
            migrator.registerMigration("v2-broker-dead-letter-key") { db in
                try db.execute(sql: "ALTER TABLE broker_dead_letter ADD COLUMN key TEXT NOT NULL DEFAULT ''")
            }
        }
        do {
            try store.queue.inDatabase { db in
                for row in try Row.fetchAll(db, sql: "SELECT topic, partition, MIN(offset) AS first, MAX(offset) + 1 AS next FROM broker_message GROUP BY topic, partition") {
                    let id = PartitionID(topic: row["topic"], partition: row["partition"])
                    starts[id] = row["first"]
                    ends[id] = row["next"]
                }
                for row in try Row.fetchAll(db, sql: "SELECT grp, topic, partition, next_offset FROM broker_offset") {
                    let id = PartitionID(topic: row["topic"], partition: row["partition"])
                    let next: Int64 = row["next_offset"]
                    committed[row["grp"], default: [:]][id] = next
                    // Retention may have emptied the log up to here.
                    ends[id] = max(ends[id, default: 0], next)
                }
                for (id, end) in ends where starts[id] == nil { starts[id] = end }
            }
        } catch {
            throw StoreError(path: location.description, operation: "read the broker's offsets", message: "\(error)")
        }
    }

    /// The partition of a key: FNV-1a of its UTF-8 bytes, modulo the partition count.
    public func partition(of key: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return Int(hash % UInt64(partitions))
    }

    public func produce(_ records: [BrokerRecord]) throws {
        guard !records.isEmpty else { return }
        var ends = self.ends
        try store.queue.write { db in
            let insert = try db.cachedStatement(sql: "INSERT INTO broker_message (topic, partition, offset, key, payload) VALUES (?, ?, ?, ?, ?)")
            for record in records {
                let id = PartitionID(topic: record.topic, partition: partition(of: record.key))
                let offset = ends[id, default: 0]
                try insert.execute(arguments: [record.topic, id.partition, offset, record.key, record.payload])
                ends[id] = offset + 1
            }
        }
        self.ends = ends  // only once the transaction committed
    }

    /// Fair across partitions: each partition the group is behind on gets
    /// an equal share of `limit` first, then what is left goes to those
    /// with more, and the partition served first turns with every poll. Read
    /// in partition order to the limit, a backlog in a low partition
    /// would hold back every higher one for as long as it lasted.
    ///
    /// - Complexity: O(p log p) for p partitions, plus one indexed read per
    ///   partition behind (two for those past their share).
    public func poll(group: String, limit: Int) throws -> [BrokerDelivery] {
        let offsets = committed[group] ?? [:]
        let behind = ends.filter { $0.value > position(offsets, $0.key) }.map(\.key).sorted()
        guard !behind.isEmpty, limit > 0 else { return [] }
        let turn = pollTurns[group, default: 0]
        pollTurns[group] = turn &+ 1
        let first = turn % behind.count
        let order = Array(behind[first...] + behind[..<first])
        let share = max(1, limit / behind.count)
        var next = order.map { position(offsets, $0) }
        var deliveries: [BrokerDelivery] = []
        try store.queue.inDatabase { db in
            let select = try db.cachedStatement(sql: """
                SELECT offset, key, payload FROM broker_message
                WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?
                """)
            for pass in 0..<2 {
                for (index, id) in order.enumerated() where deliveries.count < limit && next[index] < ends[id, default: 0] {
                    let room = limit - deliveries.count
                    let rows = try Row.fetchCursor(select, arguments: [id.topic, id.partition, next[index], pass == 0 ? min(share, room) : room])
                    while let row = try rows.next() {
                        let delivery = BrokerDelivery(topic: id.topic, partition: id.partition, offset: row["offset"],
                                                      key: row["key"], payload: row["payload"])
                        deliveries.append(delivery)
                        next[index] = delivery.offset + 1
                    }
                }
            }
        }
        return deliveries
    }

    public func commit(_ groups: [(group: String, deliveries: [BrokerDelivery])]) throws {
        var updated = committed
        var changed: [(String, PartitionID, Int64)] = []
        for (group, deliveries) in groups {
            var offsets = updated[group] ?? [:]
            for delivery in deliveries {
                let id = PartitionID(topic: delivery.topic, partition: delivery.partition)
                guard delivery.offset >= 0, delivery.offset < ends[id, default: 0] else {
                    throw StoreError(path: store.location.description, operation: "commit group \(group)'s offsets",
                                     message: "\(delivery.topic)/\(delivery.partition)@\(delivery.offset) was never in the log "
                                         + "(the partition's next offset is \(ends[id, default: 0])); nothing committed")
                }
                if delivery.offset + 1 > offsets[id, default: 0] { offsets[id] = delivery.offset + 1 }
            }
            for (id, next) in offsets.sorted(by: { $0.key < $1.key }) where next != committed[group]?[id] {
                changed.append((group, id, next))
            }
            updated[group] = offsets
        }
        guard !changed.isEmpty else { return }
        let trimmed = released(by: updated)
        try store.queue.write { db in
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO broker_offset (grp, topic, partition, next_offset) VALUES (?, ?, ?, ?)
                ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)
                """)
            for (group, id, next) in changed {
                try upsert.execute(arguments: [group, id.topic, id.partition, next])
            }
            if !trimmed.isEmpty {
                let delete = try db.cachedStatement(sql: "DELETE FROM broker_message WHERE topic = ? AND partition = ? AND offset >= ? AND offset < ?")
                for (id, from, below) in trimmed {
                    try delete.execute(arguments: [id.topic, id.partition, from, below])
                }
            }
        }
        // Only once the transaction committed.
        committed = updated
        for (id, _, below) in trimmed { starts[id] = below }
    }

    /// Where a group with these committed offsets reads a partition from:
    /// its committed offset, or the oldest message retention left.
    private func position(_ offsets: [PartitionID: Int64], _ id: PartitionID) -> Int64 {
        max(offsets[id, default: 0], starts[id, default: 0])
    }

    /// What retention deletes once `offsets` are committed: per partition,
    /// from its oldest message up to the oldest offset a ``retainedFor``
    /// group is still owed, at most ``maximumReleasedPerCommit`` in all.
    private func released(by offsets: [String: [PartitionID: Int64]]) -> [(PartitionID, from: Int64, below: Int64)] {
        guard !retainedFor.isEmpty else { return [] }
        var budget = Int64(maximumReleasedPerCommit)
        var released: [(PartitionID, from: Int64, below: Int64)] = []
        for id in ends.keys.sorted() where budget > 0 {
            let owed = retainedFor.lazy.map { offsets[$0]?[id] ?? 0 }.min()!
            let start = starts[id, default: 0]
            guard owed > start else { continue }
            let below = min(owed, start + budget)
            released.append((id, start, below))
            budget -= below - start
        }
        return released
    }

    /// Messages the log still holds, over every topic and partition.
    public func retainedMessages() throws -> Int {
        try store.queue.inDatabase { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM broker_message") ?? 0 }
    }

    /// Commits one group's offsets.
    public func commit(group: String, _ deliveries: [BrokerDelivery]) throws {
        try commit([(group, deliveries)])
    }

    public func deadLetter(group: String, _ delivery: BrokerDelivery, reason: String) throws {
        try store.queue.write { db in
            try db.execute(sql: """
                INSERT INTO broker_dead_letter (grp, topic, partition, offset, key, payload, reason) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (grp, topic, partition, offset) DO UPDATE SET reason = excluded.reason
                """, arguments: [group, delivery.topic, delivery.partition, delivery.offset, delivery.key, delivery.payload, reason])
        }
    }

    public func deadLetters(group: String, limit: Int) throws -> [BrokerDeadLetter] {
        try store.queue.inDatabase { try Self.deadLetters(in: $0, group: group, limit: limit) }
    }

    /// ``deadLetters(group:limit:)`` of every group (`nil`), or of one, on a
    /// connection to a broker's database the caller opened (an audit reads a
    /// stopped server's broker read-only, maybe one from before the letters
    /// kept their keys: those read with an empty key).
    public static func deadLetters(in db: Database, group: String? = nil, limit: Int = .max) throws -> [BrokerDeadLetter] {
        let key = try db.columns(in: "broker_dead_letter").contains { $0.name == "key" } ? "key" : "'' AS key"
        return try Row.fetchAll(db, sql: """
            SELECT grp, topic, partition, offset, \(key), payload, reason FROM broker_dead_letter
            WHERE ?1 IS NULL OR grp = ?1 ORDER BY grp, topic, partition, offset LIMIT ?2
            """, arguments: [group, Int64(clamping: max(0, limit))]).map { row in
            BrokerDeadLetter(group: row["grp"],
                             delivery: BrokerDelivery(topic: row["topic"], partition: row["partition"], offset: row["offset"],
                                                      key: row["key"], payload: row["payload"]),
                             reason: row["reason"])
        }
    }

    public func resolveDeadLetter(group: String, _ delivery: BrokerDelivery) throws {
        try store.queue.write { db in
            try db.execute(sql: "DELETE FROM broker_dead_letter WHERE grp = ? AND topic = ? AND partition = ? AND offset = ?",
                           arguments: [group, delivery.topic, delivery.partition, delivery.offset])
        }
    }

    public func lag(group: String) throws -> Int {
        let offsets = committed[group] ?? [:]
        return ends.reduce(0) { $0 + Int($1.value - position(offsets, $1.key)) }
    }

    public func deadLetterCount(group: String?) throws -> Int {
        try store.queue.inDatabase {
            try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM broker_dead_letter WHERE ?1 IS NULL OR grp = ?1", arguments: [group]) ?? 0
        }
    }
}
