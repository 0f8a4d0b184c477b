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

/// row = softmax(scale · row), in place (vectorised exp).
public func softmaxInPlace(_ row: UnsafeMutablePointer<Float>, _ n: Int, scale: Float = 1) { kern_softmax_scaled_f32(row, n, scale) }
