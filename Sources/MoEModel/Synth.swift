import Foundation
import MoECore

/// Options of `moe-serve synth`: the shape of a random Mixtral checkpoint.
public struct SynthOptions: Sendable {
    public var hidden = 1024
    public var intermediate = 3584
    public var layers = 8
    public var experts = 8
    public var topK = 2
    public var heads = 16
    public var kvHeads = 4
    public var vocab = 32000
    public var dtype: StorageDType = .bf16
    public var seed: UInt64 = 1
    /// Each expert = a shared base + spread × its own deviation (1 = independent experts).
    public var expertSpread: Float = 1
    /// `mixtral`, or `deepseek_v2` (latent attention of the fields below, `sharedExperts` and `denseLayers` leading
    /// dense layers of `denseIntermediate`; `intermediate` is each routed expert's width, kvHeads unused).
    public var family = "mixtral"
    public var kvLoraRank = 512, nopeDim = 128, ropeDim = 64, vDim = 128
    public var sharedExperts = 2, denseLayers = 1, denseIntermediate = 10944
    public init() {}

    public var parameterCount: Int {
        let H = hidden
        guard family == "deepseek_v2" else {
            let D = H / heads, kv = kvHeads * D
            let attn = H * H * 2 + 2 * H * kv
            return 2 * vocab * H + H + layers * (attn + 2 * H + experts * H + experts * 3 * H * intermediate)
        }
        let attn = H * heads * (nopeDim + ropeDim) + H * (kvLoraRank + ropeDim) + kvLoraRank
            + kvLoraRank * heads * (nopeDim + vDim) + heads * vDim * H
        let moe = experts * H + (experts + sharedExperts) * 3 * H * intermediate
        let dense = min(denseLayers, layers)
        return 2 * vocab * H + H + layers * (attn + 2 * H) + dense * 3 * H * denseIntermediate + (layers - dense) * moe
    }
}

