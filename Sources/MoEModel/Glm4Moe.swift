// GLM-4.5 / GLM-4.5-Air / GLM-4.6 (`glm4_moe`): grouped-query attention with q/k/v biases (attention_bias), per-head
// q/k RMSNorm when use_qk_norm, RoPE on the first partial_rotary_factor (0.5 by default, as transformers sets it) of
// each head; DeepSeek-V3's routing (sigmoid scores, e_score_correction_bias for the choice, n_group / topk_group,
// norm_topk_prob, routed_scaling_factor); the first first_k_dense_replace layers dense, n_shared_experts as one
// unscaled MLP; the multi-token-prediction layer after num_hidden_layers is not loaded.
import Foundation

public struct Glm4MoeConfig: Codable, Sendable {
    var nRoutedExperts: Int
    var numExpertsPerTok: Int
    var moeIntermediateSize: Int
    var nSharedExperts: Int?
    var firstKDenseReplace: Int?
    var nGroup: Int?
    var topkGroup: Int?
    var normTopkProb: Bool?
    var routedScalingFactor: Double?
    var attentionBias: Bool?
    var useQkNorm: Bool?
    var partialRotaryFactor: Double?

    enum CodingKeys: String, CodingKey {
        case nRoutedExperts = "n_routed_experts", numExpertsPerTok = "num_experts_per_tok"
        case moeIntermediateSize = "moe_intermediate_size", nSharedExperts = "n_shared_experts"
        case firstKDenseReplace = "first_k_dense_replace", nGroup = "n_group", topkGroup = "topk_group"
        case normTopkProb = "norm_topk_prob", routedScalingFactor = "routed_scaling_factor"
        case attentionBias = "attention_bias", useQkNorm = "use_qk_norm", partialRotaryFactor = "partial_rotary_factor"
    }
}

enum Glm4Moe: ModelFamily {
    static let modelTypes = ["glm4_moe"]

    static func spec(from data: Data) throws -> ModelSpec {
        let base = try ConfigRules.decode(TransformerConfig.self, data, family: "glm4_moe")
        let c = try ConfigRules.decode(Glm4MoeConfig.self, data, family: "glm4_moe")
        let rule = RouterRule.noAuxTC(groups: c.nGroup ?? 1, topGroups: c.topkGroup, scale: Float(c.routedScalingFactor ?? 1))
        try rule.check(experts: c.nRoutedExperts, topK: c.numExpertsPerTok)
        let moe = MoESpec(experts: c.nRoutedExperts, topK: c.numExpertsPerTok, intermediate: c.moeIntermediateSize,
                          normTopK: c.normTopkProb ?? true, layouts: [.perExpert(prefix: "mlp", names: qwenMLPNames), .fused(prefix: "mlp")],
                          shared: .unscaled(count: c.nSharedExperts, width: c.moeIntermediateSize), rule: rule)
        let dense = FeedForwardSpec.dense(intermediate: base.intermediateSize ?? 0, names: qwenMLPNames.prefixed("mlp"), bias: false)
        let firstSparse = c.firstKDenseReplace ?? 1
        var spec = try base.spec(modelType: "glm4_moe", defaultEps: 1e-5, qwenWindowRules: false, qkvBias: c.attentionBias ?? false,
                                 oBias: false, qkNorm: c.useQkNorm == true ? .perHead : .none) { $0 >= firstSparse ? .moe(moe) : dense }
        // transformers 5 keeps partial_rotary_factor in rope_parameters; 4.x configs at the top level.
        let factor = (base.ropeParameters ?? base.ropeScaling)?.partialRotaryFactor ?? c.partialRotaryFactor ?? 0.5
        let rotary = Int(Double(spec.headDim) * factor)
        try ConfigRules.check(factor > 0 && factor <= 1 && rotary >= 2 && rotary % 2 == 0,
                              "partial_rotary_factor \(factor) must leave an even number of rotary dimensions of head_dim \(spec.headDim)")
        spec.rotaryDim = rotary == spec.headDim ? nil : rotary
        return spec
    }
}
