import Foundation
import MoECore
import MoEModel

/// What followed the most recent earlier occurrence of the context's last n tokens, for the longest n from `maxN`
/// down to `minN` that occurs earlier: up to k tokens (fewer when the occurrence is near the end). Empty when no such
/// n-gram recurs. Prompt lookup decoding: text that repeats its prompt or itself (code edits, summaries with quotes,
/// extraction) is drafted for free.
public func ngramContinuation(_ tokens: [Int32], maxN: Int, minN: Int, k: Int) -> [Int32] {
    let L = tokens.count
    guard k > 0, minN >= 1 else { return [] }
    for n in stride(from: min(maxN, L - 1), through: minN, by: -1) {
        let tail = tokens[(L - n)...]
        // Latest start first: the nearest repeat is the likeliest to go on alike.
        var start = L - n - 1
        while start >= 0 {
            if tokens[start..<(start + n)].elementsEqual(tail) {
                let from = start + n
                return Array(tokens[from..<min(from + k, L)])
            }
            start -= 1
        }
    }
    return []
}

/// Speculative decoding without a draft model (vLLM's "ngram" method): each sequence's proposal is
/// `ngramContinuation` of its own prompt and output. The proposal is deterministic, so as a draft distribution it is
/// one-hot at each proposed token: speculative sampling then accepts a draft x with probability p(x) and on rejection
/// draws from p without x, which keeps sampling exact; greedy verification keeps greedy output token for token.
public final class NGramDraft: DraftSource {
    public let maxN: Int, minN: Int
    let vocabSize: Int
    struct Seq {
        var tokens: [Int32]
        var greedy: Bool
    }
    var seqs: [Int: Seq] = [:]
    public private(set) var lastWaitSeconds = 0.0
    public private(set) var costPerToken = 0.0

    public init(vocabSize: Int, maxN: Int = 4, minN: Int = 2) {
        precondition(minN >= 1 && maxN >= minN)
        self.vocabSize = vocabSize
        self.maxN = maxN
        self.minN = minN
    }

    public func start(_ seq: Int, prompt: [Int32], params: SamplingParams) {
        seqs[seq] = Seq(tokens: prompt, greedy: params.isGreedy)
    }

    public func outcome(_ seq: Int, accepted: [Int32], next: Int32) {
        seqs[seq]?.tokens += accepted + [next]
    }

    public func propose(_ requests: [(seq: Int, position: Int, hash: UInt64, k: Int)]) -> [Int: Proposal] {
        let t0 = monotonicSeconds()
        var out: [Int: Proposal] = [:], drafted = 0
        for r in requests where r.k > 0 {
            guard let s = seqs[r.seq], s.tokens.count == r.position else { continue }
            let tokens = ngramContinuation(s.tokens, maxN: maxN, minN: minN, k: r.k)
            guard !tokens.isEmpty else { continue }
            drafted += tokens.count
            let q: [[Float]]? = s.greedy ? nil : tokens.map { t in
                var d = [Float](repeating: 0, count: vocabSize)
                d[Int(t)] = 1
                return d
            }
            out[r.seq] = Proposal(position: r.position, hash: r.hash, tokens: tokens, q: q)
        }
        lastWaitSeconds = monotonicSeconds() - t0
        if drafted > 0 { costPerToken = lastWaitSeconds / Double(drafted) }
        return out
    }

    public func finish(_ seq: Int) { seqs[seq] = nil }
}
