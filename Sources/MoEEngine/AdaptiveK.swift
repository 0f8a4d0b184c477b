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

/// The auto-k policy: a cost model of one step, fitted to measurements, and per-sequence acceptance estimates.
///
/// A target step over n positions costs a·bytes(n) + b·n seconds: the weight bytes it streams (dense weights plus the
/// distinct experts n positions touch) and the arithmetic of n positions. a and b are fitted to every step measured,
/// prefills included, so the model knows from the start where a step stops being bound by bytes: at batch 1
/// verifying k+1 positions costs little more than one, at batch 32 it costs k+1 times as much. A draft step over B
/// sequences is priced by the same a and b from the draft's own bytes and values.
public struct AdaptiveK: Sendable {
    public let maxK: Int
    let denseBytes: Double, expertBytes: Double, experts: Int, topK: Int, moeLayers: Int
    /// Values one position of a target step multiplies by (dense weights and top-K experts): its arithmetic.
    public var activeParams: Double?
    /// Measured seconds of a target step with n positions (EMA).
    var measured: [Int: Double] = [:]
    /// Measured seconds of one draft step at batch size B (EMA).
    var draftMeasured: [Int: Double] = [:]
    /// Weight bytes and values of one draft step, if known: until a draft step is measured, it is priced from them
    /// (without them, as a tenth of a target step).
    public var draftBytes: Double?
    public var draftParams: Double?
    /// Per-sequence (accepted, tested) draft positions, recent rounds weighted more; the estimate starts from a prior
    /// of 3 accepted out of 4 so that one unlucky first round does not switch a good draft off.
    var acceptance: [Int: (Double, Double)] = [:]
    var stepsSinceProbe = 0
    /// Probes made so far: they alternate between the neighbours below and above the choice.
    var probes = 0
    /// Per (batch size, k): steps run (the first not counted in the sums) and decaying sums of emitted tokens and
    /// seconds. A ratio of sums, not an average of per-step rates: one step's tokens swing with how many drafts that
    /// step happened to accept (1 to k+1 per sequence), and averaging those ratios let a lucky or unlucky step decide
    /// between two k.
    var runs: [Int: [Int: (steps: Int, tokens: Double, seconds: Double)]] = [:]
    /// Realised emitted tokens per second per (batch size, k) once counted: measurement beats the model once seen.
    var realised: [Int: [Int: Double]] {
        runs.mapValues { byK in byK.compactMapValues { $0.seconds > 0 ? $0.tokens / $0.seconds : nil } }
            .filter { !$0.value.isEmpty }
    }
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

    /// (a, b) of step seconds ≈ a·bytes(n) + b·n, least squares on the measured steps weighted by relative error,
    /// both non-negative. Nil before any measurement; with one size measured, bytes alone (b = 0).
    func costFit() -> (a: Double, b: Double)? {
        guard !measured.isEmpty else { return nil }
        var sBB = 0.0, sBN = 0.0, sNN = 0.0, sBT = 0.0, sNT = 0.0
        for (n, t) in measured where t > 0 {
            let w = 1 / (t * t), B = bytes(n), N = Double(n)
            sBB += w * B * B; sBN += w * B * N; sNN += w * N * N; sBT += w * B * t; sNT += w * N * t
        }
        guard sBB > 0 else { return nil }
        let det = sBB * sNN - sBN * sBN
        if measured.count >= 2, det > 1e-12 * sBB * sNN {
            let a = (sBT * sNN - sNT * sBN) / det, b = (sNT * sBB - sBT * sBN) / det
            if a >= 0 && b >= 0 { return (a, b) }
            if a < 0 { return (0, sNT / sNN) }
        }
        return (sBT / sBB, 0)
    }

    /// Seconds of a draft step for a batch of B sequences: measured at that size; else the fitted model for the draft
    /// scaled to the draft measurement of the nearest batch size; else the model alone.
    func draftSeconds(batch B: Int) -> Double {
        if let m = draftMeasured[B] { return m }
        let model = draftModel(B)
        if let near = nearest(draftMeasured.keys, to: B) {
            return model * draftMeasured[near]! / max(draftModel(near), 1e-12)
        }
        return model
    }

    /// The batch size among `sizes` closest to B (the smaller one on a tie).
    func nearest(_ sizes: some Sequence<Int>, to B: Int) -> Int? {
        sizes.min { (abs($0 - B), $0) < (abs($1 - B), $1) }
    }

    /// The draft step's cost from the target's fit: its bytes once per step, its values once per sequence.
    func draftModel(_ B: Int) -> Double {
        guard let f = costFit(), let db = draftBytes else { return stepSeconds(B) * 0.1 }
        let perPosition = draftParams.flatMap { p in activeParams.map { p / max($0, 1) } } ?? db / max(bytes(1), 1)
        return f.a * db + f.b * perPosition * Double(B)
    }

    public func alpha(_ seq: Int) -> Double {
        let (a, d) = acceptance[seq] ?? (0, 0)
        return (a + 3) / (d + 4)
    }

    /// Seconds of a target step over n positions: measured if seen, else the fitted model (before any measurement,
    /// the bandwidth prior in units of a one-position step).
    public func stepSeconds(_ n: Int) -> Double {
        if let m = measured[n] { return m }
        guard let f = costFit() else { return prior(n) }
        return f.a * bytes(n) + f.b * Double(n)
    }

    public mutating func recordStep(positions n: Int, seconds: Double) {
        measured[n] = measured[n].map { 0.7 * $0 + 0.3 * seconds } ?? seconds
    }

    /// One draft step over `batch` sequences took `seconds`.
    public mutating func recordDraft(batch: Int, seconds: Double) {
        guard batch > 0, seconds > 0 else { return }
        draftMeasured[batch] = draftMeasured[batch].map { 0.7 * $0 + 0.3 * seconds } ?? seconds
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
        let old = runs[batch]?[k] ?? (0, 0, 0)
        // The first step at a new (batch size, k) pays one-off costs (buffers growing to more positions, the draft's
        // first pass at that size): measured, it once made a k look three times slower than it is. It is not counted.
        // After it, decay 0.8 per step: the last ~5 steps at this k weigh most, so the rate follows the text and load.
        runs[batch, default: [:]][k] = old.steps == 0 ? (1, 0, 0)
            : (old.steps + 1, 0.8 * old.tokens + Double(emitted), 0.8 * old.seconds + seconds)
    }

    /// Expected tokens per second of a step at k from the model (acceptance estimates and step costs).
    func modelRate(_ seqs: [Int], k: Int) -> Double {
        let tokens = seqs.reduce(0.0) { $0 + expectedTokens(acceptance: alpha($1), k: k) }
        let seconds = k == 0 ? stepSeconds(seqs.count) : Double(k) * draftSeconds(batch: seqs.count) + stepSeconds(seqs.count * (k + 1))
        return tokens / seconds
    }

    /// The k for a step over these sequences that maximises emitted tokens per second: the realised rate where this
    /// batch size has run at that k, the model's estimate elsewhere. Each k the model rates within 10% of the best and
    /// never tried at this batch size is tried (the highest rated first); every 16 steps a neighbour of the choice is
    /// tried again, so the estimates follow the text and the load.
    public mutating func choose(_ seqs: [Int]) -> Int {
        guard !seqs.isEmpty, maxK > 0 else { return 0 }
        let B = seqs.count, realised = self.realised
        // The model's error on the k already run (geometric mean of realised ÷ modelled) corrects its estimate of the
        // others: acceptance that is front-loaded, a verification cheaper than the cost fit says. It is taken at this
        // batch size or, before any k has run here, at the nearest size where one has: batch sizes change all the
        // time as requests come and go, and starting each from the bare model (or from plain decoding) would pay
        // for the same lesson again.
        let basis = nearest(realised.filter { $0.value.contains { $0.key > 0 && $0.value > 0 } }.keys, to: B)
        // Plain decoding first when nothing has been run here or elsewhere: it anchors the estimates in seconds.
        if measured[B] == nil && basis == nil { return 0 }
        let seen = realised[B] ?? [:]
        var correction = 1.0
        if let basis {
            let proxy = basis == B ? seqs : (0..<basis).map { seqs[$0 % seqs.count] }
            let tried = realised[basis]!.filter { $0.key > 0 && $0.value > 0 }
            correction = exp(tried.reduce(0.0) { $0 + log($1.value / modelRate(proxy, k: $1.key)) } / Double(tried.count))
        }
        let rates = (0...maxK).map { k in seen[k] ?? (k == 0 ? 1 : correction) * modelRate(seqs, k: k) }
        if let off = offFromBatch, B >= off { return 0 }
        let best = rates.indices.max { rates[$0] < rates[$1] }!
        // Off for good only on evidence: one slow step (a draft's first pass, a burst of load) proves nothing.
        if best == 0, let r1 = seen[1], let r0 = seen[0], r1 < r0, runs[B]?[1]?.steps ?? 0 >= 3, (1...maxK).allSatisfy({ seen[$0] != nil || rates[$0] < 0.9 * r0 }) {
            offFromBatch = min(offFromBatch ?? B, B)
            return 0
        }
        // The most promising untried k first: each try costs two steps (the first is not counted), and once one is
        // realised the correction above re-rates the rest, often out of the 10% band.
        let untried = (1...maxK).filter { seen[$0] == nil && rates[$0] >= 0.9 * rates[best] }
        if let next = untried.max(by: { rates[$0] < rates[$1] }) { return next }
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
        // Every dense weight a step reads (attention, dense MLPs, routers, shared experts, lm_head), as held.
        var expert = 0.0, active = Double(w.paramsPerStep)
        for moe in s.layers.compactMap(\.moe) {
            // gate and up: [I, H]; down: [H, I].
            let H = s.hiddenSize, I = moe.intermediate
            expert = Double(2 * I * expertFormat.rowBytes(H) + H * expertFormat.rowBytes(I))
            active += Double(3 * H * I * moe.topK)
        }
        let moe = s.layers.compactMap(\.moe).first
        var a = AdaptiveK(maxK: maxK, denseBytes: Double(w.bytesPerStep), expertBytes: expert, experts: moe?.experts ?? 0,
                          topK: moe?.topK ?? 0, moeLayers: s.moeLayers.count)
        a.activeParams = active
        return a
    }
}
