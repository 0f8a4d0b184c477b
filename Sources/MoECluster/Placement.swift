import MoEBalance
import MoEConfig
import MoEModel

/// Which expert workers hold each expert: replicas[layer][expert] lists worker indices 0…W-1 (MPI rank in the
/// verifier group minus one); one entry unless a rebalance replicated a hot expert. Dense layers have an empty list.
/// A pure value: every rank computes the same one from the config.
public struct ExpertPlacement: Sendable, Equatable {
    public let workers: Int
    public var replicas: [[[Int]]]

    public init(workers: Int, worker: [[Int]]) {
        self.workers = workers
        replicas = worker.map { $0.map { [$0] } }
    }

    /// The first replica of each expert (the only one before any rebalance).
    public var worker: [[Int]] { replicas.map { $0.map { $0[0] } } }

    /// The same placement in the rebalancer's terms.
    public var replicated: ReplicatedPlacement { ReplicatedPlacement(workers: replicas) }

    /// A rebalancer's placement as replica lists per expert.
    public init(workers: Int, _ p: ReplicatedPlacement) {
        self.workers = workers
        replicas = p.logicalToPhysical.enumerated().map { l, experts in experts.map { slots in slots.map { p.workerOfSlot[l][$0] } } }
    }

    /// Contiguous blocks, the first E mod W workers taking one extra: 8 experts on 3 workers → 3, 3, 2.
    public static func contiguous(experts E: Int, workers W: Int) -> [Int] {
        let base = E / W, extra = E % W
        var out: [Int] = []
        for w in 0..<W { out += Array(repeating: w, count: base + (w < extra ? 1 : 0)) }
        return out
    }

    public static func roundRobin(experts E: Int, workers W: Int) -> [Int] { (0..<E).map { $0 % W } }

    /// The placement the config asks for, checked against the model and the number of workers.
    public static func make(_ c: ClusterConfig, spec: ModelSpec, workers W: Int) throws -> ExpertPlacement {
        precondition(W >= 1)
        var rows: [[Int]] = []
        for l in 0..<spec.numLayers {
            guard let moe = spec.layers[l].moe else { rows.append([]); continue }
            switch c.placementStrategy {
            case .contiguous: rows.append(contiguous(experts: moe.experts, workers: W))
            case .roundRobin: rows.append(roundRobin(experts: moe.experts, workers: W))
            case .explicit:
                guard let ranks = c.placementMap[String(l)] ?? c.placementMap["default"] else {
                    throw ClusterConfig.Invalid("placement.map has no entry for MoE layer \(l) (and no 'default')")
                }
                guard ranks.count == moe.experts else {
                    throw ClusterConfig.Invalid("placement.map.\(c.placementMap[String(l)] == nil ? "default" : String(l)) lists \(ranks.count) experts; layer \(l) has \(moe.experts)")
                }
                if let bad = ranks.first(where: { $0 < 1 || $0 > W }) {
                    throw ClusterConfig.Invalid("placement.map names worker rank \(bad), but the job has worker ranks 1…\(W)")
                }
                rows.append(ranks.map { $0 - 1 })
            }
        }
        for k in c.placementMap.keys where k != "default" {
            if let l = Int(k), l >= spec.numLayers || l < 0 || spec.layers[l].moe == nil {
                throw ClusterConfig.Invalid("placement.map.\(k) is not a mixture-of-experts layer of this model")
            }
        }
        return ExpertPlacement(workers: W, worker: rows)
    }

    /// (layer, expert) pairs worker `w` holds.
    public func experts(of w: Int) -> [(layer: Int, expert: Int)] {
        var out: [(Int, Int)] = []
        for (l, row) in replicas.enumerated() { for (e, ws) in row.enumerated() where ws.contains(w) { out.append((l, e)) } }
        return out
    }

    public func holds(_ w: Int, layer: Int, expert: Int) -> Bool { replicas[layer][expert].contains(w) }
}
