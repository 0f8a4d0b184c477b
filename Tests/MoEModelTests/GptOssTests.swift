import Foundation
import MoECore
import MoETestSupport
import Testing
@testable import MoEModel

/// gpt-oss (Tests/Fixtures/gpt-oss): attention sinks, alternating sliding windows, router bias, expert biases with the
/// clamped SwiGLU over interleaved gate|up columns, in transformers' f32 layout and in OpenAI's MXFP4 release layout,
/// against transformers' logits and greedy tokens; the MXFP4 unpacking and the SwiGLU against transformers' own code.
struct GptOssTests {
    static let dir = Fixtures.root.appendingPathComponent("gpt-oss")

    @Test(arguments: ["gpt-oss-f32-clamped", "gpt-oss-mxfp4"])
    func logitsAndGreedyTokensMatchTransformers(_ name: String) throws {
        try OddShapeTests.expectTransformersOutputs(Self.dir.appendingPathComponent(name), tolerance: 1e-4)
    }

    /// MXFP4 values (e2m1 × a power of two) are exact in bf16: experts held as bf16 give transformers' logits.
    @Test func mxfp4ExpertsHeldAsBF16KeepTransformersLogits() throws {
        try OddShapeTests.expectTransformersOutputs(Self.dir.appendingPathComponent("gpt-oss-mxfp4"), tolerance: 1e-4,
                                                    formats: WeightFormats(experts: .bf16, dense: .f32))
    }

    /// int8 and mxfp4 hold MXFP4 experts exactly (their groups are e2m1 values times a power of two), so the logits
    /// stay within the products' activation rounding of transformers'.
    @Test(arguments: [WeightFormat.int8, .mxfp4])
    func mxfp4ExpertsHeldExactly(_ format: WeightFormat) throws {
        let d = Self.dir.appendingPathComponent("gpt-oss-mxfp4")
        let exact = try LoadedModel(directory: d), held = try LoadedModel(directory: d, formats: WeightFormats(experts: format, dense: .f32))
        let a = try #require(exact.transformer.experts as? LocalExperts), b = try #require(held.transformer.experts as? LocalExperts)
        for l in 0..<exact.spec.numLayers {
            for e in 0..<exact.spec.numExperts {
                let f = try #require(a.store.weights(layer: l, expert: e)), q = try #require(b.store.weights(layer: l, expert: e))
                #expect(q.gate.format == format)
                for (x, y) in [(f.gate, q.gate), (f.up, q.up), (f.down, q.down)] {
                    var row = [Float](repeating: 0, count: x.cols)
                    for r in 0..<x.rows {
                        y.dequantizedRow(r, into: &row)
                        #expect(row == Array(UnsafeBufferPointer(start: x.row(r), count: x.cols)), "layer \(l) expert \(e) row \(r)")
                    }
                }
            }
        }
        // int8 products round activations to int16 per group, mxfp4's (as int4's) to int8: 2^-8 of a group's largest
        // value, which moves this random model's logits by ~0.05 and, at one position, a layer's 3rd and 4th router
        // logits 0.008 apart, swaps an expert.
        try OddShapeTests.expectTransformersOutputs(d, tolerance: format == .int8 ? 2e-3 : 0.5, formats: WeightFormats(experts: format, dense: .f32))
    }

    /// A group of multiples of one power of two (at most 127 of them) is held exactly by int8; others, and a group
    /// whose tiny values a power-of-two step would lose, are rounded against amax / 127 as before.
    @Test func int8HoldsPowerOfTwoStepGroupsExactly() throws {
        func roundTrip(_ v: [Float]) throws -> [Float] {
            let buf = FloatBuffer(count: v.count, zeroed: false)
            for i in v.indices { buf.pointer[i] = v[i] }
            let m = try #require(Matrix(buf, rows: 1, cols: v.count).converted(to: .int8))
            var out = [Float](repeating: 0, count: v.count)
            m.dequantizedRow(0, into: &out)
            return out
        }
        let steps: [Float] = (0..<32).map { Float($0 % 2 == 0 ? $0 : -$0) * 0x1p-7 }            // multiples of 2^-7, ≤ 31
        #expect(try roundTrip(steps) == steps)
        let mxfp4 = (0..<32).map { MXFP4.values[$0 % 16] * 0x1p-3 }
        #expect(try roundTrip(mxfp4) == mxfp4)
        let wide = (0..<32).map { Float($0) * 8 }                                              // to 248: steps of 2
        #expect(try roundTrip(wide) == wide)
        var off = steps
        off[3] += 0x1p-12                                                                     // not a multiple of any step ≤ 127 levels
        let r = try roundTrip(off)
        #expect(r != off && zip(r, off).allSatisfy { abs($0 - $1) <= 31 * 0x1p-7 / 254 * 1.01 })
    }

