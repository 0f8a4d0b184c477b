import Foundation
import MoETestSupport
import Testing
@testable import MoEModel

/// Scaled RoPE (YaRN, linear, Llama 3) against transformers: fixture weights with the rope settings of
/// Tests/Fixtures/rope-scaling/cases.json put into their config.json, logits over a 40-token prompt.
@Suite struct RopeScalingTests {
    static let dir = Fixtures.root.appendingPathComponent("rope-scaling")

    struct Case: Decodable, CustomTestStringConvertible {
        let name: String
        let fixture: String
        let ids: [Int]
        let shape: [Int]
        let argmax: [Int]
        var testDescription: String { name }
    }
    struct Goldens: Decodable { let cases: [Case] }

    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("goldens.json")),
              let g = try? JSONDecoder().decode(Goldens.self, from: data) else { return [] }
        return g.cases
    }()

    /// The case's fixture with its config.json's rope keys replaced by the case's, exactly as make.py writes it.
    static func checkpoint(_ c: Case) throws -> URL {
        let dst = try Fixtures.copy(c.fixture)
        let url = dst.appendingPathComponent("config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let all = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("cases.json"))) as! [[String: Any]]
        let overrides = all.first { $0["name"] as? String == c.name }!["config"] as! [String: Any]
        config["rope_parameters"] = nil
        config["rope_scaling"] = nil
        config.merge(overrides) { $1 }
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        return dst
    }

    @Test func everyCaseHasAGolden() {
        #expect(Self.cases.count == 7)
    }

    @Test(arguments: cases)
    func scaledRopeLogitsMatchTransformers(_ c: Case) throws {
        let m = try LoadedModel(directory: Self.checkpoint(c))
        let ref = try Data(contentsOf: Self.dir.appendingPathComponent("\(c.name).f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(ref.count == c.shape[0] * c.shape[1])
        let out = GoldenTests.forwardAll(m, c.ids)
        var worst: Float = 0
        for i in 0..<ref.count { worst = max(worst, abs(out.logits[i] - ref[i])) }
        #expect(worst < 1e-3, "\(c.name): max |diff| \(worst)")
        let V = c.shape[1]
        let argmax = (0..<c.shape[0]).map { t in (0..<V).max { out.logits[t * V + $0] < out.logits[t * V + $1] }! }
        #expect(argmax == c.argmax)
    }

    /// vLLM's --hf-overrides with Qwen's YaRN setting over a config written by transformers 5 (rope in
    /// rope_parameters) gives what transformers gives for the edited config.json.
    @Test func hfOverridesTurnOnYarnOverATransformers5Config() throws {
        let c = Self.cases.first { $0.name == "qwen3-moe-yarn" }!
        let overrides = Data(#"{"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512}}"#.utf8)
        let ckpt = try Checkpoint(directory: Fixtures.model(c.fixture), configOverrides: overrides)
        let spec = try ModelFamilies.spec(configData: ckpt.configData)
        #expect(spec.rope.theta == 10000 && spec.maxPositions == 2048)
        let m = try LoadedModel(checkpoint: ckpt, spec: spec)
        let ref = try Data(contentsOf: Self.dir.appendingPathComponent("\(c.name).f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let out = GoldenTests.forwardAll(m, c.ids)
        #expect((0..<ref.count).map { abs(out.logits[$0] - ref[$0]) }.max()! < 1e-3)
    }

    @Test func hfOverridesTable() throws {
        func apply(_ o: String, _ config: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: ConfigOverrides.apply(Data(o.utf8), to: Data(config.utf8))) as! [String: Any]
        }
        // Top-level keys replaced; others kept.
        let a = try apply(#"{"max_position_embeddings": 8192, "sliding_window": null}"#, #"{"max_position_embeddings": 4096, "sliding_window": 64, "vocab_size": 10}"#)
        #expect(a["max_position_embeddings"] as? Int == 8192 && a["sliding_window"] is NSNull && a["vocab_size"] as? Int == 10)
        // rope_scaling over rope_parameters: becomes rope_parameters, keeping its theta unless given.
        let b = try apply(#"{"rope_scaling": {"rope_type": "linear", "factor": 2}}"#, #"{"rope_parameters": {"rope_type": "default", "rope_theta": 5e5}}"#)
        #expect(b["rope_scaling"] == nil)
        #expect((b["rope_parameters"] as? [String: Any])?["rope_theta"] as? Double == 5e5)
        #expect((b["rope_parameters"] as? [String: Any])?["rope_type"] as? String == "linear")
        // rope_scaling null turns scaling off, theta kept.
        let c = try apply(#"{"rope_scaling": null}"#, #"{"rope_parameters": {"rope_type": "yarn", "factor": 4, "rope_theta": 1e6}}"#)
        #expect((c["rope_parameters"] as? [String: Any])?.count == 1)
        #expect(throws: ModelError.badConfig(file: "--hf-overrides", reason: "must be a JSON object of config.json keys, e.g. {\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}")) {
            try ConfigOverrides.apply(Data("[1]".utf8), to: Data("{}".utf8))
        }
    }

    /// Table: the ramp's ends for Qwen3's published YaRN setting (factor 4 over 32,768 positions, θ 1e6,
    /// head_dim 128): frequencies 0…(low) kept, from (high) on divided by 4; the attention factor 0.1·ln 4 + 1.
    @Test func qwen3YarnRampAndAttentionFactor() {
        let y = YarnParameters(factor: 4, originalMaxPositions: 32768)
        let ramp = Rope.yarnRamp(y, theta: 1e6, dim: 128)
        // dimension(32 turns) = 128·ln(32768/(64π))/(2·ln 1e6) = 23.6 → 23; dimension(1 turn) = 39.7 → 40.
        #expect(ramp[23] == 0 && ramp[24] > 0 && ramp[39] < 1 && ramp[40] == 1)
        #expect(abs(Rope.yarnAttentionFactor(y) - (0.1 * log(4) + 1)) < 1e-12)
        let rope = Rope(RopeSpec(theta: 1e6, scaling: .yarn(y)), headDim: 128)
        let plain = Rope(RopeSpec(theta: 1e6), headDim: 128)
        #expect(rope.invFreq[0] == plain.invFreq[0])
        #expect(abs(rope.invFreq[63] - plain.invFreq[63] / 4) <= plain.invFreq[63] * 1e-6)
    }

    @Test func yarnAttentionFactorTable() {
        func f(_ factor: Double, af: Double? = nil, m: Double? = nil, all: Double? = nil) -> Double {
            Rope.yarnAttentionFactor(YarnParameters(factor: factor, originalMaxPositions: 4096, attentionFactor: af, mscale: m, mscaleAllDim: all))
        }
        #expect(f(1) == 1)                                          // no stretch, no scaling
        #expect(f(0.5) == 1)
        #expect(f(4, af: 1.25) == 1.25)                             // given explicitly
        #expect(abs(f(40, m: 1, all: 0.707) - (0.1 * log(40) + 1) / (0.0707 * log(40) + 1)) < 1e-12)  // DeepSeek-V3
        #expect(abs(f(40, m: 1, all: 1) - 1) < 1e-12)
        #expect(abs(f(40, m: 1) - (0.1 * log(40) + 1)) < 1e-12)     // mscale alone is ignored, as transformers does
    }

    /// vLLM's context rule: YaRN gives original × factor, linear stretches max_position_embeddings, Llama 3 keeps it.
    @Test func contextFollowsTheScaling() throws {
        let base = #""model_type":"qwen3_moe","vocab_size":100,"hidden_size":64,"intermediate_size":48,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"num_experts":8,"num_experts_per_tok":2,"moe_intermediate_size":16,"max_position_embeddings":40960"#
        func context(_ rope: String) throws -> Int { try ModelFamilies.spec(configData: Data("{\(base),\(rope)}".utf8)).maxPositions }
        #expect(try context(#""rope_theta":1e6"#) == 40960)
        #expect(try context(#""rope_scaling":{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":32768}"#) == 131072)
        #expect(try context(#""rope_scaling":{"type":"yarn","factor":2.0}"#) == 81920)
        #expect(try context(#""rope_scaling":{"rope_type":"linear","factor":2.0}"#) == 81920)
        #expect(try context(#""rope_parameters":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#) == 40960)
    }

    @Test func yarnWithoutAFactorOrWithABadOneIsAClearError() {
        let base = #""model_type":"mixtral","vocab_size":100,"hidden_size":64,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"num_local_experts":4,"num_experts_per_tok":2,"max_position_embeddings":4096"#
        #expect(throws: ModelError.badConfig(file: "config.json", reason: "yarn rope's factor must be positive (got -2.0)")) {
            try ModelFamilies.spec(configData: Data(#"{\#(base),"rope_scaling":{"rope_type":"yarn","factor":-2}}"#.utf8))
        }
        #expect(throws: ModelError.badConfig(file: "config.json", reason: "linear rope needs factor")) {
            try ModelFamilies.spec(configData: Data(#"{\#(base),"rope_scaling":{"rope_type":"linear"}}"#.utf8))
        }
    }
}
