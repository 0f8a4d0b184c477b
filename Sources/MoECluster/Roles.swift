/// What a rank does, from its rank, the job size and whether a draft model is configured.
public enum Role: Equatable, Sendable, CustomStringConvertible {
    case coordinator
    case worker(index: Int)       // 0-based worker index; MPI rank index + 1
    case draft

    /// Rank 0 coordinates; with a draft model the last rank (when there are at least 3) drafts; the rest are workers.
    public static func of(rank: Int, size: Int, hasDraft: Bool) -> Role {
        if rank == 0 { return .coordinator }
        if draftNode(size: size, hasDraft: hasDraft) && rank == size - 1 { return .draft }
        return .worker(index: rank - 1)
    }

    /// Whether the job has a draft node (a draft model and at least 3 ranks; otherwise the draft runs in rank 0).
    public static func draftNode(size: Int, hasDraft: Bool) -> Bool { hasDraft && size >= 3 }

    public static func workerCount(size: Int, hasDraft: Bool) -> Int {
        max(0, size - 1 - (draftNode(size: size, hasDraft: hasDraft) ? 1 : 0))
    }

    public var description: String {
        switch self {
        case .coordinator: return "coordinator"
        case .worker(let i): return "worker \(i + 1)"
        case .draft: return "draft"
        }
    }
}
