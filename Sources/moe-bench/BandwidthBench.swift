import ArgumentParser
import Foundation
import MoECore

/// The machine's limits alone: read bandwidth over every compute thread (the decode roofline's numerator), the
/// round trip of a cache line between two compute threads, and, unless --read-only, triad and the f32 GEMM rate.
/// For scripts that time another program between two samples (Deploy/peer/llama_cpp_bench.py).
struct BandwidthBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bandwidth",
        abstract: "Read bandwidth (GB/s, every compute thread), the threads' cache-line round trip and, unless --read-only, triad and f32 GEMM rate.")

    @Flag(name: .customLong("read-only"), help: "Only the read bandwidth (about 0.2 s).") var readOnly = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        ComputeThreads.ensureConfigured()
        let read = Roofline.readBandwidth() / 1e9
        let rest = readOnly ? nil : (triad: Roofline.triadBandwidth() / 1e9, gemm: Roofline.gemmFlops() / 1e9)
        let trip = Roofline.threadRoundTrip()
        if json {
            var obj: [String: Any] = ["threads": ComputeThreads.count, "isa": ComputeThreads.isa, "bandwidth_gb_s": read]
            if let r = rest { obj["triad_gb_s"] = r.triad; obj["gemm_gflop_s"] = r.gemm }
            if let ns = trip { obj["thread_round_trip_ns"] = ns }
            print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        var line = String(format: "read bandwidth %.1f GB/s", read)
        if let r = rest { line += String(format: ", triad %.1f GB/s, f32 GEMM %.0f GFLOP/s", r.triad, r.gemm) }
        if let ns = trip { line += String(format: ", threads' cache-line round trip %.0f ns", ns) }
        print(line + " (\(ComputeThreads.count) threads, \(ComputeThreads.isa))")
    }
}
