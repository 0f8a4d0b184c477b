import Foundation
import MoECore
import MoEModel

/// Why a generation ended.
public enum StopReason: String, Sendable, Codable { case eos, length }

public struct GenerationResult: Sendable {
    public var tokens: [Int32]
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var stop: StopReason

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode rate over the tokens after the first (the first comes out of the prefill pass).
    public var decodeTokensPerSecond: Double {
        tokens.count > 1 && decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0
    }
}

/// One-shot generation for a batch of prompts: prefill all of them in one pass, then decode them together — with a
/// draft source, each step verifies every sequence's newest token plus its k drafted tokens in one forward pass and
/// keeps what speculative sampling accepts. Each sequence has its own sampler and stopping rule.
public final class Generator {
    public let transformer: Transformer
    public let cache: KVCache
    private var allocator: BlockAllocator
    public let draft: DraftSource?
    public let speculation: Speculation
    public private(set) var spec = SpecStats()
    public private(set) var adaptive: AdaptiveK?
    /// Decode steps and the distinct experts per MoE layer they read, summed over steps (what a step costs on a
    /// bandwidth-bound machine).
    public private(set) var decodeSteps = 0
    public private(set) var distinctExpertsPerLayer = 0.0

    public init(transformer: Transformer, maxTokens: Int, blockSize: Int = 16, draft: DraftSource? = nil,
                speculation: Speculation = .off) {
        self.transformer = transformer
        let blocks = (maxTokens + blockSize - 1) / blockSize + 2
        cache = KVCache(spec: transformer.spec, blockSize: blockSize, numBlocks: blocks)
        allocator = BlockAllocator(numBlocks: blocks)
        self.draft = speculation == .off ? nil : draft
        self.speculation = draft == nil ? .off : speculation
        if case .auto(let maxK) = self.speculation {
            adaptive = AdaptiveK.forModel(transformer, maxK: maxK)
        }
    }

    struct Seq {
        var tokens: [Int32]        // prompt, then generated tokens; the newest is not yet in the KV cache
        var generated = 0
        var table: [Int32] = []
        let sampler: Sampler
        var hash: UInt64
    }

