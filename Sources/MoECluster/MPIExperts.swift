import Foundation
import MoECore
import MoEModel

/// Per-layer accounting of the exchange, kept by the coordinator (the stats issue reads it).
public struct ExchangeStats: Sendable {
    public var steps = 0
    /// Units (token rows) and bytes sent to each worker, cumulative.
    public var unitsPerWorker: [Int]
    public var bytesSent = 0
    public var bytesReceived = 0
    /// Seconds, coordinator's view. Dispatch: planning, packing, the header and the time until the workers hold
    /// their rows (the slowest worker's wait for them, from its own clock). Expert: the slowest worker's compute.
    /// Combine: the rest of the exchange until the results are added in. (The coordinator's send can complete late —
    /// a receiver acknowledges when it next calls MPI, after computing — so the split uses the workers' clocks.)
    public var dispatchSeconds = 0.0
    public var combineSeconds = 0.0
    public var expertSeconds = 0.0
    /// Each worker's reported expert-compute seconds, cumulative.
    public var workerBusySeconds: [Double]
    /// (token, expert) rows sent to each worker, cumulative.
    public var rowsPerWorker: [Int]

    init(workers: Int) {
        unitsPerWorker = Array(repeating: 0, count: workers)
        workerBusySeconds = Array(repeating: 0, count: workers)
        rowsPerWorker = Array(repeating: 0, count: workers)
    }
}

/// The coordinator's expert backend under mpirun: routes each layer's token rows to the workers that hold their
/// experts and adds back what they return (see `WireFormat`). It is installed into the model from outside.
public final class MPIExperts: ExpertBackend, ExpertTrafficSource {
    public let comm: Communicator
    public private(set) var placement: ExpertPlacement
    let spec: ModelSpec
    let wire: WireFormat
    public private(set) var stats: ExchangeStats
    private var sendBuf = [UInt8](), recvBuf = [UInt8]()
    private var serial: Int32 = 0

    public init(comm: Communicator, placement: ExpertPlacement, spec: ModelSpec, bf16Wire: Bool) {
        self.comm = comm
        self.placement = placement
        self.spec = spec
        let K = spec.layers.compactMap(\.moe).map(\.topK).max() ?? 1
        wire = WireFormat(hidden: spec.hiddenSize, topK: K, bf16: bf16Wire)
        stats = ExchangeStats(workers: placement.workers)
    }

    public var traffic: ExpertTraffic {
        var t = ExpertTraffic(workers: placement.workers)
        t.rowsPerWorker = stats.rowsPerWorker
        t.busyPerWorker = stats.workerBusySeconds
        t.bytesSent = stats.bytesSent
        t.bytesReceived = stats.bytesReceived
        t.exchangeSeconds = stats.dispatchSeconds + stats.combineSeconds
        t.exchanges = stats.steps
        return t
    }

    public func run(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>) {
        do {
            try exchange(layer: layer, x: x, routing: routing, out: out)
        } catch {
            fail("\(error)")
        }
    }

    func fail(_ message: String) -> Never {
        logLine("rank 0 (coordinator): error: \(message)")
        MPIRuntime.abortJob(code: 1)
    }

