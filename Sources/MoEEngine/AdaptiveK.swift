import Foundation
import MoECore
import MoEModel

/// How many tokens to draft. `auto` picks k each step to maximise expected tokens per second from each sequence's
/// running acceptance estimate and the measured costs; k = 0 turns speculation off while it does not pay.
public enum Speculation: Sendable, Equatable {
    case off
    case fixed(Int)
    case auto(maxK: Int)
}

/// Expected tokens one verification round emits when each of k drafts is accepted independently with probability
/// α (and the round stops at the first rejection): 1 + α + … + α^k.
public func expectedTokens(acceptance α: Double, k: Int) -> Double {
    if k <= 0 { return 1 }
    if α >= 1 { return Double(k + 1) }
    return (1 - pow(α, Double(k + 1))) / (1 - α)
}

/// Distinct experts that n tokens touch in a layer of E experts with top-K routing, if routing were uniform:
/// E · (1 − (1 − K/E)^n). Verifying k+1 positions reads this many experts instead of K: the reason speculation can
/// lose on a bandwidth-bound MoE model.
public func expectedDistinctExperts(experts E: Int, topK K: Int, tokens n: Int) -> Double {
    guard E > 0, n > 0 else { return 0 }
    return Double(E) * (1 - pow(1 - Double(K) / Double(E), Double(n)))
}

/// The auto-k policy: a cost model of one step, corrected by measurements, and per-sequence acceptance estimates.
public struct AdaptiveK: Sendable {
    public let maxK: Int
    let denseBytes: Double, expertBytes: Double, experts: Int, topK: Int, moeLayers: Int
    /// Measured seconds of a target step with n positions (EMA).
    var measured: [Int: Double] = [:]
    /// Measured seconds of one draft step (EMA), 0 until known.
    var draftStep = 0.0
    /// Weight bytes of one draft step, if known: until a draft step is measured, it is priced as that share of the
    /// bytes of a target step (else as a tenth of a target step).
    public var draftBytes: Double?
    /// Per-sequence (accepted, tested) draft positions, recent rounds weighted more; the estimate starts from a prior
    /// of 3 accepted out of 4 so that one unlucky first round does not switch a good draft off.
    var acceptance: [Int: (Double, Double)] = [:]
    var stepsSinceProbe = 0
    /// Probes made so far: they alternate between the neighbours below and above the choice.
    var probes = 0
    /// Realised emitted tokens per second of steps with (batch size, k), EMA: measurement beats the model once seen.
    var realised: [Int: [Int: Double]] = [:]
    /// The smallest batch size at which plain decoding has beaten every k tried (k = 1 included). Speculation only
    /// gets harder as the batch grows (verification reads more distinct experts and computes k+1 positions per
    /// sequence), so at this size and above it stays off without probing: a probe after a stretch without drafting
    /// would first feed the draft every token it missed, which costs more than the probe can win (vLLM's
    /// speculative_disable_by_batch_size, learned instead of configured).
    public private(set) var offFromBatch: Int?

    public init(maxK: Int, denseBytes: Double, expertBytes: Double, experts: Int, topK: Int, moeLayers: Int) {
        self.maxK = maxK
        self.denseBytes = denseBytes
        self.expertBytes = expertBytes
        self.experts = experts
        self.topK = topK
        self.moeLayers = moeLayers
    }

    /// Relative step cost for n positions before any measurement: dense bytes plus distinct-expert bytes (the
    /// bandwidth model), normalised to 1 at n = 1.
    func prior(_ n: Int) -> Double { bytes(n) / max(bytes(1), 1) }

    /// Weight bytes a target step over n positions reads: dense weights plus the distinct experts they touch.
    func bytes(_ n: Int) -> Double {
        denseBytes + expertBytes * Double(moeLayers) * expectedDistinctExperts(experts: experts, topK: topK, tokens: n)
    }

    /// Seconds of one draft step for a batch of B sequences: measured, else from the draft's bytes.
    func draftSeconds(batch B: Int) -> Double {
        if draftStep > 0 { return draftStep }
        return stepSeconds(B) * (draftBytes.map { $0 / max(bytes(B), 1) } ?? 0.1)
    }

    public func alpha(_ seq: Int) -> Double {
        let (a, d) = acceptance[seq] ?? (0, 0)
        return (a + 3) / (d + 4)
    }

    /// Seconds of a target step over n positions: measured if seen; between measurements, linear interpolation;
    /// beyond them, the slope of the two nearest (a step's cost grows with positions once the bytes it reads stop
    /// growing); with one measurement, the bandwidth prior scaled to it.
    public func stepSeconds(_ n: Int) -> Double {
        if let m = measured[n] { return m }
        let pts = measured.sorted { $0.key < $1.key }
        guard let first = pts.first else { return prior(n) }
        if pts.count == 1 { return first.value * prior(n) / prior(first.key) }
        if let hi = pts.firstIndex(where: { $0.key > n }), hi > 0 {
            let a = pts[hi - 1], b = pts[hi]
            return a.value + (b.value - a.value) * Double(n - a.key) / Double(b.key - a.key)
        }
        let (a, b) = n < first.key ? (pts[0], pts[1]) : (pts[pts.count - 2], pts[pts.count - 1])
        let slope = max(0, (b.value - a.value) / Double(b.key - a.key))
        let base = n < first.key ? a : b
        return max(base.value * 0.5, base.value + slope * Double(n - base.key))
    }