    /// Generates for each prompt until EOS (unless `ignoreEOS`) or `maxNewTokens`. `onToken(sequence, token)` sees
    /// each token as it is emitted.
    public func generate(prompts: [[Int32]], maxNewTokens: Int, params: [SamplingParams], eos: Set<Int32>,
                         ignoreEOS: Bool = false, onToken: (Int, Int32) -> Void = { _, _ in }) -> [GenerationResult] {
        precondition(prompts.count == params.count)
        var seqs = prompts.indices.map { Seq(tokens: prompts[$0], sampler: Sampler(params[$0]), hash: ContextHash.of(prompts[$0])) }
        var results = prompts.map { GenerationResult(tokens: [], promptTokens: $0.count, prefillSeconds: 0, decodeSeconds: 0, stop: .length) }
        var active = prompts.indices.filter { !prompts[$0].isEmpty && maxNewTokens > 0 }
        let maxPositions = transformer.spec.maxPositions

        /// Appends emitted tokens; false when the sequence is done.
        func emit(_ i: Int, _ toks: [Int32]) -> Bool {
            for t in toks {
                seqs[i].tokens.append(t)
                seqs[i].hash = ContextHash.extend(seqs[i].hash, t)
                seqs[i].generated += 1
                results[i].tokens.append(t)
                onToken(i, t)
                if !ignoreEOS && eos.contains(t) { results[i].stop = .eos; return false }
                if seqs[i].generated >= maxNewTokens || seqs[i].tokens.count >= maxPositions { results[i].stop = .length; return false }
            }
            return true
        }

        // Prefill every prompt in one pass; the first token comes from its last position.
        var inputs: [SequenceInput] = []
        for i in active {
            guard allocator.ensure(&seqs[i].table, tokens: prompts[i].count, blockSize: cache.blockSize) else {
                fatalError("KV cache too small for the prompts")
            }
            inputs.append(SequenceInput(tokens: prompts[i], start: 0, blockTable: seqs[i].table))
        }
        var t0 = monotonicSeconds()
        if !active.isEmpty {
            let out = transformer.forward(inputs, cache: cache)
            let now = monotonicSeconds()
            var next: [Int] = []
            for (j, i) in active.enumerated() {
                results[i].prefillSeconds = now - t0
                let tok = Int32(seqs[i].sampler.next(out.row(out.rows[j].lowerBound), position: prompts[i].count))
                draft?.start(i, prompt: prompts[i], params: params[i])
                if emit(i, [tok]) {
                    draft?.outcome(i, accepted: 0, next: tok)
                    next.append(i)
                } else {
                    draft?.finish(i)
                }
            }
            active = next
            t0 = now
        }

        while !active.isEmpty {
            // How many tokens to draft this step, never past what a sequence may still emit.
            var k: Int
            switch speculation {
            case .off: k = 0
            case .fixed(let n): k = n
            case .auto: k = adaptive!.choose(active)
            }
            var proposals: [Int: Proposal] = [:]
            let tDraft = monotonicSeconds()
            if let draft {
                // k = 0 entries tell a streaming draft to stop drafting for now.
                let reqs = active.map { i in
                    (seq: i, position: seqs[i].tokens.count, hash: seqs[i].hash,
                     k: max(0, min(k, maxNewTokens - seqs[i].generated - 1, maxPositions - seqs[i].tokens.count - 1)))
                }
                proposals = draft.propose(reqs)
                if k > 0 && draft.costPerToken > 0 { adaptive?.recordDraft(steps: 1, seconds: draft.costPerToken) }
            }
            spec.k = k
            inputs = active.map { i in
                let drafted = proposals[i]?.tokens ?? []
                let L = seqs[i].tokens.count
                guard allocator.ensure(&seqs[i].table, tokens: L + drafted.count, blockSize: cache.blockSize) else {
                    fatalError("KV cache too small")
                }
                return SequenceInput(tokens: [seqs[i].tokens[L - 1]] + drafted, start: L - 1, blockTable: seqs[i].table,
                                     logits: drafted.isEmpty ? .last : .all)
            }
            let tStep = monotonicSeconds()
            let out = transformer.forward(inputs, cache: cache)
            let now = monotonicSeconds()
            adaptive?.recordStep(positions: inputs.reduce(0) { $0 + $1.tokens.count }, seconds: now - tStep)
            let moe = out.expertCounts.filter { !$0.isEmpty }
            decodeSteps += 1
            distinctExpertsPerLayer += Double(moe.reduce(0) { $0 + $1.filter { $0 > 0 }.count }) / Double(max(moe.count, 1))
            var next: [Int] = []
            var emittedThisStep = 0
            defer { adaptive?.recordRate(batch: active.count, k: k, emitted: emittedThisStep, seconds: now - tDraft) }
            for (j, i) in active.enumerated() {
                results[i].decodeSeconds += now - t0
                let rows = out.rows[j], L = seqs[i].tokens.count
                let verdict: Verification
                if let p = proposals[i] {
                    verdict = verify(p, rows: rows, out: out, sampler: seqs[i].sampler, position: L)
                    spec.record(k: p.tokens.count, accepted: verdict.accepted)
                    adaptive?.recordOutcome(seq: i, k: p.tokens.count, accepted: verdict.accepted)
                } else {
                    verdict = Verification(accepted: 0, next: Int32(seqs[i].sampler.next(out.row(rows.lowerBound), position: L)))
                }
                let emitted = Array((proposals[i]?.tokens ?? []).prefix(verdict.accepted)) + [verdict.next]
                emittedThisStep += emitted.count
                // The KV cache now holds positions < L + accepted; rejected drafts' entries are overwritten later.
                if emit(i, emitted) {
                    draft?.outcome(i, accepted: verdict.accepted, next: verdict.next)
                    next.append(i)
                } else {
                    draft?.finish(i)
                    adaptive?.forget(i)
                }
            }
            active = next
            t0 = now
        }
        for i in prompts.indices { allocator.release(&seqs[i].table) }
        return results
    }

    /// Speculative verification of one sequence's proposal against the target's k+1 logit rows.
    func verify(_ p: Proposal, rows: Range<Int>, out: ForwardOutput, sampler: Sampler, position L: Int) -> Verification {
        if sampler.params.isGreedy {
            return greedyVerify(draft: p.tokens, targetArgmax: rows.map { Int32(argmax(out.row($0))) })
        }
        let target = rows.map { samplingDistribution(out.row($0), sampler.params) }
        var rng = sampler.rng(position: L, stream: 1)
        let draws = (0..<(p.tokens.count + 1)).map { _ in rng.nextUnit() }
        return speculativeVerify(draft: p.tokens, q: p.q ?? [], p: target) { draws[$0] }
    }
}

extension AdaptiveK {
    /// The bandwidth prior for a model: dense weight bytes and one expert's bytes per MoE layer.
    public static func forModel(_ t: Transformer, maxK: Int) -> AdaptiveK {
        let s = t.spec, w = t.weights
        var dense = w.lmHead.byteCount
        var expert = 0.0
        for (l, lw) in w.layers.enumerated() {
            let a = lw.attention
            dense += a.q.byteCount + a.k.byteCount + a.v.byteCount + a.o.byteCount
            switch lw.ffn {
            case .dense(let m): dense += m.byteCount
            case .moe(let r):
                dense += r.gate.byteCount + (r.shared?.byteCount ?? 0)
                expert = Double(3 * s.hiddenSize * s.layers[l].moe!.intermediate * 4)
            }
        }
        let moe = s.layers.compactMap(\.moe).first
        return AdaptiveK(maxK: maxK, denseBytes: Double(dense), expertBytes: expert, experts: moe?.experts ?? 0,
                         topK: moe?.topK ?? 0, moeLayers: s.moeLayers.count)
    }
}
