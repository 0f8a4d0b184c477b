import Testing
@testable import MoEBalance

@Suite struct BalanceMetricsTests {
    struct Case: Sendable, CustomStringConvertible {
        let load: [Double]; let balancedness: Double; let imbalance: Double; let jain: Double; let wasted: Double
        var description: String { "\(load)" }
    }
    static let cases: [Case] = [
        Case(load: [10, 10, 10, 10], balancedness: 1, imbalance: 0, jain: 1, wasted: 0),
        Case(load: [40, 0, 0, 0], balancedness: 0.25, imbalance: 3, jain: 0.25, wasted: 0.75),
        Case(load: [30, 10], balancedness: 20.0 / 30, imbalance: 0.5, jain: 1600.0 / (2 * 1000), wasted: 20.0 / 60),
        Case(load: [0, 0], balancedness: 1, imbalance: 0, jain: 1, wasted: 0),
    ]

    @Test(arguments: cases)
    func definitions(c: Case) {
        #expect(abs(BalanceMetrics.balancedness(c.load) - c.balancedness) < 1e-12)
        #expect(abs(BalanceMetrics.imbalanceRatio(c.load) - c.imbalance) < 1e-12)
        #expect(abs(BalanceMetrics.jainFairness(c.load) - c.jain) < 1e-12)
        #expect(abs(BalanceMetrics.wastedShare(c.load) - c.wasted) < 1e-12)
    }

    @Test func percentilesUseNearestRank() {
        let v = (1...100).map(Double.init)
        #expect(BalanceMetrics.percentile(v, 50) == 50 && BalanceMetrics.percentile(v, 99) == 99 && BalanceMetrics.percentile(v, 100) == 100)
        #expect(BalanceMetrics.percentile([7], 90) == 7 && BalanceMetrics.percentile([], 50) == 0)
    }
}

@Suite struct RebalanceTests {
    @Test func noRedundancyBalancesByPacking() {
        // 4 experts on 2 workers: loads 10, 1, 1, 8 → {10, 1} and {8, 1}.
        let p = rebalance(load: [[10, 1, 1, 8]], redundant: 0, workers: 2)
        #expect(p.replicaCount == [[1, 1, 1, 1]])
        #expect(p.workerLoad([[10, 1, 1, 8]], workers: 2) == [11, 9])
        #expect(p.physicalToLogical[0].count == 4 && p.workerOfSlot[0] == [0, 0, 1, 1])
    }

    @Test func redundantSlotsGoToTheHottestExperts() {
        // One hot expert: two extra slots replicate it twice; its load splits three ways.
        let load: [[Double]] = [[90, 5, 5, 0]]
        let p = rebalance(load: load, redundant: 2, workers: 3)
        #expect(p.replicaCount == [[3, 1, 1, 1]])
        #expect(Set(p.logicalToPhysical[0][0].map { p.workerOfSlot[0][$0] }) == [0, 1, 2])
        let w = p.workerLoad(load, workers: 3)
        #expect(w.max()! <= 35 && w.min()! >= 30)
        for (e, slots) in p.logicalToPhysical[0].enumerated() { for s in slots { #expect(p.physicalToLogical[0][s] == e) } }
    }

    @Test func slotCountsAreEvenAndDenseLayersStayEmpty() {
        let p = rebalance(load: [[1, 2, 3, 4, 5, 6, 7, 8], []], redundant: 1, workers: 3)
        #expect(p.workerOfSlot[0].count == 9)
        #expect((0..<3).map { w in p.workerOfSlot[0].filter { $0 == w }.count } == [3, 3, 3])
        #expect(p.physicalToLogical[1].isEmpty)
    }

    @Test func imbalanceFallsByAtLeastThreeTimesOnASkewedLoad() {
        let load: [[Double]] = [[500, 400, 10, 10, 10, 10, 10, 10]]
        let before = unreplicated([[0, 0, 0, 1, 1, 1, 2, 2]]).workerLoad(load, workers: 3)
        let after = rebalance(load: load, redundant: 3, workers: 3).workerLoad(load, workers: 3)
        #expect(BalanceMetrics.imbalanceRatio(before) > 1)
        #expect(BalanceMetrics.imbalanceRatio(after) * 3 <= BalanceMetrics.imbalanceRatio(before))
    }
}
