import ArgumentParser
import Foundation
import MoECore

struct KernelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Weight-streaming rate of the product kernels for T rows (f32 beside OpenBLAS SGEMM; then every narrow format), against the measured bandwidth.")

    @Option var rows = 3584
    @Option var cols = 1024
    @Option(name: .customLong("copies"), help: "Weight matrices cycled through (default: enough for 256 MB, so they stream from memory; 1 measures in-cache speed).")
    var copiesOverride: Int?
    @Option(name: .customLong("ts"), help: "Input rows for the narrow-format table, comma-separated.") var ts = "1,2,4,8,64,512"

    func run() throws {
        ComputeThreads.ensureConfigured()
        let bw = Roofline.triadBandwidth()
        let wb = FloatBuffer(count: rows * cols)
        for i in 0..<(rows * cols) { wb[i] = Float(i % 13) * 0.01 }
        // Several weight matrices so that each pass streams from memory, not cache.
        let copies = copiesOverride ?? max(1, (256 << 20) / (rows * cols * 4))
        let ws = (0..<copies).map { _ -> Matrix in
            let b = FloatBuffer(count: rows * cols)
            b.pointer.update(from: wb.pointer, count: rows * cols)
            return Matrix(b, rows: rows, cols: cols)
        }
        let x = FloatBuffer(count: 256 * cols), y = FloatBuffer(count: 256 * rows)
        print("f32 products [\(rows) × \(cols)], \(ComputeThreads.count) threads, triad \(String(format: "%.1f", bw / 1e9)) GB/s")
        print("| T | ours GB/s | OpenBLAS SGEMM GB/s | ours ÷ triad |")
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
        narrowFormats(ws, bandwidth: Roofline.readBandwidth())
    }

    /// Stored bytes streamed per second and weights per second for each narrow format.
    func narrowFormats(_ f32: [Matrix], bandwidth: Double) {
        let tList = ts.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        let maxT = tList.max() ?? 1
        let x = FloatBuffer(count: maxT * cols), y = FloatBuffer(count: maxT * rows)
        for i in 0..<(maxT * cols) { x[i] = Float(i % 11) * 0.1 - 0.5 }
        print("")
        print("narrow formats [\(rows) × \(cols)], read bandwidth \(String(format: "%.1f", bandwidth / 1e9)) GB/s at the start")
        // The bandwidth is sampled again after each measurement and each is compared with the better of its two
        // samples (this VM's bandwidth can move by 2× within seconds; one sample at the start gave ratios of 0.57
        // and 1.26 for products that ran at the rate of the read).
        print("| format | T | GB/s of stored weights | read bandwidth around it (GB/s) | ÷ read bandwidth | GFLOP/s |")
        print("| --- | --- | --- | --- | --- | --- |")
        var before = bandwidth
        for f in WeightFormat.allCases {
            let ws = f32.compactMap { $0.converted(to: f) }
            let bytes = ws.reduce(0) { $0 + $1.byteCount }
            for T in tList {
                var best = Double.infinity
                for _ in 0..<3 {
                    let t0 = monotonicSeconds()
                    for w in ws { matmul(x.pointer, rows: T, w, out: y.pointer) }
                    best = min(best, monotonicSeconds() - t0)
                }
                let round = Roofline.SampledRound(rate: Double(bytes) / best, before: before, after: Roofline.readBandwidth())
                before = round.after
                let flops = 2.0 * Double(T * rows * cols * ws.count) / best
                print(String(format: "| %@ | %d | %.1f | %.1f | %.2f | %.0f |", f.rawValue, T, round.rate / 1e9, round.bandwidth / 1e9,
                             round.rate / round.bandwidth, flops / 1e9))
            }
        }
    }
}
