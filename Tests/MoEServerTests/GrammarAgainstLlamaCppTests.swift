import Foundation
import MoETestSupport
import Testing
@testable import MoEServer

/// llama.cpp's `grammar` against llama.cpp itself: its own example grammars (its grammars/ directory: JSON, arithmetic,
/// lists, chess moves, English, Japanese, C) on /completion, greedy, over the same checkpoint
/// (Tests/Fixtures/tiny-mixtral-fim/cases.json, `grammar_cases`). The text is llama.cpp's, multi-byte characters
/// that span tokens included. Where llama.cpp chose a special token (it matches a special token's text, `<s>`, against
/// the grammar and leaves it out of the text; here special tokens are never allowed, as in vLLM), the text agrees
/// up to it.
struct GrammarAgainstLlamaCppTests {
    typealias JSON = [String: Any]

    static var cases: [JSON] { InfillTests.llamaCppAnswers("grammar_cases") }

    @Test func llamaCppsExampleGrammarsGiveLlamaCppsText() async throws {
        let s = try await LiveServer(model: "tiny-mixtral-fim")
        defer { Task { await s.stop() } }
        #expect(Self.cases.count == 24)
        for c in Self.cases {
            let name = "\(c["grammar_file"] ?? "") after \((c["request"] as? JSON)?["prompt"] ?? "")"
            let r = try await HTTP.post(s.base + "/completion", c["request"] ?? [:])
            let content = r.json?["content"] as? String
            #expect(r.status == 200, "\(name): \(r.text)")
            if c["chose_special_token"] as? Bool == true {
                let before = c["content_before_special"] as? String ?? ""
                #expect(content?.hasPrefix(before) == true, "\(name): \(content ?? "") does not start with \(before)")
            } else {
                #expect(content == c["content"] as? String, "\(name)")
                #expect(r.json?["tokens_predicted"] as? Int == c["tokens_predicted"] as? Int && r.json?["stop_type"] as? String == c["stop_type"] as? String,
                        "\(name)")
            }
        }
    }
}
