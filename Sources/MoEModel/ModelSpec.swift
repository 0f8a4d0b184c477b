import Foundation

/// Rotary position embedding: transformers' rotate-half convention over the whole head.
public struct RopeSpec: Sendable, Equatable {
    public enum Scaling: Sendable, Equatable {
        case none
        case linear(factor: Float)
        /// Llama 3.x: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
        case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int)
        /// YaRN (Qwen's long-context setting, DeepSeek): frequencies that turn fewer than `betaSlow` times in the
        /// original context divided by `factor`, those turning more than `betaFast` times kept, a linear ramp
        /// between; cos and sin scaled by an attention factor.
        case yarn(YarnParameters)
    }
    public var theta: Float
    public var scaling: Scaling = .none
}

/// YaRN's keys of `rope_scaling` / `rope_parameters`; nil means transformers' default.
public struct YarnParameters: Sendable, Equatable {
    public var factor: Double
    public var originalMaxPositions: Int
    public var betaFast: Double?          // default 32
    public var betaSlow: Double?          // default 1
    public var truncate: Bool?            // default true: the ramp's ends rounded out to whole dimensions
    public var attentionFactor: Double?   // default from factor (and mscale / mscale_all_dim when both are set)
    public var mscale: Double?
    public var mscaleAllDim: Double?
}

/// A SwiGLU MLP's tensor names: out = down(silu(gate(x)) · up(x)).
public struct MLPNames: Sendable, Equatable {
    public var gate: String
    public var up: String
    public var down: String
}

/// Where a layer's experts live on disk.
public enum ExpertLayout: Sendable, Equatable {
    public var prefix: String {
        switch self { case .perExpert(let p, _), .fused(let p, _), .interleaved(let p): return p }
    }
    /// The router's [E, H] weight.
    public var router: String {
        switch self {
        case .perExpert(let p, _): return p + ".gate.weight"
        case .fused(let p, let n): return p + "." + n.router
        case .interleaved(let p): return p + ".router.weight"
        }
    }
    /// The tensor whose presence marks this layout (expert 0's gate, or the fused gate|up tensor).
    public var marker: String {
        switch self {
        case .perExpert(let p, let n): return "\(p).experts.0.\(n.gate).weight"
        case .fused(let p, let n): return "\(p).\(n.gateUp)"
        case .interleaved(let p): return "\(p).experts.gate_up_proj"
        }
    }
    /// One tensor per expert: "<prefix>.experts.<e>.<gate|up|down>.weight".
    case perExpert(prefix: String, names: MLPNames)
    /// Fused over experts: "<prefix>.experts.gate_up_proj" [E, 2I, H] (each expert's gate rows, then its up rows)
    /// and "<prefix>.experts.down_proj" [E, H, I], or as `names` says (Granite's).
    case fused(prefix: String, names: FusedNames = .standard)
    /// gpt-oss's: "<prefix>.experts.gate_up_proj" [E, H, 2I] in x·W form with each expert's gate and up columns
    /// interleaved (gate j at 2j, up j at 2j + 1) and its bias "gate_up_proj_bias" [E, 2I] alike;
    /// "<prefix>.experts.down_proj" [E, I, H] and "down_proj_bias" [E, H]; the router "<prefix>.router.weight" [E, H]
    /// with "<prefix>.router.bias" [E]. OpenAI's MXFP4 release stores the two matrices as `NAME_blocks`
    /// [E, out, in/32, 16] and `NAME_scales` [E, out, in/32] (out × in, as the other layouts' rows).
    case interleaved(prefix: String)
}

/// The tensors of a fused expert layout, after its prefix.
public struct FusedNames: Sendable, Equatable {
    public var gateUp, down, router: String
    public static let standard = FusedNames(gateUp: "experts.gate_up_proj", down: "experts.down_proj", router: "gate.weight")
    /// Granite's, as its checkpoints on the Hub and transformers 5's save_pretrained write them.
    public static let granite = FusedNames(gateUp: "input_linear.weight", down: "output_linear.weight", router: "router.layer.weight")
}

