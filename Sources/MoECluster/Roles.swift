/// What a rank does, from its rank, the job size and whether a draft model is configured.
public enum Role: Equatable, Sendable, CustomStringConvertible {
    case coordinator
    case worker(index: Int)       // 0-based worker index; MPI rank index + 1
    case draft

    /// Rank 0 coordinates; with a draft model the last rank (when there are at least 3) drafts; the rest are workers.
    public static func of(rank: Int, size: Int, hasDraft: Bool) -> Role {
        if rank == 0 { return .coordinator }
        if hasDraft && size >= 3 && rank == size - 1 { return .draft }
        return .worker(index: rank - 1)
    }

    public static func workerCount(size: Int, hasDraft: Bool) -> Int {
        max(0, size - 1 - (hasDraft && size >= 3 ? 1 : 0))
    }

    public var description: String {
        switch self {
        case .coordinator: return "coordinator"
        case .worker(let i): return "worker \(i + 1)"
        case .draft: return "draft"
        }
    }
}
