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
/// sequences is priced by the same a and b from the draft's own bytes and values until one is measured. Whole steps
/// (sampling and bookkeeping included) scale the model by measured factors per batch size, one for plain and one for
/// drafting steps; measurements are kept at the machine's current speed; and the drafts actually kept scale the
/// tokens the acceptance estimates expect.
public struct AdaptiveK: Sendable {
    public let maxK: Int
    let denseBytes: Double, expertBytes: Double, experts: Int, topK: Int, moeLayers: Int
    /// Values one position of a target step multiplies by (dense weights and top-K experts): its arithmetic.
    public var activeParams: Double?
    /// Measured seconds of a target step with n positions (EMA), divided by `speed` at the time.
    var measured: [Int: Double] = [:]
    /// Measured seconds of one draft step at batch size B (EMA), divided by `speed` at the time.
    var draftMeasured: [Int: Double] = [:]
    /// How slow the machine runs now against the stored measurements: an EMA of seconds ÷ stored seconds over target
    /// steps of a size measured before. This VM's bandwidth moves by tens of percent from one minute to the next;
    /// without it, plain steps measured in a slow minute and verifications measured in a fast one were compared as
    /// they stood, and auto kept a losing k at batch 32. Sizes not measured before do not move it, so an error of
    /// the cost fit's shape is never taken for a change of speed.
    var speed = 1.0
    /// Weight bytes and values of one draft step, if known: until a draft step is measured, it is priced from them
    /// (without them, as a tenth of a target step).
    public var draftBytes: Double?
    public var draftParams: Double?
    /// Per-sequence draft positions accepted and tested, recent positions weighted more (the estimate starts from a
    /// prior so that one unlucky first round does not switch a good draft off), and the positions tested in all, not
    /// decayed: a sequence under 16 is still being explored (`alpha`).
    var acceptance: [Int: (accepted: Double, tested: Double, total: Int)] = [:]
    /// The same over every sequence (decay 0.98 a round): the prior of each sequence's estimate.
    var pooled = (accepted: 0.0, tested: 0.0)
    /// The acceptance of every sequence's recent rounds, itself on a prior of 3 in 4.
    var pooledPrior: Double { (pooled.accepted + 3) / (pooled.tested + 4) }
    var stepsSinceProbe = 0
    /// Probes made so far: they alternate between the neighbours below and above the choice.
    var probes = 0
    /// Steps between probes per batch size while plain decoding is chosen: 16, doubling after each such probe up to
    /// 256, back to 16 once drafting is chosen. A probe from plain decoding first feeds the draft every token it
    /// missed: at batch 1, 16 missed tokens took as long as two plain steps (traced), so probing every 16 steps
    /// where every k is within a few percent of plain decoding cost auto 7% against plain decoding.
    var probeEvery: [Int: Int] = [:]
    /// Steps run per (batch size, k): the first step at each is not counted in `overhead`, and the rule that turns
    /// speculation off for good asks for a counted one at the k it rules out.
    var steps: [Int: [Int: Int]] = [:]
    /// Per batch size, for plain steps and for drafting steps apart: decaying sums of whole-step seconds (drafting,
    /// verification, sampling and bookkeeping included) and of what the model says for the same steps. Their ratio
    /// scales the model. It is fitted to every step, not a realised rate per k: comparing k by realised tokens ÷
    /// seconds let a step's luck decide (its tokens swing with how many drafts it happened to accept, ±20% a step at
    /// batch 4), and measuring each k on its own spent most of a short run trying them all. Plain and drafting steps
    /// keep their own factors because what the model leaves out differs between them (verifying and rolling back
    /// drafts, the draft's own sampling): with one factor for both, auto drafted at batch 32, where k = 1 runs at
    /// 0.85–0.89 of plain decoding.
    var overhead: [Int: [Bool: (seconds: Double, modelled: Double)]] = [:]
    /// Accepted drafts against what the acceptance estimates expected of the same rounds (decaying sums): corrects
    /// the geometric model where acceptance comes in runs or the prior is too hopeful.
    var extraTokens = (accepted: 0.0, expected: 0.0)
    /// Batch sizes at which speculation is off for good: the k that comes closest to plain decoding has had a counted
    /// step there and still rates below it. A probe after a stretch without drafting first feeds the draft every token
    /// it missed — at batch 32, three missed tokens per sequence took as long as a plain step — and an auto that kept
    /// probing there ran at 0.80–0.89 of plain decoding, where every k loses (vLLM's
    /// speculative_disable_by_batch_size, learned instead of configured). Per
    /// size, not "this size and above": on an MoE model speculation pays more at batch 4 than at batch 1, where a
    /// verification reads 3× the experts of a plain step.
    ///
    /// For good at the machine's speeds at the time (`lostAt`): what pays depends on them, and not only in scale. In
    /// a fast minute a plain step at batch 16 took 94 ms and k = 2 lost to it; in a slow minute plain steps took
    /// 150 ms, bound by bytes, and k = 2 ran at 1.31× — an auto that had turned speculation off at batch 16 in the
    /// first minute ran the second at 0.71 of k = 2. So when the speed has moved by more than a quarter from every
    /// speed at which speculation was found to lose at that size (`lostAt`), auto measures again (the batch size's
    /// step counts cleared, a probe at the closest k). From every such speed, not only the last: in a minute when
    /// plain steps at batch 32 swung between 130 and 175 ms, a trigger on the last one alone measured again every
    /// 16–50 steps, each time paying the draft's catch-up of 16 tokens per sequence and a losing step (0.76–0.87 of
    /// plain decoding, where it had been 0.98–1.00).
    public private(set) var offAt: Set<Int> = []
    private(set) var lostAt: [Int: [Double]] = [:]
    /// Whether the machine's speed now is within a quarter of a speed at which speculation lost (`lostAt`).
    func nearSpeed(_ s: Double) -> Bool { max(speed / s, s / speed) <= 1.25 }
    /// Seconds per position of the draft's passes over tokens it had not seen (EMA, divided by `speed`): a new
    /// prompt, or the text decoded while speculation was off, which the first drafting step after plain steps feeds
    /// it. Nil until one is measured (a streaming draft node catches up on its own time and reports none).
    var catchUpPerPosition: Double?
    /// The k the last step ran at.
    var lastK = 0
    /// Per sequence, tokens plain steps have decoded since its last drafting step: the draft reads them (its catch-up)
    /// before it drafts for it again. Finished sequences leave (`forget`): their tokens are never caught up.
    var missedByDraft: [Int: Int] = [:]

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
        if let m = draftMeasured[B] { return speed * m }
        let model = draftModel(B)
        if let near = nearest(draftMeasured.keys, to: B) {
            return speed * model * draftMeasured[near]! / max(draftModel(near), 1e-12)
        }
        return speed * model
    }

    /// The batch size among `sizes` closest to B (the smaller one on a tie).
    func nearest(_ sizes: some Sequence<Int>, to B: Int) -> Int? {
        sizes.min { (abs($0 - B), $0) < (abs($1 - B), $1) }
    }

    /// The draft step's cost from the target's fit (at the stored measurements' speed): its bytes once per step, its
    /// values once per sequence.
    func draftModel(_ B: Int) -> Double {
        guard let f = costFit(), let db = draftBytes else { return (measured[B] ?? prior(B)) * 0.1 }
        let perPosition = draftParams.flatMap { p in activeParams.map { p / max($0, 1) } } ?? db / max(bytes(1), 1)
        return f.a * db + f.b * perPosition * Double(B)
    }

    /// A sequence's acceptance estimate: its own recent positions on top of a prior of weight 4 at `pooledPrior`, so a request that just arrived starts from what
    /// the draft has been doing rather than a fixed guess. With `upper`, for a sequence with fewer than 16 positions
    /// tested, one standard deviation above it (the tested positions and the prior's weight counted as its
    /// observations): what `choose` tries drafting at while the estimate is still a guess.
    public func alpha(_ seq: Int, upper: Bool = false) -> Double {
        let (a, d, total) = acceptance[seq] ?? (0, 0, 0)
        let α = (a + 4 * pooledPrior) / (d + 4)
        guard upper, total < 16 else { return α }
        return min(1, α + (α * (1 - α) / (d + 5)).squareRoot())
    }

    /// Seconds of a target step over n positions: measured if seen, else the fitted model (before any measurement,
    /// the bandwidth prior in units of a one-position step).
    public func stepSeconds(_ n: Int) -> Double {
        if let m = measured[n] { return speed * m }
        guard let f = costFit() else { return prior(n) }
        return speed * (f.a * bytes(n) + f.b * Double(n))
    }

    public mutating func recordStep(positions n: Int, seconds: Double) {
        guard seconds > 0 else { return }
        // A size seen before moves the speed (fast) and its own stored seconds (slowly, 0.05): a lasting change that
        // touches every size then lands in `speed`, where every estimate sees it.
        if let m = measured[n], m > 0 { speed = 0.7 * speed + 0.3 * seconds / m }
        let s = seconds / speed
        measured[n] = measured[n].map { 0.95 * $0 + 0.05 * s } ?? s
    }

    /// One draft step over `batch` sequences took `seconds`.
    public mutating func recordDraft(batch: Int, seconds: Double) {
        guard batch > 0, seconds > 0 else { return }
        let s = seconds / speed
        draftMeasured[batch] = draftMeasured[batch].map { 0.7 * $0 + 0.3 * s } ?? s
    }

    public mutating func recordOutcome(seq: Int, k: Int, accepted: Int) {
        guard k > 0 else { return }
        extraTokens = (0.98 * extraTokens.accepted + Double(accepted),
                       0.98 * extraTokens.expected + expectedTokens(acceptance: alpha(seq), k: k) - 1)
        let (a, d, total) = acceptance[seq] ?? (0, 0, 0)
        let positions = min(k, accepted + 1)   // positions actually tested: up to the first rejection
        // An exponentially weighted mean over tested positions, in the order tested (0.98 each: the last ~50 weigh
        // most, as acceptance drifts with the text), so its memory does not depend on the k that tested them.
        // Decayed per round instead (0.9), it held ~20 positions at k = 2 and ~60 at k = 6: the lower auto's k, the
        // more one rejection moved the estimate that chose it.
        var (na, nd) = (a, d)
        for i in 0..<positions { (na, nd) = (0.98 * na + (i < accepted ? 1 : 0), 0.98 * nd + 1) }
        acceptance[seq] = (na, nd, total + positions)
        pooled = (0.98 * pooled.accepted + Double(accepted), 0.98 * pooled.tested + Double(positions))
    }

    public mutating func forget(_ seq: Int) {
        acceptance[seq] = nil
        missedByDraft[seq] = nil
    }

    /// The draft read `positions` tokens it had not seen in one pass of `seconds`.
    public mutating func recordCatchUp(_ c: CatchUp) {
        guard c.positions > 0, c.seconds > 0 else { return }
        let s = c.seconds / Double(c.positions) / speed
        catchUpPerPosition = catchUpPerPosition.map { 0.7 * $0 + 0.3 * s } ?? s
    }

    /// How much faster plain decoding must rate than drafting at batch size B before leaving drafting pays: the
    /// draft's catch-up on the tokens it misses until the next probe (B per step), as a fraction of those steps'
    /// time: 5–7% at batch 1 on the README's benchmark pair (traced). Zero until a catch-up is measured.
    func leavingMargin(batch B: Int) -> Double {
        guard let c = catchUpPerPosition else { return 0 }
        let plainStep = stepSeconds(B) * (overheadFactor(batch: B, drafting: false) ?? 1)
        return speed * c * Double(B) / plainStep
    }

    /// A whole step at k over `batch` sequences took `seconds` (drafting included). Call it after `recordStep` and
    /// `recordDraft` of the same step, so the model it is compared with knows that step's own forward pass.
    public mutating func recordRate(batch: Int, k: Int, seconds: Double) {
        guard seconds > 0 else { return }
        let n = steps[batch]?[k] ?? 0
        steps[batch, default: [:]][k] = n + 1
        // The first step at a new (batch size, k) pays one-off costs (buffers growing to more positions, the draft's
        // first pass at that size): measured, it once made a k look three times slower than it is. After it, decay
        // 0.8 per step: the last ~5 steps weigh most, so the factor follows the load.
        guard n > 0 else { return }
        let old = overhead[batch]?[k > 0] ?? (0, 0)
        overhead[batch, default: [:]][k > 0] = (0.8 * old.seconds + seconds, 0.8 * old.modelled + modelSeconds(batch: batch, k: k))
    }

    /// Measured ÷ modelled seconds of whole plain (or drafting) steps at this batch size or, before any has run here,
    /// at the nearest size that has: batch sizes change all the time as requests come and go, and starting each from
    /// the bare model would pay for the same lesson again. Before any step of that kind has run, the other kind's.
    func overheadFactor(batch B: Int, drafting: Bool) -> Double? {
        for kind in [drafting, !drafting] {
            if let near = nearest(overhead.filter { $0.value[kind] != nil }.keys, to: B), let o = overhead[near]?[kind], o.modelled > 0 {
                return o.seconds / o.modelled
            }
        }
        return nil
    }

    /// Factor on the drafts the acceptance estimates expect, from the accepted ÷ expected sums (shrunk towards 1 by
    /// a prior of 32 drafts: it corrects a lasting bias of the model, and the per-sequence estimates already follow
    /// a sequence's luck; with 8 a few poor rounds at the start of a batch cut it to 0.73).
    var tokenCalibration: Double { (extraTokens.accepted + 32) / (extraTokens.expected + 32) }

    /// Expected tokens a step at k emits over these sequences: one each, plus the drafts each is expected to keep.
    func expectedStepTokens(_ seqs: [Int], k: Int, upper: Bool = false) -> Double {
        guard k > 0 else { return Double(seqs.count) }
        let extra = seqs.reduce(0.0) { $0 + expectedTokens(acceptance: alpha($1, upper: upper), k: k) - 1 }
        return Double(seqs.count) + tokenCalibration * extra
    }

    /// Seconds of a step at k over B sequences from the cost model: k draft steps and a target step over B(k+1)
    /// positions.
    func modelSeconds(batch B: Int, k: Int) -> Double {
        k == 0 ? stepSeconds(B) : Double(k) * draftSeconds(batch: B) + stepSeconds(B * (k + 1))
    }

    /// Expected tokens per second of a step at k from the model alone (acceptance estimates and step costs).
    func modelRate(_ seqs: [Int], k: Int, upper: Bool = false) -> Double {
        expectedStepTokens(seqs, k: k, upper: upper) / modelSeconds(batch: seqs.count, k: k)
    }

    /// Expected tokens per second of each k = 0…maxK for these sequences: the tokens the acceptance estimates expect
    /// over the model's seconds (measured target steps and draft steps, the cost fit between them) scaled by the
    /// measured overhead factors. Nil when nothing has run at this size or near it: plain decoding comes first and
    /// anchors the estimates in seconds. With `upper`, at acceptances one standard deviation above the estimates.
    public func rates(_ seqs: [Int], upper: Bool = false) -> [Double]? {
        let B = seqs.count, plain = overheadFactor(batch: B, drafting: false), drafting = overheadFactor(batch: B, drafting: true)
        if measured[B] == nil && plain == nil { return nil }
        return (0...maxK).map { k in modelRate(seqs, k: k, upper: upper) / ((k == 0 ? plain : drafting) ?? 1) }
    }

    /// The k for a step over these sequences that maximises expected tokens per second (`rates`). Every 16 steps a
    /// neighbour of the choice is tried instead (the closest k when plain decoding is chosen, at growing intervals:
    /// `probeEvery`), so the measured step costs and acceptance follow the text and load. Not more often: a probe
    /// after plain steps first feeds the draft every token it missed, and probing every 4 steps ran at 0.78–0.80 of
    /// plain decoding at batch 32.
    public mutating func choose(_ seqs: [Int]) -> Int {
        lastK = decide(seqs)
        for s in seqs { missedByDraft[s] = lastK == 0 ? (missedByDraft[s] ?? 0) + 1 : nil }
        return lastK
    }

    /// How much faster than plain decoding drafting must rate to start again after plain steps: the draft's catch-up
    /// on the tokens it missed, as a fraction of the next 16 plain steps (what a start is weighed over, the probe
    /// interval). Leaving drafting is priced (`leavingMargin`); entering was not: at batch 32, where k = 1 rates
    /// within a few percent of plain decoding, auto went back to k = 1 after 46 plain steps (sequences had finished,
    /// so a batch size not yet ruled on) and its draft first read 46 × 32 tokens, 0.74 s, six plain steps' time;
    /// such returns cost auto 0.85–0.91 of plain decoding there. Zero until a catch-up is measured.
    func enteringMargin(_ seqs: [Int]) -> Double {
        let missed = seqs.reduce(0) { $0 + (missedByDraft[$1] ?? 0) }
        guard let c = catchUpPerPosition, missed > 0 else { return 0 }
        let plainStep = stepSeconds(seqs.count) * (overheadFactor(batch: seqs.count, drafting: false) ?? 1)
        return speed * c * Double(missed) / (16 * plainStep)
    }

    /// While a request in `seqs` is still being explored (fewer than 16 positions tested): the k that rates best with
    /// the acceptance of those requests one standard deviation above their estimates (0 included), and those rates.
    func hopeful(_ seqs: [Int]) -> (best: Int, rates: [Double])? {
        guard seqs.contains(where: { acceptance[$0]?.total ?? 0 < 16 }), let r = rates(seqs, upper: true) else { return nil }
        return (r.indices.max { r[$0] < r[$1] }!, r)
    }

    mutating func decide(_ seqs: [Int]) -> Int {
        guard !seqs.isEmpty, maxK > 0 else { return 0 }
        let B = seqs.count
        guard let rates = rates(seqs) else { return 0 }
        if offAt.contains(B) {
            if !(lostAt[B] ?? []).contains(where: nearSpeed) {
                offAt.remove(B)
                steps[B] = nil
                stepsSinceProbe = 0
                return (1...maxK).max { rates[$0] < rates[$1] }!
            }
            // A request not explored yet is explored as anywhere else (below): the requests that ruled speculation
            // out at this size say little about how well the draft follows a new one. At batch 1 the benchmark's
            // warm-up request turned speculation off (drafting rated level with plain decoding), and the timed
            // request after it, which the draft followed better (k = 5 at 1.14–1.29× plain), ran plain throughout:
            // auto at 0.68–0.78 of k = 5. Only where the upper estimate promises more than a tenth over plain
            // decoding: exploring pays the draft's prefill of the new prompt and steps at a k the estimate may not
            // keep. After the warm-up at batch 1 the new request rated 1.5× plain at the upper estimate; at batch 32,
            // where k = 1 runs within a few percent of plain decoding, new requests rated k = 1 ~4% over plain.
            guard let h = hopeful(seqs), h.best > 0, h.rates[h.best] > 1.1 * h.rates[0] else { return 0 }
            offAt.remove(B)
            return h.best
        }
        // Drafting is chosen while it would pay with the acceptance of sequences still being explored one standard
        // deviation above its estimate: until a sequence has been tested for a while, its acceptance is a guess (the
        // pooled prior or a few rounds), and settling on plain decoding from a guess leaves only probes to learn
        // from — each paying the draft's catch-up. At batch 1 a prior of 0.75 kept auto plain where k = 5 ran at
        // 1.1–1.2× (this draft's acceptance comes in runs: ~0.9 per tested position). Kept up for good, the same
        // optimism drafted at 0.92 of plain decoding where the two were equal. Where drafting loses even at the
        // upper estimate (batch 32), nothing changes.
        var best = rates.indices.max { rates[$0] < rates[$1] }!, chosenBy = rates
        if best == 0, let h = hopeful(seqs) { (best, chosenBy) = h }
        if best > 0, lastK == 0, chosenBy[best] < chosenBy[0] * (1 + enteringMargin(seqs)) { best = 0 }
        let closest = (1...maxK).max { rates[$0] < rates[$1] }!
        // Leaving drafting for plain steps before `closest` is measured at this batch size means drafting again at a
        // probe, which first pays the draft's catch-up; so it is left only when plain decoding leads by more than
        // that costs. Measured, a switch to plain is for good (below) and pays no catch-up. At the tail of a
        // batch-2 run, where one sequence decoded alone, the model rated every k within 3% of plain (none measured
        // at batch 1); auto went plain, and its probe paid a catch-up of 2 plain steps where k = 6 ran at 1.2×.
        if best == 0, lastK > 0, steps[B]?[closest] ?? 0 < 2, rates[closest] * (1 + leavingMargin(batch: B)) >= rates[0] {
            best = closest
        }
        // Off for good only on a measured step (the first at a (batch size, k) is not counted: it pays one-off costs).
        if best == 0, steps[B]?[closest] ?? 0 >= 2 {
            offAt.insert(B)
            if !(lostAt[B] ?? []).contains(where: nearSpeed) { lostAt[B, default: []].append(speed) }
            return 0
        }
        let every = probeEvery[B] ?? 16
        if best > 0 { probeEvery[B] = nil }
        stepsSinceProbe += 1
        guard stepsSinceProbe >= every else { return best }
        stepsSinceProbe = 0
        probes += 1
        if best == 0 {
            probeEvery[B] = min(2 * every, 256)
            return closest
        }
        // A neighbour not yet run at this batch size first: its rate is the cost fit's guess, which at batch 16
        // rated k = 2 10–20% below its rate once measured, so auto kept k = 1 until a probe measured k = 2
        // (then rated 1.1× k = 1); a first probe downwards, to plain decoding, had spent 16 steps. Then alternately.
        let up = best + 1, down = best - 1
        if let fresh = [up, down].first(where: { $0 <= maxK && steps[B]?[$0] == nil }) { return fresh }
        return best == maxK || probes % 2 == 0 ? down : up
    }
}