/// A mixture-of-experts feed-forward block. T tokens, E experts, K active per token, H hidden, I expert width.
public struct MoESpec: Sendable, Equatable {
    public var experts: Int
    public var topK: Int
    public var intermediate: Int
    /// Renormalise the K selected softmax probabilities to sum to 1 (Mixtral always; Qwen when norm_topk_prob).
    public var normTopK: Bool
    /// Candidate on-disk layouts, tried in order at load; the router is the found layout's `router` [E, H].
    public var layouts: [ExpertLayout]
    /// Qwen2-MoE: a dense expert every token uses, scaled by sigmoid(shared_expert_gate · x). DeepSeek: its
    /// n_shared_experts as one MLP, unscaled.
    public var shared: SharedExpertSpec?
    /// How router logits become choices and weights (softmax over all experts unless a family says otherwise).
    public var rule = RouterRule()
    /// A bias [E] added to the router's logits (gpt-oss), in the layout's "<router>.bias" beside its weight.
    public var routerBias = false
    /// The experts' gated activation.
    public var activation = GatedActivation.silu
}

/// How a gated MLP joins its gate and up projections (after their biases) into the input of down.
public enum GatedActivation: Sendable, Equatable {
    /// silu(gate) · up.
    case silu
    /// gpt-oss's: g = min(gate, limit), u = clamp(up, −limit, limit); g · sigmoid(alpha · g) · (u + 1).
    case clampedSwiGLU(alpha: Float, limit: Float)
}

/// DeepSeek's routing beyond softmax-then-top-k. Scores are softmax or sigmoid of the router logits; the choice
/// ranks scores (plus the `e_score_correction_bias` when `correctionBias`, DeepSeek-V3's auxiliary-loss-free
/// balancing) within the `topGroups` best of `groups` equal groups of experts (a group's rank: its best score,
/// DeepSeek-V2's group_limited_greedy, or its two best summed, V3's noaux_tc); the weights are the chosen scores
/// (bias left out), renormalised when the spec's normTopK, times `scale` (routed_scaling_factor).
public struct RouterRule: Sendable, Equatable {
    public enum Scoring: String, Sendable { case softmax, sigmoid }
    public enum GroupRank: Sendable { case best, bestTwo }
    public var scoring: Scoring = .softmax
    public var groups = 1
    public var topGroups = 1
    public var groupRank: GroupRank = .best
    public var correctionBias = false
    public var scale: Float = 1
    public init() {}
}

/// Multi-head latent attention (DeepSeek-V2/V3). Queries: q_proj [heads·(nope + rope), H], or q_a_proj [qLoraRank,
/// H] → RMSNorm → q_b_proj [heads·(nope + rope), qLoraRank]; per token one latent c = RMSNorm(kv_a_proj_with_mqa(x)
/// [:kvLoraRank]) and one rotary key k_r (its last `ropeDim`), shared by all heads; kv_b_proj [heads·(nope + v),
/// kvLoraRank] expands c into each head's key (nope part) and value. The cache keeps [c | k_r] per token (one "KV
/// head" of kvLoraRank + ropeDim), and attention runs in the latent space, as DeepSeek's and vLLM's absorbed form:
/// head h's query becomes [W_UK[h]ᵀ q_nope | q_rope], its value out W_UV[h] · (attention-weighted c).
public struct MLASpec: Sendable, Equatable {
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    public var nopeDim: Int
    public var ropeDim: Int
    public var vDim: Int
    /// attention_bias: biases on q_a_proj (or nothing when q_proj), kv_a_proj_with_mqa and o_proj.
    public var bias: Bool
    /// Rotary pairs (x0, x1), (x2, x3), … (DeepSeek's own layout) instead of the two halves.
    public var ropeInterleaved: Bool
    /// q_a_layernorm's and kv_a_layernorm's epsilon: 1e-6 whatever rms_norm_eps says, as DeepSeek's code and
    /// transformers build them.
    public var normEps: Float = 1e-6
    public var qkHeadDim: Int { nopeDim + ropeDim }
}

public struct SharedExpertSpec: Sendable, Equatable {
    public var intermediate: Int
    public var names: MLPNames
    /// [1, H] gate weight, or nil when the shared expert is added unscaled.
    public var gateName: String?

