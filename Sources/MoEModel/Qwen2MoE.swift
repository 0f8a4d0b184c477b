// Qwen2-MoE (Qwen/Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): q/k/v biases; softmax router whose top-k weights are
// renormalised only when norm_topk_prob; a shared expert on every token, scaled by sigmoid(shared_expert_gate · x).
import Foundation

public struct Qwen2MoEConfig: Codable, Sendable {
    var qkvBias: Bool?
    var numExperts: Int?
    var numLocalExperts: Int?
    var numExpertsPerTok: Int
    var moeIntermediateSize: Int
    var sharedExpertIntermediateSize: Int?
    var normTopkProb: Bool?
    var decoderSparseStep: Int?
    var mlpOnlyLayers: [Int]?

    enum CodingKeys: String, CodingKey {
        case qkvBias = "qkv_bias", numExperts = "num_experts", numLocalExperts = "num_local_experts"
        case numExpertsPerTok = "num_experts_per_tok", moeIntermediateSize = "moe_intermediate_size"
        case sharedExpertIntermediateSize = "shared_expert_intermediate_size"
        case normTopkProb = "norm_topk_prob", decoderSparseStep = "decoder_sparse_step", mlpOnlyLayers = "mlp_only_layers"
    }
}

enum Qwen2MoE: ModelFamily {
    static let modelTypes = ["qwen2_moe"]

    static func spec(from data: Data) throws -> ModelSpec {
        let base = try ConfigRules.decode(TransformerConfig.self, data, family: "qwen2_moe")
        let c = try ConfigRules.decode(Qwen2MoEConfig.self, data, family: "qwen2_moe")
        let experts = c.numExperts ?? c.numLocalExperts ?? 0
        let shared = (c.sharedExpertIntermediateSize ?? 0) > 0
            ? SharedExpertSpec(intermediate: c.sharedExpertIntermediateSize!,
                               names: qwenMLPNames.prefixed("mlp.shared_expert"), gateName: "mlp.shared_expert_gate")
            : nil
        let moe = MoESpec(experts: experts, topK: c.numExpertsPerTok, intermediate: c.moeIntermediateSize,
                          normTopK: c.normTopkProb ?? false,
                          layouts: [.perExpert(prefix: "mlp", names: qwenMLPNames), .fused(prefix: "mlp")], shared: shared)
        let sparse = qwenMoELayers(count: base.numHiddenLayers, experts: experts, sparseStep: c.decoderSparseStep ?? 1,
                                   mlpOnly: c.mlpOnlyLayers ?? [])
        let dense = FeedForwardSpec.dense(intermediate: base.intermediateSize ?? 0, names: qwenMLPNames.prefixed("mlp"), bias: false)
        return try base.spec(modelType: "qwen2_moe", qwenWindowRules: true, qkvBias: c.qkvBias ?? true, oBias: false,
                             qkNorm: .none) { sparse[$0] ? .moe(moe) : dense }
    }
}
