/// What changes a position's raw logits before temperature, top-k and top-p (and before greedy's argmax), as vLLM
/// applies it: tokens outside `allowed_token_ids` and the last token of each bad word whose other tokens end the
/// output masked to −∞, the logit bias (added), then `min_tokens` (its stop tokens masked to −∞ while fewer than
/// `minTokens` tokens have been generated), then the repetition penalty (on every token of the prompt or the output:
/// a positive logit divided by it, any other multiplied), then the frequency penalty (minus penalty × the token's count in the output), then
/// the presence penalty (minus penalty once for a token the output holds). The output is what has been generated so
/// far at that position: in speculative verification, row i of a proposal sees drafts 0..<i as output.
public struct LogitsAdjustment: Sendable, Equatable {
    /// > 0; 1 is off.
    public var repetitionPenalty: Float
    /// In [-2, 2]; 0 is off.
    public var frequencyPenalty: Float
    public var presencePenalty: Float
    /// Tokens masked while fewer than `minTokens` have been generated (EOS unless ignored, and the stop token ids).
    public var minTokens: Int
    public var suppressed: Set<Int32>
    /// Added to these tokens' logits.
    public var bias: [Int32: Float]
    /// Only these tokens keep their logits (nil: all); ascending, without repeats.
    public let allowed: [Int32]?
    /// Token sequences whose last token is masked where the output ends with the others.
    public var badWords: [[Int32]]

    public init(repetitionPenalty: Float = 1, frequencyPenalty: Float = 0, presencePenalty: Float = 0,
                minTokens: Int = 0, suppressed: Set<Int32> = [], bias: [Int32: Float] = [:], allowed: [Int32]? = nil,
                badWords: [[Int32]] = []) {
        self.allowed = allowed.map { Set($0).sorted() }
        self.badWords = badWords
        self.repetitionPenalty = repetitionPenalty
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
        self.minTokens = minTokens
        self.suppressed = suppressed
        self.bias = bias
    }

    /// A request's adjustments: its sampling parameters' penalties and bias, with `minTokens` held back for
    /// `suppressed`; nil when they change nothing.
    public static func of(_ p: SamplingParams, minTokens: Int = 0, suppressed: Set<Int32> = []) -> LogitsAdjustment? {
        let a = LogitsAdjustment(repetitionPenalty: p.repetitionPenalty, frequencyPenalty: p.frequencyPenalty,
                                 presencePenalty: p.presencePenalty, minTokens: minTokens, suppressed: suppressed, bias: p.logitBias,
                                 allowed: p.allowedTokens, badWords: (p.badWords ?? []).filter { !$0.isEmpty })
        return a.isIdentity ? nil : a
    }

    /// Nothing to do: sampling reads the model's row as it is.
    public var isIdentity: Bool {
        repetitionPenalty == 1 && frequencyPenalty == 0 && presencePenalty == 0 && (minTokens == 0 || suppressed.isEmpty)
            && bias.allSatisfy { $0.value == 0 } && allowed == nil && badWords.isEmpty
    }

    /// Output tokens a history must keep, in order, for the bad words' prefixes.
    public var recentNeeded: Int { max(0, (badWords.map(\.count).max() ?? 0) - 1) }

    /// Applies the adjustments to one position's logits (the vocabulary, in place), given the sequence's history.
    public func apply(_ logits: UnsafeMutableBufferPointer<Float>, _ h: TokenHistory) {
        if let allowed {
            // In place: every token between one allowed token and the next is masked.
            var from = 0
            for t in allowed.map(Int.init) + [logits.count] {
                let end = min(t, logits.count)
                if from < end { for i in from..<end { logits[i] = -.infinity } }
                from = max(from, t + 1)
            }
        }
        for word in badWords where Int(word[word.count - 1]) < logits.count && h.outputEnds(with: word.dropLast()) {
            logits[Int(word[word.count - 1])] = -.infinity
        }
        for (t, b) in bias where Int(t) < logits.count { logits[Int(t)] += b }
        if h.generated < minTokens {
            for t in suppressed where Int(t) < logits.count { logits[Int(t)] = -.infinity }
        }
        if repetitionPenalty != 1 {
            func penalise(_ t: Int32) {
                let i = Int(t)
                guard i < logits.count else { return }
                logits[i] = logits[i] > 0 ? logits[i] / repetitionPenalty : logits[i] * repetitionPenalty
            }
            for t in h.promptTokens { penalise(t) }
            for t in h.outputCounts.keys where !h.promptTokens.contains(t) { penalise(t) }
        }
        if frequencyPenalty != 0 || presencePenalty != 0 {
            for (t, n) in h.outputCounts where Int(t) < logits.count {
                logits[Int(t)] -= frequencyPenalty * Float(n) + presencePenalty
            }
        }
    }

    /// The adjusted copy of a row.
    public func applied(_ row: UnsafeBufferPointer<Float>, _ h: TokenHistory) -> [Float] {
        var out = Array(row)
        out.withUnsafeMutableBufferPointer { apply($0, h) }
        return out
    }
}

/// A sequence's tokens as the adjustments read them: the prompt's distinct tokens (only kept when the repetition
/// penalty needs them) and each output token's count.
public struct TokenHistory: Sendable, Equatable {
    public private(set) var promptTokens: Set<Int32>
    public private(set) var outputCounts: [Int32: Int] = [:]
    public private(set) var generated = 0
    /// The last `keepRecent` output tokens, oldest first (bad words read them).
    public private(set) var recent: [Int32] = []
    let keepRecent: Int

    public init(prompt: some Sequence<Int32>, keepPrompt: Bool = true, keepRecent: Int = 0) {
        promptTokens = keepPrompt ? Set(prompt) : []
        self.keepRecent = keepRecent
    }

    public mutating func append(_ t: Int32) {
        outputCounts[t, default: 0] += 1
        generated += 1
        if keepRecent > 0 {
            if recent.count == keepRecent { recent.removeFirst() }
            recent.append(t)
        }
    }

    /// Whether the output ends with `tokens` (always, for none; never, for more than are kept).
    public func outputEnds(with tokens: ArraySlice<Int32>) -> Bool {
        tokens.count <= recent.count && recent.suffix(tokens.count).elementsEqual(tokens)
    }

    public func appending(_ ts: some Sequence<Int32>) -> TokenHistory {
        var h = self
        for t in ts { h.append(t) }
        return h
    }
}
