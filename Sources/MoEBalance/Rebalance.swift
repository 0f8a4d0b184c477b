/// An expert placement with redundant replicas, per MoE layer. Physical slots are numbered worker by worker (and by
/// expert within a worker).
public struct ReplicatedPlacement: Sendable, Equatable, Codable {
    /// physicalToLogical[layer][slot] = the expert that slot holds.
    public var physicalToLogical: [[Int]]
    /// logicalToPhysical[layer][expert] = the slots holding a replica of it.
    public var logicalToPhysical: [[[Int]]]
    /// workerOfSlot[layer][slot].
    public var workerOfSlot: [[Int]]

    /// From the workers holding each expert: workers[layer][expert] (one entry per replica; an empty layer is dense).
    public init(workers: [[[Int]]]) {
        physicalToLogical = []; logicalToPhysical = []; workerOfSlot = []
        for layer in workers {
            var slots: [(w: Int, e: Int)] = []
            for (e, ws) in layer.enumerated() { for w in ws { slots.append((w, e)) } }
            slots.sort { ($0.w, $0.e) < ($1.w, $1.e) }
            var log = [[Int]](repeating: [], count: layer.count)
            for (s, x) in slots.enumerated() { log[x.e].append(s) }
            physicalToLogical.append(slots.map(\.e)); workerOfSlot.append(slots.map(\.w)); logicalToPhysical.append(log)
        }
    }

    /// replicaCount[layer][expert].
    public var replicaCount: [[Int]] { logicalToPhysical.map { $0.map(\.count) } }

    /// Expected tokens per worker for a load matrix, a replicated expert's tokens split evenly over its replicas.
    public func workerLoad(_ load: [[Double]], workers: Int) -> [Double] {
        var w = [Double](repeating: 0, count: workers)
        for (l, row) in load.enumerated() where l < logicalToPhysical.count {
            for (e, x) in row.enumerated() where e < logicalToPhysical[l].count {
                let reps = logicalToPhysical[l][e]
                for s in reps { w[workerOfSlot[l][s]] += x / Double(reps.count) }
            }
        }
        return w
    }
}

/// Expert-parallel load balancing in the manner of DeepSeek's EPLB. For each layer: (1) give the `redundant` extra
/// slots one at a time to the expert with the most load per replica; (2) place the replicas, heaviest first, on the
/// least-loaded worker that still has a free slot. Each worker gets ⌈(E + R) / W⌉ or ⌊(E + R) / W⌋ slots.
/// - load[layer][expert]: tokens routed (recent window); an empty row is a dense layer and stays empty.
public func rebalance(load: [[Double]], redundant R: Int, workers W: Int) -> ReplicatedPlacement {
    precondition(W >= 1 && R >= 0)
    var holders: [[[Int]]] = []
    for row in load {
        let E = row.count
        guard E > 0 else { holders.append([]); continue }
        // (1) Replicas: the expert with the largest load per replica gets the next one (ties: lower index).
        var reps = [Int](repeating: 1, count: E)
        for _ in 0..<R {
            var best = 0
            for e in 1..<E where row[e] / Double(reps[e]) > row[best] / Double(reps[best]) { best = e }
            reps[best] += 1
        }
        // (2) Packing: slot capacities as even as possible.
        let total = E + R
        let capacity = (0..<W).map { total / W + ($0 < total % W ? 1 : 0) }
        var replicas: [(expert: Int, load: Double)] = []
        for e in 0..<E { for _ in 0..<reps[e] { replicas.append((e, row[e] / Double(reps[e]))) } }
        replicas.sort { $0.load > $1.load || ($0.load == $1.load && $0.expert < $1.expert) }
        var workerLoad = [Double](repeating: 0, count: W), used = [Int](repeating: 0, count: W)
        var perWorker = [[Int]](repeating: [], count: W)
        for r in replicas {
            // A worker never holds two replicas of one expert when it can be avoided (they would not split load).
            let open = (0..<W).filter { used[$0] < capacity[$0] }
            let fresh = open.filter { !perWorker[$0].contains(r.expert) }
            let pool = fresh.isEmpty ? open : fresh
            let w = pool.min { workerLoad[$0] < workerLoad[$1] || (workerLoad[$0] == workerLoad[$1] && $0 < $1) }!
            perWorker[w].append(r.expert)
            workerLoad[w] += r.load
            used[w] += 1
        }
        var held = [[Int]](repeating: [], count: E)
        for w in 0..<W { for e in perWorker[w] { held[e].append(w) } }
        holders.append(held)
    }
    return ReplicatedPlacement(workers: holders)
}

/// The placement without replicas: expert e of each layer on worker `worker[layer][e]`.
public func unreplicated(_ worker: [[Int]]) -> ReplicatedPlacement {
    ReplicatedPlacement(workers: worker.map { $0.map { [$0] } })
}
