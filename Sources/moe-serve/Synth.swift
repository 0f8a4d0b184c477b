import ArgumentParser
import Foundation
import MoECore
import MoEModel

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a random Mixtral- or DeepSeek-V2-format checkpoint (for benchmarks and scale tests without downloads).")

    @Option(help: "Output directory.") var out: String
    @Option var hidden = 1024
    @Option var intermediate = 3584
    @Option var layers = 8
    @Option var experts = 8
    @Option(name: .customLong("top-k")) var topK = 2
    @Option var heads = 16
    @Option(name: .customLong("kv-heads")) var kvHeads = 4
    @Option var vocab = 32000
    @Option(help: "f32, f16 or bf16.") var dtype = "bf16"
    @Option var seed: UInt64 = 1
    @Option(name: .customLong("expert-spread"), help: "Experts = shared base + S × own deviation (1: independent).")
    var expertSpread: Float = 1
    @Option(help: "mixtral, or deepseek_v2 (latent attention; --intermediate is each routed expert's width).") var family = "mixtral"
    @Option(name: .customLong("kv-lora-rank"), help: "deepseek_v2: the cached latent's width.") var kvLoraRank = 512
    @Option(name: .customLong("qk-nope-head-dim"), help: "deepseek_v2") var nopeDim = 128
    @Option(name: .customLong("qk-rope-head-dim"), help: "deepseek_v2") var ropeDim = 64
    @Option(name: .customLong("v-head-dim"), help: "deepseek_v2") var vDim = 128
    @Option(name: .customLong("shared-experts"), help: "deepseek_v2: shared experts, each of --intermediate.") var sharedExperts = 2
    @Option(name: .customLong("dense-layers"), help: "deepseek_v2: leading dense layers.") var denseLayers = 1
    @Option(name: .customLong("dense-intermediate"), help: "deepseek_v2: the dense layers' width.") var denseIntermediate = 10944

    func run() throws {
        var o = SynthOptions()
        o.family = family; o.kvLoraRank = kvLoraRank; o.nopeDim = nopeDim; o.ropeDim = ropeDim; o.vDim = vDim
        o.sharedExperts = sharedExperts; o.denseLayers = denseLayers; o.denseIntermediate = denseIntermediate
        o.hidden = hidden; o.intermediate = intermediate; o.layers = layers; o.experts = experts; o.topK = topK
        o.heads = heads; o.kvHeads = kvHeads; o.vocab = vocab; o.seed = seed; o.expertSpread = expertSpread
        o.dtype = try storageDType(dtype)
        try reportingErrors {
            let t0 = monotonicSeconds()
            try Synthesizer.write(o, to: URL(fileURLWithPath: out), log: logLine)
            print(String(format: "wrote %@: %.2f B parameters (%@) in %.1f s", out, Double(o.parameterCount) / 1e9, dtype,
                         monotonicSeconds() - t0))
        }
    }
}

struct SynthDraft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth-draft",
        abstract: "Write a small dense draft for a Mixtral-format target: its embeddings, lm_head and first L layers, with the mean of each layer's experts as the MLP.")

    @Option(help: "Target checkpoint directory.") var from: String
    @Option(help: "Layers of the target to keep.") var layers: Int
    @Option(help: "Output directory.") var out: String
    @Option(help: "f32, f16 or bf16.") var dtype = "bf16"

    func run() throws {
        let d = try storageDType(dtype)
        try reportingErrors {
            let t0 = monotonicSeconds()
            try Synthesizer.writeDraft(from: URL(fileURLWithPath: from), layers: layers, to: URL(fileURLWithPath: out), dtype: d, log: logLine)
            print(String(format: "wrote %@: %d-layer dense draft of %@ in %.1f s", out, layers, from, monotonicSeconds() - t0))
        }
    }
}

/// A `--dtype` value of the synth commands.
func storageDType(_ name: String) throws -> StorageDType {
    switch name.lowercased() {
    case "f32", "float32": return .f32
    case "f16", "float16": return .f16
    case "bf16", "bfloat16": return .bf16
    default: throw ValidationError("--dtype must be f32, f16 or bf16")
    }
}