    private func exchange(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>) throws {
        let t0 = monotonic()
        let W = placement.workers, H = spec.hiddenSize, K = wire.topK
        let plan = DispatchPlan(routing, replicas: placement.replicas[layer], workers: W)
        serial &+= 1
        var header = [Int32](repeating: 0, count: 4 * comm.size)
        for w in 0..<W {
            header[4 * (w + 1)...(4 * (w + 1) + 3)] = [WireFormat.Opcode.exchange.rawValue, Int32(layer), Int32(plan.units[w].count), serial]
        }
        _ = try comm.alltoall(header, count: 4, what: "sending layer \(layer)'s work to the expert workers", deadline: comm.timeout)

        // Dispatch: pack each worker's units back to back.
        let ub = wire.unitBytes
        var scounts = [Int32](repeating: 0, count: comm.size), sdispls = scounts
        var total = 0
        for w in 0..<W {
            sdispls[w + 1] = Int32(total)
            scounts[w + 1] = Int32(plan.units[w].count * ub)
            total += plan.units[w].count * ub
        }
        if sendBuf.count < total { sendBuf = [UInt8](repeating: 0, count: total) }
        sendBuf.withUnsafeMutableBytes { buf in
            for w in 0..<W {
                var p = buf.baseAddress! + Int(sdispls[w + 1])
                for u in plan.units[w] {
                    let ids = p.assumingMemoryBound(to: Int32.self), ws = (p + 4 * K).assumingMemoryBound(to: Float.self)
                    for k in 0..<K {
                        ids[k] = k < u.experts.count ? u.experts[k] : -1
                        ws[k] = k < u.weights.count ? u.weights[k] : 0
                    }
                    wire.writeRow(x + u.token * H, to: p + 8 * K)
                    p += ub
                }
            }
        }
        let zero = [Int32](repeating: 0, count: comm.size)
        var dummy: UInt8 = 0
        let tPacked = monotonic()
        try sendBuf.withUnsafeBytes { s in
            try comm.alltoallv(send: s.baseAddress!, counts: scounts, displs: sdispls, recv: &dummy, counts: zero, displs: zero,
                               what: "dispatching layer \(layer) to the expert workers")
        }

        // Combine: each worker's prefix, then one summed row per unit.
        var rcounts = zero, rdispls = zero
        var rtotal = 0
        for w in 0..<W {
            rdispls[w + 1] = Int32(rtotal)
            rcounts[w + 1] = Int32(WireFormat.combinePrefix + plan.units[w].count * wire.rowBytes)
            rtotal += Int(rcounts[w + 1])
        }
        if recvBuf.count < rtotal { recvBuf = [UInt8](repeating: 0, count: rtotal) }
        try recvBuf.withUnsafeMutableBytes { r in
            try comm.alltoallv(send: &dummy, counts: zero, displs: zero, recv: r.baseAddress!, counts: rcounts, displs: rdispls,
                               what: "waiting for layer \(layer)'s expert results")
        }
        out.update(repeating: 0, count: routing.tokens * H)
        var slowest = 0.0, arrival = 0.0
        let row = UnsafeMutablePointer<Float>.allocate(capacity: H)
        defer { row.deallocate() }
        recvBuf.withUnsafeBytes { r in
            for w in 0..<W {
                let base = r.baseAddress! + Int(rdispls[w + 1])
                let busy = base.loadUnaligned(as: Double.self)
                slowest = max(slowest, busy)
                arrival = max(arrival, Double(base.loadUnaligned(fromByteOffset: 8, as: Float.self)))
                stats.workerBusySeconds[w] += busy
                var p = base + WireFormat.combinePrefix
                for u in plan.units[w] {
                    wire.readRow(p, to: row)
                    axpy(out + u.token * H, 1, row, H)
                    p += wire.rowBytes
                }
                stats.unitsPerWorker[w] += plan.units[w].count
                stats.rowsPerWorker[w] += plan.units[w].reduce(0) { $0 + $1.experts.count }
            }
        }
        let t3 = monotonic()
        stats.steps += 1
        stats.bytesSent += total
        stats.bytesReceived += rtotal
        let dispatch = min(tPacked - t0 + arrival, t3 - t0 - slowest)
        stats.dispatchSeconds += dispatch
        stats.expertSeconds += slowest
        stats.combineSeconds += max(0, t3 - t0 - slowest - dispatch)
    }

    /// Moves experts online, between steps: every worker maps the experts it newly holds from its checkpoint and drops
    /// the ones it no longer holds, then the new placement routes the next step. Returns each worker's expert bytes.
    public func replace(with new: ExpertPlacement) throws -> [Int] {
        let W = placement.workers
        var payloads = (0..<W).map { PlacementMessage.encode(new.experts(of: $0)) }
        var header = [Int32](repeating: 0, count: 4 * comm.size)
        for w in 0..<W { header[4 * (w + 1)...(4 * (w + 1) + 3)] = [WireFormat.Opcode.place.rawValue, 0, Int32(payloads[w].count), 0] }
        _ = try comm.alltoall(header, count: 4, what: "announcing a new expert placement", deadline: comm.timeout)
        var scounts = [Int32](repeating: 0, count: comm.size), sdispls = scounts
        var send: [UInt8] = []
        for w in 0..<W {
            sdispls[w + 1] = Int32(send.count)
            scounts[w + 1] = Int32(payloads[w].count)
            send += payloads[w]
        }
        payloads = []
        if send.isEmpty { send = [0] }
        let zero = [Int32](repeating: 0, count: comm.size)
        var dummy: UInt8 = 0
        try send.withUnsafeBytes { s in
            try comm.alltoallv(send: s.baseAddress!, counts: scounts, displs: sdispls, recv: &dummy, counts: zero, displs: zero,
                               what: "sending the new expert placement")
        }
        // Replies: fixed 12 bytes of status and size, then up to 500 bytes of message.
        let replyBytes = 512
        var rcounts = zero, rdispls = zero
        for w in 0..<W { rcounts[w + 1] = Int32(replyBytes); rdispls[w + 1] = Int32(w * replyBytes) }
        var recv = [UInt8](repeating: 0, count: W * replyBytes)
        try recv.withUnsafeMutableBytes { r in
            try comm.alltoallv(send: &dummy, counts: zero, displs: zero, recv: r.baseAddress!, counts: rcounts, displs: rdispls,
                               what: "waiting for the workers to load their new experts")
        }
        var held: [Int] = []
        for w in 0..<W {
            var r = ByteReader(Array(recv[(w * replyBytes)..<((w + 1) * replyBytes)]))
            let status = r.get(Int32.self), bytes = r.get(Int64.self)
            if status != 0 {
                let msg = String(decoding: recv[(w * replyBytes + 12)..<((w + 1) * replyBytes)].prefix { $0 != 0 }, as: UTF8.self)
                throw ClusterFailure.peer("worker \(w + 1) could not load its new experts: \(msg)")
            }
            held.append(Int(bytes))
        }
        placement = new
        return held
    }

    /// Tells every worker to leave its loop.
    public func shutdown() {
        var header = [Int32](repeating: 0, count: 4 * comm.size)
        for w in 0..<placement.workers { header[4 * (w + 1)] = WireFormat.Opcode.shutdown.rawValue }
        _ = try? comm.alltoall(header, count: 4, what: "telling the expert workers to stop", deadline: comm.timeout)
    }
}
