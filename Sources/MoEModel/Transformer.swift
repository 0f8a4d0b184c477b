import Foundation
import MoECore

/// New tokens of one sequence for one forward pass.
public struct SequenceInput: Sendable {
    public enum Logits: Sendable { case none, last, all }
    public var tokens: [Int32]
    /// Tokens of this sequence already in the KV cache: tokens[0] sits at this position.
    public var start: Int
    /// Block ids covering positions 0 ..< start + tokens.count (entries of freed blocks are never read).
    public var blockTable: [Int32]
    public var logits: Logits

    public init(tokens: [Int32], start: Int, blockTable: [Int32], logits: Logits = .last) {
        self.tokens = tokens
        self.start = start
        self.blockTable = blockTable
        self.logits = logits
    }
}

/// Logits for the rows asked for: [rows, vocab]; sequence i's rows are `rows[i]`.
public struct ForwardOutput: @unchecked Sendable {
    public let logits: FloatBuffer
    public let vocab: Int
    public let rows: [Range<Int>]
    /// Per layer, tokens routed to each expert in this pass (empty for dense layers).
    public let expertCounts: [[Int]]
    /// Expert choices dropped by the capacity limit in this pass.
    public var dropped = 0

    public func row(_ r: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: logits.pointer + r * vocab, count: vocab)
    }
}

/// Seconds spent in each part of forward passes, accumulated until reset.
public struct StepProfile: Sendable {
    public var attention = 0.0, routing = 0.0, experts = 0.0, dense = 0.0, head = 0.0
    public var total: Double { attention + routing + experts + dense + head }
    public init() {}

    /// The seconds accumulated between two readings (`later - earlier`), part by part.
    public static func - (a: StepProfile, b: StepProfile) -> StepProfile {
        var d = StepProfile()
        d.attention = a.attention - b.attention
        d.routing = a.routing - b.routing
        d.experts = a.experts - b.experts
        d.dense = a.dense - b.dense
        d.head = a.head - b.head
        return d
    }
}

/// The decoder: embeddings → layers (attention over the paged KV cache, then a dense or MoE feed-forward) → norm →
/// lm_head. It runs on one process; where the routed experts run is the `experts` backend's business.
public final class Transformer: @unchecked Sendable {
    public let spec: ModelSpec
    public let weights: DenseWeights
    public var experts: ExpertBackend?
    public let rope: Rope
    public var profile = StepProfile()
    /// Expert capacity factor (router.capacity_factor); nil routes every choice (dropless, exact).
    public var capacityFactor: Double?
    /// Micro-batches a pass is cut into so that one's attention runs while another's rows are at the expert workers
    /// (two-batch overlap, as DeepSeek and MegaScale-Infer do); 1 = off. Cut at token boundaries, so outputs are
    /// identical (every kernel is batch-invariant). It pays only when the backend's work happens elsewhere.
    public var microBatches = 1
    /// Passes with fewer tokens stay whole: each micro-batch reads the weights of every expert it routes to, so
    /// cutting a small, bandwidth-bound pass reads experts twice and costs more than the overlap saves.
    public var microBatchMinTokens = 256
    private let mlpScratch = ExpertScratch()
    private var buffers: [String: Scratch] = [:]

    public init(spec: ModelSpec, weights: DenseWeights, experts: ExpertBackend?) {
        self.spec = spec
        self.weights = weights
        self.experts = experts
        self.rope = Rope(spec.rope, headDim: spec.ropeDim)
    }

    private func buf(_ name: String, _ count: Int) -> UnsafeMutablePointer<Float> {
        if let s = buffers[name] { return s.ensure(count) }
        let s = Scratch()
        buffers[name] = s
        return s.ensure(count)
    }

