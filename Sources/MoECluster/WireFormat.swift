import MoECore
import MoEModel

/// The dispatch/combine wire format between the coordinator and the expert workers, per MoE layer:
///
/// 1. header, `MPI_Alltoall` of 4 × int32 per destination: [opcode, layer, units, step]. opcode 1 = exchange,
///    2 = shutdown, 3 = re-place experts, 0 = nothing for you (the coordinator's block to itself).
/// 2. dispatch, `MPI_Alltoallv` of bytes, coordinator → workers. One *unit* per (token, worker) pair for which the
///    token has at least one expert on that worker, so a token whose experts share a worker travels once:
///       K × int32 expert ids (−1 = unused slot) | K × float32 routing weights | H × wire scalar (the token's row)
/// 3. combine, `MPI_Alltoallv` of bytes, workers → coordinator: a 16-byte prefix [float64 expert-compute seconds,
///    float32 seconds the worker waited for its rows after the header, int32 units], then per unit H × wire scalar:
///    Σ weight · expert(row) over the unit's experts.
///
/// The wire scalar is f32 (exact) or bf16 (half the bytes); expert ids and weights always travel exactly.
public struct WireFormat: Sendable {
    public let hidden: Int
    public let topK: Int
    public let bf16: Bool

    public init(hidden: Int, topK: Int, bf16: Bool) {
        self.hidden = hidden
        self.topK = topK
        self.bf16 = bf16
    }

    /// The format for a model: K slots per unit, the largest top-k of its MoE layers.
    public init(spec: ModelSpec, bf16: Bool) {
        self.init(hidden: spec.hiddenSize, topK: spec.layers.compactMap(\.moe).map(\.topK).max() ?? 1, bf16: bf16)
    }

    public var scalarBytes: Int { bf16 ? 2 : 4 }
    public var rowBytes: Int { hidden * scalarBytes }
    public var unitBytes: Int { 8 * topK + rowBytes }
    public static let combinePrefix = 16

    public enum Opcode: Int32 { case none = 0, exchange = 1, shutdown = 2, place = 3 }

    /// Writes one row of H floats in the wire dtype.
    public func writeRow(_ src: UnsafePointer<Float>, to dst: UnsafeMutableRawPointer) {
        if bf16 { f32ToBF16(src, dst.assumingMemoryBound(to: UInt16.self), hidden) }
        else { dst.copyMemory(from: src, byteCount: hidden * 4) }
    }

    /// Reads one wire row into H floats.
    public func readRow(_ src: UnsafeRawPointer, to dst: UnsafeMutablePointer<Float>) {
        if bf16 { bf16ToF32(src.assumingMemoryBound(to: UInt16.self), dst, hidden) }
        else { UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: hidden * 4) }
    }
}

/// Which tokens go to which worker for one layer: units[w] lists (token, expert slots) for worker w.
/// Slots keep the token's routing order (descending probability).
public struct DispatchPlan: Sendable, Equatable {
    public struct Unit: Sendable, Equatable {
        public var token: Int
        public var experts: [Int32]
        public var weights: [Float]
    }
    public var units: [[Unit]]

    /// expertWorker[e] is the worker holding expert e.
    public init(_ routing: Routing, expertWorker: [Int], workers W: Int) {
        self.init(routing, replicas: expertWorker.map { [$0] }, workers: W)
    }

    /// replicas[e] lists the workers holding a copy of expert e; a token goes to copy `token mod count`, so a hot
    /// expert's tokens split evenly over its replicas.
    public init(_ routing: Routing, replicas: [[Int]], workers W: Int) {
        var units = Array(repeating: [Unit](), count: W)
        let K = routing.topK
        var slot = Array(repeating: -1, count: W)   // index of this token's unit in units[w], or -1
        for t in 0..<routing.tokens {
            for k in 0..<K where routing.experts[t * K + k] >= 0 {
                let e = routing.experts[t * K + k], r = replicas[Int(e)], w = r[t % r.count]
                if slot[w] < 0 {
                    slot[w] = units[w].count
                    units[w].append(Unit(token: t, experts: [], weights: []))
                }
                units[w][slot[w]].experts.append(e)
                units[w][slot[w]].weights.append(routing.weights[t * K + k])
            }
            for k in 0..<K where routing.experts[t * K + k] >= 0 {
                let r = replicas[Int(routing.experts[t * K + k])]
                slot[r[t % r.count]] = -1
            }
        }
        self.units = units
    }
}

/// The re-placement message (opcode 3): per worker, the (layer, expert) pairs it must hold, as int32 pairs; each
/// worker answers with [int32 status (0 ok), int64 bytes of experts now held, then an error message as UTF-8].
enum PlacementMessage {
    static func encode(_ pairs: [(layer: Int, expert: Int)]) -> [UInt8] {
        var w = ByteWriter()
        for (l, e) in pairs { w.put(Int32(l)); w.put(Int32(e)) }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) -> [(layer: Int, expert: Int)] {
        var r = ByteReader(bytes)
        return (0..<(bytes.count / 8)).map { _ in (Int(r.get(Int32.self)), Int(r.get(Int32.self))) }
    }
}
