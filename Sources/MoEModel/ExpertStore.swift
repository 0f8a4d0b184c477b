import Foundation
import MoECore

/// The routed experts one process holds: all of them in a single process, a shard on an expert worker.
/// Only the selected experts' tensors are read (and, for f16/bf16, converted) from the checkpoint.
public final class ExpertStore: @unchecked Sendable {
    public let spec: ModelSpec
    /// How held experts are stored (converted as each is loaded, so the f32 copy never exists for all at once).
    public let format: WeightFormat
    private var experts: [Int: MLPWeights] = [:]   // key layer * expertsPerLayer + expert
    private let expertsPerLayer: Int                // spec.numExperts, which is computed, at least 1
    public private(set) var byteCount = 0
    let scratch = ExpertScratch()
    let gathered = Scratch(), results = Scratch()

    /// Loads the experts for which `select(layer, expert)` is true.
    public init(_ ckpt: Checkpoint, _ spec: ModelSpec, format: WeightFormat = .f32,
                select: (Int, Int) -> Bool = { _, _ in true }) throws {
        self.spec = spec
        self.format = format
        expertsPerLayer = max(spec.numExperts, 1)
        for l in spec.moeLayers {
            for e in 0..<spec.layers[l].moe!.experts where select(l, e) {
                try load(ckpt, layer: l, expert: e)
            }
        }
    }

    /// What experts.dtype auto holds a checkpoint's experts as: what auto holds expert 0 of the first MoE layer's
    /// gate as (Matrix.autoFormat(): bf16 as bf16, a quantised one at about its size, int8 where int4 would round it
    /// again); f32 without experts. The checkpoint's quantisation is one for all its experts, so one stands for all.
    public static func autoFormat(_ ckpt: Checkpoint, _ spec: ModelSpec) -> WeightFormat {
        guard let l = spec.moeLayers.first, let layout = try? resolveExpertLayout(ckpt, spec, layer: l) else { return .f32 }
        let f = ckpt.heldFormat(ModelSpec.layerPrefix(l) + layout.marker)
        guard f == .int4 || f == .int4z else { return f }
        guard let one = try? ExpertStore(ckpt, spec, select: { $0 == l && $1 == 0 }),
              let gate = one.weights(layer: l, expert: 0)?.gate else { return f }
        return gate.autoFormat()
    }

    public func load(_ ckpt: Checkpoint, layer l: Int, expert e: Int) throws {
        guard let moe = spec.layers[l].moe else { return }
        let H = spec.hiddenSize, I = moe.intermediate, E = moe.experts
        let p = ModelSpec.layerPrefix(l)
        let w: MLPWeights
        switch try resolveExpertLayout(ckpt, spec, layer: l) {
        case .perExpert(let prefix, let names):
            w = try loadMLP(ckpt, prefix: "\(p)\(prefix).experts.\(e).", names: names, hidden: H, intermediate: I, bias: false)
        case .fused(let prefix, let names):
            let gu = "\(p)\(prefix).\(names.gateUp)", dn = "\(p)\(prefix).\(names.down)"
            // gate_up_proj [E, 2I, H]: expert e's gate rows then its up rows; down_proj [E, H, I].
            w = MLPWeights(gate: try ckpt.matrixSlice(gu, shape: [E, 2 * I, H], rowStart: e * 2 * I, rowCount: I),
                           up: try ckpt.matrixSlice(gu, shape: [E, 2 * I, H], rowStart: e * 2 * I + I, rowCount: I),
                           down: try ckpt.matrixSlice(dn, shape: [E, H, I], rowStart: e * H, rowCount: H))
        case .interleaved(let prefix):
            w = try loadInterleavedExpert(ckpt, prefix: "\(p)\(prefix).experts.", expert: e, experts: E, hidden: H, intermediate: I,
                                          activation: moe.activation)
        }
        let held = format == .f32 ? w : try w.converting(to: format, "layer \(l) expert \(e)")
        experts[key(l, e)] = held
        byteCount += held.byteCount
    }

    public func unload(layer l: Int, expert e: Int) {
        if let w = experts.removeValue(forKey: key(l, e)) { byteCount -= w.byteCount }
    }

    public func has(layer: Int, expert: Int) -> Bool { experts[key(layer, expert)] != nil }
    public func weights(layer: Int, expert: Int) -> MLPWeights? { experts[key(layer, expert)] }
    public var count: Int { experts.count }

    private func key(_ l: Int, _ e: Int) -> Int { l * expertsPerLayer + e }

    /// out[n, H] = expert(x[n, H]) for `n` rows routed to one expert: one batched product per weight, never per token.
    public func compute(layer: Int, expert: Int, x: UnsafePointer<Float>, rows n: Int, out: UnsafeMutablePointer<Float>) {
        runMLP(held(layer: layer, expert: expert), x: x, rows: n, out: out, scratch: scratch)
    }

    /// The weights of an expert this process must hold.
    func held(layer: Int, expert: Int) -> MLPWeights {
        guard let w = experts[key(layer, expert)] else {
            fatalError("expert \(expert) of layer \(layer) is not held by this process")
        }
        return w
    }
}

/// Reused buffers for MLP intermediates: gate [n, I] and up [n, 2I] (see MLPStage).
final class ExpertScratch: @unchecked Sendable {
    let gate = Scratch()
    let up = Scratch()
}

