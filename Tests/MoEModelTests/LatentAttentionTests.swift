import Foundation
import MoETestSupport
import Testing
@testable import MoEModel
import MoEEngine
import MoECore

/// DeepSeek's multi-head latent attention beyond the transformers comparisons of OddShapeTests: the cache keeps one
/// latent row per token (read as key and value), narrow weight formats and KV types stay near f32, and a token's output does not depend on
/// the batch it decodes in (speculative verification and continuous batching rely on it).
struct LatentAttentionTests {
    static let dir = Fixtures.root.appendingPathComponent("odd-shapes/deepseek-v3-widths-of-32")

    static func golden() throws -> (ids: [Int], greedy: [Int], logits: [Float]) {
        let g = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("golden.json"))) as! [String: Any]
        let ref = try Data(contentsOf: dir.appendingPathComponent("logits.f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return (g["ids"] as! [Int], g["greedy"] as! [Int], ref)
    }

    /// The median over the positions before 12 of each one's largest |Δlogit| (as WeightFormatTests measure the
    /// other families): at 12 this random router has a near-tie that f16 weights already tip to another group
    /// (transformers with its weights rounded to f16 jumps by 2.19 there too), and later positions attend to it.
    static func medianBeforeTheTie(_ out: ForwardOutput, _ ref: [Float]) -> Float {
        let V = out.vocab
        let perRow = (0..<12).map { r in (0..<V).map { abs(out.logits.pointer[r * V + $0] - ref[r * V + $0]) }.max()! }
        return perRow.sorted()[6]
    }

    @Test func theCacheHoldsOneLatentRowPerToken() throws {
        let m = try LoadedModel(directory: Self.dir)
        let mla = try #require(m.spec.mla)
        #expect(m.spec.numKVHeads == 1 && m.spec.headDim == mla.kvLoraRank + mla.ropeDim)
        // 3 layers × (64 + 16) × 4 bytes, the row read as key and value; q/k/v attention's 4 heads of 48 (keys) and
        // 16 (values) would cache 3 × 4 × 64 × 4 = 3072.
        #expect(KVCache.bytesPerToken(m.spec, dtype: .f32) == 960)
        let cache = KVCache(spec: m.spec, numBlocks: 4)
        #expect(cache.valuesAreKeys && cache.bytesPerToken == 960)
    }

    /// Bounds as WeightFormatTests' typical ones for the other families.
    @Test(arguments: [(WeightFormat.f16, Float(0.01)), (.int8, 0.2), (.int4, 3.5)])
    func narrowWeightsStayNearF32(format: WeightFormat, bound: Float) throws {
        let g = try Self.golden()
        let m = try LoadedModel(directory: Self.dir, formats: WeightFormats(experts: format, dense: format))
        guard case .latent(let a) = m.transformer.weights.layers[0].block else { Issue.record("not latent"); return }
        // Every width here is a multiple of 32: nothing fell back to another format.
        #expect(a.inProj?.format == format && a.qB?.format == format && a.o.format == format)
        #expect(a.uk.allSatisfy { $0.format == format } && a.uv.allSatisfy { $0.format == format })
        let d = Self.medianBeforeTheTie(GoldenTests.forwardAll(m, g.ids), g.logits)
        #expect(d < bound, "\(format): median max |Δlogit| before the tie \(d)")
    }

    @Test(arguments: [(KVDType.f16, Float(0.01)), (.int8, 0.2)])
    func narrowKVStaysNearF32(kv: KVDType, bound: Float) throws {
        let g = try Self.golden()
        let m = try LoadedModel(directory: Self.dir)
        let blocks = (g.ids.count + 15) / 16
        let cache = KVCache(spec: m.spec, numBlocks: blocks, dtype: kv)
        let out = m.transformer.forward([SequenceInput(tokens: g.ids.map(Int32.init), start: 0,
                                                       blockTable: (0..<Int32(blocks)).map { $0 }, logits: .all)], cache: cache)
        let d = Self.medianBeforeTheTie(out, g.logits)
        #expect(d < bound, "kv \(kv): median max |Δlogit| before the tie \(d)")
    }

    /// The golden's continuation decoded alone, then beside two other prompts (batched decode steps of 3 tokens,
    /// prompts prefilled together): the same tokens.
    @Test func aTokensOutputDoesNotDependOnItsBatch() throws {
        let g = try Self.golden()
        let m = try LoadedModel(directory: Self.dir)
        var c = EngineConfig()
        c.kvBlocks = 64
        let prompts = [g.ids, [5, 6, 7], Array(g.ids.reversed())].map { $0.map(Int32.init) }
        let together = try Engine(transformer: m.transformer, config: c)
            .generate(prompts: prompts, maxNewTokens: g.greedy.count, params: Array(repeating: SamplingParams(), count: 3), eos: [])
        #expect(together[0].tokens.map(Int.init) == g.greedy)
        for (i, p) in prompts.enumerated() {
            let alone = try Engine(transformer: m.transformer, config: c)
                .generate(prompts: [p], maxNewTokens: g.greedy.count, params: [SamplingParams()], eos: [])[0]
            #expect(alone.tokens == together[i].tokens, "prompt \(i)")
        }
    }

    /// As BatchInvarianceTests for q/k/v attention: a token's logits are the same bits alone, beside another
    /// sequence, token by token through the cache (each gathering its own keys, where a prompt's tokens share one
    /// gather), and cut into micro-batches, with f32 and f16 caches.
    @Test(arguments: [KVDType.f32, .f16])
    func logitsAreBitIdenticalAloneBatchedIncrementalAndCut(kv: KVDType) throws {
        let g = try Self.golden()
        let m = try LoadedModel(directory: Self.dir)
        let target = g.ids.map(Int32.init), other: [Int32] = [9, 8, 7, 6, 5, 4, 3]
        let T = target.count, V = m.spec.vocabSize
        let tableA: [Int32] = [0, 1, 2, 3], tableB: [Int32] = [8, 9, 10, 11]
        func pass(_ seqs: [SequenceInput], microBatches: Int = 1) -> [Float] {
            m.transformer.microBatches = microBatches
            m.transformer.microBatchMinTokens = 1
            defer { m.transformer.microBatches = 1 }
            let cache = KVCache(spec: m.spec, numBlocks: 16, dtype: kv)
            var rows: [Float] = []
            for s in seqs {
                let out = m.transformer.forward([s], cache: cache)
                withExtendedLifetime(out) { rows += Array(out.logits.buffer) }
            }
            return rows
        }
        let alone = pass([SequenceInput(tokens: target, start: 0, blockTable: tableA, logits: .all)])
        let cache = KVCache(spec: m.spec, numBlocks: 16, dtype: kv)
        let batched = m.transformer.forward([SequenceInput(tokens: other, start: 0, blockTable: tableB, logits: .all),
                                             SequenceInput(tokens: target, start: 0, blockTable: tableA, logits: .all)], cache: cache)
        withExtendedLifetime(batched) { #expect(Array(batched.logits.buffer[(other.count * V)..<((other.count + T) * V)]) == alone) }
        let incremental = pass((0..<T).map { SequenceInput(tokens: [target[$0]], start: $0, blockTable: tableA) })
        #expect(incremental == alone)
        for M in [2, 5] {
            #expect(pass([SequenceInput(tokens: target, start: 0, blockTable: tableA, logits: .all)], microBatches: M) == alone, "\(M) micro-batches")
        }
    }
}
