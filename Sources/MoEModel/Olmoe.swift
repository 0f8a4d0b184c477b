// OLMoE (allenai/OLMoE-1B-7B-0924 and -0125): RMSNorm over the whole query and key projections (q over
// num_heads · head_dim, k over num_kv_heads · head_dim) before RoPE, optional clip_qkv, a softmax router over
// num_experts (64) taking num_experts_per_tok (8), unnormalised unless norm_topk_prob; every layer sparse, each
// expert intermediate_size wide, no shared expert.
import Foundation

public struct OlmoeConfig: Codable, Sendable {
    var attentionBias: Bool?
    var clipQkv: Double?
    var numExperts: Int
    var numExpertsPerTok: Int
    var normTopkProb: Bool?

    enum CodingKeys: String, CodingKey {
        case attentionBias = "attention_bias", clipQkv = "clip_qkv", numExperts = "num_experts"
        case numExpertsPerTok = "num_experts_per_tok", normTopkProb = "norm_topk_prob"
    }
}

enum Olmoe: ModelFamily {
    static let modelTypes = ["olmoe"]

    static func spec(from data: Data) throws -> ModelSpec {
        let (base, c, inter) = try ConfigRules.moeConfig(OlmoeConfig.self, data, family: "olmoe")
        if let clip = c.clipQkv, !(clip > 0) {
            throw ModelError.badConfig(file: "config.json", reason: "clip_qkv must be positive or null (got \(clip))")
        }
        let moe = MoESpec(experts: c.numExperts, topK: c.numExpertsPerTok, intermediate: inter, normTopK: c.normTopkProb ?? false,
                          layouts: [.perExpert(prefix: "mlp", names: qwenMLPNames), .fused(prefix: "mlp")], shared: nil)
        let bias = c.attentionBias ?? false
        var spec = try base.spec(modelType: "olmoe", defaultEps: 1e-5, qwenWindowRules: false, qkvBias: bias, oBias: bias,
                                 qkNorm: .whole) { _ in .moe(moe) }
        spec.clipQKV = c.clipQkv.map(Float.init)
        return spec
    }
}
