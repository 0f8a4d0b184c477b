import Foundation
import MoECore

/// A SwiGLU MLP: out = down(silu(gate · x) ⊙ (up · x)). gate/up: [I, H], down: [H, I].
public struct MLPWeights: Sendable {
    public var gate: Matrix
    public var up: Matrix
    public var down: Matrix
    public var gateBias: Matrix?
    public var upBias: Matrix?
    public var downBias: Matrix?
    /// gate and up stacked [2I, H] when they were converted together (gate and up are then views of its halves):
    /// one product and one pass over the activations for both.
    public var gateUp: Matrix?
    /// How gate and up join (silu(gate) · up unless the family says otherwise).
    public var activation = GatedActivation.silu

    public init(gate: Matrix, up: Matrix, down: Matrix, gateBias: Matrix? = nil, upBias: Matrix? = nil, downBias: Matrix? = nil,
                activation: GatedActivation = .silu) {
        self.gate = gate
        self.up = up
        self.down = down
        self.gateBias = gateBias
        self.upBias = upBias
        self.downBias = downBias
        self.activation = activation
    }

    public var byteCount: Int { gate.byteCount + up.byteCount + down.byteCount }
}

/// q: [heads·D, H], k/v: [kvHeads·D, H], o: [H, heads·D]; optional biases; Qwen3 q/k norms over D.
public struct AttentionWeights: Sendable {
    public var q, k, v, o: Matrix
    public var qBias, kBias, vBias, oBias: Matrix?
    public var qNorm, kNorm: Matrix?
    /// gpt-oss's attention sinks [heads] (ModelSpec.attentionSinks).
    public var sinks: Matrix?
    /// q, k and v stacked [(heads + 2·kvHeads)·D, H] when they were converted together (q, k, v are then views of
    /// it): one product and one pass over the activations for the three.
    public var qkv: Matrix?
}

/// Multi-head latent attention's weights (see MLASpec; r = qLoraRank, L = kvLoraRank, R = ropeDim, n = heads).
public struct MLAWeights: Sendable {
    /// q_proj [n·(nope + R), H], or q_a_proj [r, H] (+ bias), its RMSNorm [r] and q_b_proj [n·(nope + R), r].
    public var q: Matrix?
    public var qA, qANorm, qB, qABias: Matrix?
    /// kv_a_proj_with_mqa [L + R, H] (+ bias) and kv_a_layernorm [L].
    public var kvA: Matrix
    public var kvABias: Matrix?
    public var kvANorm: Matrix
    /// kv_b_proj [n·(nope + v), L] per head, for attention in the latent space: W_UK[h]ᵀ [L, nope] turns a head's
    /// nope query into a latent one; W_UV[h] [v, L] turns the attended latent into the head's value.
    public var uk: [Matrix]
    public var uv: [Matrix]
    /// o_proj [H, n·v] (+ bias).
    public var o: Matrix
    public var oBias: Matrix?
    /// q_a_proj (or q_proj) and kv_a_proj stacked [rows(q) + L + R, H] when converted together: one product over
    /// the activations for both.
    public var inProj: Matrix?
}

/// A layer's attention: q/k/v projections, or multi-head latent attention.
public enum AttentionBlock: Sendable {
    case standard(AttentionWeights)
    case latent(MLAWeights)
}

extension AttentionBlock {
    /// Every matrix a token is multiplied by (q/k/v stacked or not, counted once).
    public var products: [Matrix] {
        switch self {
        case .standard(let a): return [a.q, a.k, a.v, a.o]
        case .latent(let a): return [a.q, a.qA, a.qB].compactMap { $0 } + [a.kvA, a.o] + a.uk + a.uv
        }
    }
}

/// The coordinator's part of an MoE layer: the router [E, H] (and DeepSeek-V3's e_score_correction_bias [E], gpt-oss's
/// logit bias [E]) and, for Qwen2-MoE and DeepSeek, the shared expert (and Qwen2-MoE's gate for it).
public struct RouterWeights: Sendable {
    public var gate: Matrix
    public var bias: Matrix?
    public var logitBias: Matrix?
    public var shared: MLPWeights?
    public var sharedGate: Matrix?
}