    public func forward(_ seqs: [SequenceInput], cache: KVCache) -> ForwardOutput {
        let H = spec.hiddenSize, half = spec.ropeDim / 2
        let T = seqs.reduce(0) { $0 + $1.tokens.count }
        // Per token: its sequence and position.
        var seqOf = [Int32](repeating: 0, count: T), posOf = [Int32](repeating: 0, count: T)
        var t = 0
        for (s, seq) in seqs.enumerated() {
            for i in 0..<seq.tokens.count {
                seqOf[t] = Int32(s)
                posOf[t] = Int32(seq.start + i)
                t += 1
            }
        }
        let x = buf("x", T * H), h = buf("h", T * H)
        let cosT = buf("cos", T * half), sinT = buf("sin", T * half)
        var t0 = monotonicSeconds()
        t = 0
        for seq in seqs {
            for tok in seq.tokens {
                let id = Int(tok)
                precondition(id >= 0 && id < spec.vocabSize, "token id \(id) outside the vocabulary (0..<\(spec.vocabSize))")
                (x + t * H).update(from: weights.embed.row(id), count: H)
                if spec.embeddingMultiplier != 1 { for i in 0..<H { x[t * H + i] *= spec.embeddingMultiplier } }
                rope.table(position: Int(posOf[t]), cos: cosT + t * half, sin: sinT + t * half)
                t += 1
            }
        }
        // Micro-batches: contiguous token ranges (a sequence may straddle two; its later tokens attend to the keys
        // the earlier range stored first in the same layer). Each range's MoE exchange is begun, and finished only
        // after the next range's attention, so on a cluster that attention runs while the rows are at the workers.
        // With a capacity limit the batch stays whole: capacity is a per-batch quantity.
        let M = capacityFactor == nil && T >= microBatchMinTokens ? max(1, min(microBatches, T)) : 1
        let bounds = (0...M).map { $0 * T / M }
        let ranges = (0..<M).map { bounds[$0]..<bounds[$0 + 1] }
        let seqOfMB = ranges.map { Array(seqOf[$0]) }, posOfMB = ranges.map { Array(posOf[$0]) }
        // Whether every token of a micro-batch is its sequence's only new one (decode; see `attention`).
        let perItemMB = seqOfMB.map { $0.count == 1 || Set($0).count == $0.count }
        let f = buf("ffn", T * H)
        // Shared-expert output and its gate per token, computed while the routed experts are away.
        let shared = buf("shared", T * H)
        var sharedGate = [Float](repeating: 1, count: T)
        var pending = [Int?](repeating: nil, count: M)   // the layer whose routed experts micro-batch m awaits
        var counts = [[Int]](repeating: [], count: spec.numLayers)
        var dropped = 0

        // Adds micro-batch m's finished feed-forward output of layer l into the residual stream.
        func complete(_ m: Int, layer l: Int) {
            let r = ranges[m], lo = r.lowerBound
            let t2 = monotonicSeconds()
            experts!.finishOldest()
            let t3 = monotonicSeconds()
            profile.experts += t3 - t2
            t0 += t3 - t2
            if case .moe(let router) = weights.layers[l].ffn, router.shared != nil {
                for row in r { axpy(f + row * H, sharedGate[row], shared + row * H, H) }
            }
            let rm = spec.residualMultiplier
            for i in (lo * H)..<(r.upperBound * H) { x[i] += rm * f[i] }
        }

        for l in 0..<spec.numLayers {
            let lw = weights.layers[l]
            for m in 0..<M {
                if let pl = pending[m] {
                    complete(m, layer: pl)
                    pending[m] = nil
                }
                let r = ranges[m], lo = r.lowerBound, Tm = r.count
                let xm = x + lo * H, hm = h + lo * H, fm = f + lo * H
                rmsNorm(xm, lw.inputNorm.base, hm, rows: Tm, n: H, eps: spec.rmsNormEps)
                switch lw.block {
                case .standard(let a):
                    attention(layer: l, a, h: hm, tokens: Tm, seqs: seqs, seqOf: seqOfMB[m], posOf: posOfMB[m], perItem: perItemMB[m],
                              cos: cosT + lo * half, sin: sinT + lo * half, cache: cache, out: xm)
                case .latent(let a):
                    latentAttention(layer: l, a, h: hm, tokens: Tm, seqs: seqs, seqOf: seqOfMB[m], posOf: posOfMB[m],
                                    cos: cosT + lo * half, sin: sinT + lo * half, cache: cache, out: xm)
                }
                let t1 = monotonicSeconds()
                profile.attention += t1 - t0
                t0 = t1
                rmsNorm(xm, lw.postNorm.base, hm, rows: Tm, n: H, eps: spec.rmsNormEps)
                switch lw.ffn {
                case .dense(let mlp):
                    runMLP(mlp, x: hm, rows: Tm, out: fm, scratch: mlpScratch)
                    for i in 0..<(Tm * H) { xm[i] += spec.residualMultiplier * fm[i] }
                    let t2 = monotonicSeconds()
                    profile.dense += t2 - t0
                    t0 = t2
                case .moe(let router):
                    let moe = spec.layers[l].moe!
                    let logits = buf("router", Tm * moe.experts)
                    matmul(hm, rows: Tm, router.gate, out: logits)
                    if let b = router.logitBias { addBias(logits, b, rows: Tm) }
                    var routing = route(logits: logits, tokens: Tm, experts: moe.experts, topK: moe.topK, rule: moe.rule,
                                        normalize: moe.normTopK, bias: router.bias?.base)
                    if let cf = capacityFactor { dropped += applyCapacity(&routing, experts: moe.experts, factor: cf) }
                    let c = routing.counts(numExperts: moe.experts)
                    counts[l] = counts[l].isEmpty ? c : zip(counts[l], c).map { $0 + $1 }
                    let t2 = monotonicSeconds()
                    profile.routing += t2 - t0
                    guard let backend = experts else { fatalError("MoE layer \(l) needs an expert backend") }
                    backend.begin(layer: l, x: hm, routing: routing, out: fm)
                    let t3 = monotonicSeconds()
                    profile.experts += t3 - t2
                    t0 = t3
                    pending[m] = l
                    if let sharedMLP = router.shared {
                        runMLP(sharedMLP, x: hm, rows: Tm, out: shared + lo * H, scratch: mlpScratch)
                        for row in r {
                            sharedGate[row] = router.sharedGate.map { sigmoid(dot(h + row * H, $0.base, H)) } ?? 1
                        }
                        let t4 = monotonicSeconds()
                        profile.dense += t4 - t0
                        t0 = t4
                    }
                }
            }
        }
        for m in 0..<M {
            if let pl = pending[m] { complete(m, layer: pl) }
        }
        // Final norm and lm_head only on the rows whose logits are wanted.
        var rows: [Range<Int>] = [], pick: [Int] = []
        t = 0
        for seq in seqs {
            let n = seq.tokens.count
            let lo = pick.count
            switch seq.logits {
            case .none: break
            case .last: if n > 0 { pick.append(t + n - 1) }
            case .all: pick.append(contentsOf: t..<(t + n))
            }
            rows.append(lo..<pick.count)
            t += n
        }
        let V = spec.vocabSize
        let out = FloatBuffer(count: pick.count * V, zeroed: false)
        for (i, r) in pick.enumerated() {
            rmsNorm(x + r * H, weights.norm.base, h + i * H, rows: 1, n: H, eps: spec.rmsNormEps)
        }
        matmul(h, rows: pick.count, weights.lmHead, out: out.pointer)
        if spec.logitsScaling != 1 { for i in 0..<(pick.count * V) { out.pointer[i] /= spec.logitsScaling } }
        profile.head += monotonicSeconds() - t0
        var result = ForwardOutput(logits: out, vocab: V, rows: rows, expertCounts: counts)
        result.dropped = dropped
        return result
    }

