import HeapModule
import NIOCore

/// Work to run on one event loop at a later time, many thousands of pieces
/// pending at once: kept in a heap of its own and run by one repeating task
/// every ``granularity``, instead of one NIO scheduled task each.
///
/// NIO keeps its scheduled tasks in a heap of large values. The PSP sandbox
/// holds each webhook back for its delay (seconds, lognormal), some 8,000
/// at once at 2,500 payments/s. Under `paystorm bench server` NIO's heap was
/// 8.6% of the sandbox's CPU samples with the webhooks in it and 4.4% with
/// them here (what is left: the answers held back for the PSP's latency),
/// and the sandbox's CPU a payment fell by about a sixth. Here an entry is
/// a time, a number and the work.
///
/// A piece of work runs no earlier than its time and at most about one
/// ``granularity`` after it, in the order of their times (ties: the order
/// they were scheduled in).
final class DelayedWork: @unchecked Sendable {
    let loop: EventLoop
    let granularity: TimeAmount

    private struct Entry: Comparable {
        var due: NIODeadline
        var sequence: Int
        var work: @Sendable () -> Void

        static func < (a: Entry, b: Entry) -> Bool { (a.due, a.sequence) < (b.due, b.sequence) }
        static func == (a: Entry, b: Entry) -> Bool { a.sequence == b.sequence }
    }

    // On `loop` only.
    private var pending = Heap<Entry>()
    private var scheduled = 0
    private var sweep: RepeatedTask?

    init(loop: EventLoop, granularity: TimeAmount = .milliseconds(10)) {
        self.loop = loop
        self.granularity = granularity
    }

    /// Runs `work` on ``loop`` once `delay` has passed. Callable from any thread.
    func schedule(in delay: TimeAmount, _ work: @escaping @Sendable () -> Void) {
        let due = NIODeadline.now() + delay
        loop.execute { self.add(due, work) }
    }

    /// Pieces of work waiting. On ``loop`` only.
    var count: Int { pending.count }

    /// Whether the sweep runs (only while work waits). On ``loop`` only.
    var sweeping: Bool { sweep != nil }

    private func add(_ due: NIODeadline, _ work: @escaping @Sendable () -> Void) {
        scheduled += 1
        pending.insert(Entry(due: due, sequence: scheduled, work: work))
        if sweep == nil {
            sweep = loop.scheduleRepeatedTask(initialDelay: granularity, delay: granularity) { _ in self.runDue() }
        }
    }

    /// Runs what is due; stops the sweep once nothing waits.
    private func runDue() {
        let now = NIODeadline.now()
        while let next = pending.min, next.due <= now {
            pending.removeMin().work()
        }
        if pending.isEmpty {
            sweep?.cancel()
            sweep = nil
        }
    }
}
