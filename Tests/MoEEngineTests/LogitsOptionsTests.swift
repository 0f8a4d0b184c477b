import Foundation
import MoECore
import MoEModel
import MoETestSupport
import Testing
@testable import MoEEngine

/// Log-probabilities against transformers' logits; penalties, min_tokens and stop tokens, with and without
/// speculation.
@Suite struct LogitsOptionsTests {
    static let spec = Fixtures.model("tiny-mixtral-spec"), specDraft = Fixtures.model("tiny-mixtral-spec-draft")

    struct Run {
        var tokens: [Int32] = []
        var logprobs: [PositionLogprobs?] = []
        var prompt: [PositionLogprobs?]?
        var stop: StopReason?
    }

    /// One request through its own engine (optionally speculating with the fixture draft), every event recorded.
    func run(_ dir: URL, _ r: EngineRequest, mode: Speculation = .off, budget: Int = 2048, engine reuse: Engine? = nil) throws -> Run {
        let m = try LoadedModel(directory: dir)
        var c = EngineConfig()
        c.kvBlocks = 64
        c.maxBatchedTokens = budget
        c.speculation = mode
        let draft = mode == .off ? nil : LocalDraft(model: try DraftModel.load(Self.specDraft.path, target: dir, quantize: .f32).0,
                                                   capacityTokens: 512)
        let e = reuse ?? Engine(transformer: m.transformer, config: c, draft: draft)
        final class Box: @unchecked Sendable { var run = Run() }
        let box = Box()
        try e.submit(r) { ev in
            switch ev {
            case .promptLogprobs(let p): box.run.prompt = p
            case .token(let t, let lp): box.run.tokens.append(t); box.run.logprobs.append(lp)
            case .finished(let why): box.run.stop = why
            case .prefilled: break
            }
        }
        e.runUntilIdle()
        return box.run
    }

    /// log_softmax of one of transformers' logit rows, in Double.
    static func logSoftmax(_ row: ArraySlice<Float>) -> [Double] {
        let m = Double(row.max()!)
        let lse = m + Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
        return row.map { Double($0) - lse }
    }