extension AdaptiveK {
    /// One line for MOE_AUTOK_TRACE: the choice, the expected tok/s of every k, the overhead and token factors.
    public func trace(_ seqs: [Int], chose k: Int) -> String {
        let r = [false, true].map { rates(seqs, upper: $0).map { $0.map { String(format: "%.0f", $0) }.joined(separator: " ") } ?? "–" }
        let factors = [false, true].map { overheadFactor(batch: seqs.count, drafting: $0).map { String(format: "%.2f", $0) } ?? "–" }
        return "auto k: batch \(seqs.count) k \(k) tok/s by k [\(r[0])] one sd up [\(r[1])] overhead plain \(factors[0]) drafting \(factors[1]) token calibration "
            + String(format: "%.2f", tokenCalibration) + " acceptance " + seqs.prefix(4).map { String(format: "%.2f", alpha($0)) }.joined(separator: " ")
            + String(format: " (pooled %.2f) leaving margin %.3f speed %.2f", pooledPrior, leavingMargin(batch: seqs.count), speed)
            + " measured " + measured.keys.sorted().map { String(format: "%d:%.1fms", $0, 1000 * measured[$0]!) }.joined(separator: " ")
            + (costFit().map { String(format: " fit %.2f ms/GB + %.2f ms/position", 1e12 * $0.a, 1000 * $0.b) } ?? "") + "\n"
    }

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
