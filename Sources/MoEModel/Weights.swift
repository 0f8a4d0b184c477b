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

    public init(gate: Matrix, up: Matrix, down: Matrix, gateBias: Matrix? = nil, upBias: Matrix? = nil, downBias: Matrix? = nil) {
        self.gate = gate
        self.up = up
        self.down = down
        self.gateBias = gateBias
        self.upBias = upBias
        self.downBias = downBias
    }

    public var byteCount: Int { gate.byteCount + up.byteCount + down.byteCount }
}

/// q: [heads·D, H], k/v: [kvHeads·D, H], o: [H, heads·D]; optional biases; Qwen3 q/k norms over D.
public struct AttentionWeights: Sendable {
    public var q, k, v, o: Matrix
    public var qBias, kBias, vBias, oBias: Matrix?
    public var qNorm, kNorm: Matrix?
    /// q, k and v stacked [(heads + 2·kvHeads)·D, H] when they were converted together (q, k, v are then views of
    /// it): one product and one pass over the activations for the three.
    public var qkv: Matrix?
}

/// The coordinator's part of an MoE layer: the router [E, H] and, for Qwen2-MoE, the shared expert and its gate.
public struct RouterWeights: Sendable {
    public var gate: Matrix
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
    public var attention: AttentionWeights
    public var ffn: FeedForwardWeights
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
            let attn = AttentionWeights(
                q: try m(a + "q_proj.weight", [spec.qDim, H]), k: try m(a + "k_proj.weight", [spec.kvDim, H]),
                v: try m(a + "v_proj.weight", [spec.kvDim, H]), o: try m(a + "o_proj.weight", [H, spec.qDim]),
                qBias: try opt(a + "q_proj.bias", [spec.qDim], spec.qkvBias),
                kBias: try opt(a + "k_proj.bias", [spec.kvDim], spec.qkvBias),
                vBias: try opt(a + "v_proj.bias", [spec.kvDim], spec.qkvBias),
                oBias: try opt(a + "o_proj.bias", [H], spec.oBias),
                qNorm: try opt(a + "q_norm.weight", [spec.qkNorm == .whole ? spec.qDim : spec.headDim], spec.qkNorm != .none),
                kNorm: try opt(a + "k_norm.weight", [spec.qkNorm == .whole ? spec.kvDim : spec.headDim], spec.qkNorm != .none))
            let ffn: FeedForwardWeights
            switch spec.layers[l] {
            case .dense(let inter, let names, let bias):
                ffn = .dense(try loadMLP(ckpt, prefix: p, names: names, hidden: H, intermediate: inter, bias: bias))
            case .moe(let moe):
                let layout = try resolveExpertLayout(ckpt, spec, layer: l)
                var router = RouterWeights(gate: try m(layout.router, [moe.experts, H]))
                if let s = moe.shared {
                    router.shared = try loadMLP(ckpt, prefix: p, names: s.names, hidden: H, intermediate: s.intermediate, bias: false)
                    if let g = s.gateName { router.sharedGate = try m(g + ".weight", [1, H]) }
                }
                ffn = .moe(router)
            }
            layers.append(LayerWeights(inputNorm: try m("input_layernorm.weight", [H]),
                                       postNorm: try m("post_attention_layernorm.weight", [H]),
                                       attention: attn, ffn: ffn))
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
    for layout in moe.layouts {
        switch layout {
        case .perExpert(let prefix, let names):
            if ckpt.has("\(p)\(prefix).experts.0.\(names.gate).weight") { return layout }
        case .fused(let prefix, let names):
            if ckpt.has("\(p)\(prefix).\(names.gateUp)") { return layout }
        }
    }
    let first = moe.layouts.first.map { l -> String in
        switch l {
        case .perExpert(let prefix, let n): return "\(p)\(prefix).experts.0.\(n.gate).weight"
        case .fused(let prefix, let names): return "\(p)\(prefix).\(names.gateUp)"
        }
    } ?? "\(p)experts"
    throw ModelError.missingTensor(first, where: ckpt.directory.path)
}

