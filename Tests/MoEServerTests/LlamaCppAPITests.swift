import Foundation
import MoETestSupport
import Testing
@testable import MoEServer

/// llama.cpp's server's own routes (/completion, /props, /tokenize's `content`, /detokenize's `content`) against the
/// OpenAI routes they share an engine with.
struct LlamaCppAPITests {
    static func text(_ r: HTTP.Reply) -> String? { ((r.json?["choices"] as? [[String: Any]])?.first)?["text"] as? String }

    @Test func completionAnswersAsLlamaCppDoes() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let openai = try await HTTP.post(s.base + "/v1/completions", ["prompt": "The quick brown fox", "max_tokens": 8, "temperature": 0])
        let r = try await HTTP.post(s.base + "/completion", ["prompt": "The quick brown fox", "n_predict": 8, "temperature": 0])
        let o = r.json
        #expect(r.status == 200 && o?["content"] as? String == Self.text(openai), "\(r.text)")
        #expect(o?["stop"] as? Bool == true && o?["stop_type"] as? String == "limit" && o?["stopped_limit"] as? Bool == true)
        #expect(o?["tokens_predicted"] as? Int == 8 && o?["tokens_evaluated"] as? Int == (openai.json?["usage"] as? [String: Any])?["prompt_tokens"] as? Int)
        let timings = o?["timings"] as? [String: Any]
        #expect(timings?["predicted_n"] as? Int == 8 && (timings?["predicted_per_second"] as? Double ?? 0) > 0)
        #expect((o?["generation_settings"] as? [String: Any])?["n_ctx"] as? Int ?? 0 > 0)
        // llama.cpp's defaults when a field is left out (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05).
        let settings = try await HTTP.post(s.base + "/completion", ["prompt": "Hi", "n_predict": 1]).json?["generation_settings"] as? [String: Any]
        #expect(settings?["temperature"] as? Double == 0.8 && settings?["top_k"] as? Int == 40 && settings?["top_p"] as? Double == 0.95)

        // Streamed: `data:` chunks adding up to the content, the last one with stop and the counts; no [DONE].
        let st = try await HTTP.post(s.base + "/completion", ["prompt": "The quick brown fox", "n_predict": 8, "temperature": 0, "stream": true])
        let chunks = HTTP.events(st.text).compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(chunks.compactMap { $0["content"] as? String }.joined() == o?["content"] as? String && !st.text.contains("[DONE]"))
        #expect(chunks.dropLast().allSatisfy { $0["stop"] as? Bool == false } && chunks.last?["stop"] as? Bool == true)
        #expect(chunks.last?["tokens_predicted"] as? Int == 8)
        // Each piece with the counts so far, as llama.cpp's chunks carry them.
        let counts = chunks.dropLast().compactMap { $0["tokens_predicted"] as? Int }
        #expect(counts.count == chunks.count - 1 && counts == counts.sorted() && (counts.last ?? 0) <= 8)
        #expect(chunks.allSatisfy { $0["tokens_evaluated"] as? Int == o?["tokens_evaluated"] as? Int })

        // A stop word: the text before it, and which it was.
        let full = o?["content"] as? String ?? ""
        try #require(full.count > 5)
        let word = String(full.dropFirst(2).prefix(2))
        let cut = try await HTTP.post(s.base + "/completion", ["prompt": "The quick brown fox", "n_predict": 8, "temperature": 0, "stop": [word]])
        #expect(cut.json?["stop_type"] as? String == "word" && cut.json?["stopping_word"] as? String == word)
        #expect(cut.json?["content"] as? String == String(full[..<full.range(of: word)!.lowerBound]))
        // n_predict 0: nothing generated.
        let none = try await HTTP.post(s.base + "/completion", ["prompt": "The quick brown fox", "n_predict": 0])
        #expect(none.json?["content"] as? String == "" && none.json?["tokens_predicted"] as? Int == 0, "\(none.text)")
        // Its grammar field.
        let g = try await HTTP.post(s.base + "/completion", ["prompt": "Answer:", "n_predict": 10, "grammar": #"root ::= "yes" | "no""#])
        #expect(["yes", "no"].contains(g.json?["content"] as? String ?? "") && g.json?["stop_type"] as? String == "eos", "\(g.text)")
    }

    @Test func llamaCppLogitBiasAndJSONSchemaAreRead() throws {
        let body = Data(#"{"prompt": "x", "logit_bias": [[5, false], [7, 2.5]], "json_schema": {"type": "object"}, "repeat_penalty": 1.1, "n_predict": -1}"#.utf8)
        let t = try LlamaCppAPI.translate(body)
        let c = try JSONSerialization.jsonObject(with: t.completions) as? [String: Any]
        #expect((c?["logit_bias"] as? [String: Double]) == ["5": -100, "7": 2.5])
        #expect(((c?["response_format"] as? [String: Any])?["json_schema"] as? [String: Any])?["schema"] as? [String: String] == ["type": "object"])
        #expect(c?["repetition_penalty"] as? Double == 1.1 && c?["max_tokens"] == nil && t.nPredict == nil)
        #expect(throws: APIError.self) { try LlamaCppAPI.translate(Data(#"{"n_predict": 3}"#.utf8)) }
    }

    @Test func propsTokenizeAndDetokenizeSpeakLlamaCppToo() async throws {
        let s = try await LiveServer(chatTemplate: APITests.chatML)
        defer { Task { await s.stop() } }
        let props = try await HTTP.get(s.base + "/props").json
        #expect((props?["default_generation_settings"] as? [String: Any])?["n_ctx"] is Int && props?["chat_template"] as? String == APITests.chatML)
        let a = try await HTTP.post(s.base + "/tokenize", ["content": "Hello world"]), b = try await HTTP.post(s.base + "/tokenize", ["prompt": "Hello world"])
        #expect(a.json?["tokens"] as? [Int] == b.json?["tokens"] as? [Int] && (a.json?["tokens"] as? [Int])?.isEmpty == false)
        let d = try await HTTP.post(s.base + "/detokenize", ["tokens": a.json?["tokens"] ?? []])
        #expect(d.json?["content"] as? String == d.json?["prompt"] as? String && (d.json?["content"] as? String)?.hasSuffix("Hello world") == true)
    }
}
