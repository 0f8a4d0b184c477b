import CKernels
import Foundation
import MoECore

/// How K/V entries are stored: f32; f16; int8 with one f32 scale per (token, head).
public enum KVDType: String, Sendable, CaseIterable {
    case f32, f16, int8

    var kernel: Int32 {
        switch self {
        case .f32: return Int32(KERN_KV_F32)
        case .f16: return Int32(KERN_KV_F16)
        case .int8: return Int32(KERN_KV_I8)
        }
    }

    /// Bytes one token's K (or V) row of one head takes, scale included.
    public func rowBytes(headDim: Int) -> Int {
        switch self {
        case .f32: return 4 * headDim
        case .f16: return 2 * headDim
        case .int8: return headDim + 4
        }
    }
}

/// Paged key/value storage: a pool of fixed-size blocks shared by all sequences; one block id addresses the same
/// slots in every layer. Per layer, V is [blocks, kvHeads, blockSize, headDim] and K [blocks, kvHeads, headDim,
/// blockSize] (transposed per block and head, so that a run of positions' scores are vectors; see attention.c):
/// one head's keys and values in a block are contiguous for the attention scan. Which blocks a sequence owns is
/// decided outside (a block table).
/// With `valuesAreKeys` (multi-head latent attention) there is no V pool: attention reads each key row as its value.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    public let blockSize: Int
    public let numBlocks: Int
    public let dtype: KVDType
    /// Keys that are also the values (multi-head latent attention's latent rows): no value pool is held.
    public let valuesAreKeys: Bool
    let k: [UnsafeMutableRawPointer]
    let v: [UnsafeMutableRawPointer]
    let kScale: [UnsafeMutablePointer<Float>]
    let vScale: [UnsafeMutablePointer<Float>]

    public init(layers: Int, kvHeads: Int, headDim: Int, blockSize: Int = 16, numBlocks: Int, dtype: KVDType = .f32,
                valuesAreKeys: Bool = false) {
        self.valuesAreKeys = valuesAreKeys
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.blockSize = blockSize
        self.numBlocks = numBlocks
        self.dtype = dtype
        let slots = max(numBlocks * kvHeads * blockSize, 1)
        let elem = dtype == .f32 ? 4 : (dtype == .f16 ? 2 : 1)
        // Touched once now, so the pool's memory is resident from the start and does not grow with traffic.
        func pool() -> UnsafeMutableRawPointer {
            let p = UnsafeMutableRawPointer.allocate(byteCount: slots * headDim * elem, alignment: 64)
            p.initializeMemory(as: UInt8.self, repeating: 0, count: slots * headDim * elem)
            return p
        }
        k = (0..<layers).map { _ in pool() }
        v = valuesAreKeys ? [] : (0..<layers).map { _ in pool() }
        let scaleSlots = dtype == .int8 ? slots : 1
        kScale = (0..<layers).map { _ in .allocate(capacity: scaleSlots) }
        vScale = valuesAreKeys ? [] : (0..<layers).map { _ in .allocate(capacity: scaleSlots) }
    }

    deinit {
        for p in k + v { p.deallocate() }
        for p in kScale + vScale { p.deallocate() }
    }

    /// A model's cache: latent attention's rows are its keys and its values.
    public convenience init(spec: ModelSpec, blockSize: Int = 16, numBlocks: Int, dtype: KVDType = .f32) {
        self.init(layers: spec.numLayers, kvHeads: spec.numKVHeads, headDim: spec.headDim, blockSize: blockSize,
                  numBlocks: numBlocks, dtype: dtype, valuesAreKeys: spec.mla != nil)
    }

    /// Bytes of one token's K and V over all layers: 2 × layers × kvHeads × headDim × bytes (+ int8 scales), once
    /// for latent attention's rows (keys that are the values).
    public static func bytesPerToken(_ spec: ModelSpec, dtype: KVDType) -> Int {
        (spec.mla == nil ? 2 : 1) * spec.numLayers * spec.numKVHeads * dtype.rowBytes(headDim: spec.headDim)
    }

    public var bytesPerToken: Int { (valuesAreKeys ? 1 : 2) * layers * kvHeads * dtype.rowBytes(headDim: headDim) }
    public var capacityTokens: Int { numBlocks * blockSize }
    public var byteCount: Int { capacityTokens * bytesPerToken }

    @inline(__always)
    func slot(block: Int32, head: Int, offset: Int) -> Int { (Int(block) * kvHeads + head) * blockSize + offset }

    /// Stores one token's keys and values [kvHeads · headDim] at `position` of the sequence with `blockTable` (the
    /// values unread when they are the keys).
    func store(layer: Int, blockTable: UnsafePointer<Int32>, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        for h in 0..<kvHeads { store(layer: layer, blockTable: blockTable, position: position, head: h, key: key, value: value) }
    }

    /// Head `h` of one position's keys and values (key, value: every KV head's, [kvHeads × headDim]).
    public func store(layer: Int, blockTable: UnsafePointer<Int32>, position: Int, head h: Int, key: UnsafePointer<Float>,
               value: UnsafePointer<Float>) {
        let block = blockTable[position / blockSize], off = position % blockSize
        precondition(block >= 0 && Int(block) < numBlocks, "KV write to a block the sequence does not own (position \(position))")
        let s = slot(block: block, head: h, offset: off)
        kern_kv_store(dtype.kernel, key + h * headDim, k[layer], kScale[layer], s, Int32(headDim), Int32(blockSize))
        if !valuesAreKeys { kern_kv_store(dtype.kernel, value + h * headDim, v[layer], vScale[layer], s, Int32(headDim), 0) }
    }

    /// The `heads` query heads [heads × headDim, contiguous] that share `kvHead`, against positions [p0, p1) of a
    /// sequence; writes out [heads × headDim]. `scores` needs heads × (p1 − p0) floats. `sinks` (gpt-oss): one logit
    /// per query head that joins its softmax with a zero value.
    @inline(__always)
    public func attend(layer: Int, q: UnsafePointer<Float>, heads: Int, blocks: UnsafePointer<Int32>, kvHead: Int, p0: Int, p1: Int,
                scale: Float, sinks: UnsafePointer<Float>? = nil, scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        kern_attend_group(dtype.kernel, q, headDim, Int32(heads), k[layer], valuesAreKeys ? nil : v[layer], kScale[layer],
                          valuesAreKeys ? nil : vScale[layer], blocks,
                          Int32(blockSize), Int32(kvHeads), Int32(headDim), Int32(kvHead), Int32(p0), Int32(p1), scale, sinks,
                          scores, out, headDim)
    }
}