public enum FeedForwardWeights: Sendable {
    case dense(MLPWeights)
    case moe(RouterWeights)
}

public struct LayerWeights: Sendable {
    public var inputNorm: Matrix
    public var postNorm: Matrix
    public var block: AttentionBlock
    public var ffn: FeedForwardWeights

    /// The q/k/v projections, nil for multi-head latent attention.
    public var attention: AttentionWeights? { if case .standard(let a) = block { return a } else { return nil } }
}

/// Everything but the routed experts: what the coordinator holds. embed: [V, H]; lmHead: [V, H].
public final class DenseWeights: @unchecked Sendable {
    public let embed: Matrix
    public let layers: [LayerWeights]
    public let norm: Matrix
    public let lmHead: Matrix

    init(embed: Matrix, layers: [LayerWeights], norm: Matrix, lmHead: Matrix) {
        self.embed = embed
        self.layers = layers
        self.norm = norm
        self.lmHead = lmHead
    }

    public static func load(_ ckpt: Checkpoint, _ spec: ModelSpec) throws -> DenseWeights {
        let H = spec.hiddenSize
        let embed = try ckpt.matrix("model.embed_tokens.weight", shape: [spec.vocabSize, H])
        var layers: [LayerWeights] = []
        for l in 0..<spec.numLayers {
            let p = ModelSpec.layerPrefix(l)
            func m(_ n: String, _ shape: [Int]) throws -> Matrix { try ckpt.matrix(p + n, shape: shape) }
            func opt(_ n: String, _ shape: [Int], _ present: Bool) throws -> Matrix? { present ? try m(n, shape) : nil }
            let a = "self_attn."
            let block: AttentionBlock
            if let mla = spec.mla {
                block = .latent(try loadMLA(ckpt, spec, mla, layer: l))
            } else {
                block = .standard(AttentionWeights(
                    q: try m(a + "q_proj.weight", [spec.qDim, H]), k: try m(a + "k_proj.weight", [spec.kvDim, H]),
                    v: try m(a + "v_proj.weight", [spec.kvDim, H]), o: try m(a + "o_proj.weight", [H, spec.qDim]),
                    qBias: try opt(a + "q_proj.bias", [spec.qDim], spec.qkvBias),
                    kBias: try opt(a + "k_proj.bias", [spec.kvDim], spec.qkvBias),
                    vBias: try opt(a + "v_proj.bias", [spec.kvDim], spec.qkvBias),
                    oBias: try opt(a + "o_proj.bias", [H], spec.oBias),
                    qNorm: try opt(a + "q_norm.weight", [spec.qkNorm == .whole ? spec.qDim : spec.headDim], spec.qkNorm != .none),
                    kNorm: try opt(a + "k_norm.weight", [spec.qkNorm == .whole ? spec.kvDim : spec.headDim], spec.qkNorm != .none),
                    sinks: try opt(a + "sinks", [spec.numHeads], spec.attentionSinks)))
            }
            let ffn: FeedForwardWeights
            switch spec.layers[l] {
            case .dense(let inter, let names, let bias):
                ffn = .dense(try loadMLP(ckpt, prefix: p, names: names, hidden: H, intermediate: inter, bias: bias))
            case .moe(let moe):
                let layout = try resolveExpertLayout(ckpt, spec, layer: l)
                var router = RouterWeights(gate: try m(layout.router, [moe.experts, H]))
                if moe.rule.correctionBias {
                    router.bias = try m(layout.prefix + ".gate.e_score_correction_bias", [moe.experts])
                }
                if moe.routerBias {
                    router.logitBias = try m(String(layout.router.dropLast(".weight".count)) + ".bias", [moe.experts])
                }
                if let s = moe.shared {
                    router.shared = try loadMLP(ckpt, prefix: p, names: s.names, hidden: H, intermediate: s.intermediate, bias: false)
                    if let g = s.gateName { router.sharedGate = try m(g + ".weight", [1, H]) }
                }
                ffn = .moe(router)
            }
            layers.append(LayerWeights(inputNorm: try m("input_layernorm.weight", [H]),
                                       postNorm: try m("post_attention_layernorm.weight", [H]),
                                       block: block, ffn: ffn))
        }
        let norm = try ckpt.matrix("model.norm.weight", shape: [H])
        let lmHead: Matrix
        if ckpt.has("lm_head.weight") || !spec.tieWordEmbeddings {
            lmHead = try ckpt.matrix("lm_head.weight", shape: [spec.vocabSize, H])
        } else {
            lmHead = embed
        }
        return DenseWeights(embed: embed, layers: layers, norm: norm, lmHead: lmHead)
    }
}

