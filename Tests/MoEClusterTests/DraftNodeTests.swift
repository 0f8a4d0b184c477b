import Foundation
import MoETestSupport
import Testing
import MoEEngine
import MoEModel

/// The draft node under mpirun: the last rank drafts ahead and streams proposals; the verifier group checks them.
@Suite(.serialized) struct DraftNodeTests {
    let target = Fixtures.model("tiny-mixtral-spec").path, draft = Fixtures.model("tiny-mixtral-spec-draft").path

    func json(_ r: Binaries.Result) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    }

    @Test(arguments: [3, 4])
    func draftNodeKeepsGreedyOutputAndReportsAcceptance(np: Int) throws {
        let g = try Fixtures.golden("tiny-mixtral-spec")
        var accepted = 0, drafted = 0
        for p in g.prompts {
            for k in ["4", "auto"] {
                let r = try Binaries.mpirun(np: np, ["run", "--model", target, "--draft-model", draft, "--speculative-k", k,
                                                     "--prompt-ids", p.ids.map(String.init).joined(separator: ","),
                                                     "--max-tokens", "\(p.greedy.maxNew)", "--json"], timeout: 120)
                #expect(r.status == 0, "\(r.stderr)")
                #expect(r.stderr.contains("rank \(np - 1) (draft): draft"))
                let obj = json(r)
                #expect(obj?["ids"] as? [Int] == p.greedy.newTokens, "np=\(np) k=\(k) prompt \(p.index)")
                let spec = obj?["spec"] as? [String: Any]
                #expect(spec?["mean_acceptance_length"] is Double && spec?["accepted_per_position"] is [Int])
                if k == "4" {
                    accepted += spec?["accepted_tokens"] as? Int ?? 0
                    drafted += spec?["draft_tokens"] as? Int ?? 0
                }
            }
        }
        #expect(accepted > 0 && accepted < drafted, "accepted \(accepted) of \(drafted)")
    }

    /// Prompt lookup drafts need no draft node: with 3 ranks both others hold experts, greedy output is
    /// transformers', and the repeating prompt's drafts are accepted.
    @Test func ngramDraftsRunOnTheCoordinatorAndKeepGreedyOutput() throws {
        let g = try Fixtures.golden("tiny-mixtral-spec")
        var accepted = 0
        for p in g.prompts {
            let r = try Binaries.mpirun(np: 3, ["run", "--model", target, "--draft-model", "ngram", "--speculative-k", "3",
                                                "--prompt-ids", p.ids.map(String.init).joined(separator: ","),
                                                "--max-tokens", "\(p.greedy.maxNew)", "--json"], timeout: 120)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("drafts by prompt lookup") && !r.stderr.contains("(draft)"), "\(r.stderr)")
            let obj = json(r)
            #expect(obj?["ids"] as? [Int] == p.greedy.newTokens && obj?["workers"] as? Int == 2, "prompt \(p.index): \(r.stdout)")
            accepted += (obj?["spec"] as? [String: Any])?["accepted_tokens"] as? Int ?? 0
        }
        #expect(accepted > 0)
    }

    @Test func sampledSpeculationThroughTheDraftNodeCompletes() throws {
        let r = try Binaries.mpirun(np: 3, ["run", "--model", target, "--draft-model", draft, "--speculative-k", "3",
                                            "--temperature", "0.8", "--seed", "7", "--prompt-ids", "54,74,272", "--max-tokens", "40",
                                            "--ignore-eos", "--json"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        #expect((json(r)?["ids"] as? [Int])?.count == 40)
    }

    @Test func aDraftWithAnotherVocabularyStopsTheJobWithTheReason() throws {
        let r = try Binaries.mpirun(np: 3, ["run", "--model", target, "--draft-model",
                                            Fixtures.packageRoot.appendingPathComponent("Models/demo-draft").path,
                                            "--speculative-k", "2", "--prompt-ids", "1,2"], timeout: 60)
        #expect(r.status != 0)
        #expect(r.stderr.contains("rank 2 (draft): error: draft and target vocabularies differ: the target has 512 tokens, the draft 2048"))
    }
}

/// The serving engine across ranks: many requests batched through coordinator, workers and the draft node.
@Suite(.serialized) struct ClusterEngineTests {
    @Test func thirtyTwoBatchedRequestsThroughWorkersAndADraftNodeEachGetWhatTheyGetAlone() throws {
        let target = Fixtures.model("tiny-mixtral-spec")
        var rng = SeededRNG(seed: 3)
        var lines: [String] = [], requests: [([Int32], Int)] = []
        for i in 0..<32 {
            let ids = (0..<(1 + Int(rng.next() % 40))).map { _ in Int32(3 + Int(rng.next() % 509)) }
            requests.append((ids, 4 + i % 13))
            lines.append("{\"prompt_ids\": [\(ids.map(String.init).joined(separator: ","))], \"max_tokens\": \(4 + i % 13)}")
        }
        let file = Fixtures.tempDir("batch").appendingPathComponent("b.jsonl")
        try lines.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        let r = try Binaries.mpirun(np: 4, ["run", "--model", target.path, "--draft-model", Fixtures.model("tiny-mixtral-spec-draft").path,
                                            "--speculative-k", "3", "--batch-file", file.path], timeout: 300)
        #expect(r.status == 0, "\(r.stderr)")
        let outs = r.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(outs.count == 32)
        let m = try LoadedModel(directory: target)
        for (i, (ids, n)) in requests.enumerated() {
            var c = EngineConfig()
            c.kvBlocks = 16
            let alone = try Engine(transformer: m.transformer, config: c).generate(prompts: [ids], maxNewTokens: n, params: [SamplingParams()], eos: [2])[0]
            #expect(outs.first { $0["index"] as? Int == i }?["ids"] as? [Int] == alone.tokens.map(Int.init), "request \(i)")
        }
    }
}
