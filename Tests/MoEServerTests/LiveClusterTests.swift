import Foundation
import MoECore
import MoEEngine
import MoEModel
import MoETestSupport
import Testing

/// `moe-serve serve` as users start it: a separate process (alone or under mpirun), talked to over HTTP.
@Suite(.serialized) struct LiveClusterTests {
    /// Starts a server job on a port the kernel picks (read from its banner) and waits until /health answers.
    func start(np: Int?, db: String, model: String = "tiny-mixtral", modelPath: String? = nil, extraFirst: [String] = []) async throws -> (Binaries.Running, Int) {
        let args = ["serve", "--model", modelPath ?? Fixtures.model(model).path, "--port", "0", "--jobs-db", db] + extraFirst
        let running = try np.map { try Binaries.startMPI(np: $0, args) } ?? Binaries.Running(Binaries.path("moe-serve"), args)
        for _ in 0..<1200 {
            if let r = running.stderr.range(of: "on http://127.0.0.1:"),
               let port = Int(running.stderr[r.upperBound...].prefix { $0.isNumber }),
               (try? await HTTP.get("http://127.0.0.1:\(port)/health"))?.status == 200 {
                return (running, port)
            }
            if !running.process.isRunning { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        Issue.record("server did not come up: \(running.stderr as String)")
        return (running, 0)
    }

    /// Every answer is text, so a model directory without tokenizer.json is refused at start, naming the file.
    @Test func serveRefusesAModelWithoutItsTokenizer() throws {
        let dir = try Fixtures.copy("tiny-mixtral")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("tokenizer.json")
        try FileManager.default.removeItem(at: file)
        let r = try Binaries.moeServe(["serve", "--model", dir.path, "--port", "0", "--jobs-db", dir.appendingPathComponent("j.sqlite").path],
                                      timeout: 120)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("error: \(file.path) is missing"), "\(r.stderr)")
        #expect(!r.stderr.contains("serving"))
    }

    /// `--chat-template FILE` renders chats with that template (the fixture has none of its own); an unreadable file
    /// is refused at start.
    @Test func serveTakesAChatTemplateFile() async throws {
        let dir = Fixtures.tempDir("template")
        let file = dir.appendingPathComponent("qwen2.5.jinja")
        try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("chat-templates/qwen2.5.jinja"), to: file)
        let (server, port) = try await start(np: nil, db: dir.appendingPathComponent("j.sqlite").path, extraFirst: ["--chat-template", file.path])
        defer { server.stop() }
        let r = try await HTTP.post("http://127.0.0.1:\(port)/tokenize", ["messages": [["role": "user", "content": "Hi"]]])
        let expected = try await HTTP.post("http://127.0.0.1:\(port)/tokenize",
            ["prompt": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
             "add_special_tokens": false])
        #expect(r.status == 200 && r.json?["tokens"] as? [Int] == expected.json?["tokens"] as? [Int], "\(r.text)")
        let missing = try Binaries.moeServe(["serve", "--model", Fixtures.model("tiny-mixtral").path, "--port", "0", "--chat-template", dir.appendingPathComponent("none.jinja").path,
                                             "--jobs-db", dir.appendingPathComponent("k.sqlite").path], timeout: 120)
        #expect(missing.status == 1 && missing.stderr.contains("cannot read the chat template"), "\(missing.stderr)")
    }

    /// `--served-model-name` as vLLM's: requests may name the model by any of the names, responses carry the first,
    /// /v1/models lists them all; another name is a 404 listing them.
    @Test func serveAnswersToItsServedModelNames() async throws {
        let db = Fixtures.tempDir("db").appendingPathComponent("j.sqlite").path
        let (server, port) = try await start(np: nil, db: db, extraFirst: ["--served-model-name", "mixtral", "gpt-4o"])
        defer { server.stop() }
        let base = "http://127.0.0.1:\(port)"
        let models = try await HTTP.get(base + "/v1/models")
        #expect((models.json?["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["mixtral", "gpt-4o"], "\(models.text)")
        let r = try await HTTP.post(base + "/v1/completions", ["model": "gpt-4o", "prompt": "a", "max_tokens": 2])
        #expect(r.status == 200 && r.json?["model"] as? String == "mixtral", "\(r.text)")
        #expect(try await HTTP.get(base + "/v1/models/gpt-4o").json?["id"] as? String == "gpt-4o")
        let other = try await HTTP.post(base + "/v1/completions", ["model": "tiny-mixtral", "prompt": "a", "max_tokens": 2])
        let message = (other.json?["error"] as? [String: Any])?["message"] as? String ?? ""
        #expect(other.status == 404 && message.contains("`mixtral`, `gpt-4o`"), "\(other.text)")
        #expect(server.stderr.contains("serving mixtral on"))
    }

