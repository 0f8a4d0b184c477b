import ArgumentParser
import Foundation
import MoECluster
import MoECore
import MoEModel

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the float32 logits of every prompt position: little-endian, shape [T, vocab], row after row.")

    @Option(help: "Checkpoint directory (Hugging Face format; default: the config's, else the bundled demo model).") var model: String?
    @Option(help: "Token ids, comma-separated.") var ids: String
    @Option(help: "Output file.") var out: String
    @OptionGroup var cluster: ClusterOptions

    func validate() throws { _ = try parseIds(ids, option: "--ids") }

    func run() throws {
        try withCluster(cluster, model: model) { session, loaded in
            try reportingErrors {
                let tokens = try parseIds(ids, option: "--ids")
                try checkIds(tokens, vocab: loaded.spec.vocabSize)
                // The configured KV entry type and block size, as generation would use them.
                let config = session.config, bs = config.kvBlockSize, blocks = (tokens.count + bs - 1) / bs
                let cache = KVCache(spec: loaded.spec, blockSize: bs, numBlocks: blocks, dtype: KVDType(rawValue: config.kvDType) ?? .f32)
                let result = loaded.transformer.forward(
                    [SequenceInput(tokens: tokens, start: 0, blockTable: (0..<Int32(blocks)).map { $0 }, logits: .all)], cache: cache)
                let data = Data(bytes: result.logits.pointer, count: tokens.count * result.vocab * 4)
                try data.write(to: URL(fileURLWithPath: out))
                print("logits [\(tokens.count), \(result.vocab)] float32 -> \(out)")
            }
        }
    }
}
