// Mistral (mistralai/Mistral-7B): dense SwiGLU decoder; sliding_window (when set) applies to every layer.
import Foundation

enum Mistral: ModelFamily {
    static let modelTypes = ["mistral"]

    static func spec(from data: Data) throws -> ModelSpec {
        let base = try ConfigRules.decode(TransformerConfig.self, data, family: "mistral")
        let ffn = try denseFFN(base)
        return try base.spec(modelType: "mistral", defaultTheta: 10000, defaultEps: 1e-6, qwenWindowRules: false,
                             qkvBias: false, oBias: false, qkNorm: .none) { _ in ffn }
    }
}
