import ArgumentParser
import Foundation
import MoECore
import MoEModel

/// The logit error of f16 and int8 KV caches against f32, per model: every prompt position's logits computed
/// through the cache (prefill writes K/V, attention reads them back).
struct KVBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv",
        abstract: "Logit error of f16 and int8 KV-cache entries against f32 (max and mean |Δ| over every position), and pool capacity per GiB.")

    @Option(help: "Checkpoint directories, comma-separated (default: the bundled demo model).") var models: String?
    @Option(help: "Prompt length (random tokens, seeded).") var tokens = 64

    func run() throws {
        let dirs = models.map { $0.split(separator: ",").map(String.init) } ?? [BundledModels.path()].compactMap { $0 }
        print("| model | KV dtype | bytes/token | tokens per GiB | max abs logit error | mean abs logit error | argmax agreement |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for dir in dirs {
            let m = try LoadedModel(directory: URL(fileURLWithPath: dir))
            let ids = randomTokens(tokens, vocab: m.spec.vocabSize, seed: 17)
            func logits(_ d: KVDType) -> [Float] {
                let blocks = (ids.count + 15) / 16
                let cache = KVCache(spec: m.spec, numBlocks: blocks, dtype: d)
                let out = m.transformer.forward([SequenceInput(tokens: ids, start: 0, blockTable: (0..<Int32(blocks)).map { $0 }, logits: .all)], cache: cache)
                return Array(out.logits.buffer.prefix(ids.count * m.spec.vocabSize))
            }
            let ref = logits(.f32), V = m.spec.vocabSize
            for d in KVDType.allCases {
                let l = d == .f32 ? ref : logits(d)
                let diffs = zip(l, ref).map { abs($0 - $1) }
                let agree = (0..<ids.count).filter { t in
                    let a = (0..<V).max { l[t * V + $0] < l[t * V + $1] }!, b = (0..<V).max { ref[t * V + $0] < ref[t * V + $1] }!
                    return a == b
                }.count
                let per = KVCache.bytesPerToken(m.spec, dtype: d)
                print("| \(URL(fileURLWithPath: dir).lastPathComponent) | \(d.rawValue) | \(per) | \((1 << 30) / per) | \(String(format: "%.2e", diffs.max() ?? 0)) | \(String(format: "%.2e", diffs.reduce(0, +) / Float(max(diffs.count, 1)))) | \(agree)/\(ids.count) |")
            }
        }
    }
}
