import PaystormKernel

/// Messages of the queueing demo world.
public enum DemoMessage: SimMessage {
    /// Client timer: time to send the next request.
    case arrival
    /// Client → server.
    case request(id: Int64)
    /// Server timer: a worker finished request `id` for `client`.
    case serviceDone(id: Int64, client: ActorAddress)
    /// Server → client: done.
    case reply(id: Int64)
    /// Server → client: the queue was full.
    case rejected(id: Int64)
    /// Client timer: request `id` took too long.
    case timeout(id: Int64)

    public func trace(into hasher: inout TraceHasher) {
        switch self {
        case .arrival:
            hasher.combine(UInt64(1))
        case let .request(id):
            hasher.combine(UInt64(2)); hasher.combine(id)
        case let .serviceDone(id, client):
            hasher.combine(UInt64(3)); hasher.combine(id); hasher.combine(client.index)
        case let .reply(id):
            hasher.combine(UInt64(4)); hasher.combine(id)
        case let .rejected(id):
            hasher.combine(UInt64(5)); hasher.combine(id)
        case let .timeout(id):
            hasher.combine(UInt64(6)); hasher.combine(id)
        }
    }
}
