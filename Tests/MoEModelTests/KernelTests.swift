import CKernels
import Foundation
import MoECore
import Testing
@testable import MoEModel

@Suite(.serialized) struct KernelTests {
    func randoms(_ n: Int, seed: UInt64) -> [Float] {
        var r = SeededRNG(seed: seed)
        return (0..<n).map { _ in Float(r.nextUnit() * 2 - 1) }
    }

    /// The product profile behind `moe-bench model --products`: one entry per (format, shape, input rows), with its
    /// calls and the weight bytes they read; nothing recorded once stopped; cleared by the next start. The profile
    /// is process-wide and other suites run products meanwhile, so only this test's shape (1056 columns) is counted.
    @Test func productProfileCountsCallsAndWeightBytesPerShape() throws {
        ComputeThreads.ensureConfigured()
        let cols = 1056
        let w = try #require(Matrix(FloatBuffer(randoms(64 * cols, seed: 5)), rows: 64, cols: cols).converted(to: .f16))
        let q = try #require(Matrix(FloatBuffer(randoms(32 * cols, seed: 6)), rows: 32, cols: cols).converted(to: .int4))
        let x = randoms(3 * cols, seed: 7)
        var y = [Float](repeating: 0, count: 3 * 64)
        func mine(_ s: [ProductStat]) -> [ProductStat] { s.filter { $0.cols == cols } }
        ProductProfile.start()
        for _ in 0..<2 { matmul(x, rows: 1, w, out: &y) }
        matmul(x, rows: 3, w, out: &y)
        matmul(x, rows: 1, q, out: &y)
        let stats = mine(ProductProfile.stop())
        matmul(x, rows: 1, w, out: &y)   // not recorded
        #expect(mine(ProductProfile.stop()).map(\.calls) == stats.map(\.calls))
        try #require(stats.count == 3, "\(stats)")
        #expect(stats.map(\.calls) == [2, 1, 1])
        #expect(stats.map(\.inputRows) == [1, 3, 1])
        #expect(stats.map(\.format) == [.f16, .f16, .int4])
        #expect(stats[0].rows == 64 && stats[0].weightBytes == Double(2 * 64 * cols * 2))
        // int4: half a byte per value plus an f16 scale per group of 32.
        #expect(stats[2].rows == 32 && stats[2].weightBytes == Double(32 * (cols / 2 + cols / 32 * 2)))
        #expect(stats.allSatisfy { $0.seconds > 0 })
        ProductProfile.start()
        #expect(mine(ProductProfile.stop()).isEmpty)
    }

