import ArgumentParser
import Foundation
import MoECore
import MoEModel

/// What a capacity factor costs in accuracy: logits of a batch of prompts with and without the limit.
struct CapacityBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capacity",
        abstract: "Logit error and dropped share of expert capacity factors against dropless routing.")

    @Option(help: "Checkpoint directory (default: the bundled demo model).") var model: String?
    @Option(help: "Capacity factors, comma-separated.") var factors = "1.0,1.25,1.5,2.0"
    @Option(help: "Prompts in the batch (random tokens, seeded).") var prompts = 8
    @Option(help: "Tokens per prompt.") var tokens = 64

    func run() throws {
        guard let dir = model ?? BundledModels.path() else { throw ValidationError("give --model") }
        let m = try LoadedModel(directory: URL(fileURLWithPath: dir))
        let V = m.spec.vocabSize, blocks = (tokens + 15) / 16
        let batch = (0..<prompts).map { i in randomTokens(tokens, vocab: V, seed: UInt64(40 + i)) }
        func logits(_ cf: Double?) -> ([Float], Int, Int) {
            m.transformer.capacityFactor = cf
            let cache = KVCache(spec: m.spec, numBlocks: blocks * prompts)
            let out = m.transformer.forward(batch.enumerated().map { i, p in
                SequenceInput(tokens: p, start: 0, blockTable: (0..<Int32(blocks)).map { Int32(i * blocks) + $0 }, logits: .all)
            }, cache: cache)
            let choices = out.expertCounts.joined().reduce(0, +)
            return (Array(out.logits.buffer.prefix(prompts * tokens * V)), out.dropped, choices + out.dropped)
        }
        let (ref, _, _) = logits(nil)
        print("capacity factor on \(URL(fileURLWithPath: dir).lastPathComponent): \(prompts) prompts × \(tokens) tokens in one batch")
        print("| capacity factor | dropped choices | max abs logit error | mean abs logit error | argmax agreement |")
        print("| --- | --- | --- | --- | --- |")
        for f in factors.split(separator: ",").compactMap({ Double($0) }) {
            let (l, dropped, all) = logits(f)
            let d = zip(l, ref).map { abs($0 - $1) }
            let rows = prompts * tokens
            let agree = (0..<rows).filter { r in
                (0..<V).max { l[r * V + $0] < l[r * V + $1] }! == (0..<V).max { ref[r * V + $0] < ref[r * V + $1] }!
            }.count
            print("| \(f) | \(dropped) of \(all) (\(String(format: "%.1f", 100 * Double(dropped) / Double(max(all, 1))))%) | \(String(format: "%.3f", d.max() ?? 0)) | \(String(format: "%.4f", d.reduce(0, +) / Float(d.count))) | \(agree)/\(rows) |")
        }
        m.transformer.capacityFactor = nil
    }
}
