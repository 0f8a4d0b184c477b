// Llama 2 / 3.x (meta-llama): dense SwiGLU decoder; attention_bias puts biases on q/k/v/o, mlp_bias on the MLP;
// Llama 3.1+ scales RoPE with rope_type "llama3".
import Foundation

public struct LlamaConfig: Codable, Sendable {
    var attentionBias: Bool?
    var mlpBias: Bool?
    enum CodingKeys: String, CodingKey { case attentionBias = "attention_bias", mlpBias = "mlp_bias" }
}

enum Llama: ModelFamily {
    static let modelTypes = ["llama"]

    static func spec(from data: Data) throws -> ModelSpec {
        let base = try ConfigRules.decode(TransformerConfig.self, data, family: "llama")
        let c = try ConfigRules.decode(LlamaConfig.self, data, family: "llama")
        let ffn = try denseFFN(base, bias: c.mlpBias ?? false)
        let bias = c.attentionBias ?? false
        return try base.spec(modelType: "llama", defaultTheta: 10000, defaultEps: 1e-6, qwenWindowRules: false,
                             qkvBias: bias, oBias: bias, qkNorm: .none) { _ in ffn }
    }
}
