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
        print("| batch | ranks | attention | routing | dispatch | expert compute | combine | other | step | tok/s |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for B in sizes {
            var h = DecodeHarness(m.transformer, batch: B, steps: steps)
            _ = h.next()                                       // warm-up step
            let p0 = m.transformer.profile, s0 = session.remote?.stats
            var wall = 0.0
            for _ in 0..<steps { wall += h.next() }
            let p1 = m.transformer.profile, s1 = session.remote?.stats
            let n = Double(steps)
            let attention = (p1.attention - p0.attention) / n, routing = (p1.routing - p0.routing) / n
            var dispatch = 0.0, compute = (p1.experts - p0.experts) / n, combine = 0.0
            if let a = s0, let b = s1 {
                dispatch = (b.dispatchSeconds - a.dispatchSeconds) / n
                compute = (b.expertSeconds - a.expertSeconds) / n
                combine = (b.combineSeconds - a.combineSeconds) / n
            }
            let step = wall / n
            let other = max(0, step - attention - routing - dispatch - compute - combine)
            print(String(format: "| %d | %@ | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |", B, ranks, attention * 1e3,
                         routing * 1e3, dispatch * 1e3, compute * 1e3, combine * 1e3, other * 1e3, step * 1e3, Double(B) / step))
        }
    }
}
