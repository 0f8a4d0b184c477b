import Foundation

/// Inverse frequencies of rotary embeddings, computed as transformers does (f32: 1 / θ^(2i/D)), with the
/// family's scaling applied.
public struct Rope: Sendable {
    public let invFreq: [Float]   // [D/2]

    public init(_ spec: RopeSpec, headDim D: Int) {
        var f = (0..<(D / 2)).map { i in 1 / powf(spec.theta, Float(2 * i) / Float(D)) }
        switch spec.scaling {
        case .none:
            break
        case .linear(let factor):
            f = f.map { $0 / factor }
        case .llama3(let factor, let lo, let hi, let original):
            let lowWavelen = Float(original) / lo, highWavelen = Float(original) / hi
            f = f.map { freq in
                let wavelen = 2 * Float.pi / freq
                if wavelen < highWavelen { return freq }
                if wavelen > lowWavelen { return freq / factor }
                let smooth = (Float(original) / wavelen - lo) / (hi - lo)
                return (1 - smooth) * freq / factor + smooth * freq
            }
        }
        invFreq = f
    }

    /// cos/sin [D/2] of position p. The angle is rounded to f32 before cos/sin, as transformers computes it.
    public func table(position p: Int, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        for i in 0..<invFreq.count {
            let angle = Float(p) * invFreq[i]
            c[i] = Float(Foundation.cos(Double(angle)))
            s[i] = Float(Foundation.sin(Double(angle)))
        }
    }

    /// Rotates one head vector x [D] in place: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin), halves of D.
    @inline(__always)
    public static func apply(_ x: UnsafeMutablePointer<Float>, half: Int, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>) {
        for i in 0..<half {
            let x1 = x[i], x2 = x[i + half]
            x[i] = x1 * c[i] - x2 * s[i]
            x[i + half] = x2 * c[i] + x1 * s[i]
        }
    }
}
