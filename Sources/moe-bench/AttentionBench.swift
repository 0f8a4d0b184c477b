import ArgumentParser
import CKernels
import Foundation
import MoECore
import MoEModel

/// Decode attention over a long cached context alone: one step's attention of every layer (each KV head's group of
/// query heads against every cached position, the KV heads split over the threads as the forward pass splits
/// them), as GB/s of K and V read against the read bandwidth sampled around each round, and as GFLOP/s against the
/// f32 GEMM rate: with a group of four query heads a K/V byte of int8 takes 16 multiply-adds, so f16 and int8 are
/// bound by arithmetic where f32 is bound by memory.
struct AttentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Decode attention over a paged KV cache of a long context, per KV-cache type: GB/s of K/V read against the read bandwidth.")

    @Option(help: "Cached positions, comma-separated.") var context = "1024,4096"
    @Option(help: "KV-cache types, comma-separated: f32, f16, int8.") var kv = "f32,f16,int8"
    @Option var layers = 8
    @Option var heads = 16
    @Option(name: .customLong("kv-heads")) var kvHeads = 4
    @Option(name: .customLong("head-dim")) var headDim = 64
    @Option(name: .customLong("block-size")) var blockSize = 16
    @Option(help: "Interleaved rounds.") var rounds = 5
    @Flag(help: "Latent attention (DeepSeek's MLA): one KV head whose keys are its values, every query head against it (--kv-heads is 1, --head-dim e.g. 576); compares the per-group kernel with the two-GEMM path the model runs.")
    var latent = false

    func validate() throws {
        guard layers > 0, kvHeads > 0, heads % kvHeads == 0, headDim > 0, blockSize > 0, rounds > 0 else {
            throw ValidationError("--layers, --kv-heads, --head-dim, --block-size and --rounds must be positive, --heads a multiple of --kv-heads")
        }
    }

    /// One layer's K and V pools of one type, holding `positions` random rows per KV head in blocks 0, 1, 2, … (the
    /// order a fresh block allocator hands them out).
    final class Pools {
        let kind: Int32
        let k: [UnsafeMutableRawPointer], v: [UnsafeMutableRawPointer]
        let ks: [UnsafeMutablePointer<Float>], vs: [UnsafeMutablePointer<Float>]
        let table: [Int32]
        /// K and V bytes one step reads over all layers (int8 scales included).
        let bytes: Int

        init(kind: Int32, elem: Int, layers: Int, kvHeads: Int, D: Int, blockSize: Int, positions: Int) {
            self.kind = kind
            let blocks = (positions + blockSize - 1) / blockSize, slots = blocks * kvHeads * blockSize
            table = (0..<Int32(blocks)).map { $0 }
            var rng = SeededRNG(seed: 7)
            let row = (0..<D).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
            func pool() -> UnsafeMutableRawPointer { .allocate(byteCount: slots * D * elem, alignment: 64) }
            k = (0..<layers).map { _ in pool() }
            v = (0..<layers).map { _ in pool() }
            ks = (0..<layers).map { _ in .allocate(capacity: slots) }
            vs = (0..<layers).map { _ in .allocate(capacity: slots) }
            for l in 0..<layers {
                for s in 0..<slots {
                    kern_kv_store(kind, row, k[l], ks[l], s, Int32(D), Int32(blockSize))
                    kern_kv_store(kind, row, v[l], vs[l], s, Int32(D), 0)
                }
            }
            bytes = 2 * layers * kvHeads * positions * (D * elem + (kind == KERN_KV_I8 ? 4 : 0))
        }

        deinit {
            for p in k + v { p.deallocate() }
            for p in ks + vs { p.deallocate() }
        }
    }

    func run() throws {
        ComputeThreads.ensureConfigured()
        if latent { return try runLatent() }
        let contexts = context.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        let types: [(String, Int32, Int)] = try kv.split(separator: ",").map {
            switch $0 {
            case "f32": return ("f32", Int32(KERN_KV_F32), 4)
            case "f16": return ("f16", Int32(KERN_KV_F16), 2)
            case "int8": return ("int8", Int32(KERN_KV_I8), 1)
            default: throw ValidationError("--kv: '\($0)' is not f32, f16 or int8")
            }
        }
        let D = headDim, group = heads / kvHeads
        var rng = SeededRNG(seed: 3)
        let q = (0..<(heads * D)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
        let gemm = Roofline.gemmFlops()
        print("decode attention, \(layers) layers, \(heads) heads / \(kvHeads) KV heads of \(D), blocks of \(blockSize) positions, \(ComputeThreads.count) threads (\(ComputeThreads.isa)); median of \(rounds) interleaved rounds; f32 GEMM \(String(format: "%.0f", gemm / 1e9)) GFLOP/s")
        print("| context | KV type | KV MB/step | ms/step | GB/s | read bandwidth (GB/s) | ÷ bandwidth | GFLOP/s | ÷ f32 GEMM |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for ctx in contexts {
            let pools = types.map { Pools(kind: $0.1, elem: $0.2, layers: layers, kvHeads: kvHeads, D: D, blockSize: blockSize, positions: ctx) }
            let scale = 1 / Float(D).squareRoot()
            // One step's attention over every layer; seconds.
            func step(_ p: Pools) -> Double {
                let t0 = monotonicSeconds()
                for l in 0..<layers {
                    p.table.withUnsafeBufferPointer { bt in
                        q.withUnsafeBufferPointer { qp in
                            parallelFor(kvHeads) { range in
                                let scores = UnsafeMutablePointer<Float>.allocate(capacity: group * ctx)
                                let out = UnsafeMutablePointer<Float>.allocate(capacity: group * D)
                                defer { scores.deallocate(); out.deallocate() }
                                for h in range {
                                    kern_attend_group(p.kind, qp.baseAddress! + h * group * D, D, Int32(group), p.k[l], p.v[l],
                                                      p.ks[l], p.vs[l], bt.baseAddress!, Int32(blockSize), Int32(kvHeads),
                                                      Int32(D), Int32(h), 0, Int32(ctx), scale, nil, scores, out, D)
                                }
                            }
                        }
                    }
                }
                return monotonicSeconds() - t0
            }
            var seconds = Array(repeating: [Double](), count: types.count), ratios = seconds, bws = seconds
            for _ in 0..<rounds {
                for (i, p) in pools.enumerated() {
                    let before = Roofline.readBandwidth()
                    // Steps for about 0.2 s, so that one round is long against a bandwidth sample.
                    var n = 0, t = 0.0
                    while t < 0.2 || n < 3 { t += step(p); n += 1 }
                    let after = Roofline.readBandwidth(), bw = max(before, after)
                    seconds[i].append(t / Double(n))
                    ratios[i].append(Double(p.bytes) / (t / Double(n)) / bw)
                    bws[i].append(bw)
                }
            }
            func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }
            // Multiply-adds ×2 of a step: each of the `heads` query heads against every position's key and value.
            let flops = 2.0 * 2 * Double(heads * D * ctx * layers)
            for (i, p) in pools.enumerated() {
                let s = median(seconds[i])
                print(String(format: "| %d | %@ | %.1f | %.3f | %.1f | %.1f | %.2f | %.0f | %.2f |", ctx, types[i].0, Double(p.bytes) / 1e6,
                             s * 1e3, Double(p.bytes) / s / 1e9, median(bws[i]) / 1e9, median(ratios[i]), flops / s / 1e9,
                             flops / s / gemm))
            }
        }
    }

    /// Latent attention: each layer's cache holds one row per position, read as key and value; a step's heads split
    /// in two halves over the threads, as the model splits them. Per KV type, the per-group kernel (kern_attend_group
    /// reading the keys again as values) against gathering the keys once and two SGEMMs (KVCache.attendLatent).
    func runLatent() throws {
        let contexts = context.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        let types = try kv.split(separator: ",").map { s -> KVDType in
            guard let t = KVDType(rawValue: String(s)) else { throw ValidationError("--kv: '\(s)' is not f32, f16 or int8") }
            return t
        }
        let D = headDim, halves = min(heads, 2), per = (heads + halves - 1) / halves
        var rng = SeededRNG(seed: 3)
        let q = (0..<(heads * D)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
        let gemm = Roofline.gemmFlops()
        print("latent decode attention, \(layers) layers, \(heads) heads against one row of \(D) per position, blocks of \(blockSize), \(ComputeThreads.count) threads (\(ComputeThreads.isa)); median of \(rounds) interleaved rounds; f32 GEMM \(String(format: "%.0f", gemm / 1e9)) GFLOP/s")
        print("| context | KV type | method | ms/step | GFLOP/s | ÷ f32 GEMM |")
        print("| --- | --- | --- | --- | --- | --- |")
        for ctx in contexts {
            let blocks = (ctx + blockSize - 1) / blockSize
            let table = (0..<Int32(blocks)).map { $0 }
            let row = (0..<D).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
            let caches = types.map { KVCache(layers: layers, kvHeads: 1, headDim: D, blockSize: blockSize, numBlocks: blocks, dtype: $0, valuesAreKeys: true) }
            for c in caches {
                table.withUnsafeBufferPointer { bt in
                    for l in 0..<layers { for p in 0..<ctx { c.store(layer: l, blockTable: bt.baseAddress!, position: p, head: 0, key: row, value: row) } }
                }
            }
            let scale = 1 / Float(D).squareRoot()
            // The per-group kernel: each thread half the heads against every position. The model's path: each
            // thread every head against half the positions, then the halves' softmaxes merged.
            let half = (ctx + 1) / 2
            let partOut = UnsafeMutablePointer<Float>.allocate(capacity: 2 * heads * D), stats = UnsafeMutablePointer<Float>.allocate(capacity: 4 * heads)
            let merged = UnsafeMutablePointer<Float>.allocate(capacity: heads * D)
            defer { partOut.deallocate(); stats.deallocate(); merged.deallocate() }
            func step(_ c: KVCache, gemmPath: Bool) -> Double {
                let t0 = monotonicSeconds()
                for l in 0..<layers {
                    table.withUnsafeBufferPointer { bt in
                        q.withUnsafeBufferPointer { qp in
                            parallelFor(halves) { range in
                                let scores = UnsafeMutablePointer<Float>.allocate(capacity: heads * max(ctx, KVCache.latentChunk))
                                let out = UnsafeMutablePointer<Float>.allocate(capacity: heads * D)
                                let keys = UnsafeMutablePointer<Float>.allocate(capacity: gemmPath ? D * KVCache.latentChunk : 1)
                                defer { scores.deallocate(); out.deallocate(); keys.deallocate() }
                                for h in range {
                                    if gemmPath {
                                        c.attendLatent(layer: l, q: qp.baseAddress!, heads: heads, blocks: bt.baseAddress!, p0: h * half,
                                                       p1: min(ctx, (h + 1) * half), scale: scale, scores: scores, keys: .scratch(keys),
                                                       out: partOut + h * heads * D, maxScores: stats + h * heads, sums: stats + (2 + h) * heads)
                                    } else {
                                        let h0 = h * per, hn = min(per, heads - h0)
                                        c.attend(layer: l, q: qp.baseAddress! + h0 * D, heads: hn, blocks: bt.baseAddress!, kvHead: 0, p0: 0, p1: ctx,
                                                 scale: scale, scores: scores, out: out)
                                    }
                                }
                            }
                            if gemmPath {
                                c.mergeLatentParts(halves, heads: heads, out: partOut, outStride: heads * D, maxScores: stats, sums: stats + 2 * heads,
                                                   statStride: heads, into: merged)
                            }
                        }
                    }
                }
                return monotonicSeconds() - t0
            }
            var seconds = Array(repeating: [Double](), count: 2 * types.count)
            for _ in 0..<rounds {
                for (i, c) in caches.enumerated() {
                    for g in 0..<2 {
                        var n = 0, t = 0.0
                        while t < 0.2 || n < 3 { t += step(c, gemmPath: g == 1); n += 1 }
                        seconds[2 * i + g].append(t / Double(n))
                    }
                }
            }
            let flops = 2.0 * 2 * Double(heads * D * ctx * layers)
            for (i, t) in types.enumerated() {
                for g in 0..<2 {
                    let s = seconds[2 * i + g].sorted()[rounds / 2]
                    print(String(format: "| %d | %@ | %@ | %.3f | %.0f | %.2f |", ctx, t.rawValue, g == 1 ? "positions halved, chunks of 2 SGEMM" : "per-group kernel",
                                 s * 1e3, flops / s / 1e9, flops / s / gemm))
                }
            }
        }
    }
}
