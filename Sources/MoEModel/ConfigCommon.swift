import Foundation

/// `rope_parameters` (transformers 5) or `rope_scaling` (4.x), as written in config.json.
struct RopeParameters: Codable, Sendable {
    var ropeTheta: Double?
    var ropeType: String?
    var type: String?
    var factor: Double?
    var lowFreqFactor: Double?
    var highFreqFactor: Double?
    var originalMaxPositionEmbeddings: Int?
    // YaRN
    var attentionFactor: Double?
    var betaFast: Double?
    var betaSlow: Double?
    var mscale: Double?
    var mscaleAllDim: Double?
    var truncate: Bool?
    var partialRotaryFactor: Double?

    enum CodingKeys: String, CodingKey {
        case ropeTheta = "rope_theta", ropeType = "rope_type", type, factor
        case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case attentionFactor = "attention_factor", betaFast = "beta_fast", betaSlow = "beta_slow", mscale
        case mscaleAllDim = "mscale_all_dim", truncate, partialRotaryFactor = "partial_rotary_factor"
    }
}

/// A JSON value that may be an int or a list of ints (`eos_token_id`).
enum IntOrList: Codable, Sendable {
    case one(Int), many([Int])
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Int.self) { self = .one(v) } else { self = .many(try c.decode([Int].self)) }
    }
    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self { case .one(let v): try c.encode(v); case .many(let v): try c.encode(v) }
    }
    var values: [Int] { switch self { case .one(let v): return [v]; case .many(let v): return v } }
}

/// Rules shared by the families: where rope_theta lives, what a null head_dim or a zero sliding_window mean.
enum ConfigRules {
    /// The shared keys and a family's own, for a family whose intermediate_size is each expert's width.
    static func moeConfig<C: Decodable>(_ type: C.Type, _ data: Data, family: String) throws -> (base: TransformerConfig, own: C, expertWidth: Int) {
        let base = try decode(TransformerConfig.self, data, family: family)
        return (base, try decode(C.self, data, family: family), try base.expertWidth(family: family))
    }

