import Foundation
import CKernels

/// Row-wise RMSNorm of `rows` vectors of length `n` (HF: x · rsqrt(mean(x²) + eps) · w, in f32).
public func rmsNorm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                    rows: Int, n: Int, stride: Int? = nil, eps: Float) {
    let s = stride ?? n
    for r in 0..<rows { kern_rmsnorm_f32(x + r * s, w, y + r * s, n, eps) }
}

/// out = silu(g) · u elementwise.
public func swiglu(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
    kern_swiglu_f32(g, u, out, count)
}

/// gpt-oss's SwiGLU: out = g′ · sigmoid(alpha · g′) · (u′ + 1) with g′ = min(g, limit), u′ = clamp(u, −limit, limit).
public func clampedSwiGLU(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int,
                          alpha: Float, limit: Float) {
    for i in 0..<count {
        let gi = min(g[i], limit), ui = min(max(u[i], -limit), limit)
        out[i] = gi * sigmoid(alpha * gi) * (ui + 1)
    }
}

public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float { kern_dot_f32(a, b, n) }

/// y += a · x
public func axpy(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, _ n: Int) {
    kern_axpy_f32(y, a, x, n)
}

public func bf16ToF32(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) { kern_bf16_to_f32(src, dst, n) }
public func f16ToF32(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) { kern_f16_to_f32(src, dst, n) }
public func f32ToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, _ n: Int) { kern_f32_to_bf16(src, dst, n) }
public func f32ToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, _ n: Int) { kern_f32_to_f16(src, dst, n) }

public func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

/// row = softmax(scale · row), in place (vectorised exp). `sink`: one more logit in the softmax whose probability is
/// dropped (gpt-oss's attention sinks); −∞ for none.
public func softmaxInPlace(_ row: UnsafeMutablePointer<Float>, _ n: Int, scale: Float = 1, sink: Float = -.infinity) {
    kern_softmax_sink_f32(row, n, scale, sink)
}
