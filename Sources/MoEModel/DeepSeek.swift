// DeepSeek-V2 / V2-Lite / V2.5 (`deepseek_v2`), DeepSeek-V3 / R1 and Moonlight (`deepseek_v3`), and GLM-4.7-Flash
// (`glm4_moe_lite`: V3's architecture, its dense layers named by `mlp_layer_types`): multi-head latent attention
// (MLASpec), the first `first_k_dense_replace` layers dense (intermediate_size), the others n_routed_experts of
// moe_intermediate_size plus n_shared_experts as one unscaled MLP.
// Routing, as transformers' DeepseekV2TopkRouter / DeepseekV3TopkRouter (and DeepSeek's own code) compute it:
// - V2: softmax scores; topk_method "greedy" (top-k of all) or "group_limited_greedy" (the topk_group of n_group
//   groups whose best score is highest); weights × routed_scaling_factor (V2-Lite: 1, V2: 16).
// - V3 ("noaux_tc"): sigmoid scores; the choice adds e_score_correction_bias and keeps the topk_group groups whose
//   two best biased scores sum highest; weights are the unbiased scores, renormalised (norm_topk_prob), ×
//   routed_scaling_factor (2.5).
// scoring_func and topk_method, when config.json has them, pick among these as vLLM reads them; norm_topk_prob
// renormalises in either family. RoPE rotates interleaved pairs (V2 always; V3 unless rope_interleave is false)
// over qk_rope_head_dim; YaRN's mscale_all_dim scales the softmax by mscale², as transformers' yarn_apply_mscale.
import Foundation

public struct DeepseekConfig: Codable, Sendable {
    var nRoutedExperts: Int?
    var numExpertsPerTok: Int?
    var moeIntermediateSize: Int?
    var nSharedExperts: Int?
    var firstKDenseReplace: Int?
    var moeLayerFreq: Int?
    var kvLoraRank: Int
    var qLoraRank: Int?
    var qkNopeHeadDim: Int
    var qkRopeHeadDim: Int
    var vHeadDim: Int
    var topkMethod: String?
    var scoringFunc: String?
    var nGroup: Int?
    var topkGroup: Int?
    var normTopkProb: Bool?
    var routedScalingFactor: Double?
    var attentionBias: Bool?
    var ropeInterleave: Bool?
    var hiddenAct: String?
    var mlpLayerTypes: [String]?

    enum CodingKeys: String, CodingKey {
        case nRoutedExperts = "n_routed_experts", numExpertsPerTok = "num_experts_per_tok"
        case moeIntermediateSize = "moe_intermediate_size", nSharedExperts = "n_shared_experts"
        case firstKDenseReplace = "first_k_dense_replace", moeLayerFreq = "moe_layer_freq"
        case kvLoraRank = "kv_lora_rank", qLoraRank = "q_lora_rank", qkNopeHeadDim = "qk_nope_head_dim"
        case qkRopeHeadDim = "qk_rope_head_dim", vHeadDim = "v_head_dim", topkMethod = "topk_method"
        case scoringFunc = "scoring_func", nGroup = "n_group", topkGroup = "topk_group", normTopkProb = "norm_topk_prob"
        case routedScalingFactor = "routed_scaling_factor", attentionBias = "attention_bias"
        case ropeInterleave = "rope_interleave", hiddenAct = "hidden_act", mlpLayerTypes = "mlp_layer_types"
    }
}

enum DeepSeek: ModelFamily {
    static let modelTypes = ["deepseek_v2", "deepseek_v3", "glm4_moe_lite"]

