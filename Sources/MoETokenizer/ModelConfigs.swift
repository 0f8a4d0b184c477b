import Foundation

/// The parts of tokenizer_config.json / generation_config.json that affect
/// encoding and generation: special-token names and the add_bos/add_eos
/// flags that transformers applies on top of the Rust post-processor.
struct ModelConfigs: Sendable {
    var bosToken: String?
    var eosToken: String?
    var addBosToken: Bool?
    var addEosToken: Bool?
    var chatTemplate: String?
    var generationBosId: Int?
    var generationEosIds: [Int]?

    init(tokenizerConfig: Data?, generationConfig: Data?) throws {
        if let data = tokenizerConfig {
            let root = try JSONNode.parse(data, file: "tokenizer_config.json")
            guard root.object != nil else { throw TokenizerError("malformed JSON in tokenizer_config.json: expected an object") }
            bosToken = Self.tokenName(root["bos_token"])
            eosToken = Self.tokenName(root["eos_token"])
            addBosToken = root["add_bos_token"].bool
            addEosToken = root["add_eos_token"].bool
            // A string, or (older tool-use models) a list of named templates: the default one.
            chatTemplate = root["chat_template"].string
                ?? (root["chat_template"].array as? [[String: Any]])?.first { $0["name"] as? String == "default" }?["template"] as? String
        }
        if let data = generationConfig {
            let root = try JSONNode.parse(data, file: "generation_config.json")
            guard root.object != nil else { throw TokenizerError("malformed JSON in generation_config.json: expected an object") }
            generationBosId = root["bos_token_id"].int
            let eos = root["eos_token_id"]
            if let list = eos.array {
                generationEosIds = list.compactMap { ($0 as? NSNumber)?.intValue }
            } else if let one = eos.int {
                generationEosIds = [one]
            }
        }
    }

    /// Special tokens appear either as a plain string or as a serialized
    /// AddedToken object `{"content": ..., ...}`.
    private static func tokenName(_ node: JSONNode) -> String? {
        if let s = node.string { return s }
        return node["content"].string
    }
}
