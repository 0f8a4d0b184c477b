import Foundation
import Testing
@testable import MoEModel

/// config.json as transformers 4.x and 5.x write it, per family.
@Suite struct ConfigTests {
    func spec(_ json: String) throws -> ModelSpec { try ModelFamilies.spec(configData: Data(json.utf8)) }

    let mixtralBase = #""model_type":"mixtral","vocab_size":100,"hidden_size":64,"intermediate_size":32,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"num_local_experts":4,"num_experts_per_tok":2"#

    @Test func ropeThetaAtTopLevelOrInRopeParameters() throws {
        #expect(try spec("{\(mixtralBase),\"rope_theta\":5000}").rope.theta == 5000)
        #expect(try spec("{\(mixtralBase),\"rope_parameters\":{\"rope_theta\":7000,\"rope_type\":\"default\"}}").rope.theta == 7000)
        #expect(try spec("{\(mixtralBase)}").rope.theta == 1e6)   // Mixtral's default
    }

    @Test func nullHeadDimMeansHiddenOverHeads() throws {
        #expect(try spec("{\(mixtralBase),\"head_dim\":null}").headDim == 16)
        #expect(try spec("{\(mixtralBase),\"head_dim\":32}").headDim == 32)
    }

    @Test func slidingWindowNullOrZeroIsOff() throws {
        #expect(try spec("{\(mixtralBase),\"sliding_window\":null}").slidingWindows == [nil, nil])
        #expect(try spec("{\(mixtralBase),\"sliding_window\":0}").slidingWindows == [nil, nil])
        #expect(try spec("{\(mixtralBase),\"sliding_window\":8}").slidingWindows == [8, 8])
    }

    @Test func torchDtypeOrDtype() throws {
        #expect(try spec("{\(mixtralBase),\"torch_dtype\":\"bfloat16\"}").declaredDType == "bfloat16")
        #expect(try spec("{\(mixtralBase),\"dtype\":\"float16\"}").declaredDType == "float16")
    }

    @Test func qwenSlidingWindowNeedsUseSlidingWindowAndStartsAtMaxWindowLayers() throws {
        let q = #""model_type":"qwen2","vocab_size":100,"hidden_size":64,"intermediate_size":32,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"sliding_window":16"#
        #expect(try spec("{\(q)}").slidingWindows == [nil, nil, nil, nil])
        #expect(try spec("{\(q),\"use_sliding_window\":true,\"max_window_layers\":2}").slidingWindows == [nil, nil, 16, 16])
        #expect(try spec("{\(q),\"use_sliding_window\":true,\"layer_types\":[\"full_attention\",\"sliding_attention\",\"full_attention\",\"sliding_attention\"]}").slidingWindows == [nil, 16, nil, 16])
        #expect(try spec("{\(q)}").qkvBias)
    }

    @Test func qwenMoESparseLayersFollowStepAndMlpOnlyLayers() throws {
        let q = #""model_type":"qwen3_moe","vocab_size":100,"hidden_size":64,"intermediate_size":48,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"num_experts":8,"num_experts_per_tok":2,"moe_intermediate_size":16,"norm_topk_prob":true"#
        let s = try spec("{\(q),\"decoder_sparse_step\":2,\"mlp_only_layers\":[3]}")
        #expect(s.layers.map { $0.moe != nil } == [false, true, false, false])
        #expect(s.layers[0] == .dense(intermediate: 48, names: MLPNames(gate: "mlp.gate_proj", up: "mlp.up_proj", down: "mlp.down_proj"), bias: false))
        #expect(s.qkNorm == .perHead && s.moeLayers == [1])
    }

    /// OLMoE-1B-7B-0924's config: every layer sparse with its intermediate_size per expert, whole-projection q/k
    /// norms, clip_qkv (null there); a clip that is not positive is refused.
    @Test func olmoeConfigReadsAsItsModelCardGivesIt() throws {
        let o = #""model_type":"olmoe","vocab_size":50304,"hidden_size":2048,"intermediate_size":1024,"num_hidden_layers":16,"num_attention_heads":16,"num_key_value_heads":16,"num_experts":64,"num_experts_per_tok":8,"norm_topk_prob":false,"rms_norm_eps":1e-05,"rope_theta":10000,"max_position_embeddings":4096,"pad_token_id":1,"eos_token_id":50279"#
        let s = try spec("{\(o),\"clip_qkv\":null}")
        #expect(s.qkNorm == .whole && s.clipQKV == nil && s.moeLayers == Array(0..<16) && s.headDim == 128 && s.eosTokenIds == [50279])
        #expect(s.layers[0].moe.map { [$0.experts, $0.topK, $0.intermediate] } == [64, 8, 1024] && s.layers[0].moe?.normTopK == false)
        #expect(try spec("{\(o),\"clip_qkv\":8.0}").clipQKV == 8)
        #expect(throws: ModelError.badConfig(file: "config.json", reason: "clip_qkv must be positive or null (got -1.0)")) {
            try spec("{\(o),\"clip_qkv\":-1}")
        }
    }

    /// granite-3.0-1b-a400m's config: its four scalars, 32 experts top-8 as Mixtral routes them, tied embeddings.
    @Test func graniteMoEConfigReadsItsScalars() throws {
        let g = #""model_type":"granitemoe","vocab_size":49155,"hidden_size":1024,"intermediate_size":512,"num_hidden_layers":24,"num_attention_heads":16,"num_key_value_heads":8,"num_local_experts":32,"num_experts_per_tok":8,"embedding_multiplier":12.0,"attention_multiplier":0.015625,"residual_multiplier":0.22,"rms_norm_eps":1e-06,"rope_theta":10000,"tie_word_embeddings":true,"max_position_embeddings":4096"#
        let s = try spec("{\(g),\"logits_scaling\":6.0}")
        #expect(s.embeddingMultiplier == 12 && s.attentionScale == 0.015625 && s.residualMultiplier == 0.22 && s.logitsScaling == 6)
        #expect(s.tieWordEmbeddings && s.headDim == 64 && s.layers[0].moe.map { [$0.experts, $0.topK, $0.intermediate] } == [32, 8, 512])
        #expect(s.layers[0].moe?.normTopK == true && s.layers[0].moe?.layouts.first?.router == "block_sparse_moe.router.layer.weight")
        #expect(throws: ModelError.badConfig(file: "config.json", reason: "logits_scaling must not be 0")) { try spec("{\(g),\"logits_scaling\":0}") }
    }

    @Test func llama3RopeScalingChangesOnlyLongWavelengths() throws {
        let j = #"{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"rope_theta":500000,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#
        let s = try spec(j)
        let plain = Rope(RopeSpec(theta: 500000), headDim: 32), scaled = Rope(s.rope, headDim: 32)
        #expect(scaled.invFreq[0] == plain.invFreq[0])                     // short wavelength kept
        #expect(abs(scaled.invFreq[15] - plain.invFreq[15] / 8) < 1e-12)   // long wavelength divided by factor
    }

    @Test func unsupportedRopeTypeIsAClearError() {
        #expect(throws: ModelError.unsupported("rope_type 'dynamic' in config.json (supported: default, linear, llama3, yarn)")) {
            try spec("{\(mixtralBase),\"rope_parameters\":{\"rope_type\":\"dynamic\",\"factor\":4}}")
        }
    }

    @Test func missingKeyNamesIt() {
        #expect(throws: ModelError.badConfig(file: "config.json", reason: "mixtral needs key 'num_local_experts'")) {
            try spec(#"{"model_type":"mixtral","vocab_size":100,"hidden_size":64,"intermediate_size":32,"num_hidden_layers":2,"num_attention_heads":4,"num_experts_per_tok":2}"#)
        }
    }

    @Test func headsMustDivideIntoKVHeads() {
        #expect(throws: ModelError.self) { try spec("{\(mixtralBase.replacingOccurrences(of: "\"num_key_value_heads\":2", with: "\"num_key_value_heads\":3"))}") }
    }
}
