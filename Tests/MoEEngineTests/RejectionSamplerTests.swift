import Foundation
import MoEModel
import Testing
@testable import MoEEngine

@Suite struct RejectionSamplerTests {
    // Vocabulary of 4. Uniform draws are given explicitly so each case is exact.
    static let p: [Float] = [0.1, 0.6, 0.2, 0.1], q: [Float] = [0.4, 0.3, 0.2, 0.1]

    struct Case: Sendable, CustomStringConvertible {
        let name: String
        let draft: [Int32]; let q: [[Float]]; let p: [[Float]]; let uniforms: [Double]
        let expected: Verification
        var description: String { name }
    }

    static let cases: [Case] = [
        // p(1)/q(1) = 2 ≥ 1: always accepted; p(2)/q(2) = 1: accepted; bonus drawn from p[2] with u = 0.75 → token 2.
        Case(name: "all accepted with bonus", draft: [1, 2], q: [q, q], p: [p, p, p], uniforms: [0.99, 0.99, 0.75],
             expected: Verification(accepted: 2, next: 2)),
        // p(0)/q(0) = 0.25 < u = 0.5: rejected at once; residual max(0, p − q) = [0, .3, 0, 0] → token 1.
        Case(name: "first rejected", draft: [0, 1], q: [q, q], p: [p, p, p], uniforms: [0.5, 0.0],
             expected: Verification(accepted: 0, next: 1)),
        // u = 0.2 < 0.25 accepts token 0; then token 0 again with u = 0.9 is rejected → residual token 1.
        Case(name: "middle rejected", draft: [0, 0, 2], q: [q, q, q], p: [p, p, p, p], uniforms: [0.2, 0.9, 0.3],
             expected: Verification(accepted: 1, next: 1)),
        // One-hot p and q: the general rule is greedy verification.
        Case(name: "greedy as one-hot", draft: [1, 3], q: [[0, 1, 0, 0], [0, 0, 0, 1]], p: [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]],
             uniforms: [0.999, 0.0, 0.5], expected: Verification(accepted: 1, next: 2)),
    ]

    @Test(arguments: cases)
    func exactCases(c: Case) {
        let v = speculativeVerify(draft: c.draft, q: c.q, p: c.p) { c.uniforms[$0] }
        #expect(v == c.expected)
    }

    @Test func greedyVerificationAcceptsUntilTheFirstMismatch() {
        #expect(greedyVerify(draft: [5, 6, 7], targetArgmax: [5, 6, 7, 8]) == Verification(accepted: 3, next: 8))
        #expect(greedyVerify(draft: [5, 6, 7], targetArgmax: [5, 9, 7, 8]) == Verification(accepted: 1, next: 9))
        #expect(greedyVerify(draft: [5], targetArgmax: [4, 1]) == Verification(accepted: 0, next: 4))
        #expect(greedyVerify(draft: [], targetArgmax: [3]) == Verification(accepted: 0, next: 3))
    }

    @Test func sameSeedSameVerdict() {
        func run(_ seed: UInt64) -> [Verification] {
            var rng = SeededRNG(seed: seed)
            return (0..<50).map { _ in
                let draws = (0..<3).map { _ in rng.nextUnit() }
                return speculativeVerify(draft: [0, 1], q: [Self.q, Self.q], p: [Self.p, Self.p, Self.p]) { draws[$0] }
            }
        }
        #expect(run(9) == run(9))
        #expect(run(9) != run(10))
    }

    /// Vocabulary 10, k = 2: the first emitted token's distribution must converge to the target's p, whatever the
    /// draft's q, with total variation falling like 1/√n and far below that of the draft itself.
    @Test func emittedTokensFollowTheTargetDistribution() {
        var rng = SeededRNG(seed: 2024)
        func randomDist() -> [Float] {
            let w = (0..<10).map { _ in Float(rng.nextUnit()) + 0.05 }
            let s = w.reduce(0, +)
            return w.map { $0 / s }
        }
        let p = [randomDist(), randomDist(), randomDist()], q = [randomDist(), randomDist()]
        func tv(_ a: [Double], _ b: [Float]) -> Double { zip(a, b).map { abs($0 - Double($1)) }.reduce(0, +) / 2 }
        var tvs: [Double] = []
        for n in [1_000, 10_000, 100_000] {
            var counts = [Double](repeating: 0, count: 10)
            for _ in 0..<n {
                // The draft draws its k tokens from q.
                let d0 = Int32(drawIndex(q[0], total: nil, u: rng.nextUnit())), d1 = Int32(drawIndex(q[1], total: nil, u: rng.nextUnit()))
                let v = speculativeVerify(draft: [d0, d1], q: q, p: p) { _ in rng.nextUnit() }
                counts[Int(v.accepted > 0 ? d0 : v.next)] += 1
            }
            tvs.append(tv(counts.map { $0 / Double(n) }, p[0]))
        }
        let draftTV = tv(q[0].map(Double.init), p[0])
        #expect(tvs[2] < tvs[0] && tvs[2] < 0.01, "TV \(tvs)")
        #expect(tvs[2] < draftTV / 10, "TV \(tvs[2]) vs draft \(draftTV)")
    }
}
