import Foundation
import MoETestSupport
import Testing
@testable import MoEModel
import MoEEngine

/// Every fixture model against transformers' own float32 outputs.
@Suite struct GoldenTests {
    static let models = Fixtures.goldenModels + ["tiny-mixtral-fused", "tiny-mixtral-sharded"]

    static func forwardAll(_ m: LoadedModel, _ ids: [Int]) -> ForwardOutput {
        let blocks = (ids.count + 15) / 16
        let cache = KVCache(spec: m.spec, numBlocks: blocks)
        return m.transformer.forward([SequenceInput(tokens: ids.map(Int32.init), start: 0,
                                                    blockTable: (0..<Int32(blocks)).map { $0 }, logits: .all)], cache: cache)
    }

    static func engine(_ m: LoadedModel) -> Engine {
        var c = EngineConfig()
        c.kvBlocks = 64
        return Engine(transformer: m.transformer, config: c)
    }

    static func greedy(_ m: LoadedModel, _ ids: [Int], _ maxNew: Int) throws -> GenerationResult {
        try engine(m).generate(prompts: [ids.map(Int32.init)], maxNewTokens: maxNew, params: [SamplingParams()],
                               eos: Set(m.eosTokenIds.map(Int32.init)))[0]
    }

    @Test(arguments: models)
    func logitsMatchTransformersAtEveryPosition(model: String) throws {
        let m = try LoadedModel(directory: Fixtures.model(model))
        let g = try Fixtures.golden(model)
        for p in g.prompts {
            let ref = try g.logits(p)
            let out = Self.forwardAll(m, p.ids)
            #expect(out.logits.count == ref.count)
            var worst: Float = 0
            for i in 0..<ref.count { worst = max(worst, abs(out.logits[i] - ref[i])) }
            #expect(worst < 1e-3, "\(model) prompt \(p.index): max |diff| \(worst)")
        }
    }

    @Test(arguments: models)
    func greedyContinuationsMatchTransformers(model: String) throws {
        let m = try LoadedModel(directory: Fixtures.model(model))
        let g = try Fixtures.golden(model)
        for p in g.prompts {
            let r = try Self.greedy(m, p.ids, p.greedy.maxNew)
            #expect(r.tokens.map(Int.init) == p.greedy.newTokens, "\(model) prompt \(p.index)")
        }
    }