    @Test func sigtermLetsRunningRequestsFinishAndExitsZero() async throws {
        let db = Fixtures.tempDir("db").appendingPathComponent("j.sqlite").path
        let (server, port) = try await start(np: nil, db: db)
        defer { server.stop() }
        let inflight = Task { try await HTTP.post("http://127.0.0.1:\(port)/v1/completions", ["prompt": "a", "max_tokens": 2000, "temperature": 0, "ignore_eos": true]) }
        // SIGTERM only once the server has the request (on a loaded machine the client may take a while to send it).
        for _ in 0..<600 {
            if (try? await HTTP.get("http://127.0.0.1:\(port)/health"))?.json?["running"] as? Int ?? 0 > 0 { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        kill(server.process.processIdentifier, SIGTERM)
        let reply = try await inflight.value
        #expect(reply.status == 200 && HTTP.counts(reply.json?["usage"])?["completion_tokens"] == 2000, "\(reply.text)")
        #expect(server.wait(timeout: 30))
        #expect(server.process.terminationStatus == 0, "\(server.stderr)")
        #expect(server.stderr.contains("moe-serve: stopped"))
    }

    /// A job of 50 prompts survives `kill -9` of the whole mpirun job: restarted on the same database, it finishes,
    /// and every result equals the greedy output of its prompt alone.
    @Test func aJobSurvivesKillDashNineOfTheWholeCluster() async throws {
        let dir = Fixtures.tempDir("durable"), db = dir.appendingPathComponent("jobs.sqlite").path
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededRNG(seed: 50)
        let prompts = (0..<50).map { _ in (0..<(2 + Int(rng.next() % 20))).map { _ in Int(3 + rng.next() % 509) } }
        var (server, port) = try await start(np: 3, db: db)
        // Kill once a few items are done and most are not. When the whole test process is busy (other suites run
        // alongside), this poller can be starved until the job has finished; then it tries again with a new job.
        var id = "", done = 0
        for _ in 0..<3 {
            let created = try await HTTP.post("http://127.0.0.1:\(port)/v1/jobs",
                                              ["prompts": prompts.map { ["prompt": $0] }, "max_tokens": 480, "temperature": 0, "ignore_eos": true])
            #expect(created.status == 202)
            id = try #require(created.json?["id"] as? String)
            done = 0
            for _ in 0..<1000 {
                done = try await HTTP.get("http://127.0.0.1:\(port)/v1/jobs/\(id)").json?["completed"] as? Int ?? 0
                if done >= 3 { break }
                try await Task.sleep(nanoseconds: 10_000_000)
            }
            if done < 50 { break }
        }
        #expect(done >= 3 && done < 50, "killed after \(done) of 50")
        kill(server.process.processIdentifier, SIGKILL)          // mpirun; its ranks die with it
        #expect(server.wait(timeout: 15))
        for _ in 0..<100 where (try? await HTTP.get("http://127.0.0.1:\(port)/health")) != nil { try await Task.sleep(nanoseconds: 50_000_000) }

        (server, port) = try await start(np: 3, db: db)
        var status = ""
        for _ in 0..<2000 {
            status = try await HTTP.get("http://127.0.0.1:\(port)/v1/jobs/\(id)").json?["status"] as? String ?? ""
            if status == "completed" { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(status == "completed")
        let lines = try await HTTP.get("http://127.0.0.1:\(port)/v1/jobs/\(id)/results").text.split(separator: "\n")
        #expect(lines.count == 50)
        let t0 = Date()
        let stopped = server.stop()
        #expect(stopped, "not stopped by SIGTERM after \(Date().timeIntervalSince(t0)) s: \(server.stderr.suffix(600))")

        // Each result against the prompt alone (text of the greedy tokens).
        let m = try LoadedModel(directory: Fixtures.model("tiny-mixtral"))
        let tok = try MoETokenizer.Tokenizer(directory: Fixtures.model("tiny-mixtral"))
        let results = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        for r in results {
            let i = r["index"] as! Int
            var c = EngineConfig()
            c.kvBlocks = 40
            let alone = try Engine(transformer: m.transformer, config: c).generate(prompts: [prompts[i].map(Int32.init)], maxNewTokens: 480,
                                                                                  params: [SamplingParams()], eos: [], ignoreEOS: true)[0]
            #expect(r["text"] as? String == tok.decode(alone.tokens.map(Int.init), skipSpecialTokens: true), "prompt \(i)")
        }
    }
}

import MoETokenizer

extension LiveClusterTests {
    func moectl(_ args: [String], port: Int) throws -> Binaries.Result {
        try Binaries.run(Binaries.path("moectl"), args, environment: ["MOE_SERVER": "http://127.0.0.1:\(port)"], timeout: 120)
    }

    /// The whole product: mpirun with two expert workers and a draft node, driven by moectl.
    @Test func moectlDrivesAClusterWithWorkersAndADraftNode() async throws {
        let dir = Fixtures.tempDir("ctl")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, port) = try await start(np: 4, db: dir.appendingPathComponent("j.sqlite").path, model: "tiny-mixtral-spec",
                                     extraFirst: ["--draft-model", Fixtures.model("tiny-mixtral-spec-draft").path, "--speculative-k", "3"])
        defer { server.stop() }
        let h = try moectl(["health", "--json"], port: port)
        let health = try JSONSerialization.jsonObject(with: Data(h.stdout.utf8)) as? [String: Any]
        #expect(health?["workers"] as? Int == 2 && health?["draft"] as? Bool == true, "\(h.stdout) \(h.stderr)")

        // generate streams the same text a non-streamed greedy completion returns.
        let g = try moectl(["generate", "The quick brown fox", "--max-tokens", "16", "--temperature", "0"], port: port)
        #expect(g.status == 0, "\(g.stderr)")
        let ref = try await HTTP.post("http://127.0.0.1:\(port)/v1/completions", ["prompt": "The quick brown fox", "max_tokens": 16, "temperature": 0])
        let text = ((ref.json?["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? "?"
        #expect(g.stdout == text + "\n")

        // submit --wait, status, results.
        let file = dir.appendingPathComponent("p.jsonl")
        try "{\"prompt\": \"The quick brown fox\", \"max_tokens\": 16}\n\"Once upon a time\"\n{\"prompt\": \"Hello\", \"max_tokens\": 5}\n"
            .write(to: file, atomically: true, encoding: .utf8)
        let sub = try moectl(["submit", file.path, "--temperature", "0", "--max-tokens", "8", "--wait"], port: port)
        #expect(sub.status == 0, "\(sub.stderr)")
        let id = sub.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(id.hasPrefix("job_"))
        let st = try moectl(["status", id, "--json"], port: port)
        let job = try JSONSerialization.jsonObject(with: Data(st.stdout.utf8)) as? [String: Any]
        #expect(job?["status"] as? String == "completed" && job?["completed"] as? Int == 3)
        let res = try moectl(["results", id], port: port)
        let lines = res.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 3 && lines[0]["text"] as? String == text)
        #expect(HTTP.counts(lines[2]["usage"])?["completion_tokens"] == 5)
        let jobs = try moectl(["jobs"], port: port)
        #expect(jobs.stdout.contains(id) && jobs.stdout.contains("completed"))

        // Penalties (the draft node drafts with them), logprobs with echo and json_object through the cluster give
        // what one process gives without speculation.
        let embedded = try await LiveServer(model: "tiny-mixtral-spec")
        defer { Task { await embedded.stop() } }
        let bodies: [[String: Any]] = [
            ["prompt": "The quick brown fox", "max_tokens": 16, "temperature": 0, "repetition_penalty": 1.3, "presence_penalty": 0.5],
            ["prompt": "The quick brown fox", "max_tokens": 8, "temperature": 0, "logprobs": 2, "echo": true],
            ["prompt": "Say it in JSON:", "max_tokens": 40, "temperature": 0, "response_format": ["type": "json_object"]],
        ]
        for body in bodies {
            let a = try await HTTP.post("http://127.0.0.1:\(port)/v1/completions", body)
            let b = try await HTTP.post(embedded.base + "/v1/completions", body)
            let ca = (a.json?["choices"] as? [[String: Any]])?.first, cb = (b.json?["choices"] as? [[String: Any]])?.first
            #expect(a.status == 200 && ca?["text"] as? String == cb?["text"] as? String, "\(body) \(a.text) \(b.text)")
            let la = (ca?["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any]
            let lb = (cb?["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any]
            #expect(la?.count == lb?.count)
            for (x, y) in zip(la ?? [], lb ?? []) {
                #expect((x is NSNull && y is NSNull) || abs((x as? Double ?? 0) - (y as? Double ?? 1)) < 1e-3)
            }
        }

        // cancel a long job.
        let big = dir.appendingPathComponent("big.jsonl")
        try Array(repeating: "\"Once upon a time\"", count: 40).joined(separator: "\n").write(to: big, atomically: true, encoding: .utf8)
        let sub2 = try moectl(["submit", big.path, "--max-tokens", "200", "--temperature", "0"], port: port)
        let id2 = sub2.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let c = try moectl(["cancel", id2, "--json"], port: port)
        #expect((try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as? [String: Any])?["status"] as? String == "cancelled")
        let w = try moectl(["status", id2], port: port)
        #expect(w.stdout.contains("cancelled"))
    }

    /// 200 concurrent streaming requests from another process: each completes or is refused with 429, none is
    /// lost or duplicated, and the server's memory settles back.
    @Test func twoHundredConcurrentStreamsCompleteOrGet429() async throws {
        let dir = Fixtures.tempDir("load")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = dir.appendingPathComponent("c.yaml")
        try "api:\n  max_queued_requests: 50\n".write(to: cfg, atomically: true, encoding: .utf8)
        let (server, port) = try await start(np: nil, db: dir.appendingPathComponent("j.sqlite").path, extraFirst: ["--config", cfg.path])
        defer { server.stop() }
        func rss() -> Int {
            let s = (try? String(contentsOfFile: "/proc/\(server.process.processIdentifier)/status", encoding: .utf8)) ?? ""
            return Int(s.split(separator: "\n").first { $0.hasPrefix("VmRSS") }?.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        _ = try await HTTP.post("http://127.0.0.1:\(port)/v1/completions", ["prompt": "warm", "max_tokens": 4])
        let idle = rss()
        let r = try Binaries.run(Binaries.path("moe-bench"), ["load", "--server", "http://127.0.0.1:\(port)", "--requests", "200",
                                                              "--concurrency", "200", "--max-tokens", "64", "--json"], timeout: 300)
        let s = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
        let completed = s["completed"] as? Int ?? -1, refused = s["refused_429"] as? Int ?? -1
        #expect(completed + refused == 200 && s["failed"] as? Int == 0, "\(s)")
        #expect(s["lost"] as? Int == 0 && s["duplicate_ids"] as? Int == 0)
        #expect(refused > 0 && completed >= 50, "\(s)")
        try await Task.sleep(nanoseconds: 1_000_000_000)
        #expect(try await HTTP.get("http://127.0.0.1:\(port)/health").json?["running"] as? Int == 0)
        // Per-request buffers come back: what remains is allocator slack, far below the traffic's size.
        let after = rss()
        #expect(after - idle < 48 * 1024, "RSS \(idle) kB idle, \(after) kB after the load")
    }
}

extension LiveClusterTests {
    /// A workload that sends every token to one expert per layer (top-1 routing, a repeated word) piles onto one
    /// worker; `moectl rebalance` replicates the hot experts across workers online, and the imbalance falls at least
    /// threefold with greedy outputs unchanged.
    @Test func rebalancingASkewedWorkloadCutsImbalanceAndKeepsOutputs() async throws {
        let dir = Fixtures.tempDir("skew")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("m")
        let s = try Binaries.moeServe(["synth", "--out", model.path, "--hidden", "64", "--intermediate", "64", "--layers", "2",
                                       "--experts", "8", "--top-k", "1", "--heads", "4", "--kv-heads", "2", "--vocab", "600",
                                       "--dtype", "f32", "--seed", "4"])
        try #require(s.status == 0, "\(s.stderr)")
        // Where this workload's tokens go, measured in-process; the cluster then starts with the three hottest experts
        // of every layer on worker 1: a placement that suits another workload, not this one.
        let m = try LoadedModel(directory: model)
        let tok = try MoETokenizer.Tokenizer(directory: model)
        var c = EngineConfig()
        c.kvBlocks = 64
        let e = Engine(transformer: m.transformer, config: c)
        let prompt = tok.encode(String(repeating: "the ", count: 24)).map(Int32.init)
        _ = try e.generate(prompts: Array(repeating: prompt, count: 12), maxNewTokens: 24, params: Array(repeating: SamplingParams(), count: 12), eos: [])
        var yaml = "placement:\n  strategy: explicit\n  map:\n"
        for (l, row) in e.collector.windowLoad.enumerated() {
            let hot = row.indices.sorted { row[$0] > row[$1] }
            var ranks = Array(repeating: 0, count: row.count)
            for (i, x) in hot.enumerated() { ranks[x] = i < 3 ? 1 : 2 + i % 2 }
            yaml += "    \(l): [\(ranks.map(String.init).joined(separator: ", "))]\n"
        }
        let cfg = dir.appendingPathComponent("c.yaml")
        try yaml.write(to: cfg, atomically: true, encoding: .utf8)
        let (server, port) = try await start(np: 4, db: dir.appendingPathComponent("j.sqlite").path, modelPath: model.path,
                                             extraFirst: ["--config", cfg.path])
        defer { server.stop() }
        let r = try Binaries.run(Binaries.path("moe-bench"), ["rebalance", "--server", "http://127.0.0.1:\(port)", "--json"], timeout: 300)
        let out = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr) \(server.stderr)")
        let before = (out["before"] as? [String: Any])?["imbalance_ratio"] as? Double ?? 0
        let after = (out["after"] as? [String: Any])?["imbalance_ratio"] as? Double ?? 99
        #expect(before > 1, "\(out)")
        #expect(after * 3 <= before, "imbalance \(before) → \(after)")
        #expect(out["outputs_unchanged"] as? Bool == true)
        #expect(server.stderr.contains("re-placed"))
        let st = try moectl(["stats"], port: port)
        #expect(st.status == 0 && st.stdout.contains("expert load"))
    }
}