    /// Every prompt token's log-probability and top 3 equal log_softmax of transformers' logits at the position
    /// before it, through chunked prefill (chunks of 7) and with the prompt's blocks already in the prefix cache
    /// (which a request for prompt log-probabilities must not read); the first entry is nil.
    @Test func promptLogprobsAreTransformersLogSoftmax() throws {
        let g = try Fixtures.golden("tiny-mixtral")
        let m = try LoadedModel(directory: Fixtures.model("tiny-mixtral"))
        var c = EngineConfig()
        c.kvBlocks = 64
        c.maxBatchedTokens = 7
        let e = Engine(transformer: m.transformer, config: c)
        for p in g.prompts where p.ids.count > 1 {
            let ids = p.ids.map(Int32.init), V = p.logitsShape[1]
            _ = try e.generate(prompts: [ids], maxNewTokens: 1, params: [SamplingParams()], eos: [])     // warms the prefix cache
            let r = try run(Fixtures.model("tiny-mixtral"), EngineRequest(prompt: ids, maxTokens: 0, promptLogprobs: 3), engine: e)
            #expect(r.tokens.isEmpty && r.stop == .length)
            let lps = try #require(r.prompt)
            #expect(lps.count == ids.count && lps[0] == nil)
            let logits = try g.logits(p)
            for t in 1..<ids.count {
                let ref = Self.logSoftmax(logits[((t - 1) * V)..<(t * V)])
                let lp = try #require(lps[t])
                #expect(lp.chosen.token == ids[t] && abs(Double(lp.chosen.logprob) - ref[Int(ids[t])]) < 1e-4, "prompt \(p.index) position \(t)")
                let top3 = ref.indices.sorted { ref[$0] > ref[$1] }.prefix(3).map(Int32.init)
                #expect(lp.top.map(\.token) == top3)
                for x in lp.top { #expect(abs(Double(x.logprob) - ref[Int(x.token)]) < 1e-4) }
            }
        }
    }

    /// The first generated token's log-probability is transformers' at the prompt's last position; every later
    /// one equals what scoring the generated text as a prompt gives (the decode path against the prefill path);
    /// speculation (verification rows) gives the same as plain decoding.
    @Test func generatedLogprobsAgreeWithTransformersPrefillAndSpeculation() throws {
        let g = try Fixtures.golden("tiny-mixtral-spec")
        let p = g.prompts[1], ids = p.ids.map(Int32.init), V = p.logitsShape[1]
        let plain = try run(Self.spec, EngineRequest(prompt: ids, maxTokens: 12, logprobs: 2))
        #expect(plain.tokens.map(Int.init) == Array(p.greedy.newTokens.prefix(12)))
        let logits = try g.logits(p)
        let ref = Self.logSoftmax(logits[((ids.count - 1) * V)..<(ids.count * V)])
        let first = try #require(plain.logprobs[0])
        #expect(abs(Double(first.chosen.logprob) - ref[Int(plain.tokens[0])]) < 1e-4 && first.top.count == 2)
        #expect(first.top[0].token == plain.tokens[0])

        let scored = try run(Self.spec, EngineRequest(prompt: ids + plain.tokens, maxTokens: 0, promptLogprobs: 2))
        let prefill = try #require(scored.prompt)
        for (i, lp) in plain.logprobs.enumerated() {
            let a = try #require(lp), b = try #require(prefill[ids.count + i])
            #expect(a.chosen.token == b.chosen.token && abs(a.chosen.logprob - b.chosen.logprob) < 1e-4, "token \(i)")
            #expect(a.top.map(\.token) == b.top.map(\.token))
        }

        let speculated = try run(Self.spec, EngineRequest(prompt: ids, maxTokens: 12, logprobs: 2), mode: .fixed(3))
        #expect(speculated.tokens == plain.tokens)
        for (a, b) in zip(speculated.logprobs, plain.logprobs) {
            #expect(abs(a!.chosen.logprob - b!.chosen.logprob) < 1e-4 && a!.top.map(\.token) == b!.top.map(\.token))
        }
    }

    /// Penalties change greedy output (the fixture's third prompt repeats itself without them), and speculation
    /// keeps it token for token: verification reads each draft row with the drafts before it as output.
    @Test func penalisedGreedyOutputIsTheSameWithSpeculation() throws {
        let g = try Fixtures.golden("tiny-mixtral-spec")
        for (i, params) in [SamplingParams(repetitionPenalty: 1.3), SamplingParams(frequencyPenalty: 0.6, presencePenalty: 0.4),
                            SamplingParams(repetitionPenalty: 1.2, frequencyPenalty: 0.3, logitBias: [413: -2])].enumerated() {
            for p in g.prompts {
                let r = EngineRequest(prompt: p.ids.map(Int32.init), params: params, maxTokens: p.greedy.maxNew, eos: [2])
                let plain = try run(Self.spec, r)
                for k in [1, 3, 5] {
                    #expect(try run(Self.spec, r, mode: .fixed(k)).tokens == plain.tokens, "params \(i) prompt \(p.index) k \(k)")
                }
                if p.index == 2 { #expect(plain.tokens.map(Int.init) != p.greedy.newTokens, "params \(i)") }
            }
        }
    }

    /// vLLM's bad_words and allowed_token_ids change greedy output, and speculation keeps it token for token: a
    /// two-token word from the fixture's own greedy output and one of its tokens never appear, and with an allowed
    /// set every token is in it.
    @Test func badWordsAndAllowedTokensHoldWithSpeculation() throws {
        let p = try Fixtures.golden("tiny-mixtral-spec").prompts[1], g = p.greedy.newTokens.map(Int32.init)
        #expect(g.count >= 8)
        let word = [g[3], g[4]], banned = g[6]
        let allowed = Array(Set(g.prefix(5)).union([3, 4, 5, 6, 7])).sorted()
        for params in [SamplingParams(badWords: [word, [banned]]), SamplingParams(allowedTokens: allowed),
                       SamplingParams(temperature: 0.8, seed: 5, badWords: [word, [banned]])] {
            let r = EngineRequest(prompt: p.ids.map(Int32.init), params: params, maxTokens: 16, eos: [2])
            let plain = try run(Self.spec, r)
            if let bad = params.badWords {
                #expect(!plain.tokens.contains(banned))
                for i in 1..<plain.tokens.count { #expect(Array(plain.tokens[i - 1...i]) != word, "at \(i)") }
                if !params.isGreedy { continue }
                // The first tokens are the golden ones up to the word's second token, which is then turned down.
                #expect(Array(plain.tokens.prefix(4)) == Array(g.prefix(4)) && plain.tokens[4] != g[4], "\(bad)")
            } else {
                #expect(plain.tokens.allSatisfy { allowed.contains($0) } && plain.tokens.map(Int.init) != p.greedy.newTokens)
                // The golden tokens while they are allowed, then another where the golden one (440) is not.
                #expect(Array(plain.tokens.prefix(5)) == Array(g.prefix(5)) && plain.tokens[5] != g[5] && !allowed.contains(g[5]))
            }
            for k in [1, 3] { #expect(try run(Self.spec, r, mode: .fixed(k)).tokens == plain.tokens, "k \(k)") }
        }
    }

    /// The draft proposes with the request's penalties and bias: with the target itself as draft, greedy
    /// penalised drafts are then all accepted (without them the draft would propose the repeats the target's
    /// penalties turn down).
    @Test func theDraftProposesWithThePenalties() throws {
        let p = try Fixtures.golden("tiny-mixtral-spec").prompts[2]
        let m = try LoadedModel(directory: Self.spec)
        var c = EngineConfig()
        c.kvBlocks = 64
        c.speculation = .fixed(3)
        let draft = LocalDraft(model: try DraftModel.load("self", target: Self.spec, quantize: .f32).0, capacityTokens: 512)
        let e = Engine(transformer: m.transformer, config: c, draft: draft)
        let params = SamplingParams(repetitionPenalty: 1.3, frequencyPenalty: 0.2, logitBias: [413: -1])
        _ = try e.generate(prompts: [p.ids.map(Int32.init)], maxNewTokens: 24, params: [params], eos: [])
        #expect(e.stats.spec.draftTokens > 0 && e.stats.spec.acceptedTokens == e.stats.spec.draftTokens, "\(e.stats.spec)")
    }

    /// A repetition penalty so large that any unseen token with a positive logit beats every seen one: greedy
    /// output then repeats nothing, neither itself nor the prompt.
    @Test func aHugeRepetitionPenaltyRepeatsNoToken() throws {
        let p = try Fixtures.golden("tiny-mixtral-spec").prompts[2], ids = p.ids.map(Int32.init)
        let r = try run(Self.spec, EngineRequest(prompt: ids, params: SamplingParams(repetitionPenalty: 1e6), maxTokens: 24))
        #expect(r.tokens.count == 24 && Set(r.tokens).count == 24 && Set(r.tokens).isDisjoint(with: ids))
    }

    /// The one-token prompt ends at EOS after 14 tokens; min_tokens 20 holds EOS back (the first 14 are unchanged,
    /// the 15th is another token), with or without speculation. A stop token id ends generation where it first
    /// appears, the stop token delivered, even with ignore_eos.
    @Test func minTokensHoldsBackEOSAndStopTokenIdsStop() throws {
        let golden = try Fixtures.golden("tiny-mixtral-spec").prompts[0].greedy.newTokens.map(Int32.init)
        #expect(golden.count == 15 && golden.last == 2)
        for mode in [Speculation.off, .fixed(3)] {
            let held = try run(Self.spec, EngineRequest(prompt: [54], maxTokens: 24, eos: [2], minTokens: 20), mode: mode)
            #expect(Array(held.tokens.prefix(14)) == Array(golden.prefix(14)) && !held.tokens.prefix(20).contains(2))
            #expect(held.tokens.count >= 20)
            let stopped = try run(Self.spec, EngineRequest(prompt: [54], maxTokens: 24, eos: [2], ignoreEOS: true, stopTokenIds: [golden[5]]),
                                  mode: mode)
            #expect(stopped.tokens == Array(golden.prefix(6)) && stopped.stop == .eos)
        }
    }
}
