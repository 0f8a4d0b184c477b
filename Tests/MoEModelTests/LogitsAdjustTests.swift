import Foundation
import Testing
@testable import MoEModel

/// vLLM's penalties, min_tokens and logit bias on one row of logits, and log-probabilities of a row: table tests.
@Suite struct LogitsAdjustTests {
    static let row: [Float] = [2, -1, 0.5, -3, 4, 0]
    static let ninf = -Float.infinity

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var adjustment: LogitsAdjustment
        var prompt: [Int32]
        var output: [Int32]
        var expected: [Float]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "nothing to do", adjustment: LogitsAdjustment(), prompt: [0, 1], output: [4], expected: row),
        // Repetition: a positive logit is divided, a negative (or zero) one multiplied, for prompt and output tokens.
        Case(name: "repetition over the prompt", adjustment: LogitsAdjustment(repetitionPenalty: 2), prompt: [0, 1, 1], output: [],
             expected: [1, -2, 0.5, -3, 4, 0]),
        Case(name: "repetition over the output, once per token", adjustment: LogitsAdjustment(repetitionPenalty: 2), prompt: [],
             output: [3, 5, 5, 4, 4, 4], expected: [2, -1, 0.5, -6, 2, 0]),
        Case(name: "repetition below 1 favours repeats", adjustment: LogitsAdjustment(repetitionPenalty: 0.5), prompt: [4], output: [1],
             expected: [2, -0.5, 0.5, -3, 8, 0]),
        // Frequency: minus penalty × count in the output (the prompt does not count).
        Case(name: "frequency counts output occurrences", adjustment: LogitsAdjustment(frequencyPenalty: 0.5), prompt: [0],
             output: [4, 4, 4, 1], expected: [2, -1.5, 0.5, -3, 2.5, 0]),
        // Presence: minus penalty once for any token in the output.
        Case(name: "presence once per output token", adjustment: LogitsAdjustment(presencePenalty: 1), prompt: [0],
             output: [4, 4, 4, 1], expected: [2, -2, 0.5, -3, 3, 0]),
        Case(name: "negative presence and frequency favour repeats",
             adjustment: LogitsAdjustment(frequencyPenalty: -0.25, presencePenalty: -1), prompt: [], output: [2, 2],
             expected: [2, -1, 2, -3, 4, 0]),
        // Repetition first, then frequency and presence: (4 / 2) − 0.5 · 2 − 1.
        Case(name: "all three in vLLM's order",
             adjustment: LogitsAdjustment(repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 1), prompt: [], output: [4, 4],
             expected: [2, -1, 0.5, -3, 0, 0]),
        Case(name: "min_tokens masks its tokens before the minimum",
             adjustment: LogitsAdjustment(minTokens: 2, suppressed: [2, 4]), prompt: [], output: [1],
             expected: [2, -1, ninf, -3, ninf, 0]),
        Case(name: "min_tokens lets them through once reached",
             adjustment: LogitsAdjustment(minTokens: 2, suppressed: [2, 4]), prompt: [], output: [1, 0], expected: row),
        // Bias is added before the penalties: (2 + 2) / 2, not 2 / 2 + 2.
        Case(name: "logit bias before the repetition penalty",
             adjustment: LogitsAdjustment(repetitionPenalty: 2, bias: [0: 2, 3: -100]), prompt: [0], output: [],
             expected: [2, -1, 0.5, -103, 4, 0]),
        // vLLM's allowed_token_ids: every other token masked.
        Case(name: "allowed_token_ids keeps only its tokens", adjustment: LogitsAdjustment(allowed: [1, 4]), prompt: [], output: [],
             expected: [ninf, -1, ninf, ninf, 4, ninf]),
        Case(name: "allowed_token_ids in any order, repeated or past the vocabulary",
             adjustment: LogitsAdjustment(allowed: [9, 4, 1, 4, 7]), prompt: [], output: [], expected: [ninf, -1, ninf, ninf, 4, ninf]),
        // vLLM's bad words: a word's last token is masked where the output ends with the word's other tokens.
        Case(name: "a one-token bad word is always masked", adjustment: LogitsAdjustment(badWords: [[4]]), prompt: [], output: [],
             expected: [2, -1, 0.5, -3, ninf, 0]),
        Case(name: "a bad word's last token after its other tokens", adjustment: LogitsAdjustment(badWords: [[2, 3, 0], [5, 1]]),
             prompt: [], output: [1, 2, 3], expected: [ninf, -1, 0.5, -3, 4, 0]),
        Case(name: "a bad word's tokens in another order mask nothing", adjustment: LogitsAdjustment(badWords: [[2, 3, 0]]),
             prompt: [], output: [3, 2], expected: row),
        Case(name: "a bad word's prefix in the prompt does not count", adjustment: LogitsAdjustment(badWords: [[2, 3, 0]]),
             prompt: [2, 3], output: [3], expected: row),
        Case(name: "a bad word's prefix earlier in the output does not count", adjustment: LogitsAdjustment(badWords: [[2, 3, 0]]),
             prompt: [], output: [2, 3, 1], expected: row),
    ]

    @Test(arguments: cases)
    func adjustsLikeVLLM(_ c: Case) {
        var h = TokenHistory(prompt: c.prompt, keepRecent: c.adjustment.recentNeeded)
        for t in c.output { h.append(t) }
        let out = Self.row.withUnsafeBufferPointer { c.adjustment.applied($0, h) }
        #expect(out == c.expected)
        #expect(c.adjustment.isIdentity == (c.name == "nothing to do"))
    }

    @Test func aHistoryExtendedByDraftsCountsThemAsOutput() {
        let h = TokenHistory(prompt: [1]).appending([4, 4])
        #expect(h.generated == 2 && h.outputCounts == [4: 2] && h.promptTokens == [1])
        #expect(TokenHistory(prompt: [1, 2], keepPrompt: false).promptTokens.isEmpty)
    }

    /// log-softmax by hand: 1, 3, 3, 0 → log(e + 2e³ + 1) subtracted; ties ranked by the lower id.
    @Test func logprobsAreLogSoftmaxWithTheMostLikelyFirst() {
        let l: [Float] = [1, 3, 3, 0]
        let lse = Foundation.log(M_E + 2 * Foundation.exp(3.0) + 1)
        let r = l.withUnsafeBufferPointer { positionLogprobs($0, chosen: 0, top: 2) }
        #expect(r.chosen.token == 0 && abs(Double(r.chosen.logprob) - (1 - lse)) < 1e-6)
        #expect(r.top.map(\.token) == [1, 2])
        #expect(abs(Double(r.top[0].logprob) - (3 - lse)) < 1e-6 && r.top[0].logprob == r.top[1].logprob)
        #expect(l.withUnsafeBufferPointer { positionLogprobs($0, chosen: 3, top: 0) }.top.isEmpty)
        #expect(l.withUnsafeBufferPointer { positionLogprobs($0, chosen: 3, top: 10) }.top.map(\.token) == [1, 2, 0, 3])
        // A masked token: −∞ stays −∞ and takes no mass from the rest.
        let masked = [Float(0), -.infinity].withUnsafeBufferPointer { positionLogprobs($0, chosen: 1, top: 1) }
        #expect(masked.chosen.logprob == -.infinity && masked.top == [TokenLogprob(token: 0, logprob: 0)])
    }
}
