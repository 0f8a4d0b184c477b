import Foundation
import MoEBalance
import MoEModel

/// What every step adds to the statistics.
struct StepSample {
    var expertCounts: [[Int]]
    var verification: Bool
    var traffic: ExpertTraffic?
    var seconds: Double
    var emitted: Int
    var dropped: Int
    var spec: SpecStats
}

/// Load-balance, traffic, speculation and latency statistics, cumulative and over a sliding window of the last
/// `windowSteps` steps. Recording is cheap (sparse per-step records, incremental window sums) and times itself, so
/// its share of step time is reported too. Written by the stepping thread, read by any thread.
public final class StatsCollector: @unchecked Sendable {
    public let windowSteps: Int
    let expertsPerLayer: [Int]
    private let lock = NSLock()
    private let started = Date()

    // Cumulative.
    private var expertTokens: [[Int]]
    private var steps = 0, verifySteps = 0, generated = 0, dropped = 0
    private var distinct = 0.0, distinctVerify = 0.0
    private var lastTraffic: ExpertTraffic?
    private var stepSeconds = 0.0, overhead = 0.0
    private var spec = SpecStats()

    // Window: one sparse record per step and running sums.
    private struct Record {
        var counts: [(Int32, Int32, Int32)]     // layer, expert, tokens
        var rows: [Int]
        var busy: [Double]
        var seconds: Double
        var emitted: Int
    }
    private var ring: [Record] = []
    private var head = 0
    private var windowTokens: [[Int]]
    private var windowRows: [Int] = [], windowBusy: [Double] = []
    private var windowSeconds = 0.0, windowEmitted = 0

    // Latencies: the most recent samples.
    private var ttft: [Double] = [], itl: [Double] = []
    private let latencyCap = 10_000

    public init(spec: ModelSpec, windowSteps: Int = 1000) {
        self.windowSteps = max(1, windowSteps)
        expertsPerLayer = spec.layers.map { $0.moe?.experts ?? 0 }
        expertTokens = expertsPerLayer.map { Array(repeating: 0, count: $0) }
        windowTokens = expertTokens
    }

    func record(_ s: StepSample) {
        let t0 = Date()
        lock.lock()
        defer {
            overhead += Date().timeIntervalSince(t0)
            lock.unlock()
        }
        steps += 1
        spec = s.spec
        generated += s.emitted
        dropped += s.dropped
        stepSeconds += s.seconds
        if s.verification { verifySteps += 1 }
        var nonzero: [(Int32, Int32, Int32)] = []
        var touched = 0, moeLayers = 0
        for (l, row) in s.expertCounts.enumerated() where !row.isEmpty && l < expertTokens.count {
            moeLayers += 1
            for (e, c) in row.enumerated() where c > 0 {
                expertTokens[l][e] += c
                windowTokens[l][e] += c
                nonzero.append((Int32(l), Int32(e), Int32(c)))
                touched += 1
            }
        }
        let perLayer = moeLayers > 0 ? Double(touched) / Double(moeLayers) : 0
        if s.verification { distinctVerify += perLayer } else { distinct += perLayer }
        // Per-worker deltas since the last step (the backend counts cumulatively).
        var rows: [Int] = [], busy: [Double] = []
        if let t = s.traffic {
            let prev = lastTraffic ?? ExpertTraffic(workers: t.workers)
            if prev.workers == t.workers {
                rows = zip(t.rowsPerWorker, prev.rowsPerWorker).map { $0 - $1 }
                busy = zip(t.busyPerWorker, prev.busyPerWorker).map { $0 - $1 }
            }
            lastTraffic = t
            if windowRows.count != rows.count { windowRows = Array(repeating: 0, count: rows.count); windowBusy = Array(repeating: 0, count: rows.count) }
            for i in rows.indices { windowRows[i] += rows[i]; windowBusy[i] += busy[i] }
        }
        windowSeconds += s.seconds
        windowEmitted += s.emitted
        let rec = Record(counts: nonzero, rows: rows, busy: busy, seconds: s.seconds, emitted: s.emitted)
        if ring.count < windowSteps {
            ring.append(rec)
        } else {
            let old = ring[head]
            for (l, e, c) in old.counts { windowTokens[Int(l)][Int(e)] -= Int(c) }
            for i in old.rows.indices where i < windowRows.count { windowRows[i] -= old.rows[i]; windowBusy[i] -= old.busy[i] }
            windowSeconds -= old.seconds
            windowEmitted -= old.emitted
            ring[head] = rec
            head = (head + 1) % windowSteps
        }
    }

