import ArgumentParser
import Foundation
import MoECluster
import MoEConfig
import MoECore
import MoEModel

/// Where a decode step's time goes, in one process or (under mpirun) across a coordinator and expert workers.
struct SplitBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Time split of one decode step (attention, routing, dispatch, expert compute, combine) per batch size; run alone and under mpirun to compare.")

    @Option(help: "Checkpoint directory (default: the bundled demo model).") var model: String?
    @Option(help: "Batch sizes, comma-separated.") var batches = "1,8,32"
    @Option(help: "Decode steps timed per batch size.") var steps = 16
    @Option(help: "Cluster config (YAML).") var config: String?
    @Option(name: .customLong("micro-batches"), help: "Micro-batch counts to compare, comma-separated (1 = no overlap).")
    var microBatches = "1"
    @Option(help: "Also time the prefill of one prompt of each of these lengths, comma-separated (e.g. 128,512).")
    var prefill = ""

    func run() throws {
        let mpi = try MPIRuntime.start()
        defer { mpi.finalize() }
        var cfg = try config.map { try ClusterConfig.load(path: $0) } ?? ClusterConfig()
        cfg.model = model ?? cfg.model ?? BundledModels.path()
        if cfg.threads > 0 { ComputeThreads.configure(count: cfg.threads) }
        let session = try ClusterSession(mpi: mpi, config: cfg)
        do { try session.load(directory: URL(fileURLWithPath: cfg.model!)) } catch let s as ClusterSession.Stop {
            if !s.quiet { logLine("error: \(s.message)") }
            throw ExitCode(1)
        }
        guard session.isCoordinator, let m = session.model else { try session.serve(); return }
        defer { session.shutdown() }
        let sizes = batches.split(separator: ",").compactMap { Int($0) }
        let ranks = session.workers == 0 ? "1 process" : "1 + \(session.workers) workers"
        print("decode step time split, \(cfg.model!), \(ranks), \(ComputeThreads.count) threads/rank, ms per step")
        print("| batch | ranks | micro-batches | attention | routing | dispatch | expert compute | combine | other | step | tok/s |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        let counts = microBatches.split(separator: ",").compactMap { Int($0) }
        // Cut every pass, whatever its size, so the table shows where cutting pays (serving leaves passes under
        // mpi.micro_batch_min_tokens whole).
        m.transformer.microBatchMinTokens = 1
        // One table row: `label`, `tokens` computed per timed pass, `passes` passes of `wall` seconds in total.
        func row(_ label: String, M: Int, tokens: Int, passes: Int, _ timed: () -> Double) {
            let p0 = m.transformer.profile, s0 = session.remote?.split
            let wall = timed()
            let p1 = m.transformer.profile, s1 = session.remote?.split
            let n = Double(passes)
            let d = p1 - p0
            let attention = d.attention / n, routing = d.routing / n
            var dispatch = 0.0, compute = d.experts / n, combine = 0.0
            if let a = s0, let b = s1 {
                dispatch = (b.dispatchSeconds - a.dispatchSeconds) / n
                compute = (b.expertSeconds - a.expertSeconds) / n
                combine = (b.combineSeconds - a.combineSeconds) / n
            }
            let step = wall / n
            let other = max(0, step - attention - routing - dispatch - compute - combine)
            print(String(format: "| %@ | %@ | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |", label, ranks, M,
                         attention * 1e3, routing * 1e3, dispatch * 1e3, compute * 1e3, combine * 1e3, other * 1e3, step * 1e3,
                         Double(tokens) / step))
        }
        for (B, M) in sizes.flatMap({ b in counts.map { (b, $0) } }) {
            m.transformer.microBatches = M
            var h = DecodeHarness(m.transformer, batch: B, steps: steps)
            _ = h.next()                                       // warm-up step
            row("\(B)", M: M, tokens: B, passes: steps) { (0..<steps).reduce(0) { t, _ in t + h.next() } }
        }
        for (P, M) in prefill.split(separator: ",").compactMap({ Int($0) }).flatMap({ p in counts.map { (p, $0) } }) {
            m.transformer.microBatches = M
            row("prefill \(P)", M: M, tokens: P, passes: 1) {
                let t0 = monotonicSeconds()
                _ = DecodeHarness(m.transformer, batch: 1, promptTokens: P, steps: 0)
                return monotonicSeconds() - t0
            }
        }
    }
}