    @Test func everyInstructionSetGivesTheSameProducts() {
        ComputeThreads.ensureConfigured()
        let rows = 37, cols = 301
        let w = randoms(rows * cols, seed: 1), x = randoms(cols, seed: 2)
        var ref = [Float](repeating: 0, count: rows)
        for r in 0..<rows { var s = 0.0; for c in 0..<cols { s += Double(w[r * cols + c]) * Double(x[c]) }; ref[r] = Float(s) }
        for isa in [KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512] where isa <= kern_isa_detected() {
            kern_isa_force(Int32(isa))
            var y = [Float](repeating: 0, count: rows)
            kern_gemv_f32(w, cols, x, cols, &y, 0, rows)
            for r in 0..<rows { #expect(abs(y[r] - ref[r]) < 1e-4, "isa \(isa) row \(r)") }
            #expect(abs(kern_dot_f32(w, x, cols) - ref[0]) < 1e-4)
        }
        kern_isa_force(-1)
    }

    /// The vector exp behind SwiGLU and the attention softmax: within 2e-6 relative of Double on every instruction
    /// set, over lengths with every tail size, inputs far outside exp's range (large scores, SiLU of −100), and each
    /// element the same whether it sits in a vector body or a tail (a token's values must not depend on its batch).
    @Test func swigluAndSoftmaxMatchDoubleOnEveryInstructionSetAndTail() {
        for n in [1, 7, 8, 9, 15, 16, 17, 33, 100] {
            var g = randoms(n, seed: UInt64(n)).map { $0 * 12 }, u = randoms(n, seed: UInt64(n + 1000))
            g[0] = -100; if n > 2 { g[2] = 90 }
            let swiRef = (0..<n).map { Double(g[$0]) / (1 + Foundation.exp(-Double(g[$0]))) * Double(u[$0]) }
            let x = randoms(n, seed: UInt64(n + 2000)).map { $0 * 40 }, scale: Float = 3
            let m = x.map { Double($0 * scale) }.max()!
            let e = x.map { Foundation.exp(Double($0 * scale) - m) }, z = e.reduce(0, +)
            for isa in [KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512] where isa <= kern_isa_detected() {
                kern_isa_force(Int32(isa))
                var out = [Float](repeating: .nan, count: n)
                kern_swiglu_f32(g, u, &out, n)
                for i in 0..<n {
                    #expect(abs(Double(out[i]) - swiRef[i]) <= 2e-6 * abs(swiRef[i]) + 1e-30, "n \(n) isa \(isa) swiglu[\(i)]")
                }
                // Element i alone (a vector tail of one) equals element i of the whole row.
                for i in 0..<n {
                    var one: Float = .nan
                    kern_swiglu_f32([g[i]], [u[i]], &one, 1)
                    #expect(one == out[i], "n \(n) isa \(isa) swiglu[\(i)] alone")
                }
                var row = x
                kern_softmax_scaled_f32(&row, n, scale)
                for i in 0..<n { #expect(abs(Double(row[i]) - e[i] / z) <= 2e-6 * e[i] / z + 1e-30, "n \(n) isa \(isa) softmax[\(i)]") }
            }
            kern_isa_force(-1)
        }
    }

    /// Grouped-query attention over a paged cache (runs that cross blocks in a shuffled table, a window that starts
    /// mid-block, head sizes with vector tails, groups of 1…5 heads) against softmax(q·K/√d)·V computed in Double; every
    /// instruction set and cache type, f16/int8 within their rounding of the entries.
    @Test func groupedAttentionMatchesNaiveSoftmaxOnEveryInstructionSetAndCacheType() {
        for (D, blockSize, group) in [(64, 16, 4), (72, 5, 5), (20, 16, 1), (128, 32, 2)] {
            let kvHeads = 3, n = 83, p0 = 7
            let blocks = (n + blockSize - 1) / blockSize
            let table: [Int32] = (0..<Int32(blocks + 2)).reversed().map { $0 }     // not in order, with spare blocks
            let keys = randoms(n * kvHeads * D, seed: 11), values = randoms(n * kvHeads * D, seed: 12)
            let q = randoms(group * D, seed: 13)
            let scale = 1 / Float(D).squareRoot()
            for dtype in KVDType.allCases {
              // A cache of keys that are the values (latent attention's) holds no value pool and reads the keys.
              for shared in [false, true] {
                let values = shared ? keys : values
                let cache = KVCache(layers: 1, kvHeads: kvHeads, headDim: D, blockSize: blockSize, numBlocks: blocks + 2, dtype: dtype,
                                    valuesAreKeys: shared)
                table.withUnsafeBufferPointer { bt in
                    for p in 0..<n {
                        cache.store(layer: 0, blockTable: bt.baseAddress!, position: p, key: keys.withUnsafeBufferPointer { $0.baseAddress! + p * kvHeads * D },
                                    value: values.withUnsafeBufferPointer { $0.baseAddress! + p * kvHeads * D })
                    }
                }
                let kvHead = 1
                var ref = [Double](repeating: 0, count: group * D)
                for g in 0..<group {
                    let s = (p0..<n).map { p in (0..<D).reduce(0.0) { $0 + Double(q[g * D + $1]) * Double(keys[(p * kvHeads + kvHead) * D + $1]) } * Double(scale) }
                    let m = s.max()!, e = s.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                    for (i, p) in (p0..<n).enumerated() {
                        for d in 0..<D { ref[g * D + d] += e[i] / z * Double(values[(p * kvHeads + kvHead) * D + d]) }
                    }
                }
                let tolerance: Double = dtype == .f32 ? 1e-5 : (dtype == .f16 ? 2e-3 : 2e-2)
                for isa in [KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512] where isa <= kern_isa_detected() {
                    kern_isa_force(Int32(isa))
                    var out = [Float](repeating: .nan, count: group * D)
                    var scores = [Float](repeating: 0, count: group * (n - p0))
                    table.withUnsafeBufferPointer { bt in
                        cache.attend(layer: 0, q: q, heads: group, blocks: bt.baseAddress!, kvHead: kvHead, p0: p0, p1: n,
                                     scale: scale, scores: &scores, out: &out)
                    }
                    let err = zip(out, ref).map { abs(Double($0) - $1) }.max()!
                    #expect(err < tolerance, "D \(D) block \(blockSize) group \(group) \(dtype) shared \(shared) isa \(isa): max |Δ| \(err)")
                }
                kern_isa_force(-1)
              }
            }
        }
    }

    /// Latent attention's path (KVCache.attendLatent: chunks of two GEMMs over the gathered keys, parts over
    /// disjoint positions merged) against softmax(q·Kᵀ)·K in Double, for every cache type: a context of several
    /// chunks starting mid-block, split in parts of unequal length, one part empty.
    @Test func latentAttentionMatchesNaiveSoftmaxOverItsKeys() {
        let D = 40, heads = 6, blockSize = 16, n = 2 * KVCache.latentChunk + 37, p0 = 5
        let blocks = (n + blockSize - 1) / blockSize
        let table: [Int32] = (0..<Int32(blocks)).reversed().map { $0 }
        let keys = randoms(n * D, seed: 41), q = randoms(heads * D, seed: 42), scale: Float = 0.3
        var ref = [Double](repeating: 0, count: heads * D)
        for h in 0..<heads {
            let s = (p0..<n).map { p in (0..<D).reduce(0.0) { $0 + Double(q[h * D + $1]) * Double(keys[p * D + $1]) } * Double(scale) }
            let m = s.max()!, e = s.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
            for (i, p) in (p0..<n).enumerated() { for d in 0..<D { ref[h * D + d] += e[i] / z * Double(keys[p * D + d]) } }
        }
        for dtype in KVDType.allCases {
            let cache = KVCache(layers: 1, kvHeads: 1, headDim: D, blockSize: blockSize, numBlocks: blocks, dtype: dtype, valuesAreKeys: true)
            var merged = [Float](repeating: .nan, count: heads * D)
            table.withUnsafeBufferPointer { bt in
                for p in 0..<n {
                    keys.withUnsafeBufferPointer { cache.store(layer: 0, blockTable: bt.baseAddress!, position: p, head: 0, key: $0.baseAddress! + p * D, value: $0.baseAddress! + p * D) }
                }
                // Three parts: [p0, 150), [150, n), [n, n).
                let cuts = [(p0, 150), (150, n), (n, n)]
                var out = [Float](repeating: 0, count: cuts.count * heads * D), stats = [Float](repeating: 0, count: 2 * cuts.count * heads)
                var scores = [Float](repeating: 0, count: heads * KVCache.latentChunk), scratch = [Float](repeating: 0, count: D * KVCache.latentChunk)
                // The keys gathered per chunk, and all of them gathered first (as a prompt's tokens share them): the
                // same bits either way.
                var all = [Float](repeating: 0, count: D * (n - p0))
                all.withUnsafeMutableBufferPointer { cache.gatherLatent(layer: 0, blocks: bt.baseAddress!, p0: p0, p1: n, into: $0.baseAddress!, ld: n - p0) }
                var outs: [[Float]] = []
                for shared in [false, true] {
                    for (i, (a, b)) in cuts.enumerated() {
                        out.withUnsafeMutableBufferPointer { o in
                            stats.withUnsafeMutableBufferPointer { st in
                                scratch.withUnsafeMutableBufferPointer { sc in
                                    all.withUnsafeBufferPointer { g in
                                        let keys: KVCache.LatentKeys = shared ? .gathered(g.baseAddress!, ld: n - p0, first: p0) : .scratch(sc.baseAddress!)
                                        cache.attendLatent(layer: 0, q: q, heads: heads, blocks: bt.baseAddress!, p0: a, p1: b, scale: scale,
                                                           scores: &scores, keys: keys, out: o.baseAddress! + i * heads * D,
                                                           maxScores: st.baseAddress! + i * heads, sums: st.baseAddress! + (cuts.count + i) * heads)
                                    }
                                }
                            }
                        }
                    }
                    outs.append(out)
                }
                #expect(outs[0] == outs[1], "\(dtype): keys gathered per chunk or all first")
                stats.withUnsafeBufferPointer { st in
                    cache.mergeLatentParts(cuts.count, heads: heads, out: out, outStride: heads * D, maxScores: st.baseAddress!,
                                           sums: st.baseAddress! + cuts.count * heads, statStride: heads, into: &merged)
                }
            }
            let tolerance: Double = dtype == .f32 ? 1e-5 : (dtype == .f16 ? 2e-3 : 2e-2)
            let err = zip(merged, ref).map { abs(Double($0) - $1) }.max()!
            #expect(err < tolerance, "\(dtype): max |Δ| \(err)")
        }
    }

    /// A query group's attention output is the same, bit for bit, however the cache cuts positions into blocks: the
    /// kernels take a block's positions in runs (a run's scores as one vector, the heads four at a time), but every
    /// score and every output value goes through the same operations in the same order wherever its position falls.
    @Test func attentionDoesNotDependOnHowPositionsFallIntoBlocks() {
        let D = 72, kvHeads = 3, group = 5, n = 83, p0 = 7, kvHead = 2     // 72: a masked tail; 5 heads: four and one
        let keys = randoms(n * kvHeads * D, seed: 21), values = randoms(n * kvHeads * D, seed: 22)
        let q = randoms(group * D, seed: 23), scale = 1 / Float(D).squareRoot()
        defer { kern_isa_force(-1) }
        for dtype in KVDType.allCases {
            for isa in [KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512] where isa <= kern_isa_detected() {
                kern_isa_force(Int32(isa))
                var outputs: [[Float]] = []
                for blockSize in [1, 3, 16, 32] {
                    let blocks = (n + blockSize - 1) / blockSize
                    let table: [Int32] = (0..<Int32(blocks)).reversed().map { $0 }     // not in order
                    let cache = KVCache(layers: 1, kvHeads: kvHeads, headDim: D, blockSize: blockSize, numBlocks: blocks, dtype: dtype)
                    var out = [Float](repeating: .nan, count: group * D), scores = [Float](repeating: 0, count: group * n)
                    table.withUnsafeBufferPointer { bt in
                        for p in 0..<n {
                            cache.store(layer: 0, blockTable: bt.baseAddress!, position: p,
                                        key: keys.withUnsafeBufferPointer { $0.baseAddress! + p * kvHeads * D },
                                        value: values.withUnsafeBufferPointer { $0.baseAddress! + p * kvHeads * D })
                        }
                        cache.attend(layer: 0, q: q, heads: group, blocks: bt.baseAddress!, kvHead: kvHead, p0: p0, p1: n,
                                     scale: scale, scores: &scores, out: &out)
                    }
                    outputs.append(out)
                }
                #expect(!outputs[0].contains { $0.isNaN })
                for o in outputs.dropFirst() { #expect(o == outputs[0], "\(dtype) isa \(isa)") }
            }
        }
    }

    /// gate|up and q|k|v are converted into one stacked matrix so one product computes them: every output of the
    /// stacked product, and of a row view of it, must equal the product with that part converted alone, bit for bit.
    @Test func aStackedProductEqualsItsPartsExactly() throws {
        ComputeThreads.ensureConfigured()
        let cols = 96, T = 3
        let a = Matrix(FloatBuffer(randoms(5 * cols, seed: 21)), rows: 5, cols: cols)
        let b = Matrix(FloatBuffer(randoms(70 * cols, seed: 22)), rows: 70, cols: cols)
        let x = randoms(T * cols, seed: 23)
        for f in [WeightFormat.f16, .bf16, .int8, .int4] {
            let stack = try #require(Matrix.stacking([a, b], as: f))
            #expect(stack.rows == 75 && stack.byteCount == a.converted(to: f)!.byteCount + b.converted(to: f)!.byteCount)
            var whole = [Float](repeating: 0, count: T * 75), pa = [Float](repeating: 0, count: T * 5)
            var pb = [Float](repeating: 0, count: T * 70), view = pb
            matmul(x, rows: T, stack, out: &whole)
            matmul(x, rows: T, try #require(a.converted(to: f)), out: &pa)
            matmul(x, rows: T, try #require(b.converted(to: f)), out: &pb)
            matmul(x, rows: T, stack.rows(5..<75), out: &view)
            for t in 0..<T {
                #expect(Array(whole[(t * 75)..<(t * 75 + 5)]) == Array(pa[(t * 5)..<(t * 5 + 5)]), "\(f) row \(t): first part")
                #expect(Array(whole[(t * 75 + 5)..<(t * 75 + 75)]) == Array(pb[(t * 70)..<(t * 70 + 70)]), "\(f) row \(t): second part")
            }
            #expect(view == pb, "\(f): a row view of the stack")
        }
        #expect(Matrix.stacking([a, b], as: .f32) == nil)
    }

    @Test func matmulSplitAcrossThreadsEqualsOneThread() {
        ComputeThreads.ensureConfigured()
        let T = 5, inF = 130, outF = 700
        let wb = FloatBuffer(randoms(outF * inF, seed: 3)), x = randoms(T * inF, seed: 4)
        let w = Matrix(wb, rows: outF, cols: inF)
        var a = [Float](repeating: 0, count: T * outF), b = a
        matmul(x, rows: T, w, out: &a)
        for t in 0..<T { kern_gemv_f32(w.base, inF, x.withUnsafeBufferPointer { $0.baseAddress! + t * inF }, inF, &b[t * outF], 0, outF) }
        for i in 0..<a.count { #expect(abs(a[i] - b[i]) < 1e-4) }
        // One row goes through the threaded GEMV.
        var c = [Float](repeating: 0, count: outF)
        matmul(x, rows: 1, w, out: &c)
        for i in 0..<outF { #expect(abs(c[i] - b[i]) < 1e-4) }
    }

    /// The pool splits a job in proportion to each thread's learnt speed: contiguous parts, each boundary a multiple
    /// of the grain (or n), a faster thread a larger part; equal speeds split as evenly as the grain allows, the
    /// first part taking the odd unit.
    @Test func jobsSplitInProportionToThreadSpeeds() {
        let table: [(n: Int, grain: Int, speeds: [Double], bounds: [Int])] = [
            (100, 16, [1, 1], [0, 64, 100]), (96, 16, [1, 1], [0, 48, 96]), (100, 16, [1, 3], [0, 32, 100]),
            (100, 16, [3, 1], [0, 80, 100]), (10, 1, [1, 1, 1], [0, 3, 7, 10]), (7168, 16, [1, 1.5], [0, 2864, 7168]),
            (5, 16, [1, 1], [0, 5, 5]), (1000, 1, [1], [0, 1000]), (64, 16, [0.25, 4], [0, 0, 64]),
        ]
        for (n, grain, speeds, bounds) in table {
            var out = [Int](repeating: -1, count: speeds.count + 1)
            kern_split(n, grain, Int32(speeds.count), speeds, &out)
            #expect(out == bounds, "n \(n) grain \(grain) speeds \(speeds)")
        }
    }

    @Test func parallelForCoversEveryIndexOnce() {
        ComputeThreads.ensureConfigured()
        let n = 1001
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        hits.initialize(repeating: 0, count: n)
        defer { hits.deallocate() }
        for _ in 0..<50 { parallelFor(n, grain: 7) { r in for i in r { hits[i] += 1 } } }
        #expect((0..<n).allSatisfy { hits[$0] == 50 })
    }

    /// The pool's hand-over (a line per worker each way) loses no part and runs none twice: after its workers have
    /// gone to sleep, with fewer parts than threads (the idle workers must not answer for a job they were not given),
    /// after a resize in either direction, and with several threads calling at once (all but one run serially). Its
    /// round-trip probe times two threads (a positive, sub-millisecond figure whenever a run finishes; other tests
    /// may hold the pool, so it tries again) and reports nothing with one thread.
    @Test func poolRunsEveryPartOnceAndTimesItsRoundTripAcrossSleepResizeAndConcurrentCallers() async {
        ComputeThreads.ensureConfigured()
        let before = ComputeThreads.count
        defer { ComputeThreads.configure(count: before) }
        let n = 997
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        defer { hits.deallocate() }
        func covered(_ size: Int, grain: Int, rounds: Int = 20) -> Bool {
            hits.initialize(repeating: 0, count: n)
            for _ in 0..<rounds { parallelFor(size, grain: grain) { r in for i in r { hits[i] += 1 } } }
            return (0..<size).allSatisfy { hits[$0] == Int32(rounds) }
        }
        for threads in [3, 2, 4, 1, 2] {
            ComputeThreads.configure(count: threads)
            #expect(ComputeThreads.count == threads)
            #expect(covered(n, grain: 1), "\(threads) threads")
            #expect(covered(2, grain: 1), "\(threads) threads, two parts")
            usleep(30_000)   // past the workers' spinning: they sleep and must be woken
            #expect(covered(n, grain: 5, rounds: 1), "\(threads) threads, after sleeping")
            #expect(covered(n, grain: 64), "\(threads) threads, grain 64")
            if threads == 1 {
                #expect(kern_thread_round_trip_ns(100) < 0)
            } else {
                // Up to ~2 s of tries: a try while another test holds the pool runs serially and reports nothing.
                var trips: [Double] = []
                for _ in 0..<200 where !trips.contains(where: { $0 > 0 }) {
                    trips.append(kern_thread_round_trip_ns(2000))
                    if trips.last! <= 0 { usleep(10_000) }
                }
                #expect(trips.contains { $0 > 0 && $0 < 1e6 }, "\(threads) threads: \(trips)")
                #expect(covered(n, grain: 1), "\(threads) threads, after the round trip")
            }
        }
        // Callers on several threads at once: every call covers its own range exactly once.
        let sums = await withTaskGroup(of: Bool.self) { group in
            for c in 0..<4 {
                group.addTask {
                    let m = 5000 + c
                    let counts = UnsafeMutablePointer<Int32>.allocate(capacity: m)
                    defer { counts.deallocate() }
                    counts.initialize(repeating: 0, count: m)
                    for _ in 0..<200 { parallelFor(m, grain: 3) { r in for i in r { counts[i] += 1 } } }
                    return (0..<m).allSatisfy { counts[$0] == 200 }
                }
            }
            var all = true
            for await ok in group { all = all && ok }
            return all
        }
        #expect(sums)
    }

    /// The bandwidth probe reads each thread's share as four streams: every element exactly once, whatever the
    /// length (whole 64-byte steps per stream, then a remainder), on every instruction set.
    @Test func readProbeReadsEveryElementOnce() {
        ComputeThreads.ensureConfigured()
        defer { kern_isa_force(-1) }
        for isa in [KERN_ISA_PORTABLE, KERN_ISA_AVX2, KERN_ISA_AVX512] where isa <= kern_isa_detected() {
            kern_isa_force(Int32(isa))
            for n in [1, 63, 4096, 8191, 100_003, 1_000_003] {
                let a = [Float](repeating: 1, count: n)
                #expect(kern_read_mt(a, n) == Int64(n), "isa \(isa) n \(n)")
            }
        }
    }

    struct RoundCase: Sendable, CustomTestStringConvertible {
        var rates: [Double], samples: [[Double]], index: Int, steady: Bool, why: String
        var testDescription: String { why }
    }

    /// The decode round a benchmark reports: the fastest whose two bandwidth samples agree within 15%, compared with
    /// the better sample; the fastest of all, marked unsteady, when none agree.
    @Test(arguments: [
        RoundCase(rates: [100, 120, 110], samples: [[30, 31], [30, 60], [31, 32]], index: 2, steady: true,
                  why: "the fastest round's bandwidth moved 2x: the fastest steady one is reported"),
        RoundCase(rates: [100, 90], samples: [[60, 52], [50, 51]], index: 0, steady: true, why: "52 is within 15% of 60"),
        RoundCase(rates: [100, 130], samples: [[30, 60], [60, 30]], index: 1, steady: false,
                  why: "none steady: the fastest, flagged"),
        RoundCase(rates: [80], samples: [[40, 40]], index: 0, steady: true, why: "one round"),
    ])
    func benchmarksReportTheFastestSteadyRound(_ c: RoundCase) throws {
        let rounds = zip(c.rates, c.samples).map { Roofline.SampledRound(rate: $0, before: $1[0], after: $1[1]) }
        let picked = try #require(Roofline.reportedRound(rounds))
        #expect(picked.index == c.index && picked.steady == c.steady)
        #expect(rounds[picked.index].bandwidth == c.samples[c.index].max())
        #expect(Roofline.reportedRound([]) == nil)
    }

    @Test func halfPrecisionConversionsRoundTrip() {
        let v: [Float] = [0, -0.0, 1, -2.5, 65504, 1e-7, 3.14159, 6.1e-5, -1e30]
        var h = [UInt16](repeating: 0, count: v.count), back = [Float](repeating: 0, count: v.count)
        f32ToBF16(v, &h, v.count); bf16ToF32(h, &back, v.count)
        for (a, b) in zip(v, back) { #expect(abs(a - b) <= abs(a) / 128) }
        f32ToF16(v, &h, v.count); f16ToF32(h, &back, v.count)
        #expect(back[0] == 0 && back[2] == 1 && back[3] == -2.5 && back[4] == 65504)
        #expect(abs(back[6] - 3.14159) < 2e-3 && abs(back[7] - 6.1e-5) < 1e-7)
        #expect(back[8] == -.infinity)
        #expect(h[5] == 2)   // 1e-7 is a subnormal f16: 2 × 2^-24
    }

    /// The vector conversion (F16C) rounds exactly like Swift's own Float16 (nearest even), over normal, subnormal,
    /// overflowing and tie values.
    @Test func f16ConversionRoundsLikeSwiftFloat16() {
        var r = SeededRNG(seed: 9)
        var v: [Float] = (0..<4096).map { _ in Float(r.nextUnit() * 2 - 1) * powf(2, Float(Int(r.next() % 40) - 26)) }
        v += [65520, 65519, -70000, 1 + 1.0 / 2048, 1 + 3.0 / 2048, 5.96e-8, 2.98e-8, .infinity]
        var h = [UInt16](repeating: 0, count: v.count)
        f32ToF16(v, &h, v.count)
        for (x, bits) in zip(v, h) { #expect(bits == Float16(x).bitPattern, "\(x)") }
    }
}

@Suite struct SynthTests {
    @Test func synthesizedCheckpointLoadsAndHasPeakedLogits() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("synth-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var o = SynthOptions()
        o.hidden = 64; o.intermediate = 96; o.layers = 2; o.experts = 4; o.topK = 2; o.heads = 4; o.kvHeads = 2
        o.vocab = 600; o.dtype = .bf16; o.seed = 5
        try Synthesizer.write(o, to: dir)
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("tokenizer.json").path))
        let m = try LoadedModel(directory: dir)
        #expect(m.spec.numExperts == 4 && m.spec.vocabSize == 600)
        let cache = KVCache(spec: m.spec, numBlocks: 1)
        let out = m.transformer.forward([SequenceInput(tokens: [5, 9, 100], start: 0, blockTable: [0], logits: .all)], cache: cache)
        let row = Array(out.row(2))
        let mean = row.reduce(0, +) / Float(row.count)
        let std = (row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(row.count)).squareRoot()
        #expect(std > 1, "logits std \(std) should be clearly above flat")
        #expect(row.max()! - mean > 4 * std / 2)
        // Same seed, same bytes.
        let dir2 = dir.appendingPathExtension("b")
        defer { try? FileManager.default.removeItem(at: dir2) }
        try Synthesizer.write(o, to: dir2)
        #expect(try Data(contentsOf: dir.appendingPathComponent("model.safetensors")) == Data(contentsOf: dir2.appendingPathComponent("model.safetensors")))
    }
}