    public mutating func recordStep(positions n: Int, seconds: Double) {
        measured[n] = measured[n].map { 0.7 * $0 + 0.3 * seconds } ?? seconds
    }

    public mutating func recordDraft(steps: Int, seconds: Double) {
        guard steps > 0 else { return }
        let per = seconds / Double(steps)
        draftStep = draftStep == 0 ? per : 0.7 * draftStep + 0.3 * per
    }

    public mutating func recordOutcome(seq: Int, k: Int, accepted: Int) {
        guard k > 0 else { return }
        var (a, d) = acceptance[seq] ?? (0, 0)
        // Recent rounds weigh more: acceptance drifts with the text.
        a = 0.9 * a + Double(accepted)
        d = 0.9 * d + Double(min(k, accepted + 1))   // positions actually tested: up to the first rejection
        acceptance[seq] = (a, d)
    }

    public mutating func forget(_ seq: Int) { acceptance[seq] = nil }

    /// What a whole step achieved: `emitted` tokens in `seconds` (drafting included) for `batch` sequences at k.
    public mutating func recordRate(batch: Int, k: Int, emitted: Int, seconds: Double) {
        guard seconds > 0 else { return }
        let r = Double(emitted) / seconds
        realised[batch, default: [:]][k] = realised[batch]?[k].map { 0.6 * $0 + 0.4 * r } ?? r
    }

    /// Expected tokens per second of a step at k from the model (acceptance estimates and step costs).
    func modelRate(_ seqs: [Int], k: Int) -> Double {
        let tokens = seqs.reduce(0.0) { $0 + expectedTokens(acceptance: alpha($1), k: k) }
        let seconds = Double(k) * draftSeconds(batch: seqs.count) + stepSeconds(seqs.count * (k + 1))
        return tokens / seconds
    }

    /// The k for a step over these sequences that maximises emitted tokens per second: the realised rate where this
    /// batch size has run at that k, the model's estimate elsewhere. A k the model rates within 10% of the best and
    /// never tried at this batch size is tried once; every 16 steps a neighbour of the choice is tried again, so the
    /// estimates follow the text and the load.
    public mutating func choose(_ seqs: [Int]) -> Int {
        guard !seqs.isEmpty, maxK > 0 else { return 0 }
        let B = seqs.count
        // Measure plain decoding first: it anchors every other estimate in seconds.
        if measured[B] == nil { return 0 }
        let seen = realised[B] ?? [:]
        let rates = (0...maxK).map { k in seen[k] ?? modelRate(seqs, k: k) }
        if let off = offFromBatch, B >= off { return 0 }
        let best = rates.indices.max { rates[$0] < rates[$1] }!
        if best == 0, let r1 = seen[1], let r0 = seen[0], r1 < r0, (1...maxK).allSatisfy({ seen[$0] != nil || modelRate(seqs, k: $0) < 0.9 * r0 }) {
            offFromBatch = min(offFromBatch ?? B, B)
            return 0
        }
        if let untried = (1...maxK).first(where: { seen[$0] == nil && modelRate(seqs, k: $0) >= 0.9 * rates[best] }) {
            return untried
        }
        stepsSinceProbe += 1
        if stepsSinceProbe >= 16 {
            stepsSinceProbe = 0
            probes += 1
            return best == 0 ? 1 : (best == maxK || probes % 2 == 0 ? best - 1 : best + 1)
        }
        return best
    }
}

extension AdaptiveK {
    /// The bandwidth prior for a model: dense weight bytes and one expert's bytes per MoE layer, the experts held in
    /// `expertFormat` (wherever they live).
    public static func forModel(_ t: Transformer, maxK: Int, expertFormat: WeightFormat = .f32) -> AdaptiveK {
        let s = t.spec, w = t.weights
        var dense = w.lmHead.byteCount
        var expert = 0.0
        for (l, lw) in w.layers.enumerated() {
            let a = lw.attention
            dense += a.q.byteCount + a.k.byteCount + a.v.byteCount + a.o.byteCount
            switch lw.ffn {
            case .dense(let m): dense += m.byteCount
            case .moe(let r):
                dense += r.gate.byteCount + (r.shared?.byteCount ?? 0)
                // gate and up: [I, H]; down: [H, I].
                let H = s.hiddenSize, I = s.layers[l].moe!.intermediate
                expert = Double(2 * I * expertFormat.rowBytes(H) + H * expertFormat.rowBytes(I))
            }
        }
        let moe = s.layers.compactMap(\.moe).first
        return AdaptiveK(maxK: maxK, denseBytes: Double(dense), expertBytes: expert, experts: moe?.experts ?? 0,
                         topK: moe?.topK ?? 0, moeLayers: s.moeLayers.count)
    }
}