extension KVCache {
    /// Positions latent attention takes per pair of GEMMs: their widened keys (576 × 128 × 4 bytes for DeepSeek) stay
    /// in L2 between the two.
    public static let latentChunk = 128

    /// Where latent attention reads its keys: gathered chunk by chunk into scratch of headDim × latentChunk floats,
    /// or already gathered (`gatherLatent`) for positions first ..< first + ld, [headDim × ld]: a sequence's tokens of
    /// one pass (a prompt, a verification) then share one gather instead of each reading its prefix again. Either way
    /// a chunk's GEMMs take the same values (only their row stride differs), so a token's output is the same.
    public enum LatentKeys {
        case scratch(UnsafeMutablePointer<Float>)
        case gathered(UnsafePointer<Float>, ld: Int, first: Int)
    }

    /// Keys of positions [p0, p1) of a sequence, widened to f32 (int8 times its row's scale), as columns:
    /// into[d · ld + (p − p0)].
    public func gatherLatent(layer: Int, blocks: UnsafePointer<Int32>, p0: Int, p1: Int, into: UnsafeMutablePointer<Float>, ld: Int) {
        let D = headDim, bs = blockSize
        // Runs of positions [p, p + nr) within one block; a block's keys are [D × bs] (transposed).
        var p = p0
        while p < p1 {
            let s = p % bs, nr = min(bs - s, p1 - p), slot0 = Int(blocks[p / bs]) * kvHeads * bs, at = p - p0
            switch dtype {
            case .f32:
                let base = UnsafePointer(k[layer].assumingMemoryBound(to: Float.self)) + slot0 * D + s
                for d in 0..<D { (into + d * ld + at).update(from: base + d * bs, count: nr) }
            case .f16:
                let base = UnsafePointer(k[layer].assumingMemoryBound(to: UInt16.self)) + slot0 * D + s
                for d in 0..<D { kern_f16_to_f32(base + d * bs, into + d * ld + at, nr) }
            case .int8:
                let base = UnsafePointer(k[layer].assumingMemoryBound(to: Int8.self)) + slot0 * D + s
                let sc = kScale[layer] + slot0 + s
                for d in 0..<D { for r in 0..<nr { into[d * ld + at + r] = Float(base[d * bs + r]) * sc[r] } }
            }
            p += nr
        }
    }

