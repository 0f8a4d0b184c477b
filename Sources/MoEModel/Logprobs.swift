import Foundation
import MoECore

/// A token and its log-probability (natural log).
public struct TokenLogprob: Sendable, Equatable {
    public var token: Int32
    public var logprob: Float
    public init(token: Int32, logprob: Float) {
        self.token = token
        self.logprob = logprob
    }
}

/// One position's log-probabilities: the token that stands there, its rank (1 for the most likely: one more than the
/// tokens more likely than it) and the `top` most likely, most likely first (ties to the lower id).
public struct PositionLogprobs: Sendable, Equatable {
    public var chosen: TokenLogprob
    public var rank: Int
    public var top: [TokenLogprob]
    public init(chosen: TokenLogprob, rank: Int, top: [TokenLogprob]) {
        self.chosen = chosen
        self.rank = rank
        self.top = top
    }
}

/// Log-probabilities from one position's raw logits: log-softmax of the model's output, before penalties,
/// temperature, top-k and top-p (what vLLM reports by default, `raw_logprobs`), so they describe the model whatever
/// the request's sampling. `top` is clamped to the vocabulary.
public func positionLogprobs(_ logits: UnsafeBufferPointer<Float>, chosen: Int32, top n: Int) -> PositionLogprobs {
    let V = logits.count
    // The most likely token, and the rank of the chosen one (one more than the tokens more likely), in one pass.
    let x = logits[Int(chosen)]
    var m = -Float.infinity, top1 = 0, above = 0
    for i in 0..<V {
        let v = logits[i]
        if v > m { m = v; top1 = i }
        if v > x { above += 1 }
    }
    // log Σ exp(x − m) = −log p(top1), with p from the vectorised softmax (222 → 75 µs a token over 32k logits): p of
    // the most likely token is at least 1/V, so it carries the sum to float precision, and every logprob is then
    // its own logit minus the log-sum-exp, exact however unlikely the token.
    var probs = Array(logits)
    probs.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, V) }
    let lse = Double(m) - Foundation.log(Double(probs[top1]))
    func lp(_ i: Int) -> Float { Float(Double(logits[i]) - lse) }
    // The n largest by insertion into a short sorted list: n ≤ 20 against a vocabulary of tens of thousands.
    let k = max(0, min(n, V))
    var best: [Int] = []
    best.reserveCapacity(k + 1)
    if k > 0 {
        for i in 0..<V {
            if best.count == k && !(logits[i] > logits[best[k - 1]]) { continue }
            var j = best.count
            while j > 0 && logits[i] > logits[best[j - 1]] { j -= 1 }
            best.insert(i, at: j)
            if best.count > k { best.removeLast() }
        }
    }
    return PositionLogprobs(chosen: TokenLogprob(token: chosen, logprob: lp(Int(chosen))), rank: above + 1,
                            top: best.map { TokenLogprob(token: Int32($0), logprob: lp($0)) })
}
