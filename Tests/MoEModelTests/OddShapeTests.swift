import Foundation
import MoETestSupport
import Testing
@testable import MoEModel
import MoEEngine

/// Checkpoints of shapes the other fixtures do not have (Tests/Fixtures/odd-shapes: head_dim apart from hidden/heads,
/// one KV head, every expert used, top-1 routing, a window shorter than the prompt, sparse-step and mlp-only layers,
/// biases, tied embeddings, bf16 on disk, OLMoE's whole-projection q/k norms and clip_qkv, Granite's scalars, DeepSeek-V2
/// and V3's latent attention with and without q_lora_rank, YaRN's mscale, interleaved and half-split RoPE, greedy,
/// group-limited and bias-corrected sigmoid routing, shared experts and leading dense layers; GLM-4.7-Flash's dense layers by
/// mlp_layer_types and its latent norms at 1e-6 beside rms_norm_eps 1e-5; GLM-4.5's RoPE on half of each head with q/k
/// norms, biases and bias-corrected grouped routing) against transformers: logits
/// at every prompt position, greedy continuation.
struct OddShapeTests {
    static let dir = Fixtures.root.appendingPathComponent("odd-shapes")

    struct Golden: Decodable {
        let ids: [Int]
        let greedy: [Int]
        let shape: [Int]
    }

    static let names: [String] = {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("cases.json")),
              let cases = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { return [] }
        return cases.compactMap { $0["name"] as? String }
    }()

    @Test func everyCaseIsThere() { #expect(Self.names.count == 15) }

    @Test(arguments: names)
    func logitsAndGreedyTokensMatchTransformers(_ name: String) throws {
        try Self.expectTransformersOutputs(Self.dir.appendingPathComponent(name), tolerance: 1e-3)
    }

    static func golden(_ d: URL) throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: d.appendingPathComponent("golden.json")))
    }

    /// The checkpoint in `d` against transformers' outputs beside it (golden.json, logits.f32): the logits of every
    /// prompt position within `tolerance`, and the greedy continuation; the weights held in `formats`.
    static func expectTransformersOutputs(_ d: URL, tolerance: Float, formats: WeightFormats = .f32) throws {
        let g = try golden(d)
        let ref = try Data(contentsOf: d.appendingPathComponent("logits.f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let m = try LoadedModel(directory: d, formats: formats)
        let out = GoldenTests.forwardAll(m, g.ids)
        #expect(ref.count == g.shape[0] * g.shape[1] && out.logits.count == ref.count)
        let worst = (0..<ref.count).map { abs(out.logits[$0] - ref[$0]) }.max() ?? .infinity
        #expect(worst < tolerance, "\(d.lastPathComponent): max |diff| \(worst)")
        #expect(try greedy(m, g) == g.greedy, "\(d.lastPathComponent)")
    }

    /// The greedy continuation of the golden's prompt with the KV cache, EOS ignored as the golden's generate ran.
    static func greedy(_ m: LoadedModel, _ g: Golden) throws -> [Int] {
        var c = EngineConfig()
        c.kvBlocks = 64
        return try Engine(transformer: m.transformer, config: c)
            .generate(prompts: [g.ids.map(Int32.init)], maxNewTokens: g.greedy.count, params: [SamplingParams()], eos: [])[0]
            .tokens.map(Int.init)
    }
}
