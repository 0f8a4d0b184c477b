import Foundation
import MoECore
import MoEModel
import MoETestSupport
import Testing
@testable import MoEEngine

/// Prompt lookup (n-gram) drafts: the lookup itself, and exactness and acceptance on transformers' fixture.
@Suite struct NGramDraftTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var tokens: [Int32]
        var maxN: Int, minN: Int, k: Int
        var expected: [Int32]
        var testDescription: String { "\(tokens) n \(minN)…\(maxN) k \(k)" }
    }

    static let cases: [Case] = [
        Case(tokens: [1, 2, 3, 9, 1, 2], maxN: 3, minN: 1, k: 3, expected: [3, 9, 1]),       // "1 2" recurs: what followed it
        Case(tokens: [1, 2, 3, 9, 1, 2], maxN: 3, minN: 1, k: 1, expected: [3]),
        Case(tokens: [5, 7, 1, 2, 8, 3, 1, 2], maxN: 2, minN: 2, k: 2, expected: [8, 3]),
        Case(tokens: [1, 2, 4, 2, 5, 2], maxN: 1, minN: 1, k: 2, expected: [5, 2]),          // the latest earlier "2"
        Case(tokens: [4, 1, 2, 6, 3, 1, 2, 7, 1, 2], maxN: 3, minN: 2, k: 2, expected: [7, 1]),
        Case(tokens: [3, 1, 2, 6, 9, 1, 2], maxN: 3, minN: 2, k: 4, expected: [6, 9, 1, 2]),  // the longest n that recurs
        Case(tokens: [9, 9, 9, 9], maxN: 2, minN: 1, k: 3, expected: [9]),                   // up to the end of the text
        Case(tokens: [1, 2, 3, 4], maxN: 3, minN: 1, k: 3, expected: []),                    // nothing recurs
        Case(tokens: [1, 2, 3, 1], maxN: 3, minN: 2, k: 3, expected: []),                    // only a 1-gram does
        Case(tokens: [7], maxN: 3, minN: 1, k: 3, expected: []),
    ]

    @Test(arguments: cases)
    func continuationOfTheLatestRecurringNGram(_ c: Case) {
        #expect(ngramContinuation(c.tokens, maxN: c.maxN, minN: c.minN, k: c.k) == c.expected)
    }

    func run(_ p: [Int], max: Int, mode: Speculation, params: SamplingParams = SamplingParams()) throws -> ([Int32], SpecStats) {
        let m = try LoadedModel(directory: Fixtures.model("tiny-mixtral-spec"))
        var c = EngineConfig()
        c.kvBlocks = 64
        c.speculation = mode
        let e = Engine(transformer: m.transformer, config: c, draft: NGramDraft(vocabSize: m.transformer.spec.vocabSize, maxN: 3, minN: 1))
        let r = try e.generate(prompts: [p.map(Int32.init)], maxNewTokens: max, params: [params], eos: Set(m.eosTokenIds.map(Int32.init)))
        return (r[0].tokens, e.stats.spec)
    }

    /// Greedy output with n-gram drafts is transformers' greedy output, fixed k or auto; the fixture's third prompt
    /// repeats itself, so drafts are proposed and accepted.
    @Test func greedyOutputIsTransformersWithNGramDrafts() throws {
        let g = try Fixtures.golden("tiny-mixtral-spec")
        var total = SpecStats()
        for mode in [Speculation.fixed(2), .fixed(4), .auto(maxK: 4)] {
            for p in g.prompts {
                let (out, s) = try run(p.ids, max: p.greedy.maxNew, mode: mode)
                #expect(out.map(Int.init) == p.greedy.newTokens, "\(mode) prompt \(p.index)")
                total.draftTokens += s.draftTokens; total.acceptedTokens += s.acceptedTokens
            }
        }
        #expect(total.acceptedTokens > 0 && total.draftTokens > total.acceptedTokens, "\(total)")
    }

    /// Sampled with one-hot draft distributions: a seed replays, and the tokens drawn are the target's to draw (a
    /// draft the target gives no mass is never kept: with top-k 1 sampling is greedy, drafts or not).
    @Test func sampledNGramSpeculationReplaysAndKeepsTheTargetsSupport() throws {
        let p = try Fixtures.golden("tiny-mixtral-spec").prompts[2]
        let params = SamplingParams(temperature: 0.8, topP: 0.9, seed: 5)
        let a = try run(p.ids, max: 24, mode: .fixed(3), params: params), b = try run(p.ids, max: 24, mode: .fixed(3), params: params)
        #expect(a.0 == b.0 && a.0.count > 0)
        let top1 = try run(p.ids, max: 24, mode: .fixed(3), params: SamplingParams(temperature: 1, topK: 1, seed: 3))
        #expect(top1.0.map(Int.init) == p.greedy.newTokens && top1.1.draftTokens > 0)
    }
}
