import ArgumentParser
import Foundation
import MoECluster
import MoECore
import MoEModel

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate tokens from a prompt and print them with timings.")

    @Option(help: "Checkpoint directory (Hugging Face format).") var model: String
    @Option(name: .customLong("prompt-ids"), help: "Prompt token ids, comma-separated.") var promptIds: String
    @Option(name: .customLong("max-tokens"), help: "Maximum new tokens.") var maxTokens: Int = 64
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-sequence tokens.") var ignoreEOS = false
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @OptionGroup var sampling: SamplingOptions

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
    }

    func run() throws {
        let mpi = try MPIRuntime.start()
        defer { mpi.finalize() }
        try reportingErrors {
            let prompt = try parseIds(promptIds, option: "--prompt-ids")
            let loaded = try LoadedModel(directory: URL(fileURLWithPath: model))
            try checkIds(prompt, vocab: loaded.spec.vocabSize)
            logLine("model: \(model) (\(loaded.spec.modelType), \(loaded.spec.numLayers) layers, \(loaded.spec.numExperts) experts); weights held: \(formatBytes(loaded.bytesHeld)); threads: \(ComputeThreads.count) (\(ComputeThreads.isa))")
            let gen = Generator(transformer: loaded.transformer, maxTokens: prompt.count + maxTokens + 1)
            let r = gen.generate(prompts: [prompt], maxNewTokens: maxTokens, params: [sampling.params],
                                 eos: Set(loaded.eosTokenIds.map(Int32.init)), ignoreEOS: ignoreEOS)[0]
            if json {
                let obj: [String: Any] = [
                    "ids": r.tokens.map(Int.init), "prompt_tokens": r.promptTokens,
                    "prefill_tok_s": r.prefillTokensPerSecond, "decode_tok_s": r.decodeTokensPerSecond,
                    "stop": r.stop.rawValue,
                ]
                let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(r.tokens.map(String.init).joined(separator: " "))
                print(String(format: "prompt: %d tokens, %.1f tok/s | decode: %d tokens, %.1f tok/s | stop: %@",
                             r.promptTokens, r.prefillTokensPerSecond, r.tokens.count, r.decodeTokensPerSecond, r.stop.rawValue))
            }
        }
    }
}
