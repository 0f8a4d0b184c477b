import Foundation
import Testing
@testable import MoETokenizer

/// Acceptance 2: every fixture model directory loads, its golden prompt
/// texts encode to the recorded ids, and the special-token facts hold.
@Suite("Model fixture directories")
struct ModelFixtureTests {
    /// (text, ids, isPrefix) from golden/prompts.json (or demo-mixtral's
    /// golden.json). Prompts whose note says they were cut to 40 tokens are
    /// compared as a prefix; the "first token of 'The'" prompt is too.
    static func prompts(_ dir: String) throws -> [(text: String, ids: [Int], note: String, prefix: Bool)] {
        let promptsURL = Fixtures.url("\(dir)/golden/prompts.json")
        let list: [[String: Any]]
        if FileManager.default.fileExists(atPath: promptsURL.path) {
            list = try JSONSerialization.jsonObject(with: Data(contentsOf: promptsURL)) as! [[String: Any]]
        } else if FileManager.default.fileExists(atPath: Fixtures.url("\(dir)/golden/golden.json").path) {
            let g = try Fixtures.json("\(dir)/golden/golden.json") as! [String: Any]
            list = g["prompts"] as! [[String: Any]]
        } else {
            return []
        }
        return list.map { p in
            let note = p["note"] as? String ?? ""
            let prefix = note.contains("cut to") || note.contains("first token")
            return (p["text"] as! String, (p["ids"] as! [NSNumber]).map(\.intValue), note, prefix)
        }
    }

    @Test("loads and reports special tokens", arguments: Fixtures.modelDirs)
    func loadsAndReportsSpecialTokens(dir: String) throws {
        let tok = try Tokenizer(directory: Fixtures.url(dir))
        #expect(tok.eosTokenIds == [2])
        #expect(tok.bosTokenId == 1)
        #expect(tok.addsBOS == (dir == "tiny-mistral-sp"))
        #expect(tok.specialTokenIds == [0, 1, 2])
        #expect(tok.vocabSize == (dir.hasPrefix("demo-") ? 2048 : 512))
        #expect(tok.chatTemplate == nil)
        let bosFirst = tok.encode("Hello", addSpecialTokens: true).first == 1
        #expect(bosFirst == tok.addsBOS)
    }

    @Test("golden prompt texts encode to their ids", arguments: Fixtures.modelDirs)
    func goldenPromptsEncodeToTheirIds(dir: String) throws {
        let tok = try Tokenizer(directory: Fixtures.url(dir))
        for p in try Self.prompts(dir) {
            let ids = tok.encode(p.text, addSpecialTokens: true)
            if p.prefix {
                #expect(Array(ids.prefix(p.ids.count)) == p.ids, "\(dir): \(p.note)")
            } else {
                #expect(ids == p.ids, "\(dir): \(p.note)")
            }
        }
    }

    @Test("every directory with golden prompts has some")
    func goldenPromptsArePresent() throws {
        for dir in ["tiny-mixtral", "tiny-mixtral-bf16", "tiny-mixtral-spec", "tiny-qwen2-moe", "tiny-qwen3-moe",
                    "tiny-mistral-sp", "demo-mixtral"] {
            #expect(try !Self.prompts(dir).isEmpty, "\(dir)")
        }
    }
}
