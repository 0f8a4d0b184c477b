import Foundation
import Testing
@testable import MoETokenizer

/// BOS/EOS rules: the post-processor is authoritative; tokenizer_config's
/// add_bos_token/add_eos_token only add what it did not, never twice.
@Suite("Special-token configuration")
struct SpecialTokenConfigTests {
    static func make(_ kind: String, config: [String: Any]?, generation: [String: Any]? = nil) throws -> Tokenizer {
        try Tokenizer(tokenizerJSON: try Fixtures.data("tokenizer-cases/\(kind).tokenizer.json"),
                      tokenizerConfigJSON: try config.map { try JSONSerialization.data(withJSONObject: $0) },
                      generationConfigJSON: try generation.map { try JSONSerialization.data(withJSONObject: $0) })
    }

    @Test("add_bos_token prepends BOS when the post-processor does not")
    func addBosWithoutTemplate() throws {
        let tok = try Self.make("bytelevel", config: ["bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true])
        #expect(tok.addsBOS)
        #expect(tok.encode("Hello").first == 1)
        #expect(tok.encode("Hello", addSpecialTokens: false).first != 1)
        // Text that itself starts with "<s>" still gets the BOS in front.
        #expect(Array(tok.encode("<s>Hi").prefix(2)) == [1, 1])
    }

    @Test("add_bos_token never doubles the template's BOS; add_eos_token appends once")
    func noDoubleBos() throws {
        let tok = try Self.make("sentencepiece",
                                config: ["bos_token": ["content": "<s>", "lstrip": false], "eos_token": "</s>",
                                         "add_bos_token": true, "add_eos_token": true])
        let ids = tok.encode("Hello")
        #expect(ids.first == 1 && ids.dropFirst().first != 1)
        #expect(ids.last == 2)
        #expect(ids.filter { $0 == 2 }.count == 1)
        #expect(tok.bosTokenId == 1)
        #expect(tok.addsBOS)
    }

    @Test("eos ids come from generation_config (int or list), else tokenizer_config")
    func eosSources() throws {
        #expect(try Self.make("bytelevel", config: ["eos_token": "</s>"]).eosTokenIds == [2])
        #expect(try Self.make("bytelevel", config: ["eos_token": "</s>"], generation: ["eos_token_id": [2, 0]]).eosTokenIds
                == [2, 0])
        #expect(try Self.make("bytelevel", config: nil, generation: ["eos_token_id": 2, "bos_token_id": 1]).bosTokenId == 1)
        let bare = try Self.make("bytelevel", config: nil)
        #expect(bare.eosTokenIds.isEmpty && bare.bosTokenId == nil && !bare.addsBOS)
    }

    @Test("chat_template: a string, the default of a list of named ones, or chat_template.jinja beside the config")
    func chatTemplate() throws {
        #expect(try Self.make("bytelevel", config: ["chat_template": "{{ messages }}"]).chatTemplate == "{{ messages }}")
        #expect(try Self.make("bytelevel", config: ["chat_template": [["name": "x"]]]).chatTemplate == nil)
        let named: [[String: Any]] = [["name": "tool_use", "template": "tools"], ["name": "default", "template": "plain"]]
        #expect(try Self.make("bytelevel", config: ["chat_template": named]).chatTemplate == "plain")
        // transformers 4.43+ saves the template as chat_template.jinja, read before tokenizer_config.json's.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("chat-template-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Fixtures.data("tokenizer-cases/bytelevel.tokenizer.json").write(to: dir.appendingPathComponent("tokenizer.json"))
        try JSONSerialization.data(withJSONObject: ["chat_template": "old"]).write(to: dir.appendingPathComponent("tokenizer_config.json"))
        #expect(try Tokenizer(directory: dir).chatTemplate == "old")
        try Data("{{ bos_token }}new".utf8).write(to: dir.appendingPathComponent("chat_template.jinja"))
        #expect(try Tokenizer(directory: dir).chatTemplate == "{{ bos_token }}new")
    }
}
