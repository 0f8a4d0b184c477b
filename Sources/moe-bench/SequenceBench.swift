import ArgumentParser
import CKernels
import Foundation
import MoECore

/// The matrix products of one batch-1 decode step of a model shape, back to back on distinct weights (no attention,
/// norms or routing between them), against one product over the same number of weight bytes and a pure read of
/// memory, interleaved over many rounds so that each round compares the three at the same moment's bandwidth.
struct SequenceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sequence",
        abstract: "A decode step's products back to back against one product of the same bytes and a pure read, interleaved (what a step loses to product size and count).")

    @Option(help: "Weight format.") var format = "int4"
    @Option var hidden = 1024
    @Option var intermediate = 3584
    @Option var layers = 8
    @Option(help: "Experts a token uses per layer.") var topK = 2
    @Option var heads = 16
    @Option var kvHeads = 4
    @Option var vocab = 32000
    @Option(help: "Interleaved rounds.") var rounds = 30

    func run() throws {
        ComputeThreads.ensureConfigured()
        guard let f = WeightFormat(name: format) else { throw ValidationError("--format must be \(WeightFormat.names)") }
        let headDim = hidden / heads
        // (rows, cols) of each product of one step, in the order a step runs them.
        var shapes: [(Int, Int)] = []
        for _ in 0..<layers {
            shapes.append(((heads + 2 * kvHeads) * headDim, hidden))
            shapes.append((hidden, heads * headDim))
            for _ in 0..<topK { shapes.append((2 * intermediate, hidden)); shapes.append((hidden, intermediate)) }
        }
        shapes.append((vocab, hidden))
        func source(_ rows: Int, _ cols: Int) -> Matrix {
            let b = FloatBuffer(count: rows * cols)
            for i in 0..<(rows * cols) { b[i] = Float((i * 7919) % 255) / 255 - 0.5 }
            return Matrix(b, rows: rows, cols: cols)
        }
        var sources: [String: Matrix] = [:]
        let step: [Matrix] = try shapes.map { (r, c) in
            let key = "\(r)x\(c)"
            let s = sources[key] ?? source(r, c)
            sources[key] = s
            guard let m = s.converted(to: f) else { throw ValidationError("\(r) × \(c) cannot be held as \(f.rawValue)") }
            return m
        }
        sources.removeAll()
        let stepBytes = step.reduce(0) { $0 + $1.byteCount }
        let bigRows = stepBytes / f.rowBytes(hidden)
        guard let big = source(bigRows, hidden).converted(to: f) else { throw ValidationError("cannot convert") }
        let readFloats = 64 << 20
        let probe = FloatBuffer(count: readFloats)
        for i in 0..<readFloats { probe[i] = 1 }
        let maxCols = max(hidden, intermediate)
        let x = FloatBuffer(count: maxCols), y = FloatBuffer(count: max(vocab, 2 * intermediate, bigRows))
        for i in 0..<maxCols { x[i] = Float(i % 11) * 0.1 - 0.5 }

        func timed(_ body: () -> Void) -> Double { let t0 = monotonicSeconds(); body(); return monotonicSeconds() - t0 }
        print("\(f.rawValue): \(step.count) products per step, \(String(format: "%.1f", Double(stepBytes) / 1e6)) MB; one product of \(bigRows) × \(hidden); \(ComputeThreads.count) threads")
        print("| round | read GB/s | step's products GB/s | one product GB/s | step ÷ read | one ÷ read | step ÷ one |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        var sink = 0
        var ratios: [(Double, Double, Double, Double)] = []
        for r in 0..<rounds {
            let tr = timed { sink &+= Int(kern_read_mt(probe.pointer, readFloats)) }
            let ts = timed { for m in step { matmul(x.pointer, rows: 1, m, out: y.pointer) } }
            let tb = timed { matmul(x.pointer, rows: 1, big, out: y.pointer) }
            let read = Double(readFloats * 4) / tr, s = Double(stepBytes) / ts, b = Double(big.byteCount) / tb
            ratios.append((read, s / read, b / read, s / b))
            print(String(format: "| %d | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f |", r + 1, read / 1e9, s / 1e9, b / 1e9, s / read, b / read, s / b))
        }
        precondition(sink != 0)
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
        for (label, keep) in [("read < 50 GB/s", { (r: Double) in r < 50e9 }), ("read ≥ 50 GB/s", { (r: Double) in r >= 50e9 })] {
            let sel = ratios.filter { keep($0.0) }
            guard !sel.isEmpty else { continue }
            print(String(format: "%@ (%d rounds): median step ÷ read %.2f, one ÷ read %.2f, step ÷ one %.2f", label, sel.count,
                         median(sel.map { $0.1 }), median(sel.map { $0.2 }), median(sel.map { $0.3 })))
        }
    }
}
