// Granite MoE (ibm-granite/granite-3.0-1b-a400m, -3b-a800m, and granite-3.1's): Mixtral's block with μP scalars:
// embeddings × embedding_multiplier, attention scores × attention_multiplier (in place of 1/√head_dim), each
// attention and expert output × residual_multiplier before the residual add, logits ÷ logits_scaling. The router
// takes the top-k logits and softmaxes them (Mixtral's rule); experts fused as input_linear [E, 2I, H] (gate rows,
// then up) and output_linear [E, H, I].
import Foundation

public struct GraniteMoEConfig: Codable, Sendable {
    var attentionBias: Bool?
    var numLocalExperts: Int
    var numExpertsPerTok: Int
    var embeddingMultiplier: Double?
    var attentionMultiplier: Double?
    var residualMultiplier: Double?
    var logitsScaling: Double?

    enum CodingKeys: String, CodingKey {
        case attentionBias = "attention_bias", numLocalExperts = "num_local_experts", numExpertsPerTok = "num_experts_per_tok"
        case embeddingMultiplier = "embedding_multiplier", attentionMultiplier = "attention_multiplier"
        case residualMultiplier = "residual_multiplier", logitsScaling = "logits_scaling"
    }
}

enum GraniteMoE: ModelFamily {
    static let modelTypes = ["granitemoe"]

    static func spec(from data: Data) throws -> ModelSpec {
        let (base, c, inter) = try ConfigRules.moeConfig(GraniteMoEConfig.self, data, family: "granitemoe")
        if let s = c.logitsScaling, s == 0 {
            throw ModelError.badConfig(file: "config.json", reason: "logits_scaling must not be 0")
        }
        let moe = MoESpec(experts: c.numLocalExperts, topK: c.numExpertsPerTok, intermediate: inter, normTopK: true,
                          layouts: [.fused(prefix: "block_sparse_moe", names: .granite)], shared: nil)
        let bias = c.attentionBias ?? false
        var spec = try base.spec(modelType: "granitemoe", qwenWindowRules: false, qkvBias: bias, oBias: bias, qkNorm: .none) { _ in .moe(moe) }
        spec.embeddingMultiplier = Float(c.embeddingMultiplier ?? 1)
        spec.attentionScale = c.attentionMultiplier.map(Float.init)
        spec.residualMultiplier = Float(c.residualMultiplier ?? 1)
        spec.logitsScaling = Float(c.logitsScaling ?? 1)
        return spec
    }
}
