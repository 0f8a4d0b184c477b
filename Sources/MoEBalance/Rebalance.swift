/// An expert placement with redundant replicas, per MoE layer. Physical slots are numbered worker by worker:
/// worker w owns slots `slotsOfWorker[w]`.
public struct ReplicatedPlacement: Sendable, Equatable, Codable {
    /// physicalToLogical[layer][slot] = the expert that slot holds.
    public var physicalToLogical: [[Int]]
    /// logicalToPhysical[layer][expert] = the slots holding a replica of it.
    public var logicalToPhysical: [[[Int]]]
    /// replicaCount[layer][expert] = logicalToPhysical[layer][expert].count.
    public var replicaCount: [[Int]]
    /// workerOfSlot[layer][slot].
    public var workerOfSlot: [[Int]]

    public init(physicalToLogical: [[Int]], logicalToPhysical: [[[Int]]], replicaCount: [[Int]], workerOfSlot: [[Int]]) {
        self.physicalToLogical = physicalToLogical
        self.logicalToPhysical = logicalToPhysical
        self.replicaCount = replicaCount
        self.workerOfSlot = workerOfSlot
    }

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
    var p2l: [[Int]] = [], l2p: [[[Int]]] = [], counts: [[Int]] = [], wos: [[Int]] = []
    for row in load {
        let E = row.count
        guard E > 0 else { p2l.append([]); l2p.append([]); counts.append([]); wos.append([]); continue }
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
        var phys: [Int] = [], owner: [Int] = []
        for w in 0..<W { for e in perWorker[w].sorted() { phys.append(e); owner.append(w) } }
        var log = [[Int]](repeating: [], count: E)
        for (s, e) in phys.enumerated() { log[e].append(s) }
        p2l.append(phys); l2p.append(log); counts.append(reps); wos.append(owner)
    }
    return ReplicatedPlacement(physicalToLogical: p2l, logicalToPhysical: l2p, replicaCount: counts, workerOfSlot: wos)
}

/// The placement without replicas: expert e of each layer on worker `worker[layer][e]`.
public func unreplicated(_ worker: [[Int]]) -> ReplicatedPlacement {
    var p2l: [[Int]] = [], l2p: [[[Int]]] = [], counts: [[Int]] = [], wos: [[Int]] = []
    for row in worker {
        let order = row.indices.sorted { (row[$0], $0) < (row[$1], $1) }
        p2l.append(order)
        wos.append(order.map { row[$0] })
        var log = [[Int]](repeating: [], count: row.count)
        for (s, e) in order.enumerated() { log[e].append(s) }
        l2p.append(log)
        counts.append(Array(repeating: 1, count: row.count))
    }
    return ReplicatedPlacement(physicalToLogical: p2l, logicalToPhysical: l2p, replicaCount: counts, workerOfSlot: wos)
}
