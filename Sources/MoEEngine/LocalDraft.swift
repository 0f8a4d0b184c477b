import Foundation
import MoECore
import MoEModel

/// A draft model running in this process, through the same interface as the remote draft node: it keeps its own
/// paged KV cache per sequence, catches up on verified tokens, drafts k tokens one batched step at a time, and
/// rolls back what the verifier rejected.
public final class LocalDraft: DraftSource {
    public let model: Transformer
    let cache: KVCache
    var allocator: BlockAllocator
    public private(set) var lastWaitSeconds = 0.0
    /// Seconds of one draft step of the last proposal, not counting the catch-up on verified tokens.
    public private(set) var lastStepSeconds = 0.0
    public private(set) var lastCatchUp = CatchUp()

    struct Seq {
        var tokens: [Int32]       // verified context, then the drafted tokens of the last proposal
        var verified: Int
        var cached: Int           // positions whose K/V are in the draft cache and match `tokens`
        var table: [Int32] = []
        var sampler: Sampler
        var drafted = 0           // tokens of the last proposal
        let promptCount: Int
        /// The request's penalties and logit bias, applied to the draft's logits as the verifier applies them to the
        /// target's, so that drafts it will penalise are not proposed (acceptance; exactness does not depend on it).
        let adjustment: LogitsAdjustment?
        /// What the adjustment reads at the end of the verified tokens, kept as they grow (nil without adjustment).
        var verifiedHistory: TokenHistory?

        init(tokens: [Int32], sampler: Sampler, adjustment: LogitsAdjustment?) {
            self.tokens = tokens
            verified = tokens.count
            cached = 0
            self.sampler = sampler
            promptCount = tokens.count
            self.adjustment = adjustment
            verifiedHistory = historyFromScratch()
        }

        /// The history of `tokens[..<verified]`, counted anew (at start, and when a rewind replaces the context).
        func historyFromScratch() -> TokenHistory? {
            adjustment.map {
                let p = min(promptCount, verified)
                return TokenHistory(prompt: tokens[..<p], keepPrompt: $0.repetitionPenalty != 1, keepRecent: $0.recentNeeded)
                    .appending(tokens[p..<verified])
            }
        }

        /// The history the adjustment reads at the end of `tokens` (the verified ones and the drafts after them).
        var history: TokenHistory? { verifiedHistory?.appending(tokens[verified...]) }

        /// The draft's token (and, when sampling, the distribution it was drawn from) from one position's logits.
        func pick(_ logits: UnsafeBufferPointer<Float>, history h: TokenHistory?, position: Int) -> (Int32, [Float]?) {
            func choose(_ l: UnsafeBufferPointer<Float>) -> (Int32, [Float]?) {
                if sampler.params.isGreedy { return (Int32(argmax(l)), nil) }
                let q = samplingDistribution(l, sampler.params)
                var rng = sampler.rng(position: position, stream: 2)
                return (Int32(sample(q, &rng)), q)
            }
            guard let adjustment, let h else { return choose(logits) }
            return adjustment.applied(logits, h).withUnsafeBufferPointer(choose)
        }
    }
    var seqs: [Int: Seq] = [:]

    /// `capacityTokens`: the most tokens all live sequences hold at once.
    public var costPerToken: Double { lastStepSeconds }
    public var bytesPerStep: Double? { Double(model.weights.bytesPerStep) }
    public var paramsPerStep: Double? { Double(model.weights.paramsPerStep) }

    /// The draft's forward pass. bf16 products multiply bf16-rounded activations here (`withBF16Activations`): at
    /// batch 16 a bf16 draft step is bound by arithmetic and took a third of a k = 3 speculative step.
    func forward(_ inputs: [SequenceInput], cache: KVCache) -> ForwardOutput {
        withBF16Activations { model.forward(inputs, cache: cache) }
    }

    public init(model: Transformer, capacityTokens: Int, blockSize: Int = 16) {
        self.model = model
        let blocks = capacityTokens / blockSize + 64
        cache = KVCache(spec: model.spec, blockSize: blockSize, numBlocks: blocks)
        allocator = BlockAllocator(numBlocks: blocks)
    }

    public func start(_ seq: Int, prompt: [Int32], params: SamplingParams) {
        seqs[seq] = Seq(tokens: prompt, sampler: Sampler(params), adjustment: .of(params))
    }

    public func outcome(_ seq: Int, accepted: [Int32], next: Int32) {
        guard var s = seqs[seq] else { return }
        // Cached K/V stay valid over the drafted tokens the verifier kept.
        var same = 0
        while same < min(accepted.count, s.drafted) && s.tokens[s.verified + same] == accepted[same] { same += 1 }
        s.cached = min(s.cached, s.verified + same)
        s.tokens = Array(s.tokens.prefix(s.verified)) + accepted + [next]
        s.verified = s.tokens.count
        s.verifiedHistory = s.verifiedHistory?.appending(accepted + [next])
        s.drafted = 0
        seqs[seq] = s
    }

