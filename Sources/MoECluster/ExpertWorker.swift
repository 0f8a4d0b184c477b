import Foundation
import MoECore
import MoEModel

/// An expert worker's loop: wait for a layer's header, receive its units, run each held expert once over all rows
/// routed to it, return one weighted sum per unit; until the coordinator says shutdown.
public final class ExpertWorker {
    let comm: Communicator
    public let store: ExpertStore
    let wire: WireFormat
    let index: Int
    let idlePoll: Int
    private var recvBuf = [UInt8](), sendBuf = [UInt8]()

    /// Where new experts are read from when the placement changes.
    var checkpoint: Checkpoint?

    /// Per-unit sums of one layer, reused across layers and steps.
    private let accumulator = Scratch()

    public init(comm: Communicator, store: ExpertStore, index: Int, bf16Wire: Bool, idlePollMicroseconds: Int, checkpoint: Checkpoint? = nil) {
        self.checkpoint = checkpoint
        self.comm = comm
        self.store = store
        self.index = index
        idlePoll = idlePollMicroseconds
        wire = WireFormat(spec: store.spec, bf16: bf16Wire)
    }

    public func loop() throws {
        let zero = [Int32](repeating: 0, count: comm.size)
        while true {
            // Idle between steps: no deadline (a server may wait hours for a request), sleep between polls.
            let header = try comm.alltoall([Int32](repeating: 0, count: 4 * comm.size), count: 4,
                                           what: "waiting for work", deadline: nil, idleSleep: idlePoll)
            let tHeader = monotonic()
            let op = header[0], layer = Int(header[1]), n = Int(header[2])
            if op == WireFormat.Opcode.shutdown.rawValue { return }
            if op == WireFormat.Opcode.place.rawValue { try place(bytes: n); continue }
            guard op == WireFormat.Opcode.exchange.rawValue else { continue }
            let ub = wire.unitBytes
            if recvBuf.count < n * ub { recvBuf = [UInt8](repeating: 0, count: n * ub) }
            var rcounts = zero, dummy: UInt8 = 0
            rcounts[0] = Int32(n * ub)
            try recvBuf.withUnsafeMutableBytes { r in
                try comm.alltoallv(send: &dummy, counts: zero, displs: zero, recv: r.baseAddress!, counts: rcounts, displs: zero,
                                   what: "receiving layer \(layer)'s token rows")
            }
            let t0 = monotonic()
            let outBytes = WireFormat.combinePrefix + n * wire.rowBytes
            if sendBuf.count < outBytes { sendBuf = [UInt8](repeating: 0, count: outBytes) }
            recvBuf.withUnsafeBytes { r in
                sendBuf.withUnsafeMutableBytes { s in
                    compute(layer: layer, units: n, input: r.baseAddress!, output: s.baseAddress! + WireFormat.combinePrefix)
                }
            }
            let busy = monotonic() - t0
            sendBuf.withUnsafeMutableBytes { s in
                s.storeBytes(of: busy, toByteOffset: 0, as: Double.self)
                s.storeBytes(of: Float(t0 - tHeader), toByteOffset: 8, as: Float.self)
                s.storeBytes(of: Int32(n), toByteOffset: 12, as: Int32.self)
            }
            var scounts = zero
            scounts[0] = Int32(outBytes)
            try sendBuf.withUnsafeBytes { s in
                try comm.alltoallv(send: s.baseAddress!, counts: scounts, displs: zero, recv: &dummy, counts: zero, displs: zero,
                                   what: "returning layer \(layer)'s expert results")
            }
        }
    }

    /// Groups the units' (unit, expert, weight) entries by expert, runs one product per expert and accumulates
    /// weighted results per unit in ascending expert order (the same order as a single process).
    private func compute(layer: Int, units n: Int, input: UnsafeRawPointer, output: UnsafeMutableRawPointer) {
        let H = store.spec.hiddenSize, K = wire.topK, ub = wire.unitBytes
        var entries: [ExpertEntry] = []
        entries.reserveCapacity(n * K)
        for u in 0..<n {
            let p = input + u * ub
            for k in 0..<K {
                let e = p.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self)
                if e >= 0 { entries.append(ExpertEntry(expert: e, slot: Int32(u), weight: p.loadUnaligned(fromByteOffset: 4 * K + 4 * k, as: Float.self))) }
            }
        }
        let acc = accumulator.ensure(max(n * H, 1))
        acc.update(repeating: 0, count: n * H)
        store.accumulate(layer: layer, entries: entries, load: { u, dst in wire.readRow(input + u * ub + 8 * K, to: dst) }, into: acc)
        for u in 0..<n { wire.writeRow(acc + u * H, to: output + u * wire.rowBytes) }
    }
}

extension ExpertWorker {
    /// Receives this worker's new (layer, expert) set, maps the new experts, drops the old ones, and replies.
    func place(bytes n: Int) throws {
        let zero = [Int32](repeating: 0, count: comm.size)
        var rcounts = zero, dummy: UInt8 = 0
        rcounts[0] = Int32(n)
        var recv = [UInt8](repeating: 0, count: max(n, 1))
        try recv.withUnsafeMutableBytes { r in
            try comm.alltoallv(send: &dummy, counts: zero, displs: zero, recv: r.baseAddress!, counts: rcounts, displs: zero,
                               what: "receiving a new expert placement")
        }
        let want = PlacementMessage.decode(Array(recv.prefix(n)))
        var status: Int32 = 0, message = ""
        do {
            guard let ckpt = checkpoint else { throw ClusterFailure.peer("no checkpoint to load experts from") }
            let keep = Set(want.map { $0.layer * 1_000_000 + $0.expert })
            for l in store.spec.moeLayers {
                for e in 0..<(store.spec.layers[l].moe?.experts ?? 0) where store.has(layer: l, expert: e) && !keep.contains(l * 1_000_000 + e) {
                    store.unload(layer: l, expert: e)
                }
            }
            for (l, e) in want where !store.has(layer: l, expert: e) { try store.load(ckpt, layer: l, expert: e) }
        } catch {
            status = 1
            message = "\(error)"
        }
        var reply = ByteWriter()
        reply.put(status)
        reply.put(Int64(store.byteCount))
        var bytes = reply.bytes + Array(message.utf8.prefix(499))
        bytes += [UInt8](repeating: 0, count: 512 - bytes.count)
        var scounts = zero
        scounts[0] = 512
        try bytes.withUnsafeBytes { s in
            try comm.alltoallv(send: s.baseAddress!, counts: scounts, displs: zero, recv: &dummy, counts: zero, displs: zero,
                               what: "replying to a new expert placement")
        }
        logLine("rank \(index + 1) (worker \(index + 1)): re-placed: holds \(store.count) experts, \(String(format: "%.1f", Double(store.byteCount) / Double(1 << 20))) MiB")
    }
}
