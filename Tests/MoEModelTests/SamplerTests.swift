import Foundation
import Testing
@testable import MoEModel

@Suite struct SamplerTests {
    func dist(_ logits: [Float], _ p: SamplingParams) -> [Float] {
        logits.withUnsafeBufferPointer { samplingDistribution($0, p) }
    }

    @Test func greedyTakesTheLowestIdAmongTies() {
        let l: [Float] = [1, 3, 3, 2]
        #expect(l.withUnsafeBufferPointer { argmax($0) } == 1)
        #expect(dist(l, SamplingParams()) == [0, 1, 0, 0])
    }

    @Test func temperatureScalesSoftmax() {
        let p = dist([0, log(3)], SamplingParams(temperature: 1))
        #expect(abs(p[0] - 0.25) < 1e-6 && abs(p[1] - 0.75) < 1e-6)
        let q = dist([0, log(3)], SamplingParams(temperature: 2))    // 1 : √3
        #expect(abs(q[1] - Float(3.0.squareRoot() / (1 + 3.0.squareRoot()))) < 1e-6)
    }

    /// min-p after temperature: of probabilities ∝ 8, 4, 2, 1 (logits log 8 …) it keeps those ≥ min-p × 8.
    @Test func minPKeepsTokensAtLeastMinPTimesTheMostLikely() {
        let l: [Float] = [log(8), log(4), log(2), log(1)]
        let p = dist(l, SamplingParams(temperature: 1, minP: 0.2))          // cut at 1.6: keeps 8, 4, 2
        #expect(p[3] == 0 && abs(p[0] - 8 / 14) < 1e-6 && abs(p[2] - 2 / 14) < 1e-6)
        let hot = dist(l, SamplingParams(temperature: 2, minP: 0.25))       // ∝ √8, 2, √2, 1: cut at √8 / 4 keeps all
        #expect(hot.allSatisfy { $0 > 0 })
        let both = dist(l, SamplingParams(temperature: 1, topK: 2, minP: 0.1))   // top-k is the stricter
        #expect(both[2] == 0 && both[3] == 0 && abs(both[0] - 2 / 3) < 1e-6)
    }

    @Test func topKKeepsTheKLargestAndTiesAtTheKth() {
        let p = dist([1, 4, 3, 2], SamplingParams(temperature: 1, topK: 2))
        #expect(p[0] == 0 && p[3] == 0 && p[1] > p[2] && abs(p[1] + p[2] - 1) < 1e-6)
        let t = dist([1, 3, 3, 2], SamplingParams(temperature: 1, topK: 1))
        #expect(t[1] > 0 && t[2] > 0 && t[0] == 0)
    }

    @Test func topPKeepsTheSmallestSetReachingP() {
        // probabilities 0.5, 0.3, 0.2 (from logs)
        let l: [Float] = [log(0.5), log(0.3), log(0.2)]
        let a = dist(l, SamplingParams(temperature: 1, topP: 0.5))
        #expect(abs(a[0] - 1) < 1e-6 && a[1] == 0)
        let b = dist(l, SamplingParams(temperature: 1, topP: 0.6))
        #expect(abs(b[0] - 0.625) < 1e-5 && abs(b[1] - 0.375) < 1e-5 && b[2] == 0)
        let c = dist(l, SamplingParams(temperature: 1, topP: 1))
        #expect(c[2] > 0)
    }

    @Test func sameSeedSameTokensDifferentSeedDifferentTokens() {
        let logits = (0..<50).map { Float($0 % 7) * 0.3 }
        func draw(_ seed: UInt64) -> [Int] {
            let s = Sampler(SamplingParams(temperature: 1, seed: seed))
            return (0..<40).map { i in logits.withUnsafeBufferPointer { s.next($0, position: i) } }
        }
        #expect(draw(42) == draw(42))
        #expect(draw(42) != draw(43))
    }

    @Test func samplesFollowTheDistribution() {
        var rng = SeededRNG(seed: 7)
        let probs: [Float] = [0.1, 0.6, 0.3]
        var counts = [0, 0, 0]
        let n = 60000
        for _ in 0..<n { counts[sample(probs, &rng)] += 1 }
        for i in 0..<3 { #expect(abs(Double(counts[i]) / Double(n) - Double(probs[i])) < 0.01) }
    }
}

@Suite struct RoutingTests {
    struct Case: Sendable, CustomStringConvertible {
        let logits: [Float]; let k: Int; let normalize: Bool; let experts: [Int32]; let weights: [Float]
        var description: String { "\(logits) k=\(k) norm=\(normalize)" }
    }
    static let cases: [Case] = [
        // softmax of [0, ln2, ln3, ln4] = [.1 .2 .3 .4]
        Case(logits: [0, log(2), log(3), log(4)], k: 2, normalize: false, experts: [3, 2], weights: [0.4, 0.3]),
        Case(logits: [0, log(2), log(3), log(4)], k: 2, normalize: true, experts: [3, 2], weights: [4.0 / 7, 3.0 / 7]),
        Case(logits: [0, log(2), log(3), log(4)], k: 1, normalize: true, experts: [3], weights: [1]),
        // ties go to the lower expert index
        Case(logits: [1, 2, 2, 0], k: 1, normalize: false, experts: [1], weights: [exp(2) / (exp(1) + 2 * exp(2) + 1)]),
        Case(logits: [5, 5, 5, 5], k: 4, normalize: true, experts: [0, 1, 2, 3], weights: [0.25, 0.25, 0.25, 0.25]),
    ]

    @Test(arguments: cases)
    func softmaxThenTopK(c: Case) {
        let r = c.logits.withUnsafeBufferPointer {
            routeSoftmaxTopK(logits: $0.baseAddress!, tokens: 1, experts: c.logits.count, topK: c.k, normalize: c.normalize)
        }
        #expect(r.experts == c.experts)
        for (a, b) in zip(r.weights, c.weights) { #expect(abs(a - b) < 1e-6) }
    }

    @Test func countsTokensPerExpert() {
        let r = Routing(tokens: 3, topK: 2, experts: [2, 0, 0, 1, 2, 1], weights: Array(repeating: 0.5, count: 6))
        #expect(r.counts(numExperts: 4) == [2, 2, 2, 0])
    }
}