/// Layer `l`'s latent attention; kv_b_proj split per head (W_UK[h] transposed into a new f32 matrix).
func loadMLA(_ ckpt: Checkpoint, _ spec: ModelSpec, _ mla: MLASpec, layer l: Int) throws -> MLAWeights {
    let p = ModelSpec.layerPrefix(l) + "self_attn.", H = spec.hiddenSize, n = spec.numHeads
    let L = mla.kvLoraRank, R = mla.ropeDim, N = mla.nopeDim, V = mla.vDim
    func m(_ name: String, _ shape: [Int]) throws -> Matrix { try ckpt.matrix(p + name, shape: shape) }
    let qRows = n * mla.qkHeadDim
    var w = MLAWeights(q: nil, kvA: try m("kv_a_proj_with_mqa.weight", [L + R, H]),
                       kvABias: mla.bias ? try m("kv_a_proj_with_mqa.bias", [L + R]) : nil,
                       kvANorm: try m("kv_a_layernorm.weight", [L]), uk: [], uv: [],
                       o: try m("o_proj.weight", [H, n * V]), oBias: mla.bias ? try m("o_proj.bias", [H]) : nil)
    if let r = mla.qLoraRank {
        w.qA = try m("q_a_proj.weight", [r, H])
        w.qABias = mla.bias ? try m("q_a_proj.bias", [r]) : nil
        w.qANorm = try m("q_a_layernorm.weight", [r])
        w.qB = try m("q_b_proj.weight", [qRows, r])
    } else {
        w.q = try m("q_proj.weight", [qRows, H])
    }
    let kvB = try m("kv_b_proj.weight", [n * (N + V), L])
    for h in 0..<n {
        let first = h * (N + V)
        let ukT = FloatBuffer(count: L * N, zeroed: false)
        for i in 0..<N {
            let row = kvB.row(first + i)
            for j in 0..<L { ukT.pointer[j * N + i] = row[j] }
        }
        var uk = Matrix(ukT, rows: L, cols: N)
        uk.stored = kvB.stored
        w.uk.append(uk)
        w.uv.append(kvB.rows((first + N)..<(first + N + V)))
    }
    return w
}

func loadMLP(_ ckpt: Checkpoint, prefix: String, names: MLPNames, hidden H: Int, intermediate I: Int, bias: Bool) throws -> MLPWeights {
    func m(_ n: String, _ s: [Int]) throws -> Matrix { try ckpt.matrix(prefix + n, shape: s) }
    return MLPWeights(
        gate: try m(names.gate + ".weight", [I, H]), up: try m(names.up + ".weight", [I, H]),
        down: try m(names.down + ".weight", [H, I]),
        gateBias: bias ? try m(names.gate + ".bias", [I]) : nil,
        upBias: bias ? try m(names.up + ".bias", [I]) : nil,
        downBias: bias ? try m(names.down + ".bias", [H]) : nil)
}

/// Which of the family's on-disk expert layouts this checkpoint uses for `layer`, judged by expert 0's tensors.
public func resolveExpertLayout(_ ckpt: Checkpoint, _ spec: ModelSpec, layer l: Int) throws -> ExpertLayout {
    guard let moe = spec.layers[l].moe else { throw ModelError.unsupported("layer \(l) is not a mixture-of-experts layer") }
    let p = ModelSpec.layerPrefix(l)
    for layout in moe.layouts where ckpt.has(p + layout.marker) { return layout }
    let first = moe.layouts.first.map { p + $0.marker } ?? "\(p)experts"
    throw ModelError.missingTensor(first, where: ckpt.directory.path)
}

