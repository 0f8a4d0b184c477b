import Foundation

/// The dense draft families all use "mlp.{gate,up,down}_proj" with intermediate_size.
func denseFFN(_ base: TransformerConfig, bias: Bool = false) throws -> FeedForwardSpec {
    guard let i = base.intermediateSize, i > 0 else {
        throw ModelError.badConfig(file: "config.json", reason: "dense model needs a positive intermediate_size")
    }
    return .dense(intermediate: i, names: qwenMLPNames.prefixed("mlp"), bias: bias)
}
