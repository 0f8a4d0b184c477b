import Foundation

/// Inverse frequencies of rotary embeddings, computed as transformers does (f32: 1 / θ^(2i/D)), with the
/// family's scaling applied.
public struct Rope: Sendable {
    public let invFreq: [Float]   // [D/2]
    /// Multiplies cos and sin (YaRN's attention factor; 1 otherwise), so q·k scales by its square.
    public let attentionScaling: Float

    public init(_ spec: RopeSpec, headDim D: Int) {
        var f = (0..<(D / 2)).map { i in 1 / powf(spec.theta, Float(2 * i) / Float(D)) }
        var scaling: Float = 1
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
        case .yarn(let y):
            let ramp = Self.yarnRamp(y, theta: Double(spec.theta), dim: D)
            let factor = Float(y.factor)
            f = ramp.enumerated().map { i, r in
                // r = 0 keeps the frequency (extrapolation), r = 1 divides it by the factor (interpolation);
                // computed as transformers does: pos = θ^(2i/D), kept = 1 − r, 1/(factor·pos)·(1 − kept) + 1/pos·kept.
                let pos = powf(spec.theta, Float(2 * i) / Float(D)), kept = 1 - r
                return 1 / (factor * pos) * (1 - kept) + 1 / pos * kept
            }
            scaling = Float(Self.yarnAttentionFactor(y))
        }
        invFreq = f
        attentionScaling = scaling
    }

    /// YaRN's ramp over the D/2 frequencies: 0 up to the dimension where a frequency turns `betaFast` times in the
    /// original context, 1 from where it turns `betaSlow` times (ends rounded out unless `truncate` is false).
    static func yarnRamp(_ y: YarnParameters, theta: Double, dim D: Int) -> [Float] {
        func dimension(turns: Double) -> Double {
            Double(D) * log(Double(y.originalMaxPositions) / (turns * 2 * Double.pi)) / (2 * log(theta))
        }
        var low = dimension(turns: y.betaFast ?? 32), high = dimension(turns: y.betaSlow ?? 1)
        if y.truncate ?? true { low = low.rounded(.down); high = high.rounded(.up) }
        low = max(low, 0)
        high = min(high, Double(D - 1))
        if low == high { high += 0.001 }
        let lo = Float(low), span = Float(high - low)
        return (0..<(D / 2)).map { i in min(max((Float(i) - lo) / span, 0), 1) }
    }

    /// cos/sin multiplier: `attention_factor` if given, else 0.1·ln(factor) + 1, or with DeepSeek's `mscale` and
    /// `mscale_all_dim` the ratio of that formula at each.
    static func yarnAttentionFactor(_ y: YarnParameters) -> Double {
        if let a = y.attentionFactor { return a }
        func m(_ scale: Double, _ k: Double) -> Double { scale <= 1 ? 1 : 0.1 * k * log(scale) + 1 }
        if let ms = y.mscale, let all = y.mscaleAllDim, ms != 0, all != 0 { return m(y.factor, ms) / m(y.factor, all) }
        return m(y.factor, 1)
    }

    /// cos/sin [D/2] of position p. The angle is rounded to f32 before cos/sin, as transformers computes it.
    public func table(position p: Int, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        for i in 0..<invFreq.count {
            let angle = Float(p) * invFreq[i]
            c[i] = Float(Foundation.cos(Double(angle))) * attentionScaling
            s[i] = Float(Foundation.sin(Double(angle))) * attentionScaling
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

    /// As `apply`, on the pairs (x[2i], x[2i+1]) (DeepSeek's layout: a complex number per frequency).
    @inline(__always)
    public static func applyInterleaved(_ x: UnsafeMutablePointer<Float>, half: Int, cos c: UnsafePointer<Float>,
                                        sin s: UnsafePointer<Float>) {
        for i in 0..<half {
            let x1 = x[2 * i], x2 = x[2 * i + 1]
            x[2 * i] = x1 * c[i] - x2 * s[i]
            x[2 * i + 1] = x2 * c[i] + x1 * s[i]
        }
    }
}
