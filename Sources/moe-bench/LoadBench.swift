import ArgumentParser
import Foundation
import MoEBalance
import MoECtlKit

/// Many concurrent streaming requests against a running server: what completed, what was refused with 429, what
/// was lost or duplicated, throughput, time to first token and inter-token latency.
struct LoadBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Concurrent streaming completions against a running moe-serve server (throughput, TTFT, inter-token latency, 429s).")

    @Option(help: "Server URL.") var server = "http://127.0.0.1:8080"
    @Option(help: "Requests in all.") var requests = 200
    @Option(help: "Requests in flight at once.") var concurrency = 200
    @Option(name: .customLong("max-tokens")) var maxTokens = 32
    @Option(help: "Prompt text (request i gets \" #i\" appended).") var prompt = "Once upon a time"
    @Option(help: "Bearer token.") var token: String?
    @Flag(help: "One JSON object.") var json = false

    struct Outcome: Sendable {
        var index: Int
        var status = "failed"              // completed | refused | failed
        var id: String?
        var tokens = 0
        var ttft = 0.0
        var gaps: [Double] = []
        var error: String?
    }

    func run() throws {
        let client = APIClient(endpoint: ServerEndpoint(baseURL: URL(string: server)!, token: token))
        let t0 = Date()
        let done = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var outcomes: [Outcome] = [] }
        let box = Box()
        let (n, width, maxTok, text) = (requests, concurrency, maxTokens, prompt)
        Task {
            box.outcomes = await withTaskGroup(of: Outcome.self) { group in
                var next = 0, out: [Outcome] = []
                func add() {
                    let i = next
                    next += 1
                    group.addTask { await Self.one(client, index: i, prompt: "\(text) #\(i)", maxTokens: maxTok) }
                }
                while next < min(width, n) { add() }
                for await o in group {
                    out.append(o)
                    if next < n { add() }
                }
                return out
            }
            done.signal()
        }
        done.wait()
        let seconds = Date().timeIntervalSince(t0)
        let o = box.outcomes.sorted { $0.index < $1.index }
        let completed = o.filter { $0.status == "completed" }, refused = o.filter { $0.status == "refused" }
        let failed = o.filter { $0.status == "failed" }
        let ids = completed.compactMap(\.id)
        let duplicates = ids.count - Set(ids).count
        let tokens = completed.reduce(0) { $0 + $1.tokens }
        let ttft = completed.map(\.ttft), itl = completed.flatMap(\.gaps)
        let summary: [String: Any] = [
            "requests": n, "completed": completed.count, "refused_429": refused.count, "failed": failed.count,
            "lost": n - o.count, "duplicate_ids": duplicates, "tokens": tokens, "seconds": seconds,
            "tokens_per_second": Double(tokens) / seconds,
            "ttft_p50": BalanceMetrics.percentile(ttft, 50), "ttft_p90": BalanceMetrics.percentile(ttft, 90),
            "ttft_p99": BalanceMetrics.percentile(ttft, 99),
            "itl_p50": BalanceMetrics.percentile(itl, 50), "itl_p90": BalanceMetrics.percentile(itl, 90),
            "itl_p99": BalanceMetrics.percentile(itl, 99),
            "errors": Array(Set(failed.compactMap(\.error))).sorted().prefix(5).map { $0 },
        ]
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("load: \(n) streaming requests, \(width) at once, \(maxTokens) tokens each, against \(server)")
        print("| completed | refused (429) | failed | lost | duplicates | tok/s | TTFT p50 / p90 / p99 (s) | inter-token p50 / p90 / p99 (ms) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        let f = { (x: Any?) in String(format: "%.3f", (x as? Double) ?? 0) }
        let ms = { (x: Any?) in String(format: "%.1f", ((x as? Double) ?? 0) * 1000) }
        print("| \(completed.count) | \(refused.count) | \(failed.count) | \(n - o.count) | \(duplicates) | \(String(format: "%.1f", Double(tokens) / seconds)) | \(f(summary["ttft_p50"])) / \(f(summary["ttft_p90"])) / \(f(summary["ttft_p99"])) | \(ms(summary["itl_p50"])) / \(ms(summary["itl_p90"])) / \(ms(summary["itl_p99"])) |")
        for e in summary["errors"] as! [String] { print("error: \(e)") }
    }

    static func one(_ client: APIClient, index: Int, prompt: String, maxTokens: Int) async -> Outcome {
        var o = Outcome(index: index)
        let start = Date()
        var last = start
        var finished = false
        do {
            let events = try client.streamCompletion(CompletionRequest(prompt: prompt, sampling: SamplingParameters(maxTokens: maxTokens, temperature: 0)))
            for try await e in events {
                switch try CompletionStreamEvent.decode(e.data) {
                case .done:
                    finished = true
                case .chunk(let c):
                    o.id = c.id
                    guard let piece = c.choices.first, !piece.text.isEmpty else { continue }
                    let now = Date()
                    if o.tokens == 0 { o.ttft = now.timeIntervalSince(start) } else { o.gaps.append(now.timeIntervalSince(last)) }
                    last = now
                    o.tokens += 1
                }
            }
            o.status = finished ? "completed" : "failed"
            if !finished { o.error = "stream ended without [DONE]" }
        } catch MoECtlError.http(let h) where h.status == 429 {
            o.status = "refused"
        } catch {
            o.error = "\(error)"
        }
        return o
    }
}
