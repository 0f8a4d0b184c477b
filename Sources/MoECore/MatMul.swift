import CKernels
import COpenBLAS

/// out[t, r] = Σ_c x[t, c] · W[r, c]   — x: [T, W.cols] (row stride ldx), out: [T, W.rows] (row stride ldo).
///
/// Every row of `out` is computed with the same sequence of operations whatever T is and however the rows are split
/// over threads (the kernels of `Sources/CKernels/products.h` stream each block of weight rows once for all T
/// inputs). So a token's logits do not depend on what else is in its batch: batched decoding, chunked prefill and
/// speculative verification give bit-identical results to decoding it alone. On the Zen 4 machine the f32 kernel beat
/// OpenBLAS SGEMM up to T = 128 and reached ~0.9 of its 1024³ rate on a 512-token prefill; on the Zen 3 one (AVX2)
/// prefill reads 0.67–0.81 of it (`moe-bench kernels`, `moe-bench`; README's Performance section).
public func matmul(_ x: UnsafePointer<Float>, rows T: Int, ldx: Int? = nil, _ w: Matrix,
                   out: UnsafeMutablePointer<Float>, ldo: Int? = nil) {
    if T == 0 || w.rows == 0 { return }
    if let order = w.heldOrder {   // columns held in another order (act order): the inputs follow them
        let xs = order.gather(x, rows: T, ldx: ldx ?? w.cols)
        defer { xs.deallocate() }
        kern_gemm_w_mt(w.format.kernelCode, w.raw, w.ld, w.scales, w.panels, xs, w.cols, T, w.cols, out, ldo ?? w.rows, w.rows)
        return
    }
    kern_gemm_w_mt(w.format.kernelCode, w.raw, w.ld, w.scales, w.panels, x, ldx ?? w.cols, T, w.cols, out, ldo ?? w.rows, w.rows)
}

/// One product of `matmulMany`: out = x · Wᵀ for T rows of x, as `matmul` computes it (rows packed: ldx = W.cols,
/// ldo = W.rows). With `swiglu`, W is an MLP's gate and up stacked ([2I, H]: gate rows, then up rows) and
/// swiglu[t, j] = silu(out[t, j]) · out[t, I + j] for j < I, [T, I], as `swiglu(_:_:_:count:)` computes it: each
/// thread applies it to the rows it computed, where it has both halves, before the products' region ends.
public struct ProductCall {
    public var x: UnsafePointer<Float>
    public var rows: Int
    public var w: Matrix
    public var out: UnsafeMutablePointer<Float>
    public var swiglu: UnsafeMutablePointer<Float>?
    /// Row strides of x and out (default W.cols and W.rows: packed rows).
    public var ldx: Int?, ldo: Int?
    public init(x: UnsafePointer<Float>, rows: Int, _ w: Matrix, out: UnsafeMutablePointer<Float>,
                swiglu: UnsafeMutablePointer<Float>? = nil, ldx: Int? = nil, ldo: Int? = nil) {
        precondition(swiglu == nil || w.rows % 2 == 0, "a stacked gate|up matrix has an even number of rows")
        precondition(swiglu == nil || ldo == nil, "a swiglu product writes packed rows")
        self.ldx = ldx
        self.ldo = ldo
        self.x = x
        self.rows = rows
        self.w = w
        self.out = out
        self.swiglu = swiglu
    }
}

/// Independent products in one parallel region when each has few input rows (decode, verification), else one
/// after another: a fine-grained MoE layer's experts (e.g. 8 of 768 × 2048 per token) then pay one fork and join
/// per stage instead of one per expert. Every output equals `matmul`'s for that product alone.
public func matmulMany(_ calls: [ProductCall]) {
    let live = calls.filter { $0.rows > 0 && $0.w.rows > 0 }
    // Inputs gathered into the column order a matrix is held in (act order), freed when the region is done.
    let gathered = live.map { c in c.w.heldOrder.map { $0.gather(c.x, rows: c.rows, ldx: c.ldx ?? c.w.cols) } }
    defer { for g in gathered { g?.deallocate() } }
    let products = zip(live, gathered).map { c, g in
        kern_product(format: c.w.format.kernelCode, w: c.w.raw, ld: c.w.ld, scales: c.w.scales, panels: c.w.panels,
                     X: g.map { UnsafePointer($0) } ?? c.x, ldx: g == nil ? c.ldx ?? c.w.cols : c.w.cols, T: c.rows, cols: c.w.cols,
                     Y: c.out, ldy: c.ldo ?? c.w.rows, rows: c.w.rows, act: c.swiglu)
    }
    products.withUnsafeBufferPointer { kern_gemm_w_many($0.baseAddress, Int32($0.count)) }
}

/// Runs `body` with the bf16 products it makes on this thread multiplying activations rounded to bf16 (one
/// `vdpbf16ps` per 32 values on CPUs with AVX512_BF16, where the default widens every weight to f32: 1.5–2.1× the
/// rate in L2 at 1–64 input rows). For draft models: their products bound by arithmetic (several sequences) run faster, and their
/// precision only moves which tokens they propose, never the verified output. Other formats, and CPUs without the
/// instruction, are unaffected.
public func withBF16Activations<R>(_ body: () throws -> R) rethrows -> R {
    let previous = kern_bf16_activations(1)
    defer { _ = kern_bf16_activations(previous) }
    return try body()
}

/// C[M, N] = A[M, K] · op(B) + beta · C in this thread (OpenBLAS SGEMM, which runs one thread here), row-major
/// with leading dimensions; op(B) is B [K, N], or Bᵀ of a B stored [N, K] when `transposeB`.
public func sgemm(m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                  transposeB: Bool = false, beta: Float = 0, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The same product through OpenBLAS SGEMM, W's rows split over the pool: the reference GEMM rate.
public func sgemmReference(_ x: UnsafePointer<Float>, rows T: Int, _ w: Matrix, out: UnsafeMutablePointer<Float>) {
    let grain = 64
    parallelFor(w.rows, grain: grain) { r in
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(T), Int32(r.count), Int32(w.cols), 1,
                    x, Int32(w.cols), w.base + r.lowerBound * w.ld, Int32(w.ld), 0, out + r.lowerBound, Int32(w.rows))
    }
}

/// Every `matmul` of one shape while profiling: how often it ran, its seconds (fork and join of the pool included)
/// and the weight bytes it read. `moe-bench model --products` prints them per decode token.
public struct ProductStat: Sendable, Equatable {
    public var format: WeightFormat
    public var rows: Int, cols: Int, inputRows: Int
    public var calls: Int
    public var seconds: Double
    public var weightBytes: Double
    /// Weight bytes streamed per second inside these products.
    public var bandwidth: Double { weightBytes / max(seconds, 1e-12) }
}

public enum ProductProfile {
    /// Clears the profile and records every product from now on (all threads).
    public static func start() { kern_products_profile(1) }

    /// Stops recording and returns the shapes seen, in the order first seen.
    public static func stop() -> [ProductStat] {
        kern_products_profile(0)
        var raw = [kern_product_stat](repeating: kern_product_stat(), count: Int(KERN_PROFILE_SHAPES))
        let n = Int(kern_products_profile_read(&raw, Int32(raw.count)))
        return raw.prefix(n).compactMap { s in
            WeightFormat.allCases.first { $0.kernelCode == s.format }.map {
                ProductStat(format: $0, rows: s.rows, cols: s.cols, inputRows: s.T, calls: Int(s.calls),
                            seconds: s.seconds, weightBytes: s.weight_bytes)
            }
        }
    }
}