/// Storage format of each role's matrix products (`experts.dtype`, `attention.dtype` in the cluster config).
/// `dense` covers every product outside the routed experts: attention projections, dense MLPs, shared experts and
/// the output head. Embeddings, norms, biases and routers stay f32 (they are read a row at a time or are tiny).
public struct WeightFormats: Sendable, Equatable {
    public var experts: WeightFormat
    /// nil: auto, each matrix as its checkpoint stores it (`Matrix.autoFormat()`).
    public var dense: WeightFormat?
    public init(experts: WeightFormat = .f32, dense: WeightFormat? = .f32) {
        self.experts = experts
        self.dense = dense
    }
    public static let f32 = WeightFormats()

    /// These formats, with a grouped one (int8, int4: rows in groups of 32) replaced by f16 for a role whose
    /// matrices have rows of another width, as llama.cpp's quantizer falls back for such tensors; a note for each.
    public func fitting(_ spec: ModelSpec) -> (formats: WeightFormats, notes: [String]) {
        var out = self, notes: [String] = []
        func misfit(_ widths: [(String, Int)]) -> (String, Int)? { widths.first { $0.1 % 32 != 0 } }
        if experts.isGrouped, spec.isMoE,
           let (key, w) = misfit([("hidden_size", spec.hiddenSize)] + spec.layers.compactMap(\.moe).map { ("moe_intermediate_size", $0.intermediate) }) {
            out.experts = .f16
            notes.append("experts held as f16, not \(experts.rawValue): \(key) \(w) is not a multiple of the group size 32")
        }
        var dense: [(String, Int)] = [("hidden_size", spec.hiddenSize)]
        if let mla = spec.mla {
            dense.append(("num_attention_heads × v_head_dim", spec.numHeads * mla.vDim))
            if let r = mla.qLoraRank { dense.append(("q_lora_rank", r)) }
        } else {
            dense.append(("num_attention_heads × head_dim", spec.qDim))
        }
        for l in spec.layers {
            switch l {
            case .dense(let i, _, _): dense.append(("intermediate_size", i))
            case .moe(let m): if let s = m.shared { dense.append(("shared_expert_intermediate_size", s.intermediate)) }
            }
        }
        if let f = self.dense, f.isGrouped, let (key, w) = misfit(dense) {
            out.dense = .f16
            notes.append("attention and dense weights held as f16, not \(f.rawValue): \(key) \(w) is not a multiple of the group size 32")
        }
        return (out, notes)
    }
}

extension Matrix {
    /// What auto holds this matrix as: the format of its values as the checkpoint stores them (`stored`; f32 when
    /// not from a checkpoint); f16 where that is a grouped format and its rows are not a multiple of 32 wide; int8
    /// where int4 or int4z would not hold every value exactly (a 4-bit checkpoint with scales that are not f16, or
    /// groups that split a run of 32 inputs even in `groupOrder`), as int8 rounds 16 times finer. Converts its first
    /// 16 rows to check: what decides it (the scales' dtype, the group layout) is the same for every row, and the
    /// whole matrix is converted once more when it is held.
    public func autoFormat() -> WeightFormat {
        let f = stored ?? .f32
        if f.isGrouped && cols % 32 != 0 { return .f16 }
        if f == .int4 || f == .int4z, !self.rows(0..<Swift.min(rows, 16)).holdsExactly(as: f) { return .int8 }
        return f
    }

    /// Whether `f` holds every value of this f32 matrix exactly.
    public func holdsExactly(as f: WeightFormat) -> Bool {
        guard format == .f32, let held = converted(to: f) else { return false }
        var back = [Float](repeating: 0, count: cols)
        for r in 0..<rows {
            held.dequantizedRow(r, into: &back)
            if !back.elementsEqual(UnsafeBufferPointer(start: row(r), count: cols)) { return false }
        }
        return true
    }

