import CKernels
import COpenBLAS

/// out[t, r] = Σ_c x[t, c] · W[r, c]   — x: [T, W.cols] (row stride ldx), out: [T, W.rows] (row stride ldo).
/// One row uses the bandwidth-bound GEMV kernel; more rows use OpenBLAS SGEMM, with W's rows split across the pool so a
/// single expert's product still uses every core.
public func matmul(_ x: UnsafePointer<Float>, rows T: Int, ldx: Int? = nil, _ w: Matrix,
                   out: UnsafeMutablePointer<Float>, ldo: Int? = nil) {
    let ldx = ldx ?? w.cols
    let ldo = ldo ?? w.rows
    if T == 0 || w.rows == 0 { return }
    if T == 1 {
        kern_gemv_f32_mt(w.base, w.ld, x, w.cols, out, w.rows)
        return
    }
    if T <= smallBatchRows {
        kern_gemm_small_f32_mt(w.base, w.ld, x, ldx, T, w.cols, out, ldo, w.rows)
        return
    }
    let flops = T * w.rows * w.cols
    let grain = 64
    if flops < 1 << 18 || w.rows < 2 * grain {
        sgemm(x, T, ldx, w, 0, w.rows, out, ldo)
        return
    }
    parallelFor(w.rows, grain: grain) { r in
        sgemm(x, T, ldx, w, r.lowerBound, r.count, out, ldo)
    }
}

/// Up to this many rows, streaming the weights once beats SGEMM (measured with moe-bench's small-batch table).
nonisolated(unsafe) public var smallBatchRows = 64

@inline(__always)
private func sgemm(_ x: UnsafePointer<Float>, _ T: Int, _ ldx: Int, _ w: Matrix, _ r0: Int, _ n: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(T), Int32(n), Int32(w.cols), 1,
                x, Int32(ldx), w.base + r0 * w.ld, Int32(w.ld), 0, out + r0, Int32(ldo))
}
