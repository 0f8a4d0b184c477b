import Foundation
import MoEModel
import MoETestSupport
import Testing

/// Real mpirun jobs on this machine (shared memory): 1 coordinator + W expert workers against transformers' goldens
/// and the single process, and the ways a job must fail.
@Suite(.serialized) struct MultiRankTests {
    static let models = ["tiny-mixtral", "tiny-mixtral-bf16", "tiny-mixtral-fused", "tiny-mixtral-sharded",
                         "tiny-qwen2-moe", "tiny-qwen3-moe", "tiny-mistral-sp", "tiny-mixtral-spec"]

    func floats(_ url: URL) throws -> [Float] {
        try Data(contentsOf: url).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    @Test(arguments: models)
    func workersGiveTheSameLogitsAndGreedyTokensAsOneProcess(model: String) throws {
        let g = try Fixtures.golden(model)
        let dir = Fixtures.model(model).path
        let long = g.prompts[2], short = g.prompts[1]
        let ids = long.ids.map(String.init).joined(separator: ",")
        let tmp = Fixtures.tempDir("mpi")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let single = try Binaries.moeServe(["logits", "--model", dir, "--ids", ids, "--out", tmp.appendingPathComponent("one.f32").path])
        #expect(single.status == 0, "\(single.stderr)")
        let one = try floats(tmp.appendingPathComponent("one.f32"))
        let ref = try g.logits(long)
        for W in [1, 2, 3, 7] {
            let out = tmp.appendingPathComponent("w\(W).f32")
            let r = try Binaries.mpirun(np: W + 1, ["logits", "--model", dir, "--ids", ids, "--out", out.path])
            #expect(r.status == 0, "W=\(W): \(r.stderr)")
            let many = try floats(out)
            #expect(many.count == one.count)
            #expect(zip(many, one).map { abs($0 - $1) }.max()! < 1e-5, "W=\(W) vs one process")
            #expect(zip(many, ref).map { abs($0 - $1) }.max()! < 1e-3, "W=\(W) vs transformers")
            let gen = try Binaries.mpirun(np: W + 1, ["run", "--model", dir, "--prompt-ids", short.ids.map(String.init).joined(separator: ","),
                                                      "--max-tokens", "\(short.greedy.maxNew)", "--json"])
            let obj = try JSONSerialization.jsonObject(with: Data(gen.stdout.utf8)) as? [String: Any]
            #expect(obj?["ids"] as? [Int] == short.greedy.newTokens, "W=\(W): \(gen.stderr)")
            #expect(obj?["workers"] as? Int == W)
        }
    }

    /// Odd shapes across workers (Tests/Fixtures/odd-shapes): three experts all used on two workers, top-1 routing
    /// over five, sparse-step layers, a layer without experts, DeepSeek-V3's latent attention with shared experts and
    /// grouped bias-corrected routing: transformers' logits and greedy tokens, EOS ignored. An FP8 checkpoint too
    /// (Tests/Fixtures/fp8) and a W4A16 one (Tests/Fixtures/compressed-tensors): each worker reads its experts'
    /// float8 rows and their ragged block scales, or their packed int4 rows. And gpt-oss (Tests/Fixtures/gpt-oss) as
    /// MXFP4 blocks and in transformers' x·W layout: each worker reads its experts' slice of the fused tensors. And a
    /// GPTQ and an AWQ checkpoint (Tests/Fixtures/gptq-awq): each worker unpacks its experts' layers.
    @Test(arguments: ["odd-shapes/mixtral-headdim12-1kv-3experts", "odd-shapes/mixtral-top1-window", "odd-shapes/qwen2-moe-sparse-step",
                      "odd-shapes/qwen3-moe-bias-mlp-only", "odd-shapes/deepseek-v3-noaux-interleaved", "fp8/qwen3-moe-fp8-ragged-blocks",
                      "compressed-tensors/qwen3-moe-w4a16-groups", "gpt-oss/gpt-oss-mxfp4", "gpt-oss/gpt-oss-f32-clamped",
                      "gptq-awq/qwen3-moe-gptq-int4-actorder", "gptq-awq/qwen2-moe-awq-int4"])
    func oddShapesAcrossWorkersMatchTransformers(_ name: String) throws {
        let d = Fixtures.root.appendingPathComponent(name)
        let g = try JSONSerialization.jsonObject(with: Data(contentsOf: d.appendingPathComponent("golden.json"))) as! [String: Any]
        let ids = (g["ids"] as! [Int]).map(String.init).joined(separator: ",")
        let ref = try floats(d.appendingPathComponent("logits.f32"))
        let tmp = Fixtures.tempDir("mpi")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("l.f32")
        // f32 weights: transformers' values (auto would hold a quantised checkpoint's at about its size).
        let exact = ["--experts-dtype", "f32", "--attention-dtype", "f32"]
        let r = try Binaries.mpirun(np: 3, ["logits", "--model", d.path, "--ids", ids, "--out", out.path] + exact)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(zip(try floats(out), ref).map { abs($0 - $1) }.max() ?? 1 < 1e-3)
        let gen = try Binaries.mpirun(np: 3, ["run", "--model", d.path, "--prompt-ids", ids, "--max-tokens", "12", "--ignore-eos", "--json"] + exact)
        let obj = try JSONSerialization.jsonObject(with: Data(gen.stdout.utf8)) as? [String: Any]
        #expect(obj?["ids"] as? [Int] == g["greedy"] as? [Int], "\(gen.stderr)")
        // auto on AWQ and on act order (columns held sorted by group): every worker holds its experts as int4z and
        // the coordinator its attention (lm_head, stored unquantised, as bf16). The logits are one process's, bit for
        // bit.
        if name == "gptq-awq/qwen2-moe-awq-int4" || name == "gptq-awq/qwen3-moe-gptq-int4-actorder" {
            let held = "int4z"
            let q = tmp.appendingPathComponent("q.f32"), one = tmp.appendingPathComponent("one.f32")
            let r = try Binaries.mpirun(np: 3, ["logits", "--model", d.path, "--ids", ids, "--out", q.path])
            let s = try Binaries.moeServe(["logits", "--model", d.path, "--ids", ids, "--out", one.path])
            #expect(r.status == 0 && s.status == 0 && r.stderr.contains("experts as \(held)"), "\(r.stderr)")
            #expect(r.stderr.contains("(dense layers as \(held), lm_head bf16 (auto), no experts)"), "\(r.stderr)")
            #expect(try floats(q) == (try floats(one)))
        }
        // int4 asked where rows do not fit groups of 32: every rank holds f16 instead, as one process does.
        if name == "odd-shapes/mixtral-headdim12-1kv-3experts" {
            let q = tmp.appendingPathComponent("q.f32"), one = tmp.appendingPathComponent("one.f32")
            let r = try Binaries.mpirun(np: 3, ["logits", "--model", d.path, "--ids", ids, "--out", q.path, "--experts-dtype", "int4"])
            let s = try Binaries.moeServe(["logits", "--model", d.path, "--ids", ids, "--out", one.path, "--experts-dtype", "f16"])
            #expect(r.status == 0 && s.status == 0 && r.stderr.contains("experts held as f16"), "\(r.stderr)")
            #expect(zip(try floats(q), try floats(one)).map { abs($0 - $1) }.max() ?? 1 < 1e-5)
        }
    }

    /// Two-batch overlap: each layer's exchange for one micro-batch is in flight (non-blocking all-to-alls) while
    /// the coordinator runs the next micro-batch's attention. The workers see the same rows in the same order per
    /// token, so logits are bit-identical to the unsplit run and batched greedy outputs are unchanged.
    @Test func overlappedMicroBatchesGiveTheSameLogitsAndTokensAsOneBatch() throws {
        let model = "tiny-qwen2-moe"   // routed and shared experts: both parts of the overlapped layer
        let g = try Fixtures.golden(model)
        let dir = Fixtures.model(model).path
        let tmp = Fixtures.tempDir("mpi-mb")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let ids = g.prompts[2].ids.map(String.init).joined(separator: ",")
        var logits: [[Float]] = []
        for M in [1, 2, 3] {
            let out = tmp.appendingPathComponent("mb\(M).f32")
            let r = try Binaries.mpirun(np: 3, ["logits", "--model", dir, "--ids", ids, "--out", out.path, "--micro-batches", "\(M)",
                                                "--micro-batch-min-tokens", "1"])
            #expect(r.status == 0, "M=\(M): \(r.stderr)")
            logits.append(try floats(out))
        }
        #expect(!logits[0].isEmpty)
        #expect(logits[1] == logits[0], "2 micro-batches changed the logits")
        #expect(logits[2] == logits[0], "3 micro-batches changed the logits")

        let batch = tmp.appendingPathComponent("batch.jsonl")
        let lines = g.prompts.map { "{\"prompt_ids\": \($0.ids), \"max_tokens\": \($0.greedy.maxNew)}" }
        try lines.joined(separator: "\n").write(to: batch, atomically: true, encoding: .utf8)
        let plain = try Binaries.mpirun(np: 3, ["run", "--model", dir, "--batch-file", batch.path, "--micro-batches", "1"])
        let split = try Binaries.mpirun(np: 3, ["run", "--model", dir, "--batch-file", batch.path, "--micro-batches", "2",
                                                "--micro-batch-min-tokens", "1"])
        #expect(plain.status == 0 && split.status == 0, "\(plain.stderr)\n\(split.stderr)")
        let results = split.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(results.count == g.prompts.count)
        for (i, p) in g.prompts.enumerated() where i < results.count {
            #expect(results[i]["ids"] as? [Int] == p.greedy.newTokens, "prompt \(i) with 2 micro-batches")
        }
        #expect(split.stdout == plain.stdout)
    }

    /// Workers holding their experts as int8 (and the coordinator its dense weights as f16) compute what one process
    /// with the same formats computes: the formats are applied where the weights live. (Not to the bit: the combine
    /// adds expert outputs in another order, ~1e-6, and the next layer's int16 rounding of activations can carry
    /// that to ~1e-4 — far below int8's own ~0.1 distance from f32.)
    @Test func workersWithNarrowWeightsMatchOneProcessWithTheSameFormats() throws {
        let g = try Fixtures.golden("tiny-qwen2-moe")
        let ids = g.prompts[2].ids.map(String.init).joined(separator: ",")
        let tmp = Fixtures.tempDir("fmt")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let args = ["logits", "--model", Fixtures.model("tiny-qwen2-moe").path, "--ids", ids, "--experts-dtype", "int8", "--attention-dtype", "f16"]
        let one = try Binaries.moeServe(args + ["--out", tmp.appendingPathComponent("one.f32").path])
        #expect(one.status == 0, "\(one.stderr)")
        let r = try Binaries.mpirun(np: 3, args + ["--out", tmp.appendingPathComponent("w2.f32").path])
        #expect(r.status == 0 && r.stderr.contains("experts as int8"), "\(r.stderr)")
        let a = try floats(tmp.appendingPathComponent("one.f32")), b = try floats(tmp.appendingPathComponent("w2.f32"))
        #expect(a.count == b.count && zip(a, b).map { abs($0 - $1) }.max()! < 1e-3, "max \(zip(a, b).map { abs($0 - $1) }.max()!)")
        let ref = try g.logits(g.prompts[2])
        let worst = zip(a, ref).map { abs($0 - $1) }.max()!
        #expect(worst > 1e-4 && worst < 2.5, "int8 experts: max |Δ| \(worst) against transformers' f32")
    }

    @Test func bf16WireStaysCloseToF32() throws {
        let g = try Fixtures.golden("tiny-qwen3-moe")
        let p = g.prompts[2]
        let tmp = Fixtures.tempDir("bf16")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let r = try Binaries.mpirun(np: 3, ["logits", "--model", Fixtures.model("tiny-qwen3-moe").path, "--wire-dtype", "bf16",
                                            "--ids", p.ids.map(String.init).joined(separator: ","), "--out", tmp.appendingPathComponent("b.f32").path])
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try floats(tmp.appendingPathComponent("b.f32")), ref = try g.logits(p)
        let diffs = zip(ours, ref).map { abs($0 - $1) }
        let mean = diffs.reduce(0, +) / Float(diffs.count)
        // Rows are rounded to 8 bits of mantissa on the wire: logits move by about 1e-2 on average, and a near-tie
        // router choice can flip at a position, so the worst position moves more; the argmax almost never does.
        #expect(mean > 0 && mean < 0.02, "mean |diff| \(mean)")
        #expect(diffs.max()! < 1.0)
        let V = 512, T = p.ids.count
        func argmax(_ v: [Float], _ t: Int) -> Int { (0..<V).max { v[t * V + $0] < v[t * V + $1] }! }
        let same = (0..<T).filter { argmax(ours, $0) == argmax(ref, $0) }.count
        #expect(Double(same) >= 0.95 * Double(T))
    }

    @Test func explicitPlacementPutsExpertsWhereTheConfigSays() throws {
        let cfg = Fixtures.tempDir("cfg").appendingPathComponent("c.yaml")
        try "placement:\n  strategy: explicit\n  map:\n    0: [2, 2, 2, 2, 2, 2, 2, 1]\n    default: [1, 2, 3, 1, 2, 3, 1, 2]\n".write(to: cfg, atomically: true, encoding: .utf8)
        let g = try Fixtures.golden("tiny-mixtral")
        let p = g.prompts[1]
        let r = try Binaries.mpirun(np: 4, ["run", "--config", cfg.path, "--model", Fixtures.model("tiny-mixtral").path,
                                            "--prompt-ids", p.ids.map(String.init).joined(separator: ","), "--max-tokens", "16", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("rank 1 (worker 1): holds 4 experts"))   // layer 0: expert 7; layer 1: 0, 3, 6
        #expect(r.stderr.contains("rank 2 (worker 2): holds 10 experts"))  // layer 0: 0–6; layer 1: 1, 4, 7
        #expect(r.stderr.contains("rank 3 (worker 3): holds 2 experts"))
        #expect(r.stderr.contains("rank 0 (coordinator): holds") && r.stderr.contains("(dense layers as f32 (auto), no experts)"))
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(obj?["ids"] as? [Int] == p.greedy.newTokens)
        // A map naming a worker the job does not have is refused before any weight loads.
        let r2 = try Binaries.mpirun(np: 3, ["run", "--config", cfg.path, "--model", Fixtures.model("tiny-mixtral").path, "--prompt-ids", "1"])
        #expect(r2.status != 0 && r2.stderr.contains("placement.map names worker rank 3, but the job has worker ranks 1…2"))
    }

    @Test func aWorkerWithAWrongModelPathStopsTheJobWithItsReason() throws {
        let good = ["run", "--model", Fixtures.model("tiny-mixtral").path, "--prompt-ids", "1,2"]
        let t0 = Date()
        let r = try Binaries.mpirunMPMD([(2, good), (1, ["run", "--model", "/no/such/model", "--prompt-ids", "1,2"])], timeout: 60)
        #expect(Date().timeIntervalSince(t0) < 10)
        #expect(r.status != 0)
        #expect(r.stderr.contains("rank 2 (worker 2): error: missing file: /no/such/model (expected a checkpoint directory)"))
        // A different checkpoint on one rank is caught by the fingerprint.
        let r2 = try Binaries.mpirunMPMD([(2, good), (1, ["run", "--model", Fixtures.model("tiny-mixtral-spec").path, "--prompt-ids", "1,2"])], timeout: 60)
        #expect(r2.status != 0 && r2.stderr.contains("ranks see different models") && r2.stderr.contains("rank(s) 2"))
    }

    @Test func aKilledWorkerEndsTheJobWithinSeconds() throws {
        let marker = "kill-test-\(UUID().uuidString.prefix(8))"
        let job = try Binaries.startMPI(np: 3, ["run", "--model", Fixtures.packageRoot.appendingPathComponent("Models/demo-mixtral").path,
                                                "--prompt", marker, "--max-tokens", "20000", "--ignore-eos"])
        defer { job.kill() }
        var pid: Int32?
        for _ in 0..<200 where pid == nil || !job.stdout.contains(marker) {
            usleep(50_000)
            pid = Binaries.rankPID(rank: 1, marker: marker)
        }
        let victim = try #require(pid)
        usleep(300_000)
        kill(victim, SIGKILL)
        let t0 = Date()
        #expect(job.wait(timeout: 10), "job still running 10 s after a worker died")
        // mpirun notices a dead rank within about a second (README); 5 s leaves room for a loaded machine.
        #expect(Date().timeIntervalSince(t0) < 5, "the job ended \(Date().timeIntervalSince(t0)) s after the worker died")
        #expect(job.process.terminationStatus != 0)
        #expect(job.stderr.contains("rank 1") && job.stderr.contains("signal 9"), "\(job.stderr)")
    }

    @Test func aStuckWorkerTimesOutInsteadOfHanging() throws {
        let cfg = Fixtures.tempDir("cfg").appendingPathComponent("t.yaml")
        try "mpi:\n  timeout_seconds: 2\n".write(to: cfg, atomically: true, encoding: .utf8)
        let marker = "stop-test-\(UUID().uuidString.prefix(8))"
        let job = try Binaries.startMPI(np: 3, ["run", "--config", cfg.path, "--model",
                                                Fixtures.packageRoot.appendingPathComponent("Models/demo-mixtral").path,
                                                "--prompt", marker, "--max-tokens", "20000", "--ignore-eos"])
        defer { job.kill() }
        var pid: Int32?
        for _ in 0..<200 where pid == nil || !job.stdout.contains(marker) {
            usleep(50_000)
            pid = Binaries.rankPID(rank: 2, marker: marker)
        }
        let victim = try #require(pid)
        kill(victim, SIGSTOP)
        defer { kill(victim, SIGKILL) }
        #expect(job.wait(timeout: 15), "job still running after the timeout")
        #expect(job.process.terminationStatus != 0)
        #expect(job.stderr.contains("rank 0 (coordinator): error: no answer for 2 s while"), "\(job.stderr)")
    }

    @Test func aWorkersMemoryGrowsWithItsShardNotWithTheModel() throws {
        let dir = Fixtures.tempDir("shard")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Experts dominate: 4 layers × 8 experts × 3 × 256 × 1024 f32 = 96 MiB of experts held as f32 (auto would
        // keep the checkpoint's f16, half that).
        let s = try Binaries.moeServe(["synth", "--out", dir.path, "--hidden", "256", "--intermediate", "1024", "--layers", "4",
                                       "--experts", "8", "--top-k", "2", "--heads", "4", "--kv-heads", "2", "--vocab", "600",
                                       "--dtype", "f16", "--seed", "2"])
        try #require(s.status == 0, "\(s.stderr)")
        func workerRSS(_ np: Int) throws -> [Double] {
            let r = try Binaries.mpirun(np: np, ["logits", "--model", dir.path, "--ids", "5,6,7", "--out", dir.appendingPathComponent("l.f32").path,
                                                 "--experts-dtype", "f32"])
            #expect(r.status == 0, "\(r.stderr)")
            // "RSS 123.4 MiB" or "RSS 1.23 GiB", in MiB.
            return r.stderr.split(separator: "\n").filter { $0.contains("(worker") }.compactMap { line in
                let f = line.components(separatedBy: "RSS ").last?.split(separator: " ") ?? []
                guard f.count >= 2, let v = Double(f[0]) else { return nil }
                return f[1].hasPrefix("GiB") ? v * 1024 : v
            }
        }
        let oneWorker = try workerRSS(2), fourWorkers = try workerRSS(5)
        #expect(oneWorker.count == 1 && fourWorkers.count == 4)
        let expertsMiB = 96.0
        // Each of 4 workers holds a quarter: its RSS is at least 3/4 of the experts (less ~20% slack) below the worker
        // that holds them all.
        for r in fourWorkers { #expect(oneWorker[0] - r > 0.6 * expertsMiB, "worker RSS \(r) MiB vs \(oneWorker[0]) MiB holding all") }
    }
}