    /// This matrix stored in `f`; throws naming the tensor when a grouped format cannot hold it (width, range).
    func converting(to f: WeightFormat, _ name: @autoclosure () -> String) throws -> Matrix {
        guard let c = converted(to: f) else {
            throw ModelError.cannotConvert(tensor: name(), to: f.rawValue, reason: f.reasonCannotHold(self) ?? "conversion failed")
        }
        return c
    }
}

extension MLPWeights {
    func converting(to f: WeightFormat, _ name: String) throws -> MLPWeights { try converting({ _ in f }, name) }

    /// A copy with each matrix in `format(matrix)`; gate and up stacked when they go to one format.
    func converting(_ format: (Matrix) -> WeightFormat, _ name: String) throws -> MLPWeights {
        let f = format(gate)
        if f != .f32, format(up) == f, gateBias == nil, upBias == nil, activation == .silu, gate.rows == up.rows,
           let gu = Matrix.stacking([gate, up], as: f) {
            var w = MLPWeights(gate: gu.rows(0..<gate.rows), up: gu.rows(gate.rows..<2 * gate.rows),
                               down: try down.converting(to: format(down), name + " down"), downBias: downBias, activation: activation)
            w.gateUp = gu
            return w
        }
        return MLPWeights(gate: try gate.converting(to: f, name + " gate"), up: try up.converting(to: format(up), name + " up"),
                          down: try down.converting(to: format(down), name + " down"), gateBias: gateBias, upBias: upBias, downBias: downBias,
                          activation: activation)
    }
}

extension MLAWeights {
    /// A copy with its products in `f`: the two input projections stacked when they convert together; a per-head
    /// part whose width a grouped format cannot hold stays f32 (they are a few MB a layer).
    func converting(_ format: (Matrix) -> WeightFormat, _ p: String) throws -> MLAWeights {
        var c = self
        let first = q ?? qA!
        if format(first) == format(kvA), let stacked = Matrix.stacking([first, kvA], as: format(first)) {
            c.inProj = stacked
            if q != nil { c.q = stacked.rows(0..<first.rows) } else { c.qA = stacked.rows(0..<first.rows) }
            c.kvA = stacked.rows(first.rows..<stacked.rows)
        } else {
            if let m = q { c.q = try m.converting(to: format(m), p + "q_proj") }
            if let m = qA { c.qA = try m.converting(to: format(m), p + "q_a_proj") }
            c.kvA = try kvA.converting(to: format(kvA), p + "kv_a_proj_with_mqa")
        }
        if let m = qB { c.qB = try m.converting(to: format(m), p + "q_b_proj") }
        c.o = try o.converting(to: format(o), p + "o_proj")
        c.uk = uk.map { $0.converted(to: format($0)) ?? $0 }
        c.uv = uv.map { $0.converted(to: format($0)) ?? $0 }
        return c
    }
}

