import CKernels
import CMPI
import Foundation

/// MPI for this process. Started without mpirun it is a singleton (rank 0 of 1): the embedded default.
/// Handles are wrapped so that one owner thread uses them (MPI_THREAD_MULTIPLE is requested all the same).
public final class MPIRuntime: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    nonisolated(unsafe) private static var shared: MPIRuntime?

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private init() throws {
        var provided: Int32 = 0
        let rc = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_MULTIPLE), &provided)
        guard rc == MPI_SUCCESS else { throw Failure(description: "MPI_Init_thread failed with code \(rc)") }
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(moe_mpi_comm_world(), &r)
        MPI_Comm_size(moe_mpi_comm_world(), &s)
        // Errors come back as return codes so a failing call can be reported with its context instead of aborting.
        MPI_Comm_set_errhandler(moe_mpi_comm_world(), moe_mpi_errors_return())
        rank = Int(r)
        size = Int(s)
    }

    /// Initialises MPI once per process. Under a launcher, a rank dies with it: killing mpirun (even with -9) ends
    /// every rank instead of leaving orphans holding ports and memory.
    public static func start() throws -> MPIRuntime {
        if let s = shared { return s }
        if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil && kern_die_with_parent() == -2 { exit(1) }
        let s = try MPIRuntime()
        shared = s
        return s
    }

    public func finalize() {
        var done: Int32 = 0
        MPI_Finalized(&done)
        if done == 0 { MPI_Finalize() }
    }

    /// Ends every rank of the job (used when one rank cannot go on mid-step).
    public static func abortJob(code: Int32) -> Never {
        MPI_Abort(moe_mpi_comm_world(), code)
        exit(code)
    }
}