    /// Self-attention of layer `l`; adds o_proj(attn) into `out` (the residual stream).
    private func attention(layer l: Int, _ a: AttentionWeights, h: UnsafeMutablePointer<Float>, tokens T: Int,
                           seqs: [SequenceInput], seqOf: [Int32], posOf: [Int32], perItem: Bool,
                           cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, cache: KVCache, out: UnsafeMutablePointer<Float>) {
        let D = spec.headDim, half = spec.ropeDim / 2, nh = spec.numHeads, nkv = spec.numKVHeads
        let qd = spec.qDim, kd = spec.kvDim, H = spec.hiddenSize
        let q = buf("q", T * qd), k = buf("k", T * kd), v = buf("v", T * kd)
        let group = nh / nkv
        // `perItem`: each token is its sequence's only new one (decode). Then nothing else reads what a (token, KV
        // head) item of the attention job stores, and its query heads, key and value head are its alone: the thread
        // that attends the item also prepares and stores them (copy out of the stacked projection, biases, per-head
        // norms, RoPE: per-head operations, the same arithmetic as over whole rows), so the lines it writes (a
        // block's transposed keys are 128 lines a head) are in its own cache when it reads them back. Otherwise
        // (prompts, verification: a token attends to others of its sequence) every token is prepared and stored
        // first.
        let w = qd + 2 * kd
        // With q, k and v stacked: [T, qd + 2·kd] rows of q | k | v, split by `prepare` into the packed buffers the
        // rest of the layer reads.
        let both = a.qkv != nil ? buf("qkv", T * w) : nil
        if let qkv = a.qkv, let both {
            matmul(h, rows: T, qkv, out: both)
        } else {
            matmul(h, rows: T, a.q, out: q)
            matmul(h, rows: T, a.k, out: k)
            matmul(h, rows: T, a.v, out: v)
        }
        // OLMoE: the norms span all heads of a token's q and k, so they (after the biases), and clip_qkv, are applied
        // to whole rows here, before any head is taken apart.
        let whole = spec.qkNorm == .whole || spec.clipQKV != nil
        if whole {
            for t in 0..<T {
                let qr = both.map { $0 + t * w } ?? q + t * qd
                let kr = both.map { $0 + t * w + qd } ?? k + t * kd
                let vr = both.map { $0 + t * w + qd + kd } ?? v + t * kd
                if let b = a.qBias { axpy(qr, 1, b.base, qd) }
                if let b = a.kBias { axpy(kr, 1, b.base, kd) }
                if let b = a.vBias { axpy(vr, 1, b.base, kd) }
                if spec.qkNorm == .whole, let qn = a.qNorm, let knw = a.kNorm {
                    rmsNorm(qr, qn.base, qr, rows: 1, n: qd, eps: spec.rmsNormEps)
                    rmsNorm(kr, knw.base, kr, rows: 1, n: kd, eps: spec.rmsNormEps)
                }
                if let c = spec.clipQKV {
                    for (x, n) in [(qr, qd), (kr, kd), (vr, kd)] { for i in 0..<n { x[i] = min(max(x[i], -c), c) } }
                }
            }
        }
        /// Token t's query heads of KV head kvh (or all of them), its key and value heads.
        func prepare(token t: Int, kvHead kvh: Int?) {
            let h0 = (kvh ?? 0) * group, hn = kvh == nil ? nh : group, k0 = kvh ?? 0, kn = kvh == nil ? nkv : 1
            let qh = q + t * qd + h0 * D, kh = k + t * kd + k0 * D, vh = v + t * kd + k0 * D
            if let both {
                let row = both + t * w
                qh.update(from: row + h0 * D, count: hn * D)
                kh.update(from: row + qd + k0 * D, count: kn * D)
                vh.update(from: row + qd + kd + k0 * D, count: kn * D)
            }
            if !whole, let b = a.qBias { axpy(qh, 1, b.base + h0 * D, hn * D) }
            if !whole, let b = a.kBias { axpy(kh, 1, b.base + k0 * D, kn * D) }
            if !whole, let b = a.vBias { axpy(vh, 1, b.base + k0 * D, kn * D) }
            if spec.qkNorm == .perHead, let qn = a.qNorm, let knw = a.kNorm {
                rmsNorm(qh, qn.base, qh, rows: hn, n: D, eps: spec.rmsNormEps)
                rmsNorm(kh, knw.base, kh, rows: kn, n: D, eps: spec.rmsNormEps)
            }
            for i in 0..<hn { Rope.apply(qh + i * D, half: half, cos: cos + t * half, sin: sin + t * half) }
            for i in 0..<kn { Rope.apply(kh + i * D, half: half, cos: cos + t * half, sin: sin + t * half) }
        }
        if !perItem {
            for t in 0..<T {
                prepare(token: t, kvHead: nil)
                let s = Int(seqOf[t])
                seqs[s].blockTable.withUnsafeBufferPointer { bt in
                    cache.store(layer: l, blockTable: bt.baseAddress!, position: Int(posOf[t]), key: k + t * kd, value: v + t * kd)
                }
            }
        }
        let attnOut = buf("attn", T * qd)
        let window = spec.slidingWindows[l]
        let scale = spec.attentionScale ?? 1 / Float(D).squareRoot()
        let maxCtx = seqs.map { $0.start + $0.tokens.count }.max() ?? 0
        let tables = seqs.map(\.blockTable)
        // One item per (token, KV head): the group's query heads read each key and value row once. Causal windows
        // grow with the position, so tokens are taken in the order 0, T−1, 1, T−2, …: any contiguous half of the
        // items (what each thread gets) then carries about half of the work.
        parallelFor(T * nkv, grain: 1) { range in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: group * max(maxCtx, 1))
            defer { scores.deallocate() }
            for item in range {
                let j = item / nkv, kvh = item % nkv
                let t = j % 2 == 0 ? j / 2 : T - 1 - j / 2
                let p = Int(posOf[t])
                let lo = window.map { max(0, p - $0 + 1) } ?? 0
                let head = t * qd + kvh * group * D
                tables[Int(seqOf[t])].withUnsafeBufferPointer { bt in
                    if perItem {
                        prepare(token: t, kvHead: kvh)
                        cache.store(layer: l, blockTable: bt.baseAddress!, position: p, head: kvh, key: k + t * kd, value: v + t * kd)
                    }
                    cache.attend(layer: l, q: q + head, heads: group, blocks: bt.baseAddress!, kvHead: kvh, p0: lo, p1: p + 1,
                                 scale: scale, sinks: a.sinks.map { $0.base + kvh * group }, scores: scores, out: attnOut + head)
                }
            }
        }
        let o = buf("o", T * H)
        matmul(attnOut, rows: T, a.o, out: o)
        if let b = a.oBias { addBias(o, b, rows: T) }
        let rm = spec.residualMultiplier
        for i in 0..<(T * H) { out[i] += rm * o[i] }
    }

    /// Multi-head latent attention of layer `l` (see MLASpec), in the latent space: the cache holds one row
    /// [c | k_r] (L + R) per token, read as both key and value (a cache of keys that are its values); head h attends
    /// with [W_UK[h]ᵀ q_nope | q_rope] and its value is W_UV[h] · (the first L of what it attended). Adds o_proj of
    /// the values into `out`.
    private func latentAttention(layer l: Int, _ a: MLAWeights, h: UnsafeMutablePointer<Float>, tokens T: Int,
                                 seqs: [SequenceInput], seqOf: [Int32], posOf: [Int32],
                                 cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, cache: KVCache,
                                 out: UnsafeMutablePointer<Float>) {
        let mla = spec.mla!, n = spec.numHeads, H = spec.hiddenSize, eps = mla.normEps
        let L = mla.kvLoraRank, R = mla.ropeDim, N = mla.nopeDim, V = mla.vDim, D = L + R, qk = mla.qkHeadDim
        let half = R / 2
        let q = buf("mla.q", T * n * qk), kv = buf("mla.kv", T * D)
        // q (or q_a) and kv_a: one product when stacked, [T, rows(q or q_a) + D].
        let qInRows = (a.q ?? a.qA!).rows
        let qIn = a.q != nil ? q : buf("mla.qa", T * qInRows)
        if let both = a.inProj {
            let w = both.rows, tmp = buf("mla.in", T * w)
            matmul(h, rows: T, both, out: tmp)
            for t in 0..<T {
                (qIn + t * qInRows).update(from: tmp + t * w, count: qInRows)
                (kv + t * D).update(from: tmp + t * w + qInRows, count: D)
            }
        } else {
            matmul(h, rows: T, a.q ?? a.qA!, out: qIn)
            matmul(h, rows: T, a.kvA, out: kv)
        }
        if let b = a.kvABias { addBias(kv, b, rows: T) }
        if let qB = a.qB {
            if let b = a.qABias { addBias(qIn, b, rows: T) }
            rmsNorm(qIn, a.qANorm!.base, qIn, rows: T, n: qInRows, eps: eps)
            matmul(qIn, rows: T, qB, out: q)
        }
        let rotate = mla.ropeInterleaved ? Rope.applyInterleaved : Rope.apply
        let qAbs = buf("mla.qabs", T * n * D)
        for t in 0..<T {
            let c = cos + t * half, s = sin + t * half
            rmsNorm(kv + t * D, a.kvANorm.base, kv + t * D, rows: 1, n: L, eps: eps)
            rotate(kv + t * D + L, half, c, s)
            for i in 0..<n {
                let qr = q + (t * n + i) * qk + N
                rotate(qr, half, c, s)
                (qAbs + (t * n + i) * D + L).update(from: qr, count: R)
            }
            let sq = Int(seqOf[t])
            seqs[sq].blockTable.withUnsafeBufferPointer { bt in
                cache.store(layer: l, blockTable: bt.baseAddress!, position: Int(posOf[t]), key: kv + t * D, value: kv + t * D)
            }
        }
        // Each head's nope query into the latent space: [T, N] (stride n·qk) × W_UK[h]ᵀ → [T, L] (stride n·D).
        matmulMany((0..<n).map { i in
            ProductCall(x: q + i * qk, rows: T, a.uk[i], out: qAbs + i * D, ldx: n * qk, ldo: n * D)
        })
        let window = spec.slidingWindows[l]
        let scale = spec.attentionScale ?? 1 / Float(qk).squareRoot()
        let tables = seqs.map(\.blockTable)
        // Items of (token, half of its positions), every head in each (all heads read the same rows, so one GEMM
        // takes them together); the halves' partial softmaxes then merge per token. A decode step of one sequence
        // thus uses both threads, and the split is a function of the token's positions alone, so its output does not
        // depend on the batch. Tokens in the order 0, T−1, 1, … for balance under the causal mask.
        let parts = 2
        let partOut = buf("mla.parts", parts * T * n * D), partMax = buf("mla.max", parts * T * n), partSum = buf("mla.sum", parts * T * n)
        // A sequence with several tokens here (a prompt, a verification) has the keys its tokens read gathered once,
        // positions [first, last) at offset `at` of one buffer; each of its tokens would otherwise gather its own prefix.
        var shared: [Int: (first: Int, count: Int, at: Int)] = [:], total = 0
        for (s, tokens) in Dictionary(grouping: 0..<T, by: { Int(seqOf[$0]) }) where tokens.count > 1 {
            let ps = tokens.map { Int(posOf[$0]) }
            let first = window.map { w in ps.map { max(0, $0 - w + 1) }.min()! } ?? 0, count = ps.max()! + 1 - first
            shared[s] = (first, count, total)
            total += D * count
        }
        let gathered = buf("mla.gathered", max(total, 1))
        let jobs = shared.sorted { $0.key < $1.key }.flatMap { s, g in [(s, g, 0), (s, g, 1)] }
        parallelFor(jobs.count, grain: 1) { range in
            for j in range {
                let (s, g, half) = jobs[j], mid = g.first + g.count / 2
                let (a, b) = half == 0 ? (g.first, mid) : (mid, g.first + g.count)
                tables[s].withUnsafeBufferPointer { bt in
                    cache.gatherLatent(layer: l, blocks: bt.baseAddress!, p0: a, p1: b, into: gathered + g.at + (a - g.first), ld: g.count)
                }
            }
        }
        parallelFor(T * parts, grain: 1) { range in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: n * KVCache.latentChunk)
            let keys = UnsafeMutablePointer<Float>.allocate(capacity: D * KVCache.latentChunk)
            defer { scores.deallocate(); keys.deallocate() }
            for item in range {
                let j = item / parts, part = item % parts
                let t = j % 2 == 0 ? j / 2 : T - 1 - j / 2
                let p = Int(posOf[t])
                let lo = window.map { max(0, p - $0 + 1) } ?? 0, mid = lo + (p + 1 - lo + 1) / 2
                let (a, b) = part == 0 ? (lo, mid) : (mid, p + 1)
                let at = (part * T + t) * n, sq = Int(seqOf[t])
                let source = shared[sq].map { KVCache.LatentKeys.gathered(gathered + $0.at, ld: $0.count, first: $0.first) } ?? .scratch(keys)
                tables[sq].withUnsafeBufferPointer { bt in
                    cache.attendLatent(layer: l, q: qAbs + t * n * D, heads: n, blocks: bt.baseAddress!, p0: a, p1: b, scale: scale,
                                       scores: scores, keys: source, out: partOut + at * D, maxScores: partMax + at, sums: partSum + at)
                }
            }
        }
        let attnOut = buf("mla.attn", T * n * D)
        for t in 0..<T {
            cache.mergeLatentParts(parts, heads: n, out: partOut + t * n * D, outStride: T * n * D, maxScores: partMax + t * n,
                                   sums: partSum + t * n, statStride: T * n, into: attnOut + t * n * D)
        }
        // Values: the attended latent [T, L] (stride n·D) × W_UV[h] → [T, V] (stride n·V).
        let values = buf("mla.v", T * n * V)
        matmulMany((0..<n).map { i in
            ProductCall(x: attnOut + i * D, rows: T, a.uv[i], out: values + i * V, ldx: n * D, ldo: n * V)
        })
        let o = buf("o", T * H)
        matmul(values, rows: T, a.o, out: o)
        if let b = a.oBias { addBias(o, b, rows: T) }
        let rm = spec.residualMultiplier
        for i in 0..<(T * H) { out[i] += rm * o[i] }
    }
}
