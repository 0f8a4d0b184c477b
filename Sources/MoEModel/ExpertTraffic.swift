/// What an expert backend reports about the traffic to its workers, cumulative since start. A backend in this
/// process has none; the MPI backend counts rows, bytes and each worker's busy time.
public struct ExpertTraffic: Sendable, Equatable {
    public var workers: Int
    /// (token, expert) rows computed by each worker.
    public var rowsPerWorker: [Int]
    /// Seconds each worker spent computing experts.
    public var busyPerWorker: [Double]
    public var bytesSent = 0
    public var bytesReceived = 0
    /// Seconds in dispatch and combine (the exchange, not the compute).
    public var exchangeSeconds = 0.0
    /// Exchanges (one per MoE layer per step).
    public var exchanges = 0

    public init(workers: Int) {
        self.workers = workers
        rowsPerWorker = Array(repeating: 0, count: workers)
        busyPerWorker = Array(repeating: 0, count: workers)
    }
}

public protocol ExpertTrafficSource: AnyObject {
    var traffic: ExpertTraffic { get }
}
