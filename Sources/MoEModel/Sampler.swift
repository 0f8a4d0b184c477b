import Foundation

/// How to pick the next token. temperature 0 means greedy (argmax, ties to the lowest id); topK 0, topP 1 and minP 0
/// mean off.
/// The penalties (vLLM's; see `LogitsAdjustment`) change the logits before any of them, greedy included.
public struct SamplingParams: Sendable, Codable, Equatable {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    /// Tokens less likely than minP × the most likely one's probability (after temperature) are not drawn.
    public var minP: Float
    public var seed: UInt64?
    public var repetitionPenalty: Float
    public var frequencyPenalty: Float
    public var presencePenalty: Float
    /// Added to the logits of these tokens (OpenAI's logit_bias).
    public var logitBias: [Int32: Float]
    /// vLLM's allowed_token_ids: only these tokens can be generated (nil: every token).
    public var allowedTokens: [Int32]?
    /// vLLM's bad_words as token sequences: a sequence's last token cannot follow its other tokens in the output
    /// (a one-token sequence is never generated). nil or empty: none.
    public var badWords: [[Int32]]?

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64? = nil,
                repetitionPenalty: Float = 1, frequencyPenalty: Float = 0, presencePenalty: Float = 0,
                logitBias: [Int32: Float] = [:], minP: Float = 0, allowedTokens: [Int32]? = nil, badWords: [[Int32]]? = nil) {
        self.allowedTokens = allowedTokens
        self.badWords = badWords
        self.temperature = temperature
        self.minP = minP
        self.topK = topK
        self.topP = topP
        self.seed = seed
        self.repetitionPenalty = repetitionPenalty
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
        self.logitBias = logitBias
    }

    public var isGreedy: Bool { temperature <= 0 }
}

/// xoshiro256** seeded through SplitMix64: small, fast and identical on every platform, so a seed replays a run.
public struct SeededRNG: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = seed
        func split() -> UInt64 {
            z &+= 0x9E3779B97F4A7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58476D1CE4E5B9
            x = (x ^ (x >> 27)) &* 0x94D049BB133111EB
            return x ^ (x >> 31)
        }
        s = (split(), split(), split(), split())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// The index of the largest value; ties go to the lowest index.
public func argmax(_ v: UnsafeBufferPointer<Float>) -> Int {
    var best = 0
    for i in 1..<v.count where v[i] > v[best] { best = i }
    return best
}

/// The full-vocabulary distribution sampling draws from: softmax(logits / T), restricted to the tokens at least
/// min-p times as likely as the most likely one and to the top-k logits (ties at the k-th value kept, as
/// transformers does), then to the smallest set of most likely tokens whose mass reaches top-p, renormalised.
/// vLLM's order: temperature, min-p, top-k, top-p (min-p and top-k each keep a prefix of the tokens by logit, so
/// their order does not matter).
/// Speculative decoding applies this same function to target and draft logits.
public func samplingDistribution(_ logits: UnsafeBufferPointer<Float>, _ p: SamplingParams) -> [Float] {
    let V = logits.count
    var probs = [Float](repeating: 0, count: V)
    if p.isGreedy {
        probs[argmax(logits)] = 1
        return probs
    }
    let invT = 1 / p.temperature
    var keep = [Bool](repeating: true, count: V)
    if p.topK > 0 && p.topK < V {
        let kth = logits.sorted(by: >)[p.topK - 1]
        for i in 0..<V where logits[i] < kth { keep[i] = false }
    }
    var m = -Float.infinity
    for i in 0..<V where keep[i] { m = max(m, logits[i] * invT) }
    if p.minP > 0 {
        // p_i / p_max = exp(l_i / T − m): below min-p, out.
        let cut = Foundation.log(Double(p.minP))
        for i in 0..<V where keep[i] && Double(logits[i] * invT - m) < cut { keep[i] = false }
    }
    var sum = 0.0
    for i in 0..<V where keep[i] {
        let e = Foundation.exp(Double(logits[i] * invT - m))
        probs[i] = Float(e)
        sum += e
    }
    for i in 0..<V { probs[i] = keep[i] ? Float(Double(probs[i]) / sum) : 0 }
    if p.topP < 1 {
        let order = (0..<V).filter { keep[$0] }.sorted { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
        var cum: Float = 0
        var cut = order.count
        for (j, i) in order.enumerated() {
            cum += probs[i]
            if cum >= p.topP { cut = j + 1; break }
        }
        var kept = 0.0
        for (j, i) in order.enumerated() {
            if j >= cut { probs[i] = 0 } else { kept += Double(probs[i]) }
        }
        for i in 0..<V where probs[i] > 0 { probs[i] = Float(Double(probs[i]) / kept) }
    }
    return probs
}

/// Draws an index from a distribution (which need not sum exactly to 1).
public func sample(_ probs: [Float], _ rng: inout SeededRNG) -> Int {
    var total = 0.0
    for p in probs { total += Double(p) }
    let u = rng.nextUnit() * total
    var acc = 0.0
    var last = 0
    for (i, p) in probs.enumerated() where p > 0 {
        acc += Double(p)
        last = i
        if u < acc { return i }
    }
    return last
}

/// A request's sampler: its parameters and its seed. Each draw uses a random stream derived from (seed, position,
/// purpose) alone, so a token's draw does not depend on how many draws came before it, on batching, or on whether
/// speculation was on: the same seed replays the same run.
public struct Sampler: Sendable {
    public let params: SamplingParams
    public let seed: UInt64

    public init(_ params: SamplingParams) {
        self.params = params
        seed = params.seed ?? UInt64.random(in: 0...UInt64.max)
    }

    /// Streams: 0 draws tokens, 1 the acceptance tests of speculative verification, 2 the draft's own draws.
    public func rng(position: Int, stream: UInt64 = 0) -> SeededRNG {
        SeededRNG(seed: seed ^ (UInt64(position) &* 0x9E3779B97F4A7C15) ^ (stream &* 0xD1B54A32D192ED03))
    }

    /// The token at `position` given the logits that predict it.
    public func next(_ logits: UnsafeBufferPointer<Float>, position: Int) -> Int {
        if params.isGreedy { return argmax(logits) }
        var r = rng(position: position)
        return sample(samplingDistribution(logits, params), &r)
    }
}