    /// DeepSeek's and GLM's: `count` (n_shared_experts) experts of `width` as one unscaled MLP
    /// "mlp.shared_experts.{gate,up,down}_proj"; nil for none.
    static func unscaled(count: Int?, width: Int) -> SharedExpertSpec? {
        guard let n = count, n > 0 else { return nil }
        return SharedExpertSpec(intermediate: width * n, names: qwenMLPNames.prefixed("mlp.shared_experts"), gateName: nil)
    }
}

public enum FeedForwardSpec: Sendable, Equatable {
    case dense(intermediate: Int, names: MLPNames, bias: Bool)
    case moe(MoESpec)

    public var moe: MoESpec? { if case .moe(let m) = self { return m } else { return nil } }
}

public enum QKNorm: Sendable, Equatable { case none, perHead, whole }

/// Everything the forward pass needs to know about an architecture, filled in by a model family file from its
/// `config.json`. Layer tensors are named "model.layers.<l>.<...>" as in every family here.
public struct ModelSpec: Sendable, Equatable {
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var rope: RopeSpec
    public var maxPositions: Int
    public var tieWordEmbeddings: Bool
    /// Per layer: the attention window in tokens (a token sees itself and the window-1 before it), or nil for full.
    public var slidingWindows: [Int?]
    /// Biases on q/k/v projections (Qwen2) and on o_proj (Llama's attention_bias).
    public var qkvBias: Bool
    public var oBias: Bool
    /// RMSNorm on queries and keys before RoPE: over head_dim on each head (Qwen3), or over the whole projection
    /// (OLMoE: q over num_heads · head_dim, k over num_kv_heads · head_dim, after the projections' biases).
    public var qkNorm: QKNorm
    /// OLMoE's clip_qkv: queries, keys and values clamped to [−c, c] after the projections (and their norms).
    public var clipQKV: Float? = nil
    /// Granite's scalars (1, or 1/√head_dim, elsewhere): token embeddings × embeddingMultiplier, attention scores ×
    /// attentionScale, each block's output × residualMultiplier before it joins the residual stream, logits ÷
    /// logitsScaling.
    public var embeddingMultiplier: Float = 1
    public var attentionScale: Float? = nil
    public var residualMultiplier: Float = 1
    public var logitsScaling: Float = 1
    public var layers: [FeedForwardSpec]
    /// Multi-head latent attention instead of q/k/v projections; then numKVHeads is 1 and headDim is a cached row's
    /// width (kvLoraRank + ropeDim).
    public var mla: MLASpec? = nil
    /// gpt-oss's attention sinks: a learned logit per query head ("self_attn.sinks" [heads]) that joins each softmax
    /// over the attended positions as one more entry whose value is zero (it takes probability, gives nothing).
    public var attentionSinks = false
    /// Rotary embedding on the first this many dimensions of each q/k head only (rotate-half within them; the rest
    /// pass unrotated), or nil for the whole head.
    public var rotaryDim: Int? = nil
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    /// The dtype config.json declares (torch_dtype / dtype), informational.
    public var declaredDType: String?

    public var isMoE: Bool { layers.contains { $0.moe != nil } }
    public var moeLayers: [Int] { layers.indices.filter { layers[$0].moe != nil } }
    public var numExperts: Int { layers.compactMap(\.moe).first?.experts ?? 0 }
    public var qDim: Int { numHeads * headDim }
    /// Weights of one layer's attention products (values, whatever format holds them).
    public var attentionParams: Int {
        let H = hiddenSize
        guard let m = mla else { return H * (2 * qDim + 2 * kvDim) }
        let q = m.qLoraRank.map { H * $0 + $0 * numHeads * m.qkHeadDim } ?? H * numHeads * m.qkHeadDim
        return q + H * (m.kvLoraRank + m.ropeDim) + numHeads * m.kvLoraRank * (m.nopeDim + m.vDim) + H * numHeads * m.vDim
    }
    /// Dimensions each head rotates: the rotary part of MLA's keys, else the first `rotaryDim` of a head (GLM-4.5's
    /// partial_rotary_factor), else the whole head.
    public var ropeDim: Int { mla?.ropeDim ?? rotaryDim ?? headDim }
    public var kvDim: Int { numKVHeads * headDim }

    static func layerPrefix(_ l: Int) -> String { "model.layers.\(l)." }
}
