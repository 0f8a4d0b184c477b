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
    route(logits: logits, tokens: T, experts: E, topK: K, rule: RouterRule(), normalize: normalize, bias: nil)
}

/// Routing by `rule` (see RouterRule): softmax or sigmoid scores in f32; when grouped, the `topGroups` groups of
/// E / groups experts ranked highest by their best choice score (or their two best summed) hold the candidates; the
/// K candidates of highest choice score (score + bias[e] when `bias`, else the score; ties: lower index first, as
/// torch.topk) are taken, weighted by their scores, renormalised when `normalize`, times `rule.scale`.
/// bias: [E] (DeepSeek-V3's e_score_correction_bias) or nil.
public func route(logits: UnsafePointer<Float>, tokens T: Int, experts E: Int, topK K: Int, rule: RouterRule,
                  normalize: Bool, bias: UnsafePointer<Float>?) -> Routing {
    precondition(rule.fits(experts: E, topK: K), "\(K) of \(E) experts in \(rule.topGroups) of \(rule.groups) groups")
    var experts = [Int32](repeating: 0, count: T * K)
    var weights = [Float](repeating: 0, count: T * K)
    var scores = [Float](repeating: 0, count: E)
    var choice = [Float](repeating: 0, count: E)
    let G = rule.groups, size = E / G
    var groupRank = [Float](repeating: 0, count: G)
    var kept = [Bool](repeating: false, count: G), taken = [Bool](repeating: false, count: E)
    /// Index of the largest of `values` where `open`, lower index on ties; −1 when none is.
    func best(_ values: [Float], _ range: Range<Int>, _ open: (Int) -> Bool) -> Int {
        var b = -1
        for e in range where open(e) && (b < 0 || values[e] > values[b]) { b = e }
        return b
    }
    for t in 0..<T {
        let row = logits + t * E
        switch rule.scoring {
        case .softmax:
            var m = -Float.infinity
            for e in 0..<E { m = max(m, row[e]) }
            var sum: Float = 0
            for e in 0..<E { scores[e] = expf(row[e] - m); sum += scores[e] }
            for e in 0..<E { scores[e] /= sum }
        case .sigmoid:
            for e in 0..<E { scores[e] = 1 / (1 + expf(-row[e])) }
        }
        for e in 0..<E { choice[e] = scores[e] + (bias?[e] ?? 0) }
        if G > 1 {
            for g in 0..<G {
                let members = (g * size)..<((g + 1) * size)
                let first = best(choice, members) { _ in true }
                let second = rule.groupRank == .bestTwo && size > 1 ? best(choice, members) { $0 != first } : -1
                groupRank[g] = choice[first] + (second >= 0 ? choice[second] : 0)
            }
            for g in 0..<G { kept[g] = false }
            for _ in 0..<rule.topGroups { kept[best(groupRank, 0..<G) { !kept[$0] }] = true }
            for e in 0..<E where !kept[e / size] { choice[e] = -.infinity }
        }
        var chosenSum: Float = 0
        for e in 0..<E { taken[e] = false }
        for k in 0..<K {
            let e = best(choice, 0..<E) { !taken[$0] }
            taken[e] = true
            experts[t * K + k] = Int32(e)
            weights[t * K + k] = scores[e]
            chosenSum += scores[e]
        }
        for k in 0..<K {
            if normalize { weights[t * K + k] /= chosenSum }
            weights[t * K + k] *= rule.scale
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
