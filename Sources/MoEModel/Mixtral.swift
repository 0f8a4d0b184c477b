// Mixtral (mistralai/Mixtral-8x7B and the `mixtral` model_type of transformers): every layer is a sparse MoE block;
// the router takes softmax over all experts, keeps the top-k and renormalises them to sum to 1.
import Foundation

public struct MixtralConfig: Codable, Sendable {
    var numLocalExperts: Int
    var numExpertsPerTok: Int

    enum CodingKeys: String, CodingKey { case numLocalExperts = "num_local_experts", numExpertsPerTok = "num_experts_per_tok" }
}

enum Mixtral: ModelFamily {
    static let modelTypes = ["mixtral"]

    static func spec(from data: Data) throws -> ModelSpec {
        let (base, c, inter) = try ConfigRules.moeConfig(MixtralConfig.self, data, family: "mixtral")
        // Classic checkpoints name the block "block_sparse_moe" with w1 (gate), w3 (up), w2 (down) per expert;
        // transformers 5 saves "mlp" with fused expert tensors.
        let names = MLPNames(gate: "w1", up: "w3", down: "w2")
        let moe = MoESpec(experts: c.numLocalExperts, topK: c.numExpertsPerTok, intermediate: inter,
                          normTopK: true,
                          layouts: [.perExpert(prefix: "block_sparse_moe", names: names), .fused(prefix: "mlp"),
                                    .perExpert(prefix: "mlp", names: names), .fused(prefix: "block_sparse_moe")],
                          shared: nil)
        return try base.spec(modelType: "mixtral", defaultTheta: 1e6, defaultEps: 1e-5, qwenWindowRules: false,
                             qkvBias: false, oBias: false, qkNorm: .none) { _ in .moe(moe) }
    }
}
