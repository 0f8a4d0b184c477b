// Qwen3-MoE (Qwen/Qwen3-30B-A3B, Qwen3-235B-A22B): per-head RMSNorm on queries and keys before RoPE, no biases,
// softmax router with norm_topk_prob renormalisation, no shared expert; decoder_sparse_step / mlp_only_layers
// choose which layers are sparse. Note head_dim is explicit (128 with hidden 2048 / 32 heads in 30B-A3B).
import Foundation

public struct Qwen3MoEConfig: Codable, Sendable {
    var attentionBias: Bool?
    var numExperts: Int?
    var numLocalExperts: Int?
    var numExpertsPerTok: Int
    var moeIntermediateSize: Int
    var normTopkProb: Bool?
    var decoderSparseStep: Int?
    var mlpOnlyLayers: [Int]?

    enum CodingKeys: String, CodingKey {
        case attentionBias = "attention_bias", numExperts = "num_experts", numLocalExperts = "num_local_experts"
        case numExpertsPerTok = "num_experts_per_tok", moeIntermediateSize = "moe_intermediate_size"
        case normTopkProb = "norm_topk_prob", decoderSparseStep = "decoder_sparse_step", mlpOnlyLayers = "mlp_only_layers"
    }
}

enum Qwen3MoE: ModelFamily {
    static let modelTypes = ["qwen3_moe"]

    static func spec(from data: Data) throws -> ModelSpec {
        let base = try ConfigRules.decode(TransformerConfig.self, data, family: "qwen3_moe")
        let c = try ConfigRules.decode(Qwen3MoEConfig.self, data, family: "qwen3_moe")
        let experts = c.numExperts ?? c.numLocalExperts ?? 0
        let moe = MoESpec(experts: experts, topK: c.numExpertsPerTok, intermediate: c.moeIntermediateSize,
                          normTopK: c.normTopkProb ?? false,
                          layouts: [.perExpert(prefix: "mlp", names: qwenMLPNames), .fused(prefix: "mlp")], shared: nil)
        let sparse = qwenMoELayers(count: base.numHiddenLayers, experts: experts, sparseStep: c.decoderSparseStep ?? 1,
                                   mlpOnly: c.mlpOnlyLayers ?? [])
        let dense = FeedForwardSpec.dense(intermediate: base.intermediateSize ?? 0, names: qwenMLPNames.prefixed("mlp"), bias: false)
        let bias = c.attentionBias ?? false
        return try base.spec(modelType: "qwen3_moe", qwenWindowRules: true, qkvBias: bias, oBias: bias,
                             qkNorm: .perHead) { sparse[$0] ? .moe(moe) : dense }
    }
}
