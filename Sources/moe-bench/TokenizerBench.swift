import ArgumentParser
import Foundation
import MoEModel
import MoETokenizer

struct TokenizerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Single-thread encoding throughput (MB/s) on ~1 MB of mixed text, beside the Python `tokenizers` library when installed.")

    @Option(help: "tokenizer.json or a directory holding it (default: the bundled demo model's).") var tokenizer: String?
    @Option(help: "Text file to encode instead of the generated mixed text.") var file: String?
    @Option(help: "Timed runs (best is reported).") var runs = 5

    func run() throws {
        guard let path = tokenizer ?? BundledModels.path().map({ $0 + "/tokenizer.json" }) else {
            throw ValidationError("no --tokenizer given and Models/demo-mixtral not found")
        }
        print(try TokenizerBenchmark.run(tokenizerPath: URL(fileURLWithPath: path), textFile: file.map { URL(fileURLWithPath: $0) }, runs: runs))
    }
}