    static func decode<C: Decodable>(_ type: C.Type, _ data: Data, family: String) throws -> C {
        do {
            return try JSONDecoder().decode(C.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw ModelError.badConfig(file: "config.json", reason: "\(family) needs key '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            throw ModelError.badConfig(file: "config.json", reason: "key '\(path)' has the wrong type")
        } catch let DecodingError.valueNotFound(_, ctx) {
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            throw ModelError.badConfig(file: "config.json", reason: "key '\(path)' is null")
        } catch {
            throw ModelError.badConfig(file: "config.json", reason: "not valid JSON (\(error.localizedDescription))")
        }
    }

    /// The rope of config.json and the context it gives, as transformers reads the one and vLLM derives the other:
    /// `original_max_position_embeddings` defaults to `max_position_embeddings`; linear scaling stretches the
    /// context by its factor, YaRN makes it original × factor, Llama 3's keeps the configured one.
    static func rope(theta: Double?, parameters: RopeParameters?, scaling: RopeParameters?, maxPositions: Int,
                     defaultTheta: Double = 10000) throws -> (rope: RopeSpec, context: Int) {
        let p = parameters ?? scaling
        let th = Float(p?.ropeTheta ?? theta ?? defaultTheta)
        let kind = p?.ropeType ?? p?.type ?? "default"
        let original = p?.originalMaxPositionEmbeddings ?? maxPositions
        func need(_ value: Double?, _ key: String) throws -> Double {
            guard let v = value else { throw ModelError.badConfig(file: "config.json", reason: "\(kind) rope needs \(key)") }
            guard v.isFinite, v > 0 else { throw ModelError.badConfig(file: "config.json", reason: "\(kind) rope's \(key) must be positive (got \(v))") }
            return v
        }
        switch kind {
        case "default":
            return (RopeSpec(theta: th), maxPositions)
        case "linear":
            let f = try need(p?.factor, "factor")
            return (RopeSpec(theta: th, scaling: .linear(factor: Float(f))), Int(Double(maxPositions) * f))
        case "llama3":
            let f = try need(p?.factor, "factor"), lo = try need(p?.lowFreqFactor, "low_freq_factor")
            let hi = try need(p?.highFreqFactor, "high_freq_factor")
            return (RopeSpec(theta: th, scaling: .llama3(factor: Float(f), lowFreqFactor: Float(lo), highFreqFactor: Float(hi),
                                                         originalMaxPositions: original)), maxPositions)
        case "yarn":
            let f = try need(p?.factor ?? Double(maxPositions) / Double(original), "factor")
            let yarn = YarnParameters(factor: f, originalMaxPositions: original, betaFast: p?.betaFast, betaSlow: p?.betaSlow,
                                      truncate: p?.truncate, attentionFactor: p?.attentionFactor, mscale: p?.mscale,
                                      mscaleAllDim: p?.mscaleAllDim)
            return (RopeSpec(theta: th, scaling: .yarn(yarn)), Int(Double(original) * f))
        default:
            throw ModelError.unsupported("rope_type '\(kind)' in config.json (supported: default, linear, llama3, yarn)")
        }
    }

    static func headDim(_ explicit: Int?, hidden: Int, heads: Int) -> Int { explicit ?? hidden / heads }

    /// Window per layer. `sliding_window` null or 0 means off; `layer_types` (transformers 5) picks layers;
    /// Qwen's `use_sliding_window` false turns it off, and its window applies from `max_window_layers` on.
    static func slidingWindows(layers: Int, window: Int?, layerTypes: [String]?, useSlidingWindow: Bool? = nil,
                               maxWindowLayers: Int? = nil) -> [Int?] {
        guard let w = window, w > 0, useSlidingWindow ?? true else { return Array(repeating: nil, count: layers) }
        if let types = layerTypes, types.count == layers {
            return types.map { $0 == "sliding_attention" ? w : nil }
        }
        if let m = maxWindowLayers { return (0..<layers).map { $0 >= m ? w : nil } }
        return Array(repeating: w, count: layers)
    }

    static func check(_ cond: Bool, _ reason: String) throws {
        if !cond { throw ModelError.badConfig(file: "config.json", reason: reason) }
    }

    /// Sanity checks every family shares, so a broken config fails before any weight is read.
    static func validate(_ s: ModelSpec) throws {
        try check(s.vocabSize > 0 && s.hiddenSize > 0 && s.numLayers > 0, "vocab_size, hidden_size and num_hidden_layers must be positive")
        try check(s.numHeads > 0 && s.numKVHeads > 0 && s.numHeads % s.numKVHeads == 0,
                  "num_attention_heads (\(s.numHeads)) must be a positive multiple of num_key_value_heads (\(s.numKVHeads))")
        try check(s.headDim > 0 && s.headDim % 2 == 0, "head_dim must be positive and even (got \(s.headDim))")
        for (l, f) in s.layers.enumerated() {
            if let m = f.moe {
                try check(m.experts > 0 && m.topK > 0 && m.topK <= m.experts,
                          "layer \(l): num_experts_per_tok (\(m.topK)) must be between 1 and the number of experts (\(m.experts))")
                try check(m.intermediate > 0, "layer \(l): expert intermediate size must be positive")
            }
        }
    }
}

/// The config.json keys every decoder family here shares. Family files decode their own keys beside it.
struct TransformerConfig: Codable, Sendable {
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int?
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int?
    var headDim: Int?
    var rmsNormEps: Double?
    var ropeTheta: Double?
    var ropeParameters: RopeParameters?
    var ropeScaling: RopeParameters?
    var maxPositionEmbeddings: Int?
    var tieWordEmbeddings: Bool?
    var slidingWindow: Int?
    var useSlidingWindow: Bool?
    var maxWindowLayers: Int?
    var layerTypes: [String]?
    var bosTokenId: Int?
    var eosTokenId: IntOrList?
    var torchDtype: String?
    var dtype: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeParameters = "rope_parameters", ropeScaling = "rope_scaling"
        case maxPositionEmbeddings = "max_position_embeddings", tieWordEmbeddings = "tie_word_embeddings"
        case slidingWindow = "sliding_window", useSlidingWindow = "use_sliding_window"
        case maxWindowLayers = "max_window_layers", layerTypes = "layer_types"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", torchDtype = "torch_dtype", dtype
    }

    /// intermediate_size where it is each expert's width (Mixtral, OLMoE, Granite): required.
    func expertWidth(family: String) throws -> Int {
        guard let i = intermediateSize else {
            throw ModelError.badConfig(file: "config.json", reason: "\(family) needs intermediate_size (each expert's width)")
        }
        return i
    }

    /// The spec with the shared fields filled in; `ffn` decides each layer's feed-forward block.
    /// Qwen families gate the sliding window behind use_sliding_window / max_window_layers; others use it as given.
    func spec(modelType: String, defaultTheta: Double = 10000, defaultEps: Double = 1e-6, qwenWindowRules: Bool,
              qkvBias: Bool, oBias: Bool, qkNorm: QKNorm, ffn: (Int) -> FeedForwardSpec) throws -> ModelSpec {
        let windows = qwenWindowRules
            ? ConfigRules.slidingWindows(layers: numHiddenLayers, window: slidingWindow, layerTypes: layerTypes,
                                         useSlidingWindow: useSlidingWindow ?? false, maxWindowLayers: maxWindowLayers)
            : ConfigRules.slidingWindows(layers: numHiddenLayers, window: slidingWindow, layerTypes: layerTypes)
        let rope = try ConfigRules.rope(theta: ropeTheta, parameters: ropeParameters, scaling: ropeScaling,
                                        maxPositions: maxPositionEmbeddings ?? 32768, defaultTheta: defaultTheta)
        let spec = ModelSpec(
            modelType: modelType, vocabSize: vocabSize, hiddenSize: hiddenSize, numLayers: numHiddenLayers,
            numHeads: numAttentionHeads, numKVHeads: numKeyValueHeads ?? numAttentionHeads,
            headDim: ConfigRules.headDim(headDim, hidden: hiddenSize, heads: numAttentionHeads),
            rmsNormEps: Float(rmsNormEps ?? defaultEps),
            rope: rope.rope, maxPositions: rope.context, tieWordEmbeddings: tieWordEmbeddings ?? false,
            slidingWindows: windows, qkvBias: qkvBias, oBias: oBias, qkNorm: qkNorm,
            layers: (0..<numHiddenLayers).map(ffn),
            bosTokenId: bosTokenId, eosTokenIds: eosTokenId?.values ?? [], declaredDType: torchDtype ?? dtype)
        try ConfigRules.validate(spec)
        return spec
    }
}

extension MLPNames {
    /// "mlp" + gate_proj → "mlp.gate_proj".
    func prefixed(_ p: String) -> MLPNames { MLPNames(gate: "\(p).\(gate)", up: "\(p).\(up)", down: "\(p).\(down)") }
}

/// A model family: the `model_type` values it serves and how its config.json becomes a `ModelSpec`.
protocol ModelFamily {
    static var modelTypes: [String] { get }
    static func spec(from config: Data) throws -> ModelSpec
}

public enum ModelFamilies {
    nonisolated(unsafe) static let all: [any ModelFamily.Type] = [Mixtral.self, Qwen2MoE.self, Qwen3MoE.self, Olmoe.self, GraniteMoE.self, DeepSeek.self, Glm4Moe.self, GptOss.self,
                                              Mistral.self, Llama.self, Qwen2.self, Qwen3.self]

    public static var supportedTypes: [String] { all.flatMap { $0.modelTypes } }

    /// Reads `model_type` and hands the config to its family.
    public static func spec(configData: Data) throws -> ModelSpec {
        guard let obj = try? JSONSerialization.jsonObject(with: configData) as? [String: Any] else {
            throw ModelError.badConfig(file: "config.json", reason: "not a JSON object")
        }
        guard let type = obj["model_type"] as? String else {
            throw ModelError.badConfig(file: "config.json", reason: "no model_type")
        }
        guard let family = all.first(where: { $0.modelTypes.contains(type) }) else {
            throw ModelError.unknownModelType(type, supported: supportedTypes)
        }
        return try family.spec(from: configData)
    }
}
