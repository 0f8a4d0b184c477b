import ArgumentParser
import Foundation
import MoETokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Encode text with the model's tokenizer.json; prints {\"ids\": [...], \"tokens\": [...]}.")

    @Option(help: "Checkpoint directory holding tokenizer.json (default: the bundled demo model).") var model: String?
    @Option(help: "Text to encode.") var text: String?
    @Option(help: "Read the text from a file (UTF-8).") var file: String?
    @Flag(name: .customLong("no-special"), help: "Do not add special tokens (BOS/EOS templates).") var noSpecial = false

    func validate() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text or --file") }
    }

    func run() throws {
        try reportingErrors {
            let tok = try Tokenizer(directory: URL(fileURLWithPath: try resolveModel(model)))
            let input: String
            if let t = text { input = t } else {
                guard let d = FileManager.default.contents(atPath: file!) else { throw CLIError("cannot read \(file!)") }
                guard let s = String(data: d, encoding: .utf8) else { throw CLIError("\(file!) is not valid UTF-8") }
                input = s
            }
            let (ids, tokens) = tok.encodeWithTokens(input, addSpecialTokens: !noSpecial)
            let data = try JSONSerialization.data(withJSONObject: ["ids": ids, "tokens": tokens], options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Decode token ids to text with the model's tokenizer.json.")

    @Option(help: "Checkpoint directory holding tokenizer.json (default: the bundled demo model).") var model: String?
    @Option(help: "Token ids, comma-separated.") var ids: String
    @Flag(name: .customLong("skip-special"), help: "Leave out special tokens.") var skipSpecial = false

    func run() throws {
        try reportingErrors {
            let tok = try Tokenizer(directory: URL(fileURLWithPath: try resolveModel(model)))
            let list = try parseIds(ids, option: "--ids").map(Int.init)
            if let bad = list.first(where: { $0 >= tok.vocabSize }) {
                throw CLIError("token id \(bad) is outside the tokenizer's vocabulary (0..<\(tok.vocabSize))")
            }
            print(tok.decode(list, skipSpecialTokens: skipSpecial))
        }
    }
}
