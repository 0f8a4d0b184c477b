import Foundation
import MoECore

/// Runs the routed experts of one MoE layer for a batch of tokens. The model calls it without knowing where the
/// experts live: in this process (`LocalExperts`) or on expert workers over MPI (applied from outside the model).
public protocol ExpertBackend: AnyObject {
    /// out[t] = Σ_k routing.weights[t, k] · expert_{routing.experts[t, k]}(x[t]) for the T = routing.tokens rows.
    /// x, out: [T, H]; out is overwritten.
    func run(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>)
    /// Starts the same work and may return before it is done, so the caller can compute meanwhile (micro-batch
    /// overlap). `x` is read before begin returns; `out` must stay valid until the matching `finishOldest()`, which
    /// writes it. Begun work finishes in the order it began.
    func begin(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>)
    /// Waits for the oldest begun work and writes its `out`.
    func finishOldest()
}

extension ExpertBackend {
    /// A backend that computes in the caller's process has nothing to overlap with: it does the work at once.
    public func begin(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>) {
        run(layer: layer, x: x, routing: routing, out: out)
    }
    public func finishOldest() {}
}

/// One routed row: expert `expert` applied to input row `slot`, scaled by `weight`, added into output row `slot`.
public struct ExpertEntry: Sendable {
    public var expert: Int32
    public var slot: Int32
    public var weight: Float
    public init(expert: Int32, slot: Int32, weight: Float) {
        self.expert = expert
        self.slot = slot
        self.weight = weight
    }
}

extension ExpertStore {
    /// acc[slot] += weight · expert(row slot) for every entry: entries are grouped by expert so that each expert runs
    /// one batched product over all its rows, and each slot accumulates in ascending expert order (so any split of
    /// the experts over processes adds the same terms in the same order). `load(slot, dst)` writes input row `slot`.
    public func accumulate(layer: Int, entries: [ExpertEntry], load: (Int, UnsafeMutablePointer<Float>) -> Void,
                           into acc: UnsafeMutablePointer<Float>) {
        let H = spec.hiddenSize, I = spec.layers[layer].moe!.intermediate
        let sorted = entries.sorted { ($0.expert, $0.slot) < ($1.expert, $1.slot) }
        var groups: [Range<Int>] = []          // one expert's entries each, in expert order
        var i = 0
        while i < sorted.count {
            var j = i
            while j < sorted.count && sorted[j].expert == sorted[i].expert { j += 1 }
            groups.append(i..<j)
            i = j
        }
        // Few rows in all (decode, verification): every expert's gate|up in one parallel region, then every down in
        // another (matmulMany). More: one expert at a time, in the scratch one expert needs.
        let chunks = sorted.count <= Self.rowsRunTogether ? [groups] : groups.map { [$0] }
        for chunk in chunks where !chunk.isEmpty {
            let base = chunk[0].lowerBound, rows = chunk.last!.upperBound - base
            let x = gathered.ensure(rows * H), y = results.ensure(rows * H)
            let gate = scratch.gate.ensure(rows * I), up = scratch.up.ensure(rows * 2 * I)
            for r in 0..<rows { load(Int(sorted[base + r].slot), x + r * H) }
            let stages = chunk.map { g in
                let o = g.lowerBound - base
                return MLPStage(held(layer: layer, expert: Int(sorted[g.lowerBound].expert)), rows: g.count, x: x + o * H,
                                gate: gate + o * I, up: up + o * 2 * I, out: y + o * H)
            }
            matmulMany(stages.flatMap(\.first))
            for s in stages { s.activate() }
            matmulMany(stages.map(\.second))
            for s in stages { s.finish() }
            for r in 0..<rows { axpy(acc + Int(sorted[base + r].slot) * H, sorted[base + r].weight, y + r * H, H) }
        }
    }

    /// Routed rows of a layer up to which its experts' products run together (each then has few input rows).
    static let rowsRunTogether = 64
}

/// All experts in this process.
public final class LocalExperts: ExpertBackend {
    public let store: ExpertStore

    public init(store: ExpertStore) { self.store = store }

    public func run(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>) {
        let H = store.spec.hiddenSize, K = routing.topK
        out.update(repeating: 0, count: routing.tokens * H)
        let entries = routing.experts.indices.filter { routing.experts[$0] >= 0 }.map {
            ExpertEntry(expert: routing.experts[$0], slot: Int32($0 / K), weight: routing.weights[$0])
        }
        store.accumulate(layer: layer, entries: entries, load: { t, dst in dst.update(from: x + t * H, count: H) }, into: out)
    }
}
