import CMPI
import Foundation
import MoECore
import MoEModel

/// Where the exchange's time went, cumulative, in seconds from the coordinator's view. Dispatch: planning, packing,
/// the header and the time until the workers hold their rows (the slowest worker's wait for them, from its own
/// clock). Expert: the slowest worker's compute. Combine: the rest of the exchange until the results are added in.
/// (The coordinator's send can complete late — a receiver acknowledges when it next calls MPI, after computing — so
/// the split uses the workers' clocks.)
public struct ExchangeSplit: Sendable {
    public var dispatchSeconds = 0.0
    public var expertSeconds = 0.0
    public var combineSeconds = 0.0
}

/// The coordinator's expert backend under mpirun: routes each layer's token rows to the workers that hold their
/// experts and adds back what they return (see `WireFormat`). It is installed into the model from outside.
public final class MPIExperts: ExpertBackend, ExpertTrafficSource {
    public let comm: Communicator
    public private(set) var placement: ExpertPlacement
    let spec: ModelSpec
    let wire: WireFormat
    /// Rows, bytes and busy time per worker (what the statistics read), and the split of the exchange's time.
    public private(set) var traffic: ExpertTraffic
    public private(set) var split = ExchangeSplit()
    private var idle: [PendingExchange] = [], inFlight: [PendingExchange] = []
    private let rowScratch = Scratch()
    private var serial: Int32 = 0

    public init(comm: Communicator, placement: ExpertPlacement, spec: ModelSpec, bf16Wire: Bool) {
        self.comm = comm
        self.placement = placement
        self.spec = spec
        wire = WireFormat(spec: spec, bf16: bf16Wire)
        traffic = ExpertTraffic(workers: placement.workers)
    }

    public func run(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>) {
        begin(layer: layer, x: x, routing: routing, out: out)
        finishOldest()
    }

    /// Packs the rows and starts the three collectives of the exchange (header, dispatch, combine) without waiting:
    /// the workers take their rows, compute and send back while the caller goes on (micro-batch overlap). Workers
    /// serve exchanges in the order they began, as the collectives match in order on the communicator.
    public func begin(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>) {
        let e = idle.popLast() ?? PendingExchange(ranks: comm.size)
        do {
            try start(e, layer: layer, x: x, routing: routing, out: out)
        } catch {
            fail("\(error)")
        }
        inFlight.append(e)
    }

    public func finishOldest() {
        guard !inFlight.isEmpty else { return }
        let e = inFlight.removeFirst()
        do {
            try finish(e)
        } catch {
            fail("\(error)")
        }
        idle.append(e)
    }

    func fail(_ message: String) -> Never {
        logLine("rank 0 (coordinator): error: \(message)")
        MPIRuntime.abortJob(code: 1)
    }

