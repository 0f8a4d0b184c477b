import MoEModel

/// The verifier's verdict on one sequence's k drafted tokens: the first `accepted` drafts stand, then `next` follows
/// (the correction after a rejection, or the bonus token when all k were accepted). Emitted: drafts[..<accepted] + [next].
public struct Verification: Sendable, Equatable {
    public var accepted: Int
    public var next: Int32
    public init(accepted: Int, next: Int32) {
        self.accepted = accepted
        self.next = next
    }
}

/// Speculative sampling (Leviathan et al. 2023, Chen et al. 2023). For each drafted token x_i, drawn by the draft
/// from q_i, accept with probability min(1, p_i(x_i) / q_i(x_i)); at the first rejection emit a token drawn from
/// normalize(max(0, p_i − q_i)) and stop; if all k are accepted, emit a bonus token drawn from p_{k+1}.
/// The emitted tokens are then distributed exactly as if drawn from p one at a time.
///
/// - p: k+1 target distributions over the full vocabulary (already warped by temperature/top-k/top-p).
/// - q: k draft distributions over the full vocabulary, warped the same way.
/// - uniform(i): the i-th uniform draw in [0, 1) for this verification (injected so tests and replays control it).
public func speculativeVerify(draft: [Int32], q: [[Float]], p: [[Float]], uniform: (Int) -> Double) -> Verification {
    precondition(q.count == draft.count && p.count == draft.count + 1)
    var draws = 0
    func u() -> Double { defer { draws += 1 }; return uniform(draws) }
    for (i, x) in draft.enumerated() {
        let px = Double(p[i][Int(x)]), qx = Double(q[i][Int(x)])
        // qx = 0 cannot happen for a token the draft drew; treat it as certain acceptance only if p agrees.
        let ratio = qx > 0 ? px / qx : (px > 0 ? 1 : 0)
        if u() < ratio { continue }
        // Rejected: the residual max(0, p − q) carries exactly the mass p has beyond what the draft covers.
        var residual = [Float](repeating: 0, count: p[i].count)
        var total = 0.0
        for v in 0..<residual.count {
            let r = max(0, p[i][v] - q[i][v])
            residual[v] = r
            total += Double(r)
        }
        // p == q everywhere (up to rounding) leaves no residual; then x was accepted with probability 1 anyway.
        if total <= 0 { continue }
        return Verification(accepted: i, next: Int32(drawIndex(residual, total: total, u: u())))
    }
    return Verification(accepted: draft.count, next: Int32(drawIndex(p[draft.count], total: nil, u: u())))
}

/// Greedy verification: accept drafts while they equal the target's argmax; the first mismatch is replaced by the
/// target's argmax (the special case of `speculativeVerify` with one-hot p and q).
/// targetArgmax: k+1 argmaxes of the target's logits at the drafted positions and the bonus position.
public func greedyVerify(draft: [Int32], targetArgmax: [Int32]) -> Verification {
    precondition(targetArgmax.count == draft.count + 1)
    for (i, x) in draft.enumerated() where targetArgmax[i] != x {
        return Verification(accepted: i, next: targetArgmax[i])
    }
    return Verification(accepted: draft.count, next: targetArgmax[draft.count])
}

/// The index where the cumulative mass passes u · total.
func drawIndex(_ weights: [Float], total: Double?, u: Double) -> Int {
    let t = total ?? weights.reduce(0.0) { $0 + Double($1) }
    let target = u * t
    var acc = 0.0, last = 0
    for (i, w) in weights.enumerated() where w > 0 {
        acc += Double(w)
        last = i
        if target < acc { return i }
    }
    return last
}
