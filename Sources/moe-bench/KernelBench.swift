import ArgumentParser
import Foundation
import MoECore

struct KernelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Weight-streaming rate of the f32 product kernels for T rows, beside OpenBLAS SGEMM and the triad bandwidth.")

    @Option var rows = 3584
    @Option var cols = 1024

    func run() throws {
        ComputeThreads.ensureConfigured()
        let bw = Roofline.triadBandwidth()
        let wb = FloatBuffer(count: rows * cols)
        for i in 0..<(rows * cols) { wb[i] = Float(i % 13) * 0.01 }
        // Several weight matrices so that each pass streams from memory, not cache.
        let copies = max(1, (256 << 20) / (rows * cols * 4))
        let ws = (0..<copies).map { _ -> Matrix in
            let b = FloatBuffer(count: rows * cols)
            b.pointer.update(from: wb.pointer, count: rows * cols)
            return Matrix(b, rows: rows, cols: cols)
        }
        let x = FloatBuffer(count: 256 * cols), y = FloatBuffer(count: 256 * rows)
        print("f32 products [\(rows) × \(cols)], \(ComputeThreads.count) threads, triad \(String(format: "%.1f", bw / 1e9)) GB/s")
        print("| T | ours (GEMV / small-batch) GB/s | OpenBLAS SGEMM GB/s | ours ÷ triad |")
        print("| - | - | - | - |")
        for T in [1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128] {
            func rate(_ reference: Bool) -> Double {
                var best = Double.infinity
                for _ in 0..<3 {
                    let t0 = monotonicSeconds()
                    for w in ws {
                        if reference { sgemmReference(x.pointer, rows: T, w, out: y.pointer) } else { matmul(x.pointer, rows: T, w, out: y.pointer) }
                    }
                    best = min(best, monotonicSeconds() - t0)
                }
                return Double(copies * rows * cols * 4) / best / 1e9
            }
            let small = rate(false), gemm = rate(true)
            print(String(format: "| %d | %.1f | %.1f | %.2f |", T, small, gemm, small * 1e9 / bw))
        }
    }
}
