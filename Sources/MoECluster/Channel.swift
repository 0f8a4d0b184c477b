import CMPI
import Foundation

/// Non-blocking point-to-point messages with one peer (the draft protocol): sends are posted with MPI_Isend and
/// their buffers kept until MPI reports them done; receives probe for whatever has arrived.
public final class Channel: @unchecked Sendable {
    let comm: Communicator
    public let peer: Int
    private var pending: [(MPI_Request?, UnsafeMutableRawBufferPointer)] = []

    public init(comm: Communicator, peer: Int) {
        self.comm = comm
        self.peer = peer
    }

    deinit { for (_, b) in pending { b.deallocate() } }

    public func send(_ bytes: [UInt8], tag: Int) throws {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { buf.copyMemory(from: $0) }
        var req: MPI_Request? = nil
        try comm.check(MPI_Isend(buf.baseAddress, Int32(bytes.count), moe_mpi_byte(), Int32(peer), Int32(tag), comm.comm, &req), "MPI_Isend")
        pending.append((req, buf))
        try progress()
    }

    /// Retires finished sends.
    public func progress() throws {
        var still: [(MPI_Request?, UnsafeMutableRawBufferPointer)] = []
        for (r, b) in pending {
            var req = r, flag: Int32 = 0
            try comm.check(MPI_Test(&req, &flag, moe_mpi_status_ignore()), "MPI_Test (send)")
            if flag != 0 { b.deallocate() } else { still.append((req, b)) }
        }
        pending = still
    }

    /// The next message from the peer if one has arrived.
    public func poll() throws -> (tag: Int, bytes: [UInt8])? {
        try progress()
        var flag: Int32 = 0
        var status = MPI_Status()
        try comm.check(MPI_Iprobe(Int32(peer), moe_mpi_any_tag(), comm.comm, &flag, &status), "MPI_Iprobe")
        if flag == 0 { return nil }
        var count: Int32 = 0
        MPI_Get_count(&status, moe_mpi_byte(), &count)
        let tag = moe_mpi_status_tag(&status)
        var bytes = [UInt8](repeating: 0, count: Int(count))
        try bytes.withUnsafeMutableBytes { b in
            try comm.check(MPI_Recv(b.baseAddress, count, moe_mpi_byte(), Int32(peer), tag, comm.comm, moe_mpi_status_ignore()), "MPI_Recv")
        }
        return (Int(tag), bytes)
    }
}
