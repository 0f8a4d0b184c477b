import Foundation
@testable import MoETokenizer

/// Locates test fixtures relative to this source file, so the tests keep
/// working when the package's Tests/ folder is moved into another project
/// (Tests/MoETokenizerTests/ next to Tests/Fixtures/).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// The bundled demo models live in Models/ at the package root; everything else in Tests/Fixtures/.
    static func url(_ relative: String) -> URL {
        if relative.hasPrefix("demo-") {
            return root.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Models/\(relative)")
        }
        return root.appendingPathComponent(relative)
    }

    static func data(_ relative: String) throws -> Data { try Data(contentsOf: url(relative)) }

    static func json(_ relative: String) throws -> Any {
        try JSONSerialization.jsonObject(with: try data(relative))
    }

    /// Model directories with a tokenizer (all share the three specials).
    static let modelDirs = [
        "tiny-mixtral", "tiny-mixtral-bf16", "tiny-mixtral-fused", "tiny-mixtral-sharded",
        "tiny-mixtral-spec", "tiny-mixtral-spec-draft", "tiny-qwen2-moe", "tiny-qwen3-moe",
        "tiny-mistral-sp", "demo-mixtral", "demo-draft",
    ]

    static let byteLevel: Tokenizer = {
        try! Tokenizer(tokenizerJSON: try! data("tokenizer-cases/bytelevel.tokenizer.json"))
    }()

    static let sentencePiece: Tokenizer = {
        try! Tokenizer(tokenizerJSON: try! data("tokenizer-cases/sentencepiece.tokenizer.json"))
    }()

    static func tokenizer(kind: String) -> Tokenizer { kind == "bytelevel" ? byteLevel : sentencePiece }

    struct GoldenCase: Sendable {
        let index: Int
        let name: String
        let text: String
        let ids: [Int]
        let tokens: [String]
        let idsNoSpecial: [Int]
        let tokensNoSpecial: [String]
        let decoded: String
        let decodedSkipSpecial: String
        let decodedNoSpecial: String
        let decodedNoSpecialSkipSpecial: String
    }

    static func goldenCases(kind: String) throws -> [GoldenCase] {
        let root = try json("tokenizer-cases/\(kind).json") as! [String: Any]
        return (root["cases"] as! [[String: Any]]).map { c in
            GoldenCase(index: (c["index"] as! NSNumber).intValue, name: c["name"] as! String,
                       text: c["text"] as! String,
                       ids: (c["ids"] as! [NSNumber]).map(\.intValue), tokens: c["tokens"] as! [String],
                       idsNoSpecial: (c["ids_no_special"] as! [NSNumber]).map(\.intValue),
                       tokensNoSpecial: c["tokens_no_special"] as! [String],
                       decoded: c["decoded"] as! String, decodedSkipSpecial: c["decoded_skip_special"] as! String,
                       decodedNoSpecial: c["decoded_no_special"] as! String,
                       decodedNoSpecialSkipSpecial: c["decoded_no_special_skip_special"] as! String)
        }
    }

    /// Loads a tokenizer.json, lets `edit` change its JSON object, and builds
    /// a tokenizer from the result (for configuration-variant tests).
    static func modified(_ relative: String, _ edit: (inout [String: Any]) -> Void) throws -> Tokenizer {
        var obj = try json(relative) as! [String: Any]
        edit(&obj)
        return try Tokenizer(tokenizerJSON: try JSONSerialization.data(withJSONObject: obj))
    }
}