    @Test func promptsOfDifferentLengthsDecodedTogetherGiveTheirOwnGreedyTokens() throws {
        let m = try LoadedModel(directory: Fixtures.model("tiny-qwen3-moe"))
        let g = try Fixtures.golden("tiny-qwen3-moe")
        let maxNew = g.prompts.map(\.greedy.maxNew).max()!
        let rs = try Self.engine(m).generate(prompts: g.prompts.map { $0.ids.map(Int32.init) }, maxNewTokens: maxNew,
                                             params: Array(repeating: SamplingParams(), count: g.prompts.count),
                                             eos: Set(m.eosTokenIds.map(Int32.init)))
        for (p, r) in zip(g.prompts, rs) { #expect(r.tokens.map(Int.init) == p.greedy.newTokens) }
    }

    @Test(arguments: ["tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"])
    func routerPicksTheGoldenExpertsAndWeights(model: String) throws {
        let m = try LoadedModel(directory: Fixtures.model(model))
        let g = try Fixtures.golden(model)
        for p in g.prompts {
            let out = Self.forwardAll(m, p.ids)
            for layer in p.router ?? [] {
                let moe = m.spec.layers[layer.layer].moe!
                // The routing rule alone, on transformers' router logits.
                let flat = layer.routerLogits.flatMap { $0 }
                let r = flat.withUnsafeBufferPointer {
                    routeSoftmaxTopK(logits: $0.baseAddress!, tokens: p.ids.count, experts: moe.experts, topK: moe.topK,
                                     normalize: moe.normTopK)
                }
                #expect(r.experts.map(Int.init) == layer.experts.flatMap { $0 })
                for (a, b) in zip(r.weights, layer.weights.flatMap { $0 }) { #expect(abs(a - b) < 1e-5) }
                // And what the full forward pass routed.
                #expect(out.expertCounts[layer.layer] == layer.counts)
            }
        }
    }

    @Test func demoModelMatchesTransformers() throws {
        let dir = Fixtures.packageRoot.appendingPathComponent("Models/demo-mixtral")
        try #require(FileManager.default.fileExists(atPath: dir.path))
        let m = try LoadedModel(directory: dir)
        let gdata = try Data(contentsOf: dir.appendingPathComponent("golden/golden.json"))
        var g = try JSONDecoder().decode(Golden.self, from: gdata)
        g.directory = dir.appendingPathComponent("golden")
        for p in g.prompts {
            let ref = try g.logits(p)
            let out = Self.forwardAll(m, p.ids)
            var worst: Float = 0
            for i in 0..<ref.count { worst = max(worst, abs(out.logits[i] - ref[i])) }
            #expect(worst < 1e-3, "demo prompt \(p.index): max |diff| \(worst)")
            let r = try Self.greedy(m, p.ids, p.greedy.maxNew)
            #expect(r.tokens.map(Int.init) == p.greedy.newTokens, "demo prompt \(p.index)")
        }
    }
}

/// A token's logits must not depend on what else is in its batch, nor on whether its prompt was processed in one
/// pass or token by token: that is what makes batched and speculative greedy decoding equal to plain greedy.
@Suite struct BatchInvarianceTests {
    @Test(arguments: ["tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"])
    func logitsAreBitIdenticalAloneBatchedAndIncremental(model: String) throws {
        let m = try LoadedModel(directory: Fixtures.model(model))
        let g = try Fixtures.golden(model)
        let target = g.prompts[2].ids.map(Int32.init), other = g.prompts[1].ids.map(Int32.init)
        let T = target.count, V = m.spec.vocabSize
        let cache = KVCache(spec: m.spec, numBlocks: 16)
        let tableA: [Int32] = [0, 1, 2, 3], tableB: [Int32] = [8, 9, 10, 11]
        let alone = m.transformer.forward([SequenceInput(tokens: target, start: 0, blockTable: tableA, logits: .all)], cache: cache)
        let batched = m.transformer.forward([SequenceInput(tokens: other, start: 0, blockTable: tableB, logits: .all),
                                             SequenceInput(tokens: target, start: 0, blockTable: tableA, logits: .all)], cache: cache)
        let aloneRows = Array(alone.logits.buffer.prefix(T * V))
        let batchedRows = Array(batched.logits.buffer[(other.count * V)..<((other.count + T) * V)])
        #expect(aloneRows == batchedRows)
        // Token by token through the KV cache.
        var incremental: [Float] = []
        for t in 0..<T {
            let out = m.transformer.forward([SequenceInput(tokens: [target[t]], start: t, blockTable: tableA)], cache: cache)
            incremental += Array(out.row(0))
        }
        #expect(incremental == aloneRows)
    }
}

/// Two-batch overlap cuts a pass into micro-batches at token boundaries, even inside a sequence; since every kernel
/// is batch-invariant and each cut's keys are stored before the next cut attends, nothing a caller sees may change.
@Suite struct MicroBatchTests {
    @Test(arguments: ["tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"])
    func cuttingAPassIntoMicroBatchesChangesNoLogitAndNoRouterCount(model: String) throws {
        let m = try LoadedModel(directory: Fixtures.model(model))
        let g = try Fixtures.golden(model)
        let a = g.prompts[2].ids.map(Int32.init), b = g.prompts[1].ids.map(Int32.init)
        // Prefill of two sequences, then one decode step of both (2 tokens), as an engine would run them.
        func run(microBatches: Int) -> (prefill: [Float], decode: [Float], counts: [[Int]]) {
            m.transformer.microBatches = microBatches
            m.transformer.microBatchMinTokens = 1     // cut even the two-token decode step
            defer { m.transformer.microBatches = 1 }
            let cache = KVCache(spec: m.spec, numBlocks: 16)
            let ta: [Int32] = [0, 1, 2, 3], tb: [Int32] = [8, 9, 10, 11]
            let p = m.transformer.forward([SequenceInput(tokens: b, start: 0, blockTable: tb, logits: .all),
                                           SequenceInput(tokens: a, start: 0, blockTable: ta, logits: .all)], cache: cache)
            let d = m.transformer.forward([SequenceInput(tokens: [a[0]], start: a.count, blockTable: ta),
                                           SequenceInput(tokens: [b[0]], start: b.count, blockTable: tb)], cache: cache)
            return (Array(p.logits.buffer), Array(d.logits.buffer), p.expertCounts)
        }
        let whole = run(microBatches: 1)
        #expect(whole.counts.contains { !$0.isEmpty })
        // 2 and 3 cut inside a sequence's prompt; 64 leaves one token per micro-batch.
        for M in [2, 3, 64] {
            let cut = run(microBatches: M)
            #expect(cut.prefill == whole.prefill, "prefill logits differ with \(M) micro-batches")
            #expect(cut.decode == whole.decode, "decode logits differ with \(M) micro-batches")
            #expect(cut.counts == whole.counts, "router counts differ with \(M) micro-batches")
        }
    }
}