    /// Latent attention's heads over part of a sequence (a cache of keys that are its values, one KV head): `heads`
    /// queries [heads × headDim, rows of headDim] against positions [p0, p1). Writes, per head, the largest scaled
    /// score m (`maxScores`), Σ e^(s − m) (`sums`) and out = Σ e^(s − m) · key row [headDim], unnormalised, so that parts
    /// over disjoint positions merge into the softmax over all of them (`mergeLatentParts`). Chunk by chunk of
    /// `latentChunk` positions, scores = Q · K and the chunk's P · Kᵀ are two GEMMs (OpenBLAS, one thread) on the
    /// keys widened to f32, merged into the running sums as the chunks come: every head reads the same row per
    /// position, so this is arithmetic, which SGEMM does at 2–3 times the rate of the per-group kernel (bound by
    /// loads; `moe-bench attention --latent`). `scores` needs heads × latentChunk floats. The same heads and positions
    /// take the same operations whatever else is computed, so a token's output does not depend on its batch.
    public func attendLatent(layer: Int, q: UnsafePointer<Float>, heads: Int, blocks: UnsafePointer<Int32>, p0: Int, p1: Int,
                             scale: Float, scores: UnsafeMutablePointer<Float>, keys: LatentKeys,
                             out: UnsafeMutablePointer<Float>, maxScores: UnsafeMutablePointer<Float>, sums: UnsafeMutablePointer<Float>) {
        precondition(valuesAreKeys && kvHeads == 1, "latent attention reads a cache of one KV head whose keys are its values")
        let D = headDim
        out.update(repeating: 0, count: heads * D)
        maxScores.update(repeating: -.infinity, count: heads)
        sums.update(repeating: 0, count: heads)
        var c0 = p0
        while c0 < p1 {
            let c1 = min(p1, c0 + Self.latentChunk), n = c1 - c0
            let kb: UnsafePointer<Float>, ldb: Int
            switch keys {
            case .scratch(let s):
                gatherLatent(layer: layer, blocks: blocks, p0: c0, p1: c1, into: s, ld: n)
                (kb, ldb) = (UnsafePointer(s), n)
            case .gathered(let g, let ld, let first):
                precondition(c0 >= first && c1 <= first + ld, "positions \(c0)..<\(c1) outside the gathered \(first)..<\(first + ld)")
                (kb, ldb) = (g + (c0 - first), ld)
            }
            sgemm(m: heads, n: n, k: D, q, lda: D, kb, ldb: ldb, scores, ldc: n)
            for h in 0..<heads {
                var m: Float = 0
                let l = kern_exp_scaled_f32(scores + h * n, n, scale, &m)
                // The running sums and this chunk's, each rescaled to the larger of their maxima.
                let mNew = max(maxScores[h], m), old = expf(maxScores[h] - mNew), new = expf(m - mNew)
                if old != 1 { for d in 0..<D { out[h * D + d] *= old } }
                sums[h] = sums[h] * old + l * new
                maxScores[h] = mNew
                if new != 1 { for r in 0..<n { scores[h * n + r] *= new } }
            }
            sgemm(m: heads, n: D, k: n, scores, lda: n, kb, ldb: ldb, transposeB: true, beta: 1, out, ldc: D)
            c0 = c1
        }
    }

    /// The softmax-weighted rows of `parts` parts of `attendLatent` (part i: out + i·outStride, its maxima and sums
    /// at i·statStride), into `into` [heads × headDim]: each part's sums rescaled to the largest maximum.
    public func mergeLatentParts(_ parts: Int, heads: Int, out: UnsafePointer<Float>, outStride: Int, maxScores: UnsafePointer<Float>,
                                 sums: UnsafePointer<Float>, statStride: Int, into: UnsafeMutablePointer<Float>) {
        let D = headDim
        for h in 0..<heads {
            var m = -Float.infinity
            for i in 0..<parts { m = max(m, maxScores[i * statStride + h]) }
            // A part's weight: e^(its max − m), 0 for an empty part (no positions, sum 0).
            func weight(_ i: Int) -> Float { sums[i * statStride + h] > 0 ? expf(maxScores[i * statStride + h] - m) : 0 }
            var total: Float = 0
            for i in 0..<parts { total += weight(i) * sums[i * statStride + h] }
            let dst = into + h * D
            dst.update(repeating: 0, count: D)
            for i in 0..<parts { let w = weight(i); if w > 0 { axpy(dst, w / total, out + i * outStride + h * D, D) } }
        }
    }
}

/// A free list of KV blocks: the minimal allocator one-shot runs use. (The serving engine's block manager adds
/// prefix caching, sliding-window frees and preemption.)
public struct BlockAllocator: Sendable {
    private var free: [Int32]
    public init(numBlocks: Int) { free = (0..<Int32(numBlocks)).reversed() }
    public var freeCount: Int { free.count }

    /// Grows `table` so that it covers `tokens` positions; false (and no change) when the pool is short.
    public mutating func ensure(_ table: inout [Int32], tokens: Int, blockSize: Int) -> Bool {
        let need = (tokens + blockSize - 1) / blockSize - table.count
        if need <= 0 { return true }
        if need > free.count { return false }
        for _ in 0..<need { table.append(free.removeLast()) }
        return true
    }

    public mutating func release(_ table: inout [Int32]) {
        free.append(contentsOf: table.filter { $0 >= 0 })
        table.removeAll()
    }
}
