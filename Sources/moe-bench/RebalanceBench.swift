import ArgumentParser
import Foundation
import MoEBalance
import MoECtlKit

/// A skewed workload against a running cluster, before and after `POST /v1/rebalance`: throughput, per-worker
/// load of each phase (from the stats' cumulative counters), and whether greedy outputs stayed the same.
struct RebalanceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebalance",
        abstract: "Skewed workload before and after an online expert rebalance: tok/s, imbalance ratio, outputs unchanged.")

    @Option(help: "Server URL.") var server = "http://127.0.0.1:8080"
    @Option(help: "Concurrent requests per round.") var concurrency = 12
    @Option(help: "Rounds per phase.") var rounds = 2
    @Option(name: .customLong("max-tokens")) var maxTokens = 24
    @Option(help: "Prompt (a repeated word routes every token to the same experts).") var prompt = String(repeating: "the ", count: 24)
    @Flag(help: "One JSON object.") var json = false

    struct Phase { var tokensPerSecond: Double; var workerTokens: [Double]; var texts: [String] }

    func run() throws {
        let client = APIClient(endpoint: ServerEndpoint(baseURL: URL(string: server)!))
        let before = try blocking { try await phase(client) }
        let report = try blocking { try await client.rebalance(dryRun: false) }
        let after = try blocking { try await phase(client) }
        let unchanged = before.texts == after.texts
        let rb = (try? JSONSerialization.jsonObject(with: report) as? [String: Any]) ?? [:]
        let out: [String: Any] = [
            "before": ["tokens_per_second": before.tokensPerSecond, "worker_tokens": before.workerTokens,
                       "imbalance_ratio": BalanceMetrics.imbalanceRatio(before.workerTokens), "balancedness": BalanceMetrics.balancedness(before.workerTokens)],
            "after": ["tokens_per_second": after.tokensPerSecond, "worker_tokens": after.workerTokens,
                      "imbalance_ratio": BalanceMetrics.imbalanceRatio(after.workerTokens), "balancedness": BalanceMetrics.balancedness(after.workerTokens)],
            "outputs_unchanged": unchanged, "rebalance": rb,
        ]
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("skewed workload (\(concurrency) concurrent greedy requests × \(rounds) rounds, \(maxTokens) tokens) against \(server)")
        print("| phase | tok/s | tokens per worker | imbalance ratio | balancedness |")
        print("| --- | --- | --- | --- | --- |")
        for (name, p) in [("before rebalance", before), ("after rebalance", after)] {
            print("| \(name) | \(String(format: "%.1f", p.tokensPerSecond)) | \(p.workerTokens.map { String(format: "%.0f", $0) }.joined(separator: " / ")) | \(String(format: "%.3f", BalanceMetrics.imbalanceRatio(p.workerTokens))) | \(String(format: "%.3f", BalanceMetrics.balancedness(p.workerTokens))) |")
        }
        print("greedy outputs unchanged: \(unchanged ? "yes" : "NO")")
    }

    func workerTokens(_ c: APIClient) async throws -> [Double] {
        let s = try JSONSerialization.jsonObject(with: try await c.stats()) as? [String: Any] ?? [:]
        return (s["workers"] as? [[String: Any]] ?? []).map { ($0["tokens"] as? Double) ?? Double(($0["tokens"] as? Int) ?? 0) }
    }

    func phase(_ c: APIClient) async throws -> Phase {
        let w0 = try await workerTokens(c)
        let t0 = Date()
        var texts: [String] = [], tokens = 0
        for _ in 0..<rounds {
            let results = try await withThrowingTaskGroup(of: (Int, String, Int).self) { g in
                for i in 0..<concurrency {
                    g.addTask {
                        let r = try await c.complete(CompletionRequest(prompt: prompt, sampling: SamplingParameters(maxTokens: maxTokens, temperature: 0)))
                        return (i, r.value.choices.first?.text ?? "", r.value.usage?.completionTokens ?? 0)
                    }
                }
                var out: [(Int, String, Int)] = []
                for try await x in g { out.append(x) }
                return out.sorted { $0.0 < $1.0 }
            }
            texts += results.map(\.1)
            tokens += results.reduce(0) { $0 + $1.2 }
        }
        let seconds = Date().timeIntervalSince(t0)
        let w1 = try await workerTokens(c)
        return Phase(tokensPerSecond: Double(tokens) / seconds, workerTokens: zip(w1, w0).map { $0 - $1 }, texts: texts)
    }

    func blocking<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let box = ResultBox<T>(), done = DispatchSemaphore(value: 0)
        Task { box.result = await Result(catching: { try await body() }); done.signal() }
        done.wait()
        return try box.result!.get()
    }
}

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }
