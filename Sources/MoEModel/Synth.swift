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
    public init() {}

    public var parameterCount: Int {
        let H = hidden, D = H / heads, kv = kvHeads * D
        let attn = H * H * 2 + 2 * H * kv
        return 2 * vocab * H + H + layers * (attn + 2 * H + experts * H + experts * 3 * H * intermediate)
    }
}

/// Writes a random checkpoint in the Hugging Face Mixtral format (config.json, generation_config.json,
/// model.safetensors, a tokenizer when one bundled fits the vocabulary). Weights are scaled so that activations stay
/// near unit size, router logits are well separated and the output logits are peaked, not flat.
public enum Synthesizer {
    public static func write(_ o: SynthOptions, to dir: URL, log: (String) -> Void = { _ in }) throws {
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
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
            .write(to: dir.appendingPathComponent("config.json"))
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
