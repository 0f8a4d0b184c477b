import Foundation
import MoETestSupport
import Testing
@testable import MoEServer

/// What the statistics report equals what the routing did, and the Prometheus text parses with a real parser.
@Suite(.serialized) struct StatsTests {
    @Test(arguments: ["tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"])
    func expertCountsEqualTheGoldenRouterCounts(model: String) async throws {
        let s = try await LiveServer(model: model)
        defer { Task { await s.stop() } }
        let g = try Fixtures.golden(model)
        var expected: [[Int]] = []
        for p in g.prompts {
            // One forward pass over the prompt: the first token comes from its last position.
            let r = try await HTTP.post(s.base + "/v1/completions", ["prompt": p.ids, "max_tokens": 1, "temperature": 0])
            #expect(r.status == 200)
            for layer in p.router ?? [] {
                while expected.count <= layer.layer { expected.append([]) }
                if expected[layer.layer].isEmpty { expected[layer.layer] = Array(repeating: 0, count: layer.counts.count) }
                for (e, c) in layer.counts.enumerated() { expected[layer.layer][e] += c }
            }
        }
        let stats = try await HTTP.get(s.base + "/v1/stats").json
        #expect(stats?["expert_tokens"] as? [[Int]] == expected)
        #expect(stats?["balancedness"] is Double && stats?["imbalance_ratio"] is Double)
    }

    @Test func prometheusTextParsesWithPrometheusClient() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let done = try await HTTP.post(s.base + "/v1/completions", ["prompt": "Hello there", "max_tokens": 5, "temperature": 0])
        #expect((done.json?["usage"] as? [String: Any])?["completion_tokens"] as? Int == 5)
        let text = try await HTTP.get(s.base + "/metrics").text
        let script = """
        import sys
        from prometheus_client.parser import text_string_to_metric_families
        fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
        e = fams["moe_expert_tokens"]
        assert e.type == "counter", e.type
        assert all(set(s.labels) == {"layer", "expert"} for s in e.samples), e.samples[:2]
        assert sum(s.value for s in e.samples if s.name.endswith("_total")) > 0
        for name in ["moe_balancedness", "moe_imbalance_ratio", "moe_spec_decode_num_drafts", "moe_time_to_first_token_seconds"]:
            assert name in fams, name
        # vLLM's names, for its dashboards: the model_name label, KV usage in [0, 1], the 5 generated tokens.
        for name in ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:spec_decode_num_drafts"]:
            assert name in fams, name
            assert all(x.labels == {"model_name": "tiny-mixtral"} for x in fams[name].samples), fams[name].samples
        assert 0 <= fams["vllm:kv_cache_usage_perc"].samples[0].value <= 1
        assert fams["vllm:generation_tokens"].samples[0].value == 5, fams["vllm:generation_tokens"].samples
        print(len(fams))
        """
        let p = Process()
        // The Debian interpreter first: .ci/run installs prometheus_client as python3-prometheus-client, which serves
        // /usr/bin/python3 only, and a pyenv or venv python3 earlier in PATH would not see it.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            p.arguments = ["-c", script]
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", "-c", script]
        }
        let input = Pipe(), output = Pipe(), err = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = err
        try p.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        p.waitUntilExit()
        let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "prometheus_client rejected the text: \(msg)")
        #expect(Int(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 > 15)
    }

    @Test func moectlStatsShowsTheTableAndTheHeatMap() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        _ = try await HTTP.post(s.base + "/v1/completions", ["prompt": "The quick brown fox", "max_tokens": 8])
        let r = try Binaries.run(Binaries.path("moectl"), ["stats", "--server", s.base], environment: ["NO_COLOR": "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("WORKER") && r.stdout.contains("balancedness") && r.stdout.contains("expert load"))
        #expect(!r.stdout.contains("\u{1B}["))   // NO_COLOR
        #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("    0 ") || $0.hasPrefix("    1 ") }.count == 2)   // 2 MoE layers
        let j = try Binaries.run(Binaries.path("moectl"), ["stats", "--server", s.base, "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])?["expert_tokens"] is [[Int]])
        let rb = try Binaries.run(Binaries.path("moectl"), ["rebalance", "--server", s.base])
        #expect(rb.status == 2 && rb.stderr.contains("no expert workers"))
    }
}