    /// Starts the per-worker counters from the backend's current (zero) traffic, so the worker table has every
    /// worker before the first exchange.
    func seed(_ t: ExpertTraffic) { lock.withLock { lastTraffic = t } }

    func recordFirstToken(_ seconds: Double) { lock.withLock { push(&ttft, seconds) } }
    func recordInterToken(_ seconds: Double) { lock.withLock { push(&itl, seconds) } }

    private func push(_ a: inout [Double], _ v: Double) {
        if a.count >= latencyCap { a.removeFirst(a.count - latencyCap + 1) }
        a.append(v)
    }

    /// Windowed tokens per (layer, expert): the load a rebalance plans for.
    public var windowLoad: [[Double]] { lock.withLock { windowTokens.map { $0.map(Double.init) } } }

    /// Everything, as the JSON object GET /v1/stats serves.
    public func snapshot(load: (running: Int, waiting: Int), workerRanks: [Int]) -> [String: Any] {
        lock.lock()
        defer { lock.unlock() }
        let traffic = lastTraffic
        let workers = traffic?.workers ?? 0
        // Per worker: window rows (tokens routed to its experts) when there are workers; one local "worker" otherwise.
        let cumRows = traffic?.rowsPerWorker ?? [expertTokens.joined().reduce(0, +)]
        let cumBusy = traffic?.busyPerWorker ?? [0]
        let winRows = workers > 0 ? windowRows : [windowTokens.joined().reduce(0, +)]
        let winBusy = workers > 0 ? windowBusy : [0]
        let basis = winRows.reduce(0, +) > 0 ? winRows.map(Double.init) : cumRows.map(Double.init)
        let busyBasis = winBusy.reduce(0, +) > 0 ? winBusy : cumBusy
        let total = max(basis.reduce(0, +), 1)
        let table: [[String: Any]] = basis.indices.map { i in
            ["worker": workers > 0 ? (i < workerRanks.count ? workerRanks[i] : i + 1) : 0,
             "tokens": i < cumRows.count ? cumRows[i] : 0, "window_tokens": i < winRows.count ? winRows[i] : 0,
             "share": basis[i] / total, "busy_seconds": i < cumBusy.count ? cumBusy[i] : 0,
             "window_busy_seconds": i < winBusy.count ? winBusy[i] : 0,
             "imbalance": basis.reduce(0, +) > 0 ? basis[i] / (total / Double(basis.count)) - 1 : 0]
        }
        let windowCount = ring.count
        let uptime = Date().timeIntervalSince(started)
        let decodeSteps = steps - verifySteps
        return [
            "uptime_s": uptime, "steps": steps, "window_steps": windowSteps, "window_steps_recorded": windowCount,
            "expert_tokens": expertTokens, "window_expert_tokens": windowTokens,
            "workers": table,
            "balancedness": BalanceMetrics.balancedness(basis), "imbalance_ratio": BalanceMetrics.imbalanceRatio(basis),
            "jain_fairness": BalanceMetrics.jainFairness(basis), "wasted_share": BalanceMetrics.wastedShare(busyBasis),
            "distinct_experts_per_layer": ["decode": decodeSteps > 0 ? distinct / Double(decodeSteps) : 0,
                                           "verification": verifySteps > 0 ? distinctVerify / Double(verifySteps) : 0],
            "all_to_all": ["bytes_sent": traffic?.bytesSent ?? 0, "bytes_received": traffic?.bytesReceived ?? 0,
                           "seconds": traffic?.exchangeSeconds ?? 0, "exchanges": traffic?.exchanges ?? 0],
            "capacity_overflow": dropped,
            "speculative": spec.json,
            "throughput": ["generated_tokens": generated, "window_tokens_per_second": windowSeconds > 0 ? Double(windowEmitted) / windowSeconds : 0,
                           "running": load.running, "waiting": load.waiting],
            "latency": ["ttft_p50": BalanceMetrics.percentile(ttft, 50), "ttft_p90": BalanceMetrics.percentile(ttft, 90),
                        "ttft_p99": BalanceMetrics.percentile(ttft, 99), "itl_p50": BalanceMetrics.percentile(itl, 50),
                        "itl_p90": BalanceMetrics.percentile(itl, 90), "itl_p99": BalanceMetrics.percentile(itl, 99),
                        "ttft_count": ttft.count, "itl_count": itl.count],
            "collector_overhead_share": stepSeconds > 0 ? overhead / stepSeconds : 0,
        ]
    }
}