/// out[n, H] = down(silu(gate·x + bg) ⊙ (up·x + bu)) + bd.
func runMLP(_ w: MLPWeights, x: UnsafePointer<Float>, rows n: Int, out: UnsafeMutablePointer<Float>, scratch: ExpertScratch) {
    let I = w.gate.rows
    let stage = MLPStage(w, rows: n, x: x, gate: scratch.gate.ensure(n * I), up: scratch.up.ensure(n * 2 * I), out: out)
    matmulMany(stage.first)
    stage.activate()
    matmulMany([stage.second])
    stage.finish()
}

/// One MLP's work in two stages of products, so that several experts' stages can run together (`matmulMany`):
/// gate and up (one stacked product where they were converted together), then the activation, then down.
/// gate: n · I floats, up: n · 2I (the stacked product's [n, 2I] rows, or up's [n, I]); the activation ends in gate.
struct MLPStage {
    let w: MLPWeights
    let n: Int
    let x: UnsafePointer<Float>
    let gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>
    let out: UnsafeMutablePointer<Float>

    init(_ w: MLPWeights, rows n: Int, x: UnsafePointer<Float>, gate: UnsafeMutablePointer<Float>,
         up: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        self.w = w
        self.n = n
        self.x = x
        self.gate = gate
        self.up = up
        self.out = out
    }

    /// The stacked product ([n, 2I] rows of gate then up, into `up`) also leaves the activation in `gate`, each
    /// thread taking the values whose gate and up rows it computed (see ProductCall.swiglu).
    var first: [ProductCall] {
        if let gu = w.gateUp { return [ProductCall(x: x, rows: n, gu, out: up, swiglu: gate)] }
        return [ProductCall(x: x, rows: n, w.gate, out: gate), ProductCall(x: x, rows: n, w.up, out: up)]
    }

    /// gate ← act(gate·x + bg, up·x + bu), [n, I] (already there after a stacked `first`).
    func activate() {
        if w.gateUp != nil { return }
        let I = w.gate.rows
        if let b = w.gateBias { addBias(gate, b, rows: n) }
        if let b = w.upBias { addBias(up, b, rows: n) }
        switch w.activation {
        case .silu: swiglu(gate, up, gate, count: n * I)
        case .clampedSwiGLU(let alpha, let limit): clampedSwiGLU(gate, up, gate, count: n * I, alpha: alpha, limit: limit)
        }
    }

    var second: ProductCall { ProductCall(x: gate, rows: n, w.down, out: out) }

    func finish() { if let b = w.downBias { addBias(out, b, rows: n) } }
}

/// gpt-oss's expert e (ExpertLayout.interleaved) as gate and up [I, H] and down [H, I] rows, with their biases: from
/// the x·W tensors (gate_up_proj [E, H, 2I], down_proj [E, I, H]) transposed, or from MXFP4 blocks already [out, in];
/// gate is every even row of gate|up, up every odd one.
func loadInterleavedExpert(_ ckpt: Checkpoint, prefix: String, expert e: Int, experts E: Int, hidden H: Int, intermediate I: Int,
                           activation: GatedActivation) throws -> MLPWeights {
    let gu = prefix + "gate_up_proj", dn = prefix + "down_proj"
    /// Expert e's [out, in] matrix of a tensor stored [E, in, out], or as MXFP4 [E, out, in].
    func outByIn(_ name: String, out: Int, in: Int) throws -> Matrix {
        if ckpt.isMXFP4(name) { return try ckpt.mxfp4Slice(name, shape: [E, out, `in`], rowStart: e * out, rowCount: out) }
        return try ckpt.matrixSlice(name, shape: [E, `in`, out], rowStart: e * `in`, rowCount: `in`).transposed()
    }
    let gateUp = try outByIn(gu, out: 2 * I, in: H), bias = try ckpt.matrixSlice(gu + "_bias", shape: [E, 2 * I], rowStart: e, rowCount: 1)
    return MLPWeights(gate: gateUp.everyOtherRow(from: 0), up: gateUp.everyOtherRow(from: 1), down: try outByIn(dn, out: H, in: I),
                      gateBias: bias.everyOtherColumn(from: 0), upBias: bias.everyOtherColumn(from: 1),
                      downBias: try ckpt.matrixSlice(dn + "_bias", shape: [E, H], rowStart: e, rowCount: 1), activation: activation)
}

extension Matrix {
    /// An f32 copy [cols, rows] (f32 matrices only).
    func transposed() -> Matrix {
        let t = FloatBuffer(count: rows * cols, zeroed: false)
        for r in 0..<rows {
            let src = row(r)
            for c in 0..<cols { t.pointer[c * rows + r] = src[c] }
        }
        return Matrix(t, rows: cols, cols: rows)
    }

    /// An f32 copy of columns start, start + 2, … (f32 matrices only).
    func everyOtherColumn(from start: Int) -> Matrix {
        let n = (cols - start + 1) / 2, out = FloatBuffer(count: rows * n, zeroed: false)
        for r in 0..<rows {
            let src = row(r)
            for i in 0..<n { out.pointer[r * n + i] = src[start + 2 * i] }
        }
        return Matrix(out, rows: rows, cols: n)
    }

    /// An f32 copy of rows start, start + 2, … (f32 matrices only).
    func everyOtherRow(from start: Int) -> Matrix {
        let n = (rows - start + 1) / 2, out = FloatBuffer(count: n * cols, zeroed: false)
        for i in 0..<n { (out.pointer + i * cols).update(from: row(start + 2 * i), count: cols) }
        return Matrix(out, rows: n, cols: cols)
    }
}

/// y[r, :] += b for each of `rows` rows (b: one row).
func addBias(_ y: UnsafeMutablePointer<Float>, _ b: Matrix, rows: Int) {
    let n = b.cols
    for r in 0..<rows { axpy(y + r * n, 1, b.base, n) }
}