    private func start(_ e: PendingExchange, layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>) throws {
        e.t0 = monotonic()
        let W = placement.workers, H = spec.hiddenSize, K = wire.topK
        let plan = DispatchPlan(routing, replicas: placement.replicas[layer], workers: W)
        e.layer = layer
        e.plan = plan
        e.tokens = routing.tokens
        e.out = out
        serial &+= 1
        e.header.update(repeating: 0, count: 4 * comm.size)
        for w in 0..<W {
            let h = e.header + 4 * (w + 1)
            h[0] = WireFormat.Opcode.exchange.rawValue
            h[1] = Int32(layer)
            h[2] = Int32(plan.units[w].count)
            h[3] = serial
        }
        e.requests[0] = try comm.startAlltoall(send: e.header, recv: e.headerEcho, count: 4)

        // Dispatch: each worker's units back to back. Combine: each worker's prefix, then one summed row per unit.
        let ub = wire.unitBytes
        e.total = 0
        e.rtotal = 0
        for w in 0..<W {
            e.sdispls[w + 1] = Int32(e.total)
            e.scounts[w + 1] = Int32(plan.units[w].count * ub)
            e.total += plan.units[w].count * ub
            e.rdispls[w + 1] = Int32(e.rtotal)
            e.rcounts[w + 1] = Int32(WireFormat.combinePrefix + plan.units[w].count * wire.rowBytes)
            e.rtotal += Int(e.rcounts[w + 1])
        }
        // Scratch is counted in floats: round the byte counts up.
        let send = UnsafeMutableRawPointer(e.send.ensure((e.total + 3) / 4))
        e.recvBase = UnsafeMutableRawPointer(e.recv.ensure((e.rtotal + 3) / 4))
        for w in 0..<W {
            var p = send + Int(e.sdispls[w + 1])
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
        e.tPacked = monotonic()
        e.requests[1] = try comm.startAlltoallv(send: send, counts: e.scounts, displs: e.sdispls,
                                                recv: e.dummy, counts: e.zero, displs: e.zero)
        e.requests[2] = try comm.startAlltoallv(send: e.dummy, counts: e.zero, displs: e.zero,
                                                recv: e.recvBase!, counts: e.rcounts, displs: e.rdispls)
        e.tBegun = monotonic()
    }

    private func finish(_ e: PendingExchange) throws {
        let tWait = monotonic()
        let layer = e.layer
        try comm.complete(&e.requests[0], what: "sending layer \(layer)'s work to the expert workers")
        try comm.complete(&e.requests[1], what: "dispatching layer \(layer) to the expert workers")
        try comm.complete(&e.requests[2], what: "waiting for layer \(layer)'s expert results")
        let W = placement.workers, H = spec.hiddenSize
        let out = e.out!
        out.update(repeating: 0, count: e.tokens * H)
        var slowest = 0.0, arrival = 0.0
        let row = rowScratch.ensure(H)
        for w in 0..<W {
            let base = UnsafeRawPointer(e.recvBase! + Int(e.rdispls[w + 1]))
            let busy = base.loadUnaligned(as: Double.self)
            slowest = max(slowest, busy)
            arrival = max(arrival, Double(base.loadUnaligned(fromByteOffset: 8, as: Float.self)))
            traffic.busyPerWorker[w] += busy
            var p = base + WireFormat.combinePrefix
            for u in e.plan.units[w] {
                wire.readRow(p, to: row)
                axpy(out + u.token * H, 1, row, H)
                p += wire.rowBytes
            }
            traffic.rowsPerWorker[w] += e.plan.units[w].reduce(0) { $0 + $1.experts.count }
        }
        let t3 = monotonic()
        traffic.exchanges += 1
        traffic.bytesSent += e.total
        traffic.bytesReceived += e.rtotal
        // The coordinator's time in this exchange: beginning it and waiting for it (with overlap, the other
        // micro-batch's work between the two is not the exchange's).
        let blocked = (e.tBegun - e.t0) + (t3 - tWait)
        let dispatch = max(0, min(e.tPacked - e.t0 + arrival, blocked - slowest))
        let combine = max(0, blocked - slowest - dispatch)
        split.dispatchSeconds += dispatch
        split.expertSeconds += min(slowest, blocked)
        split.combineSeconds += combine
        traffic.exchangeSeconds += dispatch + combine
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

/// One layer's exchange between begin and finish: its plan, its three MPI requests and every buffer they read or
/// write (MPI owns those until the requests complete, so they live here rather than in Swift arrays). Reused.
final class PendingExchange {
    var layer = 0, tokens = 0, total = 0, rtotal = 0
    var plan: DispatchPlan!
    var out: UnsafeMutablePointer<Float>?
    var t0 = 0.0, tPacked = 0.0, tBegun = 0.0
    var requests: [MPI_Request?] = [nil, nil, nil]
    /// Header blocks, 4 Int32 per rank, sent and received (the workers' blocks are zeros).
    let header, headerEcho: UnsafeMutablePointer<Int32>
    /// Per-rank byte counts and displacements of dispatch (s) and combine (r); rank 0's entries stay 0.
    let scounts, sdispls, rcounts, rdispls, zero: UnsafeMutablePointer<Int32>
    let send = Scratch(), recv = Scratch()
    var recvBase: UnsafeMutableRawPointer?
    let dummy = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
    private let ints: UnsafeMutablePointer<Int32>

    init(ranks: Int) {
        ints = .allocate(capacity: 13 * ranks)
        ints.initialize(repeating: 0, count: 13 * ranks)
        header = ints
        headerEcho = ints + 4 * ranks
        scounts = ints + 8 * ranks
        sdispls = ints + 9 * ranks
        rcounts = ints + 10 * ranks
        rdispls = ints + 11 * ranks
        zero = ints + 12 * ranks
    }

    deinit {
        ints.deallocate()
        dummy.deallocate()
    }
}