/// Writes a random checkpoint in the Hugging Face Mixtral format (config.json, generation_config.json,
/// model.safetensors, a tokenizer when one bundled fits the vocabulary). Weights are scaled so that activations stay
/// near unit size, router logits are well separated and the output logits are peaked, not flat.
public enum Synthesizer {
    public static func write(_ o: SynthOptions, to dir: URL, log: (String) -> Void = { _ in }) throws {
        switch o.family {
        case "mixtral": break
        case "deepseek_v2": return try writeDeepSeek(o, to: dir, log: log)
        default: throw ModelError.unsupported("synth --family '\(o.family)' (mixtral or deepseek_v2)")
        }
        guard o.hidden % o.heads == 0, o.heads % o.kvHeads == 0, (o.hidden / o.heads) % 2 == 0,
              o.topK >= 1, o.topK <= o.experts, o.vocab >= 3, o.layers >= 1, o.intermediate >= 1 else {
            throw ModelError.unsupported("synth shape: hidden must divide into heads (even head_dim), heads into kv-heads, 1 <= top-k <= experts")
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let H = o.hidden, I = o.intermediate, D = H / o.heads, KV = o.kvHeads * D, E = o.experts
        let config: [String: Any] = [
            "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": o.vocab, "hidden_size": H,
            "intermediate_size": I, "num_hidden_layers": o.layers, "num_attention_heads": o.heads,
            "num_key_value_heads": o.kvHeads, "head_dim": D, "num_local_experts": E, "num_experts_per_tok": o.topK,
            "rms_norm_eps": 1e-5, "rope_theta": 1e6, "max_position_embeddings": 4096, "tie_word_embeddings": false,
            "sliding_window": NSNull(), "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
            "torch_dtype": o.dtype == .bf16 ? "bfloat16" : (o.dtype == .f16 ? "float16" : "float32"),
            "router_aux_loss_coef": 0.02, "output_router_logits": false,
        ]
        try configJSON(config).write(to: dir.appendingPathComponent("config.json"))
        try Data(#"{"bos_token_id": 1, "eos_token_id": 2}"#.utf8).write(to: dir.appendingPathComponent("generation_config.json"))
        copyTokenizer(vocab: o.vocab, to: dir, log: log)

        var plan: [SafetensorsWriter.Planned] = []
        func add(_ n: String, _ s: [Int]) { plan.append(.init(name: n, dtype: o.dtype, shape: s)) }
        add("model.embed_tokens.weight", [o.vocab, H])
        for l in 0..<o.layers {
            let p = "model.layers.\(l)."
            add(p + "input_layernorm.weight", [H])
            add(p + "self_attn.q_proj.weight", [H, H]); add(p + "self_attn.k_proj.weight", [KV, H])
            add(p + "self_attn.v_proj.weight", [KV, H]); add(p + "self_attn.o_proj.weight", [H, H])
            add(p + "post_attention_layernorm.weight", [H])
            add(p + "block_sparse_moe.gate.weight", [E, H])
            for e in 0..<E {
                add(p + "block_sparse_moe.experts.\(e).w1.weight", [I, H])
                add(p + "block_sparse_moe.experts.\(e).w2.weight", [H, I])
                add(p + "block_sparse_moe.experts.\(e).w3.weight", [I, H])
            }
        }
        add("model.norm.weight", [H]); add("lm_head.weight", [o.vocab, H])
        let writer = try SafetensorsWriter(url: dir.appendingPathComponent("model.safetensors"), tensors: plan)
        var rng = SeededRNG(seed: o.seed)
        // Uniform(-a, a) has std a/√3: cheap to draw and enough for a benchmark model.
        func uniform(_ n: Int, std: Float) -> [Float] {
            let a = std * 3.0.squareRoot().floatValue
            return (0..<n).map { _ in Float(rng.nextUnit() * 2 - 1) * a }
        }
        // With spread S < 1 the experts share a base: w = (base + S·dev) / √(1 + S²), so experts (and a dense draft
        // made of their mean) agree more as S falls while each expert keeps the std of an independent one.
        let norm = 1 / (1 + o.expertSpread * o.expertSpread).squareRoot()
        func expert(_ base: [Float], _ n: Int, std: Float) -> [Float] {
            guard !base.isEmpty else { return uniform(n, std: std) }
            let dev = uniform(n, std: std)
            return zip(base, dev).map { ($0 + o.expertSpread * $1) * norm }
        }
        let ones = [Float](repeating: 1, count: H)
        try writer.write("model.embed_tokens.weight", uniform(o.vocab * H, std: 1))
        for l in 0..<o.layers {
            let p = "model.layers.\(l)."
            try writer.write(p + "input_layernorm.weight", ones)
            try writer.write(p + "self_attn.q_proj.weight", uniform(H * H, std: 1 / Float(H).squareRoot()))
            try writer.write(p + "self_attn.k_proj.weight", uniform(KV * H, std: 1 / Float(H).squareRoot()))
            try writer.write(p + "self_attn.v_proj.weight", uniform(KV * H, std: 1 / Float(H).squareRoot()))
            try writer.write(p + "self_attn.o_proj.weight", uniform(H * H, std: 1 / Float(H).squareRoot()))
            try writer.write(p + "post_attention_layernorm.weight", ones)
            try writer.write(p + "block_sparse_moe.gate.weight", uniform(E * H, std: 2 / Float(H).squareRoot()))
            let sIn = 1 / Float(H).squareRoot(), sOut = 1 / Float(I).squareRoot()
            let shared = o.expertSpread < 1
            let w1b = shared ? uniform(I * H, std: sIn) : [], w2b = shared ? uniform(H * I, std: sOut) : []
            let w3b = shared ? uniform(I * H, std: sIn) : []
            for e in 0..<E {
                let q = "block_sparse_moe.experts.\(e)."
                try writer.write(p + q + "w1.weight", expert(w1b, I * H, std: sIn))
                try writer.write(p + q + "w2.weight", expert(w2b, H * I, std: sOut))
                try writer.write(p + q + "w3.weight", expert(w3b, I * H, std: sIn))
            }
            log("synth: layer \(l + 1)/\(o.layers) written")
        }
        try writer.write("model.norm.weight", ones)
        try writer.write("lm_head.weight", uniform(o.vocab * H, std: 3 / Float(H).squareRoot()))
        try writer.close()
    }

    /// A random DeepSeek-V2 checkpoint (V2-Lite's layout: q_proj, no q_lora_rank; greedy softmax routing; shared
    /// experts; the first `denseLayers` dense), scaled as `write` scales Mixtral's.
    static func writeDeepSeek(_ o: SynthOptions, to dir: URL, log: (String) -> Void) throws {
        guard o.heads >= 1, o.topK >= 1, o.topK <= o.experts, o.vocab >= 3, o.layers >= 1, o.intermediate >= 1,
              o.kvLoraRank >= 1, o.nopeDim >= 1, o.ropeDim >= 2, o.ropeDim % 2 == 0, o.vDim >= 1, o.sharedExperts >= 0,
              o.denseLayers >= 0, o.denseIntermediate >= 1 else {
            throw ModelError.unsupported("synth deepseek_v2 shape: positive sizes, an even rope dim, 1 <= top-k <= experts")
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let H = o.hidden, I = o.intermediate, E = o.experts, n = o.heads, L = o.kvLoraRank, R = o.ropeDim
        let qk = o.nopeDim + R, DI = o.denseIntermediate, SI = o.sharedExperts * I
        let config: [String: Any] = [
            "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "vocab_size": o.vocab, "hidden_size": H,
            "intermediate_size": DI, "moe_intermediate_size": I, "num_hidden_layers": o.layers, "num_attention_heads": n,
            "num_key_value_heads": n, "n_routed_experts": E, "num_experts_per_tok": o.topK, "n_shared_experts": o.sharedExperts,
            "first_k_dense_replace": o.denseLayers, "kv_lora_rank": L, "q_lora_rank": NSNull(), "qk_nope_head_dim": o.nopeDim,
            "qk_rope_head_dim": R, "v_head_dim": o.vDim, "topk_method": "greedy", "routed_scaling_factor": 1.0,
            "norm_topk_prob": false, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 4096,
            "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
            "torch_dtype": o.dtype == .bf16 ? "bfloat16" : (o.dtype == .f16 ? "float16" : "float32"),
        ]
        try configJSON(config).write(to: dir.appendingPathComponent("config.json"))
        try Data(#"{"bos_token_id": 1, "eos_token_id": 2}"#.utf8).write(to: dir.appendingPathComponent("generation_config.json"))
        copyTokenizer(vocab: o.vocab, to: dir, log: log)

        // name, shape, std (0: a norm of ones), in file order.
        var tensors: [(String, [Int], Float)] = [("model.embed_tokens.weight", [o.vocab, H], 1)]
        func linear(_ name: String, _ rows: Int, _ cols: Int, gain: Float = 1) { tensors.append((name, [rows, cols], gain / Float(cols).squareRoot())) }
        func mlp(_ p: String, _ width: Int) {
            linear(p + "gate_proj.weight", width, H); linear(p + "up_proj.weight", width, H); linear(p + "down_proj.weight", H, width)
        }
        for l in 0..<o.layers {
            let p = "model.layers.\(l)."
            tensors.append((p + "input_layernorm.weight", [H], 0))
            linear(p + "self_attn.q_proj.weight", n * qk, H)
            linear(p + "self_attn.kv_a_proj_with_mqa.weight", L + R, H)
            tensors.append((p + "self_attn.kv_a_layernorm.weight", [L], 0))
            linear(p + "self_attn.kv_b_proj.weight", n * (o.nopeDim + o.vDim), L)
            linear(p + "self_attn.o_proj.weight", H, n * o.vDim)
            tensors.append((p + "post_attention_layernorm.weight", [H], 0))
            if l < o.denseLayers {
                mlp(p + "mlp.", DI)
            } else {
                linear(p + "mlp.gate.weight", E, H, gain: 2)
                for e in 0..<E { mlp(p + "mlp.experts.\(e).", I) }
                if SI > 0 { mlp(p + "mlp.shared_experts.", SI) }
            }
        }
        tensors.append(("model.norm.weight", [H], 0))
        linear("lm_head.weight", o.vocab, H, gain: 3)
        let writer = try SafetensorsWriter(url: dir.appendingPathComponent("model.safetensors"),
                                           tensors: tensors.map { .init(name: $0.0, dtype: o.dtype, shape: $0.1) })
        var rng = SeededRNG(seed: o.seed)
        for (i, (name, shape, std)) in tensors.enumerated() {
            let count = shape.reduce(1, *)
            let a = std * 3.0.squareRoot().floatValue
            try writer.write(name, std == 0 ? [Float](repeating: 1, count: count) : (0..<count).map { _ in Float(rng.nextUnit() * 2 - 1) * a })
            if name.hasSuffix("post_attention_layernorm.weight") || i == tensors.count - 1 { log("synth: \(name) written") }
        }
        try writer.close()
    }

    /// config.json's text, with whole-number floats written as floats ("rope_theta": 10000.0): JSONSerialization
    /// writes 10000, and transformers' config classes refuse an int where they declare a float.
    static func configJSON(_ config: [String: Any]) throws -> Data {
        var text = String(decoding: try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
        for key in ["rope_theta", "routed_scaling_factor", "router_aux_loss_coef"] {
            text = text.replacingOccurrences(of: #"("\#(key)" : )(-?[0-9]+)(?=[,\n])"#, with: "$1$2.0", options: .regularExpression)
        }
        return Data(text.utf8)
    }

    /// Copies a bundled tokenizer whose ids all fit in `vocab` (the largest that fits), so text prompts work.
    static func copyTokenizer(vocab: Int, to dir: URL, log: (String) -> Void) {
        let candidates = [(2048, "tokenizer-2048"), (512, "tokenizer-512")]
        guard let (_, name) = candidates.first(where: { $0.0 <= vocab }),
              let src = Bundle.module.url(forResource: name, withExtension: nil) else {
            log("synth: no bundled tokenizer fits vocab \(vocab); writing none")
            return
        }
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            let to = dir.appendingPathComponent(f)
            try? FileManager.default.removeItem(at: to)
            try? FileManager.default.copyItem(at: src.appendingPathComponent(f), to: to)
        }
    }
}

private extension Double { var floatValue: Float { Float(self) } }

extension Synthesizer {
    /// Writes a small dense draft (Mistral format) for a Mixtral-family target: the target's embeddings, lm_head, final
    /// norm and first `layers` layers, each with the mean of its experts as the MLP. With a synthesized target of
    /// small `--expert-spread` the experts agree and the draft tracks the target closely; the spread tunes acceptance.
    public static func writeDraft(from target: URL, layers L: Int, to dir: URL, dtype: StorageDType, log: (String) -> Void = { _ in }) throws {
        let ckpt = try Checkpoint(directory: target)
        let spec = try ModelFamilies.spec(configData: ckpt.configData)
        guard let moe = spec.layers.first?.moe, spec.layers.allSatisfy({ $0.moe != nil }) else {
            throw ModelError.unsupported("synth-draft needs a target whose every layer is mixture-of-experts (got \(spec.modelType))")
        }
        guard spec.mla == nil else {
            throw ModelError.unsupported("synth-draft writes q/k/v attention; \(spec.modelType) has latent attention")
        }
        guard L >= 1 && L <= spec.numLayers else { throw ModelError.unsupported("--layers must be between 1 and \(spec.numLayers)") }
        let dense = try DenseWeights.load(ckpt, spec)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let H = spec.hiddenSize, I = moe.intermediate
        let config: [String: Any] = [
            "architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": spec.vocabSize, "hidden_size": H,
            "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": spec.numHeads,
            "num_key_value_heads": spec.numKVHeads, "head_dim": spec.headDim, "rms_norm_eps": Double(spec.rmsNormEps),
            "rope_theta": Double(spec.rope.theta), "max_position_embeddings": spec.maxPositions, "tie_word_embeddings": false,
            "sliding_window": NSNull(), "bos_token_id": spec.bosTokenId ?? 1, "eos_token_id": spec.eosTokenIds.first ?? 2,
            "hidden_act": "silu", "torch_dtype": dtype == .bf16 ? "bfloat16" : (dtype == .f16 ? "float16" : "float32"),
        ]
        try configJSON(config).write(to: dir.appendingPathComponent("config.json"))
        for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            let src = target.appendingPathComponent(f), dst = dir.appendingPathComponent(f)
            if FileManager.default.fileExists(atPath: src.path) {
                try? FileManager.default.removeItem(at: dst)
                try FileManager.default.copyItem(at: src, to: dst)
            }
        }
        var plan: [SafetensorsWriter.Planned] = []
        func add(_ n: String, _ s: [Int]) { plan.append(.init(name: n, dtype: dtype, shape: s)) }
        add("model.embed_tokens.weight", [spec.vocabSize, H])
        for l in 0..<L {
            let p = "model.layers.\(l)."
            add(p + "input_layernorm.weight", [H]); add(p + "post_attention_layernorm.weight", [H])
            add(p + "self_attn.q_proj.weight", [spec.qDim, H]); add(p + "self_attn.k_proj.weight", [spec.kvDim, H])
            add(p + "self_attn.v_proj.weight", [spec.kvDim, H]); add(p + "self_attn.o_proj.weight", [H, spec.qDim])
            add(p + "mlp.gate_proj.weight", [I, H]); add(p + "mlp.up_proj.weight", [I, H]); add(p + "mlp.down_proj.weight", [H, I])
        }
        add("model.norm.weight", [H]); add("lm_head.weight", [spec.vocabSize, H])
        let w = try SafetensorsWriter(url: dir.appendingPathComponent("model.safetensors"), tensors: plan)
        func values(_ m: Matrix) -> [Float] { Array(UnsafeBufferPointer(start: m.base, count: m.rows * m.cols)) }
        try w.write("model.embed_tokens.weight", values(dense.embed))
        for l in 0..<L {
            let p = "model.layers.\(l).", lw = dense.layers[l], attn = lw.attention!
            try w.write(p + "input_layernorm.weight", values(lw.inputNorm))
            try w.write(p + "post_attention_layernorm.weight", values(lw.postNorm))
            try w.write(p + "self_attn.q_proj.weight", values(attn.q))
            try w.write(p + "self_attn.k_proj.weight", values(attn.k))
            try w.write(p + "self_attn.v_proj.weight", values(attn.v))
            try w.write(p + "self_attn.o_proj.weight", values(attn.o))
            // The experts of this layer, one at a time, averaged.
            var g = [Float](repeating: 0, count: I * H), u = g, d = [Float](repeating: 0, count: H * I)
            for e in 0..<moe.experts {
                let store = try ExpertStore(ckpt, spec) { ll, ee in ll == l && ee == e }
                let x = store.weights(layer: l, expert: e)!
                for i in 0..<(I * H) { g[i] += x.gate.base[i]; u[i] += x.up.base[i]; d[i] += x.down.base[i] }
            }
            let s = 1 / Float(moe.experts)
            try w.write(p + "mlp.gate_proj.weight", g.map { $0 * s })
            try w.write(p + "mlp.up_proj.weight", u.map { $0 * s })
            try w.write(p + "mlp.down_proj.weight", d.map { $0 * s })
            log("synth-draft: layer \(l + 1)/\(L) written")
        }
        try w.write("model.norm.weight", values(dense.norm))
        try w.write("lm_head.weight", values(dense.lmHead))
        try w.close()
    }
}
