// gpt-oss (openai/gpt-oss-20b, -120b; `gpt_oss`): grouped-query attention with biases on q/k/v/o and a learned sink
// logit per head in each softmax; layers alternate sliding-window (128) and full attention by layer_types (sliding
// from layer 0 where it is absent); YaRN RoPE (factor 32 over 4096, θ 150000, untruncated ramp) unless config.json
// says otherwise; every layer sparse: a router with a bias, top-k of its logits with softmax over the k chosen
// (the same as softmax over all then renormalised), experts with biases and a clamped SwiGLU whose gate and up
// columns are interleaved (see ExpertLayout.interleaved); OpenAI's release stores the experts as MXFP4.
import Foundation

public struct GptOssConfig: Codable, Sendable {
    var numLocalExperts: Int
    /// num_experts_per_tok, or OpenAI's own key experts_per_token (its released config.json has both).
    var numExpertsPerTok: Int?
    var expertsPerToken: Int?
    var intermediateSize: Int
    var swigluAlpha: Double?
    var swigluLimit: Double?
    var attentionBias: Bool?

    enum CodingKeys: String, CodingKey {
        case numLocalExperts = "num_local_experts", numExpertsPerTok = "num_experts_per_tok", expertsPerToken = "experts_per_token"
        case intermediateSize = "intermediate_size", swigluAlpha = "swiglu_alpha", swigluLimit = "swiglu_limit"
        case attentionBias = "attention_bias"
    }
}

enum GptOss: ModelFamily {
    static let modelTypes = ["gpt_oss"]

    static func spec(from data: Data) throws -> ModelSpec {
        var base = try ConfigRules.decode(TransformerConfig.self, data, family: "gpt_oss")
        let c = try ConfigRules.decode(GptOssConfig.self, data, family: "gpt_oss")
        // transformers' GptOssConfig defaults where config.json leaves them out.
        if base.ropeParameters?.ropeType == nil && base.ropeParameters?.type == nil && base.ropeScaling == nil {
            var yarn = base.ropeParameters ?? RopeParameters()
            yarn.ropeType = "yarn"
            yarn.factor = 32
            yarn.betaFast = 32
            yarn.betaSlow = 1
            yarn.truncate = false
            yarn.originalMaxPositionEmbeddings = 4096
            base.ropeParameters = yarn
        }
        if base.layerTypes == nil {
            base.layerTypes = (0..<base.numHiddenLayers).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" }
        }
        if base.slidingWindow == nil { base.slidingWindow = 128 }
        guard let topK = c.numExpertsPerTok ?? c.expertsPerToken else {
            throw ModelError.badConfig(file: "config.json", reason: "gpt_oss needs key 'num_experts_per_tok' (or 'experts_per_token')")
        }
        let alpha = Float(c.swigluAlpha ?? 1.702), limit = Float(c.swigluLimit ?? 7)
        try ConfigRules.check(limit > 0 && alpha.isFinite, "swiglu_limit must be positive and swiglu_alpha finite")
        var moe = MoESpec(experts: c.numLocalExperts, topK: topK, intermediate: c.intermediateSize,
                          normTopK: true, layouts: [.interleaved(prefix: "mlp")], shared: nil)
        moe.routerBias = true
        moe.activation = .clampedSwiGLU(alpha: alpha, limit: limit)
        let bias = c.attentionBias ?? true
        var spec = try base.spec(modelType: "gpt_oss", defaultTheta: 150000, defaultEps: 1e-5, qwenWindowRules: false,
                                 qkvBias: bias, oBias: bias, qkNorm: .none) { _ in .moe(moe) }
        spec.attentionSinks = true
        return spec
    }
}
