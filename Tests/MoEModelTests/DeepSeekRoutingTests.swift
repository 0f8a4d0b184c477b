import Foundation
import MoETestSupport
import Testing
@testable import MoEModel

/// DeepSeek's routing rules against transformers' own routers (Tests/Fixtures/routing/deepseek.json, made by
/// DeepseekV2TopkRouter / DeepseekV3TopkRouter on random logits): V2 greedy and group-limited softmax with
/// routed_scaling_factor, V3's sigmoid with the correction bias, groups ranked by their two best, norm_topk_prob on and
/// off. The experts chosen per token (as a set: transformers does not sort them) and each one's weight.
struct DeepSeekRoutingTests {
    struct Case: Decodable {
        let family: String
        let experts: Int
        let top_k: Int
        let config: [String: JSONValue]
        let logits: [[Float]]
        let bias: [Float]?
        let experts_chosen: [[Int]]
        let weights: [[Float]]
    }
    enum JSONValue: Decodable {
        case number(Double), string(String), bool(Bool)
        init(from d: Decoder) throws {
            let c = try d.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = .bool(b) } else if let x = try? c.decode(Double.self) { self = .number(x) } else { self = .string(try c.decode(String.self)) }
        }
        var number: Double? { if case .number(let x) = self { return x } else { return nil } }
        var string: String? { if case .string(let s) = self { return s } else { return nil } }
        var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    }
    struct File: Decodable { let cases: [Case] }

    static let cases: [Case] = {
        let url = Fixtures.root.appendingPathComponent("routing/deepseek.json")
        return (try? JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases) ?? []
    }()

    /// The rule the family file derives from the same keys in config.json.
    static func rule(_ c: Case) throws -> (RouterRule, normalize: Bool) {
        var config: [String: Any] = ["model_type": c.family == "v2" ? "deepseek_v2" : "deepseek_v3", "vocab_size": 16,
                                     "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "kv_lora_rank": 8,
                                     "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "moe_intermediate_size": 8,
                                     "n_routed_experts": c.experts, "num_experts_per_tok": c.top_k]
        for (k, v) in c.config { config[k] = v.number ?? v.bool ?? v.string }
        let spec = try ModelFamilies.spec(configData: JSONSerialization.data(withJSONObject: config))
        let moe = try #require(spec.layers[0].moe)
        return (moe.rule, moe.normTopK)
    }

    @Test func everyCaseIsThere() { #expect(Self.cases.count == 7) }

    @Test(arguments: 0..<7)
    func choicesAndWeightsMatchTransformersRouters(_ i: Int) throws {
        let c = try #require(Self.cases.count > i ? Self.cases[i] : nil)
        let (rule, normalize) = try Self.rule(c)
        let flat = c.logits.flatMap { $0 }
        let r = flat.withUnsafeBufferPointer { l in
            (c.bias ?? []).withUnsafeBufferPointer { b in
                route(logits: l.baseAddress!, tokens: c.logits.count, experts: c.experts, topK: c.top_k, rule: rule,
                      normalize: normalize, bias: c.bias == nil ? nil : b.baseAddress)
            }
        }
        for t in 0..<c.logits.count {
            let K = c.top_k
            let ours = (0..<K).map { (Int(r.experts[t * K + $0]), r.weights[t * K + $0]) }.sorted { $0.0 < $1.0 }
            let theirs = zip(c.experts_chosen[t], c.weights[t]).map { ($0, $1) }.sorted { $0.0 < $1.0 }
            #expect(ours.map(\.0) == theirs.map(\.0), "case \(i) token \(t)")
            let worst = zip(ours, theirs).map { abs($0.1 - $1.1) }.max() ?? 0
            #expect(worst < 1e-5, "case \(i) token \(t): weights \(ours) vs \(theirs)")
        }
    }

    /// Group limits only ever narrow the candidates: with one group kept of four, every choice lies in one group.
    @Test func groupLimitedChoicesStayInTheKeptGroups() {
        var rule = RouterRule()
        rule.groups = 4
        rule.topGroups = 1
        let logits: [Float] = [0.1, 3, 0.2, 0.3, 2.9, 2.8, 0.1, 0.1]   // group 0's best is 3, group 2's two sum higher
        let best = logits.withUnsafeBufferPointer {
            route(logits: $0.baseAddress!, tokens: 1, experts: 8, topK: 2, rule: rule, normalize: true, bias: nil)
        }
        #expect(best.experts == [1, 0])            // ranked by best: group 0 (3.0) holds both
        rule.groupRank = .bestTwo
        let two = logits.withUnsafeBufferPointer {
            route(logits: $0.baseAddress!, tokens: 1, experts: 8, topK: 2, rule: rule, normalize: true, bias: nil)
        }
        #expect(two.experts == [4, 5])             // ranked by the two best: group 2 (2.9 + 2.8)
    }
}