    static func spec(from data: Data) throws -> ModelSpec {
        let type = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["model_type"] as? String ?? "deepseek_v2"
        let v3 = type != "deepseek_v2"
        var base = try ConfigRules.decode(TransformerConfig.self, data, family: type)
        let c = try ConfigRules.decode(DeepseekConfig.self, data, family: type)
        func check(_ ok: Bool, _ reason: String) throws { try ConfigRules.check(ok, reason) }
        try check(c.kvLoraRank > 0 && c.qkNopeHeadDim > 0 && c.vHeadDim > 0 && (c.qLoraRank ?? 1) > 0,
                  "kv_lora_rank, qk_nope_head_dim, v_head_dim and q_lora_rank must be positive")
        try check(c.qkRopeHeadDim > 0 && c.qkRopeHeadDim % 2 == 0, "qk_rope_head_dim must be positive and even (got \(c.qkRopeHeadDim))")
        if let act = c.hiddenAct, act != "silu" {
            throw ModelError.unsupported("hidden_act '\(act)' in config.json (\(type) here runs silu)")
        }
        let mla = MLASpec(qLoraRank: c.qLoraRank, kvLoraRank: c.kvLoraRank, nopeDim: c.qkNopeHeadDim, ropeDim: c.qkRopeHeadDim,
                          vDim: c.vHeadDim, bias: c.attentionBias ?? false, ropeInterleaved: v3 ? c.ropeInterleave ?? true : true)

        var rule = RouterRule()
        let method = c.topkMethod ?? (v3 ? "noaux_tc" : "greedy")
        let scoring = c.scoringFunc ?? (v3 ? "sigmoid" : "softmax")
        guard let s = RouterRule.Scoring(rawValue: scoring) else {
            throw ModelError.unsupported("scoring_func '\(scoring)' in config.json (supported: softmax, sigmoid)")
        }
        rule.scoring = s
        switch method {
        case "greedy": break
        case "group_limited_greedy":
            rule.groups = c.nGroup ?? 1
            rule.topGroups = c.topkGroup ?? rule.groups
        case "noaux_tc":
            rule = RouterRule.noAuxTC(groups: c.nGroup ?? 1, topGroups: c.topkGroup, scale: 1)
            rule.scoring = s
        default:
            throw ModelError.unsupported("topk_method '\(method)' in config.json (supported: greedy, group_limited_greedy, noaux_tc)")
        }
        rule.scale = Float(c.routedScalingFactor ?? 1)
        let experts = c.nRoutedExperts ?? 0
        if experts > 0 { try rule.check(experts: experts, topK: c.numExpertsPerTok ?? 0) }
        guard let inter = c.moeIntermediateSize ?? (experts > 0 ? nil : 0), let topK = c.numExpertsPerTok ?? (experts > 0 ? nil : 0) else {
            throw ModelError.badConfig(file: "config.json", reason: "\(type) with n_routed_experts needs moe_intermediate_size and num_experts_per_tok")
        }
        let moe = MoESpec(experts: experts, topK: topK, intermediate: inter, normTopK: c.normTopkProb ?? v3,
                          layouts: [.perExpert(prefix: "mlp", names: qwenMLPNames), .fused(prefix: "mlp")],
                          shared: .unscaled(count: c.nSharedExperts, width: inter), rule: rule)
        let dense = FeedForwardSpec.dense(intermediate: base.intermediateSize ?? 0, names: qwenMLPNames.prefixed("mlp"), bias: false)
        // Sparse layers: GLM's mlp_layer_types ("dense"/"sparse"; by default the first dense), else from
        // first_k_dense_replace on, every moe_layer_freq-th.
        let firstSparse = c.firstKDenseReplace ?? (type == "glm4_moe_lite" ? 1 : 0), freq = max(c.moeLayerFreq ?? 1, 1)
        if let types = c.mlpLayerTypes {
            try check(types.count == base.numHiddenLayers && types.allSatisfy { $0 == "dense" || $0 == "sparse" },
                      "mlp_layer_types must give \"dense\" or \"sparse\" for each of the \(base.numHiddenLayers) layers")
        }
        try check((base.ropeParameters ?? base.ropeScaling)?.partialRotaryFactor ?? 1 == 1,
                  "partial_rotary_factor other than 1 is not supported with latent attention (its rotary part is qk_rope_head_dim)")
        // The cache holds one latent row per token (as one KV head); config.json's num_key_value_heads and head_dim
        // (transformers writes qk_rope_head_dim there) describe no tensor here.
        base.numKeyValueHeads = 1
        base.headDim = mla.kvLoraRank + mla.ropeDim
        var spec = try base.spec(modelType: type, defaultEps: type == "glm4_moe_lite" ? 1e-5 : 1e-6, qwenWindowRules: false,
                                 qkvBias: false, oBias: false, qkNorm: .none) { l in
            let sparse = c.mlpLayerTypes.map { $0[l] == "sparse" } ?? (l >= firstSparse && l % freq == 0)
            return experts > 0 && sparse ? .moe(moe) : dense
        }
        spec.mla = mla
        var scale = 1 / Float(mla.qkHeadDim).squareRoot()
        if case .yarn(let y) = spec.rope.scaling, let all = y.mscaleAllDim, all != 0, y.factor > 1 {
            let m = Float(0.1 * all * log(y.factor) + 1)
            scale *= m * m
        }
        spec.attentionScale = scale
        return spec
    }
}

extension RouterRule {
    /// DeepSeek-V3's "noaux_tc" (also GLM-4.5's): sigmoid scores, the correction bias for the choice, the topGroups of
    /// `groups` groups ranked by their two best (all groups when topGroups is nil).
    static func noAuxTC(groups: Int, topGroups: Int?, scale: Float) -> RouterRule {
        var r = RouterRule()
        r.scoring = .sigmoid
        r.groups = groups
        r.topGroups = topGroups ?? groups
        r.groupRank = .bestTwo
        r.correctionBias = true
        r.scale = scale
        return r
    }

    /// The groups divide `experts` and the kept ones hold at least `topK` of them (`check` without its reasons).
    func fits(experts: Int, topK: Int) -> Bool { (try? check(experts: experts, topK: topK)) != nil }

    /// config.json's n_group and topk_group fit `experts` and `topK` (num_experts_per_tok).
    func check(experts: Int, topK: Int) throws {
        try ConfigRules.check(groups >= 1 && experts % groups == 0 && topGroups >= 1 && topGroups <= groups,
                              "n_group (\(groups)) must divide the \(experts) routed experts and topk_group (\(topGroups)) be between 1 and n_group")
        try ConfigRules.check(topK <= topGroups * (experts / groups),
                              "num_experts_per_tok (\(topK)) exceeds the experts of topk_group (\(topGroups)) groups of \(experts / groups)")
    }
}
