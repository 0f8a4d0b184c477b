import CKernels
import Foundation
import MoECore

/// The routed experts one process holds: all of them in a single process, a shard on an expert worker.
/// Only the selected experts' tensors are read (and, for f16/bf16, converted) from the checkpoint.
public final class ExpertStore: @unchecked Sendable {
    public let spec: ModelSpec
    /// How held experts are stored (converted as each is loaded, so the f32 copy never exists for all at once).
    public let format: WeightFormat
    private var experts: [Int: MLPWeights] = [:]   // key layer * numExperts + expert
    public private(set) var byteCount = 0
    private let scratch = ExpertScratch()
    let gathered = Scratch(), results = Scratch()

    /// Loads the experts for which `select(layer, expert)` is true.
    public init(_ ckpt: Checkpoint, _ spec: ModelSpec, format: WeightFormat = .f32,
                select: (Int, Int) -> Bool = { _, _ in true }) throws {
        self.spec = spec
        self.format = format
        for l in spec.moeLayers {
            for e in 0..<spec.layers[l].moe!.experts where select(l, e) {
                try load(ckpt, layer: l, expert: e)
            }
        }
        kern_return_free_memory()     // the f32 temporaries of conversion
    }

    public func load(_ ckpt: Checkpoint, layer l: Int, expert e: Int) throws {
        guard let moe = spec.layers[l].moe else { return }
        let H = spec.hiddenSize, I = moe.intermediate, E = moe.experts
        let p = ModelSpec.layerPrefix(l)
        let w: MLPWeights
        switch try resolveExpertLayout(ckpt, spec, layer: l) {
        case .perExpert(let prefix, let names):
            w = try loadMLP(ckpt, prefix: "\(p)\(prefix).experts.\(e).", names: names, hidden: H, intermediate: I, bias: false)
        case .fused(let prefix):
            let gu = "\(p)\(prefix).experts.gate_up_proj", dn = "\(p)\(prefix).experts.down_proj"
            // gate_up_proj [E, 2I, H]: expert e's gate rows then its up rows; down_proj [E, H, I].
            w = MLPWeights(gate: try ckpt.matrixSlice(gu, shape: [E, 2 * I, H], rowStart: e * 2 * I, rowCount: I),
                           up: try ckpt.matrixSlice(gu, shape: [E, 2 * I, H], rowStart: e * 2 * I + I, rowCount: I),
                           down: try ckpt.matrixSlice(dn, shape: [E, H, I], rowStart: e * H, rowCount: H))
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

    private func key(_ l: Int, _ e: Int) -> Int { l * max(spec.numExperts, 1) + e }

    /// out[n, H] = expert(x[n, H]) for `n` rows routed to one expert: one batched product per weight, never per token.
    public func compute(layer: Int, expert: Int, x: UnsafePointer<Float>, rows n: Int, out: UnsafeMutablePointer<Float>) {
        guard let w = experts[key(layer, expert)] else {
            fatalError("expert \(expert) of layer \(layer) is not held by this process")
        }
        runMLP(w, x: x, rows: n, out: out, scratch: scratch)
    }

    /// Several experts' rows at once (out[n, H] = expert(x[n, H]) for each), their products sharing parallel regions.
    func compute(layer: Int, runs: [(expert: Int, x: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>)]) {
        runMLPs(runs.map { r in
            guard let w = experts[key(layer, r.expert)] else {
                fatalError("expert \(r.expert) of layer \(layer) is not held by this process")
            }
            return MLPJob(w: w, x: r.x, rows: r.rows, out: r.out)
        }, scratch: scratch)
    }
}

/// Reused buffers for MLP intermediates ([n, I] twice).
final class ExpertScratch: @unchecked Sendable {
    let gate = Scratch()
    let up = Scratch()
}

/// out[n, H] = down(silu(gate·x + bg) ⊙ (up·x + bu)) + bd.
func runMLP(_ w: MLPWeights, x: UnsafePointer<Float>, rows n: Int, out: UnsafeMutablePointer<Float>, scratch: ExpertScratch) {
    runMLPs([MLPJob(w: w, x: x, rows: n, out: out)], scratch: scratch)
}

/// One expert's rows for `runMLPs`: out[rows, H] = MLP(x[rows, H]).
struct MLPJob {
    let w: MLPWeights
    let x: UnsafePointer<Float>
    let rows: Int
    let out: UnsafeMutablePointer<Float>
}

/// Several experts' MLPs at once: every gate|up (or gate and up) product in one parallel region, then every down
/// product in another, so that at batch 1 the two threads split two experts' rows between them in one fork and join
/// per stage rather than one per expert and stage (`moe-bench sequence --fused`: a step's products ran at 0.99 of one
/// long product's rate against 0.94 at ~35 GB/s, 1.02–1.04 against 0.84–0.90 at 36–45). Each output is computed
/// exactly as for one expert alone. Only experts with at most 64 rows go together (the kernels' input tile: one
/// pass over the weights): an expert with more makes several passes, which hit the cache only while each thread's
/// share of the rows is half of one matrix, as when it runs alone (with a prefill's experts sharing a region, f32
/// prefill of 512 tokens fell from 452–472 to 417–425 tok/s). Together, their intermediates stay within 8 M floats.
func runMLPs(_ jobs: [MLPJob], scratch: ExpertScratch) {
    let cap = 8 << 20, tile = 64
    var batch: [MLPJob] = [], floats = 0
    func flush() {
        if !batch.isEmpty { runMLPBatch(batch, scratch: scratch) }
        batch.removeAll(keepingCapacity: true)
        floats = 0
    }
    for j in jobs {
        if j.rows > tile { runMLPBatch([j], scratch: scratch); continue }
        let need = j.rows * 3 * j.w.gate.rows
        if floats + need > cap { flush() }
        batch.append(j)
        floats += need
    }
    flush()
}

private func runMLPBatch(_ jobs: [MLPJob], scratch: ExpertScratch) {
    // Intermediates of job k: gate/activation rows at g + gOff[k] ([n, I]), gate|up or up rows at u + uOff[k].
    var gOff: [Int] = [], uOff: [Int] = [], gTotal = 0, uTotal = 0
    for j in jobs {
        let I = j.w.gate.rows
        gOff.append(gTotal); uOff.append(uTotal)
        gTotal += j.rows * I
        uTotal += j.rows * (j.w.gateUp == nil ? I : 2 * I)
    }
    let g = scratch.gate.ensure(gTotal), u = scratch.up.ensure(uTotal)
    var first: [MatProduct] = []
    for (k, j) in jobs.enumerated() {
        if let gu = j.w.gateUp {
            first.append(MatProduct(j.x, rows: j.rows, gu, out: u + uOff[k]))   // [n, 2I]: each row gate then up
        } else {
            first.append(MatProduct(j.x, rows: j.rows, j.w.gate, out: g + gOff[k]))
            first.append(MatProduct(j.x, rows: j.rows, j.w.up, out: u + uOff[k]))
        }
    }
    matmulMany(first)
    for (k, j) in jobs.enumerated() {
        let I = j.w.gate.rows, gk = g + gOff[k], uk = u + uOff[k]
        if j.w.gateUp != nil {
            for t in 0..<j.rows { swiglu(uk + t * 2 * I, uk + t * 2 * I + I, gk + t * I, count: I) }
        } else {
            if let b = j.w.gateBias { addBias(gk, b, rows: j.rows) }
            if let b = j.w.upBias { addBias(uk, b, rows: j.rows) }
            swiglu(gk, uk, gk, count: j.rows * I)
        }
    }
    matmulMany(jobs.indices.map { k in MatProduct(g + gOff[k], rows: jobs[k].rows, jobs[k].w.down, out: jobs[k].out) })
    for j in jobs { if let b = j.w.downBias { addBias(j.out, b, rows: j.rows) } }
}

/// y[r, :] += b for each of `rows` rows (b: one row).
func addBias(_ y: UnsafeMutablePointer<Float>, _ b: Matrix, rows: Int) {
    let n = b.cols
    for r in 0..<rows { axpy(y + r * n, 1, b.base, n) }
}