extension DenseWeights {
    /// A copy whose matrix products (attention projections, dense MLPs, shared experts, lm_head) are stored in
    /// `format`, or with `nil` (auto) each as its checkpoint stores it (`Matrix.autoFormat()`); embeddings, norms,
    /// biases and routers stay f32.
    public func converting(to f: WeightFormat?) throws -> DenseWeights {
        if f == .f32 { return self }
        var chosen: [UnsafeRawPointer: WeightFormat] = [:]   // autoFormat converts to check: once per matrix
        let format: (Matrix) -> WeightFormat = { m in
            if let f { return f }
            if let c = chosen[m.raw] { return c }
            let c = m.autoFormat()
            chosen[m.raw] = c
            return c
        }
        var out: [LayerWeights] = []
        for (i, lw) in layers.enumerated() {
            var l = lw
            let p = "layer \(i) self_attn."
            switch lw.block {
            case .standard(let a):
                var c = a
                let fq = format(a.q)
                if format(a.k) == fq, format(a.v) == fq, let qkv = Matrix.stacking([a.q, a.k, a.v], as: fq) {
                    c.qkv = qkv
                    c.q = qkv.rows(0..<a.q.rows)
                    c.k = qkv.rows(a.q.rows..<(a.q.rows + a.k.rows))
                    c.v = qkv.rows((a.q.rows + a.k.rows)..<qkv.rows)
                } else {
                    c.q = try a.q.converting(to: fq, p + "q_proj")
                    c.k = try a.k.converting(to: format(a.k), p + "k_proj")
                    c.v = try a.v.converting(to: format(a.v), p + "v_proj")
                }
                c.o = try a.o.converting(to: format(a.o), p + "o_proj")
                l.block = .standard(c)
            case .latent(let a):
                l.block = .latent(try a.converting(format, p))
            }
            switch lw.ffn {
            case .dense(let m):
                l.ffn = .dense(try m.converting(format, "layer \(i) mlp"))
            case .moe(var r):
                if let s = r.shared { r.shared = try s.converting(format, "layer \(i) shared expert") }
                l.ffn = .moe(r)
            }
            out.append(l)
        }
        return DenseWeights(embed: embed, layers: out, norm: norm, lmHead: try lmHead.converting(to: format(lmHead), "lm_head"))
    }

    /// The formats the matrix products are held in, as "bf16" when one, else each with its count of products
    /// ("int4z ×28, bf16 ×1"), lm_head named when it alone differs ("int4z, lm_head bf16").
    public var formatSummary: String {
        var counts: [WeightFormat: Int] = [:]
        for l in layers {
            for m in l.block.products { counts[m.format, default: 0] += 1 }
            switch l.ffn {
            case .dense(let m): for x in [m.gate, m.up, m.down] { counts[x.format, default: 0] += 1 }
            case .moe(let r): if let s = r.shared { for x in [s.gate, s.up, s.down] { counts[x.format, default: 0] += 1 } }
            }
        }
        if counts.count <= 1 {
            let f = counts.keys.first ?? lmHead.format
            return f == lmHead.format ? f.rawValue : "\(f.rawValue), lm_head \(lmHead.format.rawValue)"
        }
        counts[lmHead.format, default: 0] += 1
        return WeightFormat.allCases.compactMap { f in counts[f].map { "\(f.rawValue) ×\($0)" } }.joined(separator: ", ")
    }

    /// Sum of `measure` over every weight held (embedding included; lm_head once when it is the embedding table).
    func total(_ measure: (Matrix) -> Int) -> Int {
        var b = measure(embed) + measure(norm) + (lmHead.raw == embed.raw ? 0 : measure(lmHead))
        for l in layers {
            b += measure(l.inputNorm) + measure(l.postNorm)
            if case .standard(let a) = l.block, let sinks = a.sinks { b += measure(sinks) }
            b += l.block.products.reduce(0) { $0 + measure($1) }
            if case .latent(let a) = l.block { b += measure(a.kvANorm) + (a.qANorm.map(measure) ?? 0) }
            switch l.ffn {
            case .dense(let m): b += measure(m.gate) + measure(m.up) + measure(m.down)
            case .moe(let r):
                b += measure(r.gate) + (r.sharedGate.map(measure) ?? 0)
                if let s = r.shared { b += measure(s.gate) + measure(s.up) + measure(s.down) }
            }
        }
        return b
    }

    /// Bytes of every weight held (embedding included).
    public var byteCount: Int { total(\.byteCount) }

    /// Bytes one forward step reads of these weights: all of them but the embedding table (one row per token), or
    /// all of them when lm_head is the embedding table. (A dense model's step; for a MoE model add the experts.)
    public var bytesPerStep: Int { byteCount - (lmHead.raw == embed.raw ? 0 : embed.byteCount) }

    /// Weights one forward step multiplies each token by (as `bytesPerStep`, counted in values): a token's compute
    /// is 2 FLOPs per value whatever the format the values are held in.
    public var paramsPerStep: Int {
        let count = { (m: Matrix) in m.rows * m.cols }
        return total(count) - (lmHead.raw == embed.raw ? 0 : count(embed))
    }
}
