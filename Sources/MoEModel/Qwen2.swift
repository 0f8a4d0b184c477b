// Qwen2 / Qwen2.5 dense (Qwen/Qwen2.5-0.5B…): biases on q/k/v (not o); sliding window only with use_sliding_window.
import Foundation

enum Qwen2: ModelFamily {
    static let modelTypes = ["qwen2"]

    static func spec(from data: Data) throws -> ModelSpec {
        let base = try ConfigRules.decode(TransformerConfig.self, data, family: "qwen2")
        let ffn = try denseFFN(base)
        return try base.spec(modelType: "qwen2", qwenWindowRules: true, qkvBias: true, oBias: false, qkNorm: .none) { _ in ffn }
    }
}
