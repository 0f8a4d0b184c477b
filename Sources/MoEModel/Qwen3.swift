// Qwen3 dense (Qwen/Qwen3-0.6B…): per-head q/k RMSNorm before RoPE; attention_bias optional; explicit head_dim.
import Foundation

public struct Qwen3Config: Codable, Sendable {
    var attentionBias: Bool?
    enum CodingKeys: String, CodingKey { case attentionBias = "attention_bias" }
}

enum Qwen3: ModelFamily {
    static let modelTypes = ["qwen3"]

    static func spec(from data: Data) throws -> ModelSpec {
        let base = try ConfigRules.decode(TransformerConfig.self, data, family: "qwen3")
        let c = try ConfigRules.decode(Qwen3Config.self, data, family: "qwen3")
        let ffn = try denseFFN(base)
        let bias = c.attentionBias ?? false
        return try base.spec(modelType: "qwen3", qwenWindowRules: true, qkvBias: bias, oBias: bias, qkNorm: .perHead) { _ in ffn }
    }
}
