import Testing
@testable import MoEModel

@Suite struct CapacityTests {
    @Test func overflowIsDroppedByRankThenTokenOrderAndTheRestRenormalised() {
        // 4 tokens, top-2, 4 experts, factor 1: capacity ⌈1 · 4 · 2 / 4⌉ = 2 per expert.
        var r = Routing(tokens: 4, topK: 2, experts: [0, 1, 0, 2, 0, 3, 0, 1], weights: [0.6, 0.4, 0.7, 0.3, 0.5, 0.5, 0.8, 0.2])
        let dropped = applyCapacity(&r, experts: 4, factor: 1)
        // Expert 0 is every token's first choice: tokens 0 and 1 get it, tokens 2 and 3 lose it.
        #expect(dropped == 2)
        #expect(r.experts == [0, 1, 0, 2, -1, 3, -1, 1])
        // A token that lost its first choice keeps its second at the whole original weight.
        #expect(r.weights == [0.6, 0.4, 0.7, 0.3, 0, 1.0, 0, 1.0])
        #expect(r.counts(numExperts: 4) == [2, 2, 1, 1])
    }

    @Test func aGenerousFactorDropsNothing() {
        var r = Routing(tokens: 3, topK: 1, experts: [2, 2, 2], weights: [1, 1, 1])
        #expect(applyCapacity(&r, experts: 4, factor: 4) == 0)
        #expect(r.experts == [2, 2, 2])
        #expect(applyCapacity(&r, experts: 4, factor: 1) == 2)   // capacity ⌈3/4⌉ = 1
        #expect(r.experts == [2, -1, -1] && r.weights == [1, 0, 0])
    }
}
