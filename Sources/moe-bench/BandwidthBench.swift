import ArgumentParser
import Foundation
import MoECore

/// The machine's limits alone: read bandwidth over both threads (the decode roofline's numerator), triad and the
/// f32 GEMM rate. For scripts that time another program between two samples (Deploy/peer/llama-cpp-bench.sh).
struct BandwidthBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bandwidth",
        abstract: "Read bandwidth (GB/s, every compute thread) and, unless --read-only, triad and f32 GEMM rate.")

    @Flag(name: .customLong("read-only"), help: "Only the read bandwidth (about 0.2 s).") var readOnly = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        ComputeThreads.ensureConfigured()
        var obj: [String: Any] = ["threads": ComputeThreads.count, "isa": ComputeThreads.isa,
                                  "bandwidth_gb_s": Roofline.readBandwidth() / 1e9]
        if !readOnly {
            obj["triad_gb_s"] = Roofline.triadBandwidth() / 1e9
            obj["gemm_gflop_s"] = Roofline.gemmFlops() / 1e9
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var line = String(format: "read bandwidth %.1f GB/s", obj["bandwidth_gb_s"] as! Double)
        if let t = obj["triad_gb_s"] as? Double, let g = obj["gemm_gflop_s"] as? Double {
            line += String(format: ", triad %.1f GB/s, f32 GEMM %.0f GFLOP/s", t, g)
        }
        print(line + " (\(ComputeThreads.count) threads, \(ComputeThreads.isa))")
    }
}
