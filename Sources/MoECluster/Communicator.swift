import CMPI
import Foundation

/// Why the cluster cannot go on; the rank that knows prints it once.
public enum ClusterFailure: Error, CustomStringConvertible {
    case mpi(call: String, code: Int32)
    case timeout(what: String, seconds: Double)
    case peer(String)

    public var description: String {
        switch self {
        case .mpi(let call, let code):
            var len: Int32 = 0
            var buf = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING))
            MPI_Error_string(code, &buf, &len)
            return "\(call) failed: \(String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self))"
        case .timeout(let what, let s):
            return "no answer for \(Int(s)) s while \(what): a peer rank is stuck or gone"
        case .peer(let s):
            return s
        }
    }
}

/// An MPI communicator used from one owner thread. Collectives are non-blocking underneath and polled with a
/// deadline, so a silent peer becomes an error with context instead of a hang; idle waits sleep between polls.
public final class Communicator: @unchecked Sendable {
    public let comm: MPI_Comm
    public let rank: Int
    public let size: Int
    /// Deadline for one collective inside a step.
    public var timeout: Double = 60

    public init(_ comm: MPI_Comm) {
        self.comm = comm
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        MPI_Comm_set_errhandler(comm, moe_mpi_errors_return())
        rank = Int(r)
        size = Int(s)
    }

    public static var world: Communicator { Communicator(moe_mpi_comm_world()) }

    /// MPI_Comm_split: ranks with the same color form a new communicator, ordered by key.
    public func split(color: Int, key: Int) throws -> Communicator {
        var out: MPI_Comm? = nil
        try check(MPI_Comm_split(comm, Int32(color), Int32(key), &out), "MPI_Comm_split")
        return Communicator(out!)
    }

    func check(_ rc: Int32, _ call: String) throws {
        if rc != MPI_SUCCESS { throw ClusterFailure.mpi(call: call, code: rc) }
    }

    /// Polls `req` until done. With `deadline` seconds, a slower peer is a `.timeout`; `idleSleep` (µs) is how long
    /// to sleep between polls once the first fast spins are over.
    func wait(_ req: inout MPI_Request?, what: @autoclosure () -> String, deadline: Double?, idleSleep: Int = 50) throws {
        let start = monotonic()
        var flag: Int32 = 0
        var spins = 0
        while true {
            try check(MPI_Test(&req, &flag, moe_mpi_status_ignore()), "MPI_Test (\(what()))")
            if flag != 0 { return }
            spins += 1
            // The clock is read every 256 fast spins and at every yield or sleep: on a loaded machine one
            // sched_yield can cost a whole time slice, so 2000 of them must not postpone the deadline by seconds.
            if spins >= 2000 || spins & 255 == 0, let d = deadline, monotonic() - start > d {
                throw ClusterFailure.timeout(what: what(), seconds: d)
            }
            if spins < 2000 { continue }
            if spins < 4000 { sched_yield(); continue }
            if idleSleep > 0 { usleep(UInt32(idleSleep)) } else { sched_yield() }
        }
    }

    /// Every rank's `value` (fixed-size bytes), gathered to all.
    public func allgather<T: BitwiseCopyable>(_ value: T, what: String, deadline: Double? = nil) throws -> [T] {
        var mine = value
        var all = [T](unsafeUninitializedCapacity: size) { _, n in n = size }
        var req: MPI_Request? = nil
        try withUnsafeBytes(of: &mine) { src in
            try all.withUnsafeMutableBytes { dst in
                try check(MPI_Iallgather(src.baseAddress, Int32(src.count), moe_mpi_byte(), dst.baseAddress, Int32(src.count),
                                         moe_mpi_byte(), comm, &req), "MPI_Iallgather")
                try wait(&req, what: what, deadline: deadline ?? timeout)
            }
        }
        return all
    }

    /// Fixed-size block exchange: `send` holds `size` blocks of `count` Int32, block i for rank i.
    public func alltoall(_ send: [Int32], count: Int, what: @autoclosure () -> String, deadline: Double?, idleSleep: Int = 50) throws -> [Int32] {
        var recv = [Int32](repeating: 0, count: count * size)
        var req: MPI_Request? = nil
        try send.withUnsafeBytes { s in
            try recv.withUnsafeMutableBytes { r in
                try check(MPI_Ialltoall(s.baseAddress, Int32(count), moe_mpi_int32(), r.baseAddress, Int32(count), moe_mpi_int32(),
                                        comm, &req), "MPI_Ialltoall")
                try wait(&req, what: what(), deadline: deadline, idleSleep: idleSleep)
            }
        }
        return recv
    }

    /// Starts a fixed-size block exchange of `count` Int32 per rank and returns at once. `send`, `recv` belong to MPI
    /// until `complete` has returned for the request.
    public func startAlltoall(send: UnsafePointer<Int32>, recv: UnsafeMutablePointer<Int32>, count: Int) throws -> MPI_Request? {
        var req: MPI_Request? = nil
        try check(MPI_Ialltoall(send, Int32(count), moe_mpi_int32(), recv, Int32(count), moe_mpi_int32(), comm, &req), "MPI_Ialltoall")
        return req
    }

    /// Starts a variable-size byte exchange (as `alltoallv`) and returns at once. The buffers and the count and
    /// displacement arrays belong to MPI until `complete` has returned for the request.
    public func startAlltoallv(send: UnsafeRawPointer, counts scounts: UnsafePointer<Int32>, displs sdispls: UnsafePointer<Int32>,
                               recv: UnsafeMutableRawPointer, counts rcounts: UnsafePointer<Int32>,
                               displs rdispls: UnsafePointer<Int32>) throws -> MPI_Request? {
        var req: MPI_Request? = nil
        try check(MPI_Ialltoallv(send, scounts, sdispls, moe_mpi_byte(), recv, rcounts, rdispls, moe_mpi_byte(), comm, &req),
                  "MPI_Ialltoallv")
        return req
    }

    /// Waits for a started collective, at most `timeout` seconds from now.
    public func complete(_ req: inout MPI_Request?, what: @autoclosure () -> String) throws {
        try wait(&req, what: what(), deadline: timeout)
    }

    /// Variable-size byte exchange: rank i gets send[sdispls[i] ..< +scounts[i]] and we receive into recv likewise.
    public func alltoallv(send: UnsafeRawPointer, counts scounts: [Int32], displs sdispls: [Int32],
                          recv: UnsafeMutableRawPointer, counts rcounts: [Int32], displs rdispls: [Int32],
                          what: @autoclosure () -> String) throws {
        var req = try startAlltoallv(send: send, counts: scounts, displs: sdispls, recv: recv, counts: rcounts, displs: rdispls)
        try complete(&req, what: what())
    }
}

@inline(__always) func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
