import Foundation
import MoECore

/// Runs the routed experts of one MoE layer for a batch of tokens. The model calls it without knowing where the
/// experts live: in this process (`LocalExperts`) or on expert workers over MPI (applied from outside the model).
public protocol ExpertBackend: AnyObject {
    /// out[t] = Σ_k routing.weights[t, k] · expert_{routing.experts[t, k]}(x[t]) for the T = routing.tokens rows.
    /// x, out: [T, H]; out is overwritten.
    func run(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>)
}

/// Groups a batch's (token, slot) pairs by expert: rows of expert e are `rows[offsets[e] ..< offsets[e+1]]`, each
/// entry the flat index t·K + k. Shared by the local backend and the workers.
public struct ExpertGroups: Sendable {
    public var offsets: [Int]
    public var rows: [Int32]

    public init(_ routing: Routing, numExperts E: Int) {
        var counts = Array(repeating: 0, count: E + 1)
        for e in routing.experts { counts[Int(e) + 1] += 1 }
        for e in 0..<E { counts[e + 1] += counts[e] }
        offsets = counts
        var cursor = counts
        rows = Array(repeating: 0, count: routing.experts.count)
        for (i, e) in routing.experts.enumerated() {
            rows[cursor[Int(e)]] = Int32(i)
            cursor[Int(e)] += 1
        }
    }
}

/// All experts in this process: gather each expert's rows, one batched product per expert, weighted scatter-add.
public final class LocalExperts: ExpertBackend {
    public let store: ExpertStore
    private let gathered = Scratch()
    private let results = Scratch()

    public init(store: ExpertStore) { self.store = store }

    public func run(layer: Int, x: UnsafePointer<Float>, routing: Routing, out: UnsafeMutablePointer<Float>) {
        let H = store.spec.hiddenSize, K = routing.topK
        let E = store.spec.layers[layer].moe!.experts
        out.update(repeating: 0, count: routing.tokens * H)
        let groups = ExpertGroups(routing, numExperts: E)
        for e in 0..<E {
            let lo = groups.offsets[e], hi = groups.offsets[e + 1]
            if lo == hi { continue }
            let n = hi - lo
            let xin = gathered.ensure(n * H), y = results.ensure(n * H)
            for i in 0..<n {
                let t = Int(groups.rows[lo + i]) / K
                (xin + i * H).update(from: x + t * H, count: H)
            }
            store.compute(layer: layer, expert: e, x: xin, rows: n, out: y)
            for i in 0..<n {
                let flat = Int(groups.rows[lo + i])
                axpy(out + (flat / K) * H, routing.weights[flat], y + i * H, H)
            }
        }
    }
}
