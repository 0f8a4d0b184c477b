import Foundation
import MoECore
import MoEEngine
import MoEModel
import MoETestSupport
import Testing

/// `moe-serve serve` as users start it: a separate process (alone or under mpirun), talked to over HTTP.
@Suite(.serialized) struct LiveClusterTests {
    /// Starts a server job and waits until /health answers.
    func start(np: Int?, port: Int, db: String, extra: [String] = [], model: String = "tiny-mixtral") async throws -> Binaries.Running {
        let args = ["serve", "--model", Fixtures.model(model).path, "--port", "\(port)", "--jobs-db", db] + extra
        let running = try np.map { try Binaries.startMPI(np: $0, args) } ?? Binaries.Running(Binaries.path("moe-serve"), args)
        for _ in 0..<600 {
            if (try? await HTTP.get("http://127.0.0.1:\(port)/health"))?.status == 200 { return running }
            if !running.process.isRunning { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        Issue.record("server did not come up: \(running.stderr as String)")
        return running
    }

    @Test func sigtermLetsRunningRequestsFinishAndExitsZero() async throws {
        let port = HTTP.freePort(), db = Fixtures.tempDir("db").appendingPathComponent("j.sqlite").path
        let server = try await start(np: nil, port: port, db: db)
        let inflight = Task { try await HTTP.post("http://127.0.0.1:\(port)/v1/completions", ["prompt": "a", "max_tokens": 300, "temperature": 0, "ignore_eos": true]) }
        try await Task.sleep(nanoseconds: 200_000_000)
        kill(server.process.processIdentifier, SIGTERM)
        let reply = try await inflight.value
        #expect(reply.status == 200 && (reply.json?["usage"] as? [String: Int])?["completion_tokens"] == 300, "\(reply.text)")
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
        var port = HTTP.freePort()
        var server = try await start(np: 3, port: port, db: db)
        let created = try await HTTP.post("http://127.0.0.1:\(port)/v1/jobs",
                                          ["prompts": prompts.map { ["prompt": $0] }, "max_tokens": 40, "temperature": 0, "ignore_eos": true])
        #expect(created.status == 202)
        let id = try #require(created.json?["id"] as? String)
        var done = 0
        for _ in 0..<1000 {
            done = try await HTTP.get("http://127.0.0.1:\(port)/v1/jobs/\(id)").json?["completed"] as? Int ?? 0
            if done >= 5 { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        #expect(done >= 5 && done < 50, "killed after \(done) of 50")
        kill(server.process.processIdentifier, SIGKILL)          // mpirun; its ranks die with it
        #expect(server.wait(timeout: 15))
        for _ in 0..<100 where (try? await HTTP.get("http://127.0.0.1:\(port)/health")) != nil { try await Task.sleep(nanoseconds: 50_000_000) }

        port = HTTP.freePort()
        server = try await start(np: 3, port: port, db: db)
        var status = ""
        for _ in 0..<2000 {
            status = try await HTTP.get("http://127.0.0.1:\(port)/v1/jobs/\(id)").json?["status"] as? String ?? ""
            if status == "completed" { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(status == "completed")
        let lines = try await HTTP.get("http://127.0.0.1:\(port)/v1/jobs/\(id)/results").text.split(separator: "\n")
        #expect(lines.count == 50)
        kill(server.process.processIdentifier, SIGTERM)
        _ = server.wait(timeout: 30)

        // Each result against the prompt alone (text of the greedy tokens).
        let m = try LoadedModel(directory: Fixtures.model("tiny-mixtral"))
        let tok = try MoETokenizer.Tokenizer(directory: Fixtures.model("tiny-mixtral"))
        let results = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        for r in results {
            let i = r["index"] as! Int
            var c = EngineConfig()
            c.kvBlocks = 8
            let alone = try Engine(transformer: m.transformer, config: c).generate(prompts: [prompts[i].map(Int32.init)], maxNewTokens: 40,
                                                                                  params: [SamplingParams()], eos: [], ignoreEOS: true)[0]
            #expect(r["text"] as? String == tok.decode(alone.tokens.map(Int.init), skipSpecialTokens: true), "prompt \(i)")
        }
    }
}

import MoETokenizer