    /// Replaces a sequence's verified context (the draft node's view after a verifier outcome contradicted what it
    /// had assumed); cached K/V stay valid up to the longest prefix old and new contexts share.
    public func rewind(_ seq: Int, to tokens: [Int32]) {
        guard var s = seqs[seq] else { return }
        var same = 0
        while same < min(s.cached, tokens.count) && s.tokens[same] == tokens[same] { same += 1 }
        s.cached = min(same, tokens.count - 1)
        s.tokens = tokens
        s.verified = tokens.count
        s.drafted = 0
        s.verifiedHistory = s.historyFromScratch()
        seqs[seq] = s
    }

    /// The sequence's verified context as the draft sees it.
    public func context(_ seq: Int) -> [Int32]? { seqs[seq].map { Array($0.tokens.prefix($0.verified)) } }

    public func isGreedy(_ seq: Int) -> Bool { seqs[seq]?.sampler.params.isGreedy ?? true }

    /// The draft's own guess of the token after its last proposal — the bonus token it would emit if the verifier
    /// accepted everything — so the draft node can draft ahead from there. Nil without a proposal.
    public func guessNext(_ seq: Int) -> Int32? {
        guard var s = seqs[seq], s.drafted > 0,
              allocator.ensure(&s.table, tokens: s.tokens.count + 1, blockSize: cache.blockSize) else { return nil }
        let out = forward([SequenceInput(tokens: Array(s.tokens[s.cached...]), start: s.cached, blockTable: s.table)], cache: cache)
        s.cached = s.tokens.count
        seqs[seq] = s
        return s.pick(out.row(out.rows[0].lowerBound), history: s.history, position: s.tokens.count).0
    }

    public func finish(_ seq: Int) {
        if var s = seqs.removeValue(forKey: seq) { allocator.release(&s.table) }
    }

    public func propose(_ requests: [(seq: Int, position: Int, hash: UInt64, k: Int)]) -> [Int: Proposal] {
        let t0 = monotonicSeconds()
        defer { lastWaitSeconds = monotonicSeconds() - t0 }
        var live = requests.filter { r in seqs[r.seq].map { $0.verified == r.position } ?? false && r.k > 0 }
        for r in live {
            var s = seqs[r.seq]!
            s.tokens = Array(s.tokens.prefix(s.verified))
            s.drafted = 0
            if !allocator.ensure(&s.table, tokens: s.verified + r.k, blockSize: cache.blockSize) {
                live.removeAll { $0.seq == r.seq }
            }
            seqs[r.seq] = s
        }
        var out: [Int: Proposal] = [:]
        for r in live { out[r.seq] = Proposal(position: r.position, hash: r.hash, tokens: [], q: seqs[r.seq]!.sampler.params.isGreedy ? nil : []) }
        let kmax = live.map(\.k).max() ?? 0
        // Verified tokens the draft has not seen beyond what a verification round leaves (its last drafted token and
        // the verifier's next: step 0 feeds those) — a new prompt, or text decoded while speculation was off — go
        // through one pass of their own, reported in `lastCatchUp`.
        lastCatchUp = CatchUp()
        let lagging = live.filter { seqs[$0.seq]!.verified - seqs[$0.seq]!.cached > 2 }
        if !lagging.isEmpty {
            let t = monotonicSeconds()
            let inputs = lagging.map { r in
                let s = seqs[r.seq]!
                return SequenceInput(tokens: Array(s.tokens[s.cached..<(s.verified - 1)]), start: s.cached, blockTable: s.table, logits: .none)
            }
            _ = forward(inputs, cache: cache)
            for r in lagging { seqs[r.seq]!.cached = seqs[r.seq]!.verified - 1 }
            let prompt = inputs.filter { $0.start == 0 }.reduce(0) { $0 + $1.tokens.count }, all = inputs.reduce(0) { $0 + $1.tokens.count }
            let seconds = monotonicSeconds() - t
            lastCatchUp = CatchUp(seconds: seconds, positions: all, promptSeconds: seconds * Double(prompt) / Double(max(all, 1)))
        }
        var histories = Dictionary(uniqueKeysWithValues: live.compactMap { r in seqs[r.seq]!.history.map { (r.seq, $0) } })
        var steadySeconds = 0.0
        defer { if kmax > 0 { lastStepSeconds = steadySeconds / Double(kmax) } }
        for step in 0..<kmax {
            let tStep = monotonicSeconds()
            defer { steadySeconds += monotonicSeconds() - tStep }
            let batch = live.filter { $0.k > step }
            // Step 0 feeds every verified token the cache lacks (at least the newest); later steps feed the last draft.
            let inputs = batch.map { r -> SequenceInput in
                let s = seqs[r.seq]!
                let from = step == 0 ? s.cached : s.tokens.count - 1
                return SequenceInput(tokens: Array(s.tokens[from...]), start: from, blockTable: s.table)
            }
            let result = forward(inputs, cache: cache)
            for (i, r) in batch.enumerated() {
                var s = seqs[r.seq]!
                s.cached = s.tokens.count
                let (token, q) = s.pick(result.row(result.rows[i].lowerBound), history: histories[r.seq], position: s.tokens.count)
                if let q { out[r.seq]!.q!.append(q) }
                histories[r.seq]?.append(token)
                s.tokens.append(token)
                s.drafted += 1
                out[r.seq]!.tokens.append(token)
                seqs[r.seq] = s
            }
        }
        return out
    }
}
