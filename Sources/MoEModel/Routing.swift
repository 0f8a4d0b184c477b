import Foundation

/// The expert choice for T tokens: K experts per token, by descending router probability, and the weights their
/// outputs are scaled by. experts/weights: [T, K] row-major.
public struct Routing: Sendable, Equatable {
    public let tokens: Int
    public let topK: Int
    public var experts: [Int32]
    public var weights: [Float]

    public init(tokens: Int, topK: Int, experts: [Int32], weights: [Float]) {
        self.tokens = tokens
        self.topK = topK
        self.experts = experts
        self.weights = weights
    }

    /// Tokens routed to each of `numExperts` experts (choices dropped by a capacity limit, −1, not counted).
    public func counts(numExperts: Int) -> [Int] {
        var c = Array(repeating: 0, count: numExperts)
        for e in experts where e >= 0 { c[Int(e)] += 1 }
        return c
    }
}

/// Softmax-then-top-k routing shared by Mixtral, Qwen2-MoE and Qwen3-MoE.
/// logits: [T, E] router logits. Softmax over all E experts in f32, keep the K largest (ties: lower expert index
/// first, as torch.topk), then renormalise the K weights to sum 1 when `normalize` (Mixtral always; Qwen when
/// norm_topk_prob) or use the raw probabilities (Qwen2-MoE with norm_topk_prob false).
public func routeSoftmaxTopK(logits: UnsafePointer<Float>, tokens T: Int, experts E: Int, topK K: Int,
                             normalize: Bool) -> Routing {
    var experts = [Int32](repeating: 0, count: T * K)
    var weights = [Float](repeating: 0, count: T * K)
    var probs = [Float](repeating: 0, count: E)
    var taken = [Bool](repeating: false, count: E)
    for t in 0..<T {
        let row = logits + t * E
        var m = -Float.infinity
        for e in 0..<E { m = max(m, row[e]) }
        var sum: Float = 0
        for e in 0..<E { probs[e] = expf(row[e] - m); sum += probs[e] }
        for e in 0..<E { probs[e] /= sum; taken[e] = false }
        var chosenSum: Float = 0
        for k in 0..<K {
            var best = -1
            for e in 0..<E where !taken[e] && (best < 0 || probs[e] > probs[best]) { best = e }
            taken[best] = true
            experts[t * K + k] = Int32(best)
            weights[t * K + k] = probs[best]
            chosenSum += probs[best]
        }
        if normalize {
            for k in 0..<K { weights[t * K + k] /= chosenSum }
        }
    }
    return Routing(tokens: T, topK: K, experts: experts, weights: weights)
}

/// A capacity limit: with factor c each expert takes at most ⌈c · T · K / E⌉ of a step's T tokens (K choices each).
/// Choices are admitted by rank first (every token's top choice before any second choice), then in token order; a
/// choice over capacity is dropped (expert −1, weight 0) and the token's remaining weights are scaled back to their
/// original sum. A token that loses every choice passes through the layer on its residual alone.
/// Returns the number of dropped choices. Without a limit routing is dropless and exact.
public func applyCapacity(_ r: inout Routing, experts E: Int, factor: Double) -> Int {
    let T = r.tokens, K = r.topK
    let cap = Int((factor * Double(T * K) / Double(E)).rounded(.up))
    var load = [Int](repeating: 0, count: E)
    var dropped = 0
    for k in 0..<K {
        for t in 0..<T {
            let i = t * K + k, e = Int(r.experts[i])
            guard e >= 0 else { continue }
            if load[e] < cap { load[e] += 1 } else { r.experts[i] = -1; dropped += 1 }
        }
    }
    guard dropped > 0 else { return 0 }
    for t in 0..<T {
        let row = (t * K)..<(t * K + K)
        let before = row.reduce(Float(0)) { $0 + r.weights[$1] }
        let kept = row.reduce(Float(0)) { $0 + (r.experts[$1] >= 0 ? r.weights[$1] : 0) }
        for i in row { r.weights[i] = r.experts[i] >= 0 && kept > 0 ? r.weights[i] * before / kept : 0 }
    }
    return dropped
}