    /// mxfp4 takes each group's smallest power of two 2^e with amax ≤ 6 · 2^e and the nearest e2m1 value, ties to
    /// the even code (0, 1, 2, 4 win): MXFP4 groups come back exactly, others rounded.
    @Test func mxfp4RoundsToTheNearestE2M1() throws {
        func roundTrip(_ v: [Float]) throws -> [Float] {
            let m = try #require(Matrix(FloatBuffer(v), rows: 1, cols: v.count).converted(to: .mxfp4))
            var out = [Float](repeating: 0, count: v.count)
            m.dequantizedRow(0, into: &out)
            return out
        }
        let ties: [Float] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6]
        let group = (0..<32).map { (ties[$0 % 8] * ($0 % 16 < 8 ? 1 : -1)) * 0x1p-3 }
        let want: [Float] = [0, 1, 1, 2, 2, 4, 4, 6]
        #expect(try roundTrip(group) == (0..<32).map { (want[$0 % 8] * ($0 % 16 < 8 ? 1 : -1)) * 0x1p-3 })
        for scale: Float in [0x1p-20, 0x1p-3, 1, 0x1p10] {
            let exact = (0..<64).map { MXFP4.values[($0 * 7) % 16] * scale * ($0 < 32 ? 1 : 0.5) }
            #expect(try roundTrip(exact) == exact, "scale \(scale)")
        }
        #expect(try roundTrip([7] + [Float](repeating: 0, count: 31))[0] == 8)             // 7 / 2 = 3.5: a tie, to 4
        #expect(Matrix(FloatBuffer([1e6] + [Float](repeating: 0, count: 31)), rows: 1, cols: 32).converted(to: .mxfp4) == nil)
    }

    /// Every nibble under scales from 2^-127 to 2^127, as transformers' convert_moe_packed_tensors unpacks them.
    @Test func mxfp4UnpacksAsTransformersDoes() throws {
        struct Ref: Decodable { let blocks: [[UInt8]], scales: [[UInt8]], values: [[UInt32]] }
        let ref = try JSONDecoder().decode(Ref.self, from: Data(contentsOf: Self.dir.appendingPathComponent("mxfp4-values.json")))
        let blocks = ref.blocks.flatMap { $0 }, scales = ref.scales.flatMap { $0 }, want = ref.values.flatMap { $0 }
        var out = [Float](repeating: .nan, count: want.count)
        let bad = MXFP4.dequantize(blocks: blocks, scales: scales, rows: ref.blocks.count, cols: ref.values[0].count, into: &out)
        #expect(bad == nil)
        for i in want.indices {
            let w = Float(bitPattern: want[i])
            #expect(out[i].bitPattern == want[i] || (w.isNaN && out[i].isNaN), "value \(i): \(out[i]) vs \(w)")
        }
        #expect(MXFP4.scale(255) == nil && MXFP4.scale(127) == 1 && MXFP4.scale(0) == 0x1p-127)
    }

    /// gpt-oss's gate on interleaved rows (gate at even, up at odd positions), as GptOssExperts._apply_gate computes.
    @Test func clampedSwiGLUMatchesTransformers() throws {
        struct Case: Decodable { let alpha: Float, limit: Float, gate_up: [Float], out: [Float] }
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: Self.dir.appendingPathComponent("swiglu.json")))
        #expect(cases.count == 3)
        for c in cases {
            let gate = stride(from: 0, to: c.gate_up.count, by: 2).map { c.gate_up[$0] }
            let up = stride(from: 1, to: c.gate_up.count, by: 2).map { c.gate_up[$0] }
            #expect(gate.contains { $0 > c.limit } && up.contains { $0 < -c.limit }, "the case exercises both clamps")
            var out = [Float](repeating: 0, count: gate.count)
            clampedSwiGLU(gate, up, &out, count: gate.count, alpha: c.alpha, limit: c.limit)
            for i in out.indices { #expect(abs(out[i] - c.out[i]) <= 1e-6 * max(1, abs(c.out[i])), "limit \(c.limit) value \(i)") }
        }
    }

    /// A sink is one more logit in each softmax whose probability goes nowhere: weights e^s / (Σ e^s + e^sink); −∞ is
    /// no sink (the plain softmax, bit for bit); a sink far above the scores leaves nothing.
    @Test func sinkSoftmaxTable() {
        func run(_ row: [Float], scale: Float, sink: Float) -> [Float] {
            var r = row
            softmaxInPlace(&r, r.count, scale: scale, sink: sink)
            return r
        }
        let row: [Float] = [1, 2, 3, -1]
        let e = row.map { exp(Double($0) * 0.5) }, sink = 1.25
        let want = e.map { $0 / (e.reduce(0, +) + exp(sink)) }
        for (got, w) in zip(run(row, scale: 0.5, sink: Float(sink)), want) { #expect(abs(Double(got) - w) < 1e-6) }
        var plain = row
        softmaxInPlace(&plain, plain.count, scale: 0.5)
        #expect(run(row, scale: 0.5, sink: -.infinity).map(\.bitPattern) == plain.map(\.bitPattern))
        #expect(run(row, scale: 1, sink: 200).allSatisfy { $0 == 0 })
        #expect(abs(run([0, 0], scale: 1, sink: 0).reduce(0, +) - 2 / 3) < 1e-6)
    }

    /// config.json without layer_types, sliding_window or rope settings gets transformers' GptOssConfig defaults.
    @Test func configDefaultsAreTransformers() throws {
        let json = #"{"model_type": "gpt_oss", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 3, "#
            + #""num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2}"#
        let s = try ModelFamilies.spec(configData: Data(json.utf8))
        #expect(s.slidingWindows == [128, nil, 128])
        #expect(s.attentionSinks && s.qkvBias && s.oBias && s.rmsNormEps == 1e-5)
        #expect(s.rope.theta == 150000)
        guard case .yarn(let y) = s.rope.scaling else { Issue.record("rope \(s.rope)"); return }
        #expect(y.factor == 32 && y.originalMaxPositions == 4096 && y.truncate == false && y.betaFast == 32 && y.betaSlow == 1)
        let moe = try #require(s.layers[0].moe)
        #expect(moe.routerBias && moe.normTopK && moe.activation == .clampedSwiGLU(alpha: 1.702, limit: 7))
    }

    /// gpt-oss-20b's released config.json (its keys and values, the layer list shortened to 4 layers): the spec
    /// transformers builds from it.
    @Test func released20bConfigReads() throws {
        let json = #"""
        {"architectures": ["GptOssForCausalLM"], "attention_bias": true, "attention_dropout": 0.0, "eos_token_id": 200002,
         "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880, "initial_context_length": 4096,
         "initializer_range": 0.02, "intermediate_size": 2880,
         "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
         "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 64, "num_experts_per_tok": 4,
         "num_hidden_layers": 4, "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": false,
         "pad_token_id": 199999,
         "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
         "rms_norm_eps": 1e-05,
         "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": false},
         "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0, "tie_word_embeddings": false,
         "transformers_version": "4.55.0.dev0", "use_cache": true, "vocab_size": 201088}
        """#
        let s = try ModelFamilies.spec(configData: Data(json.utf8))
        #expect(s.hiddenSize == 2880 && s.numHeads == 64 && s.numKVHeads == 8 && s.headDim == 64 && s.qDim == 4096)
        #expect(s.slidingWindows == [128, nil, 128, nil] && s.maxPositions == 131072 && s.eosTokenIds == [200002])
        let moe = try #require(s.layers[0].moe)
        #expect(moe.experts == 32 && moe.topK == 4 && moe.intermediate == 2880 && moe.layouts == [.interleaved(prefix: "mlp")])
        #expect(try QuantizationConfig(configJSON: Data(json.utf8))?.method == "mxfp4")
        // Its widths are multiples of 32, so int8, int4 and mxfp4 hold every role.
        #expect(WeightFormats(experts: .mxfp4, dense: .int8).fitting(s).notes.isEmpty)
    }

    // MARK: broken MXFP4 checkpoints

    @Test func mxfp4BlocksOfTheWrongShapeSayTheShapeExpected() throws {
        // down_proj [6 experts, H 96, I 64]: blocks [6, 96, 2, 16]; claim [6, 96, 4, 8] (same bytes).
        let name = "model.layers.2.mlp.experts.down_proj_blocks"
        let e = try CheckpointErrorTests().loadError("gpt-oss/gpt-oss-mxfp4", claiming: [6, 96, 4, 8], for: name)
        #expect(e == "tensor \(name) has shape [6, 96, 4, 8], expected [6, 96, 2, 16]", "\(e ?? "no error")")
    }

    @Test func aNaNScaleIsNamed() throws {
        let dir = try Fixtures.copy("gpt-oss/gpt-oss-mxfp4")
        defer { try? FileManager.default.removeItem(at: dir) }
        let name = "model.layers.1.mlp.experts.gate_up_proj_scales"
        let url = dir.appendingPathComponent("model.safetensors")
        var data = try Data(contentsOf: url)
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        let offsets = try #require((header[name] as? [String: Any])?["data_offsets"] as? [Int])
        data[8 + n + offsets[0] + 5] = 255
        try data.write(to: url)
        let e = CheckpointErrorTests().loadError(dir)
        #expect(e?.contains(name) == true && e?.contains("scale 5 is 255") == true, "\(e ?? "no error")")
    }
}