/// Storage format of each role's matrix products (`experts.dtype`, `attention.dtype` in the cluster config).
/// `dense` covers every product outside the routed experts: attention projections, dense MLPs, shared experts and
/// the output head. Embeddings, norms, biases and routers stay f32 (they are read a row at a time or are tiny).
public struct WeightFormats: Sendable, Equatable {
    public var experts: WeightFormat
    public var dense: WeightFormat
    public init(experts: WeightFormat = .f32, dense: WeightFormat = .f32) {
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
        var dense: [(String, Int)] = [("hidden_size", spec.hiddenSize), ("num_attention_heads × head_dim", spec.qDim)]
        for l in spec.layers {
            switch l {
            case .dense(let i, _, _): dense.append(("intermediate_size", i))
            case .moe(let m): if let s = m.shared { dense.append(("shared_expert_intermediate_size", s.intermediate)) }
            }
        }
        if self.dense.isGrouped, let (key, w) = misfit(dense) {
            out.dense = .f16
            notes.append("attention and dense weights held as f16, not \(self.dense.rawValue): \(key) \(w) is not a multiple of the group size 32")
        }
        return (out, notes)
    }
}

extension Matrix {
    /// This matrix stored in `f`; throws naming the tensor when a grouped format cannot hold it (width, range).
    func converting(to f: WeightFormat, _ name: @autoclosure () -> String) throws -> Matrix {
        guard let c = converted(to: f) else {
            throw ModelError.cannotConvert(tensor: name(), to: f.rawValue, reason: f.reasonCannotHold(self) ?? "conversion failed")
        }
        return c
    }
}

extension MLPWeights {
    func converting(to f: WeightFormat, _ name: String) throws -> MLPWeights {
        if f != .f32, gateBias == nil, upBias == nil, gate.rows == up.rows, let gu = Matrix.stacking([gate, up], as: f) {
            var w = MLPWeights(gate: gu.rows(0..<gate.rows), up: gu.rows(gate.rows..<2 * gate.rows),
                               down: try down.converting(to: f, name + " down"), downBias: downBias)
            w.gateUp = gu
            return w
        }
        return MLPWeights(gate: try gate.converting(to: f, name + " gate"), up: try up.converting(to: f, name + " up"),
                          down: try down.converting(to: f, name + " down"), gateBias: gateBias, upBias: upBias, downBias: downBias)
    }
}

extension DenseWeights {
    /// A copy whose matrix products (attention projections, dense MLPs, shared experts, lm_head) are stored in
    /// `format`; embeddings, norms, biases and routers stay f32.
    public func converting(to f: WeightFormat) throws -> DenseWeights {
        if f == .f32 { return self }
        var out: [LayerWeights] = []
        for (i, lw) in layers.enumerated() {
            var l = lw
            let a = lw.attention, p = "layer \(i) self_attn."
            if let qkv = Matrix.stacking([a.q, a.k, a.v], as: f) {
                l.attention.qkv = qkv
                l.attention.q = qkv.rows(0..<a.q.rows)
                l.attention.k = qkv.rows(a.q.rows..<(a.q.rows + a.k.rows))
                l.attention.v = qkv.rows((a.q.rows + a.k.rows)..<qkv.rows)
            } else {
                l.attention.q = try a.q.converting(to: f, p + "q_proj")
                l.attention.k = try a.k.converting(to: f, p + "k_proj")
                l.attention.v = try a.v.converting(to: f, p + "v_proj")
            }
            l.attention.o = try a.o.converting(to: f, p + "o_proj")
            switch lw.ffn {
            case .dense(let m):
                l.ffn = .dense(try m.converting(to: f, "layer \(i) mlp"))
            case .moe(var r):
                if let s = r.shared { r.shared = try s.converting(to: f, "layer \(i) shared expert") }
                l.ffn = .moe(r)
            }
            out.append(l)
        }
        return DenseWeights(embed: embed, layers: out, norm: norm, lmHead: try lmHead.converting(to: f, "lm_head"))
    }

    /// Sum of `measure` over every weight held (embedding included; lm_head once when it is the embedding table).
    func total(_ measure: (Matrix) -> Int) -> Int {
        var b = measure(embed) + measure(norm) + (lmHead.raw == embed.raw ? 0 : measure(lmHead))
        for l in layers {
            let a = l.attention
            b += [a.q, a.k, a.v, a.o, l.inputNorm, l.postNorm].reduce(0) { $0 + measure($1) }
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
