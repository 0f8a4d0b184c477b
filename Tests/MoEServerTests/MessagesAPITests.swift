import Foundation
import MoETestSupport
import Testing
@testable import MoEServer

/// Anthropic's Messages API (POST /v1/messages) against the chat route it rides on: the same prompt and greedy reply,
/// as content blocks and Anthropic's events. (Checked by hand with the `anthropic` client 2.14: messages.create,
/// .stream, .parse with a Pydantic model, tool_use and tool_result round trips, x-api-key.)
struct MessagesAPITests {
    static var tools: [[String: Any]] {
        ToolCallAPITests.tools.map { t in
            let f = t["function"] as! [String: Any]
            var tool: [String: Any] = ["name": f["name"]!, "input_schema": f["parameters"] ?? ["type": "object"]]
            tool["description"] = f["description"]
            return tool
        }
    }

    static func events(_ r: HTTP.Reply) -> [[String: Any]] {
        HTTP.events(r.text).compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func blocks(_ r: HTTP.Reply) -> [[String: Any]] { r.json?["content"] as? [[String: Any]] ?? [] }

    /// A usage's whole prompt: the tokens computed and those read from the prefix cache.
    static func prompt(_ usage: [String: Any]?) -> Int? {
        guard let computed = usage?["input_tokens"] as? Int, let cached = usage?["cache_read_input_tokens"] as? Int else { return nil }
        return computed + cached
    }

    @Test func aMessageIsTheChatReplyAsContentBlocks() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": [["role": "system", "content": "Be brief."]] + ToolCallAPITests.question,
                                                                       "temperature": 0, "max_tokens": 8])
        let text = (ToolCallAPITests.choice(chat)?["message"] as? [String: Any])?["content"] as? String ?? ""
        try #require(text.count > 4)
        let ask: [String: Any] = ["system": [["type": "text", "text": "Be brief."]], "messages": [["role": "user", "content": [["type": "text", "text": ToolCallAPITests.question[0]["content"]!]]]],
                                  "temperature": 0, "max_tokens": 8]
        let r = try await HTTP.post(s.base + "/v1/messages", ask)
        #expect(r.status == 200 && r.json?["type"] as? String == "message" && r.json?["role"] as? String == "assistant", "\(r.text)")
        #expect(Self.blocks(r).count == 1 && Self.blocks(r).first?["type"] as? String == "text" && Self.blocks(r).first?["text"] as? String == text)
        #expect(r.json?["stop_reason"] as? String == "max_tokens" && r.json?["stop_sequence"] is NSNull)
        let usage = r.json?["usage"] as? [String: Any]
        // The chat request before computed this prompt: its whole 16-token blocks are read from the prefix cache, the
        // rest computed (input_tokens), as llama.cpp's server counts them.
        let promptTokens = (chat.json?["usage"] as? [String: Any])?["prompt_tokens"] as? Int ?? 0
        #expect(Self.prompt(usage) == promptTokens && usage?["output_tokens"] as? Int == 8)
        #expect(usage?["cache_read_input_tokens"] as? Int == (promptTokens - 1) / 16 * 16 && usage?["cache_creation_input_tokens"] as? Int == 0)

        // A stop sequence: the text before it, and which one it was.
        let stop = String(text.dropFirst(2).prefix(2))
        var stopped = ask
        stopped["stop_sequences"] = [stop]
        let cut = try await HTTP.post(s.base + "/v1/messages", stopped)
        #expect(cut.json?["stop_reason"] as? String == "stop_sequence" && cut.json?["stop_sequence"] as? String == stop, "\(cut.text)")
        #expect(Self.blocks(cut).first?["text"] as? String == String(text[..<text.range(of: stop)!.lowerBound]))

        // Streamed: Anthropic's events, deltas adding up to the text.
        var streamed = ask
        streamed["stream"] = true
        let st = try await HTTP.post(s.base + "/v1/messages", streamed)
        let ev = Self.events(st)
        #expect(ev.compactMap { $0["type"] as? String } == ["message_start", "content_block_start"] + Array(repeating: "content_block_delta", count: ev.count - 5)
                + ["content_block_stop", "message_delta", "message_stop"])
        #expect(st.text.hasPrefix("event: message_start\ndata: "))
        let deltas = ev.compactMap { ($0["delta"] as? [String: Any])?["text"] as? String }.joined()
        #expect(deltas == text)
        let end = ev.first { $0["type"] as? String == "message_delta" }
        #expect((end?["delta"] as? [String: Any])?["stop_reason"] as? String == "max_tokens" && (end?["usage"] as? [String: Any])?["output_tokens"] as? Int == 8)
        #expect(Self.prompt(end?["usage"] as? [String: Any]) == promptTokens)
        // Sent before the prompt is read, message_start counts it whole; message_delta then splits it.
        #expect(((ev.first?["message"] as? [String: Any])?["usage"] as? [String: Any])?["input_tokens"] as? Int == promptTokens)
    }

    /// A forced tool: one tool_use block with its input; its result sent back renders as the chat route's tool turn.
    @Test func toolUseAndToolResults() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let ask: [String: Any] = ["messages": ToolCallAPITests.question, "tools": Self.tools, "tool_choice": ["type": "tool", "name": "get_weather"],
                                  "temperature": 0, "max_tokens": 60]
        let r = try await HTTP.post(s.base + "/v1/messages", ask)
        let use = Self.blocks(r).first ?? [:]
        let input = use["input"] as? [String: Any]
        #expect(Self.blocks(r).count == 1 && use["type"] as? String == "tool_use" && use["name"] as? String == "get_weather", "\(r.text)")
        #expect(["Paris", "Rome"].contains(input?["city"] as? String ?? "") && (use["id"] as? String)?.hasPrefix("toolu_") == true)
        #expect(r.json?["stop_reason"] as? String == "tool_use")

        var streamed = ask
        streamed["stream"] = true
        let ev = Self.events(try await HTTP.post(s.base + "/v1/messages", streamed))
        let start = ev.first { $0["type"] as? String == "content_block_start" }?["content_block"] as? [String: Any]
        #expect(start?["type"] as? String == "tool_use" && start?["name"] as? String == "get_weather")
        let json = ev.compactMap { ($0["delta"] as? [String: Any])?["partial_json"] as? String }.joined()
        let parsed = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(parsed?["city"] as? String == input?["city"] as? String && parsed?["days"] as? Int == input?["days"] as? Int)
        #expect(((ev.first { $0["type"] as? String == "message_delta" })?["delta"] as? [String: Any])?["stop_reason"] as? String == "tool_use")

        let back: [[String: Any]] = ToolCallAPITests.question + [
            ["role": "assistant", "content": [use]],
            ["role": "user", "content": [["type": "tool_result", "tool_use_id": use["id"] ?? "", "content": "sunny"]]]]
        let next = try await HTTP.post(s.base + "/v1/messages", ["messages": back, "tools": Self.tools, "temperature": 0, "max_tokens": 4])
        let arguments = String(decoding: try JSONSerialization.data(withJSONObject: input ?? [:], options: .sortedKeys), as: UTF8.self)
        let history: [[String: Any]] = ToolCallAPITests.question + [
            ["role": "assistant", "content": "", "tool_calls": [["id": "c", "type": "function", "function": ["name": "get_weather", "arguments": arguments]]]],
            ["role": "tool", "tool_call_id": "c", "content": "sunny"]]
        let chatTools = Self.tools.map { t in ["type": "function", "function": ["name": t["name"]!, "description": t["description"]!, "parameters": t["input_schema"]!]] }
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": history, "tools": chatTools, "temperature": 0, "max_tokens": 4])
        #expect(Self.prompt(next.json?["usage"] as? [String: Any]) == (chat.json?["usage"] as? [String: Any])?["prompt_tokens"] as? Int, "\(next.text)")
        #expect(Self.blocks(next).first?["text"] as? String == (ToolCallAPITests.choice(chat)?["message"] as? [String: Any])?["content"] as? String)
    }

    @Test func outputFormatConstrainsTheText() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let schema: [String: Any] = ["type": "object", "properties": ["city": ["type": "string", "enum": ["Paris", "Rome"]], "sunny": ["type": "boolean"]],
                                     "required": ["city", "sunny"], "additionalProperties": false]
        let r = try await HTTP.post(s.base + "/v1/messages", ["messages": [["role": "user", "content": "Pick"]], "max_tokens": 200, "temperature": 0,
                                                             "output_config": ["format": ["type": "json_schema", "schema": schema]]])
        let text = Self.blocks(r).first?["text"] as? String
        let obj = text.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(["Paris", "Rome"].contains(obj?["city"] as? String ?? "") && obj?["sunny"] is Bool && r.json?["stop_reason"] as? String == "end_turn", "\(r.text)")
    }

    @Test func aThinkingModelsReasoningIsAThinkingBlock() async throws {
        let template = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("qwen3-thinking.jinja"), encoding: .utf8)
        let s = try await LiveServer(chatTemplate: template)
        defer { Task { await s.stop() } }
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": ToolCallAPITests.question, "temperature": 0, "max_tokens": 8])
        let r = try await HTTP.post(s.base + "/v1/messages", ["messages": ToolCallAPITests.question, "temperature": 0, "max_tokens": 8])
        let b = Self.blocks(r).first
        #expect(b?["type"] as? String == "thinking" && b?["thinking"] as? String == (ToolCallAPITests.choice(chat)?["message"] as? [String: Any])?["reasoning_content"] as? String)
        let ev = Self.events(try await HTTP.post(s.base + "/v1/messages", ["messages": ToolCallAPITests.question, "temperature": 0, "max_tokens": 8, "stream": true]))
        let thought = ev.compactMap { ($0["delta"] as? [String: Any])?["thinking"] as? String }.joined()
        #expect(thought == b?["thinking"] as? String && !thought.isEmpty)
    }

    @Test func errorsComeInAnthropicsShapeAndXApiKeyAuthenticates() async throws {
        let s = try await LiveServer(token: "sek", chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        func refused(_ body: [String: Any], _ words: String) async throws {
            let r = try await HTTP.request("POST", s.base + "/v1/messages", json: body, headers: ["x-api-key": "sek"])
            let e = r.json?["error"] as? [String: Any]
            #expect(r.status == 400 && r.json?["type"] as? String == "error" && e?["type"] as? String == "invalid_request_error"
                    && (e?["message"] as? String ?? "").contains(words), "\(body) → \(r.status) \(r.text)")
        }
        try await refused(["messages": ToolCallAPITests.question], "max_tokens")
        try await refused(["max_tokens": 4, "messages": [["role": "user", "content": [["type": "image", "source": ["type": "url", "url": "http://x"]]]]]], "image blocks")
        try await refused(["max_tokens": 4, "messages": ToolCallAPITests.question, "tools": [["type": "web_search_20250305", "name": "web_search"]]], "only custom tools")
        try await refused(["max_tokens": 4, "messages": [["role": "system", "content": "x"]]], "user or assistant")
        let ok = try await HTTP.request("POST", s.base + "/v1/messages", json: ["max_tokens": 2, "messages": ToolCallAPITests.question], headers: ["x-api-key": "sek"])
        let denied = try await HTTP.request("POST", s.base + "/v1/messages", json: ["max_tokens": 2, "messages": ToolCallAPITests.question], headers: ["x-api-key": "nope"])
        #expect(ok.status == 200 && denied.status == 401)
    }

    /// count_tokens answers the prompt's token count as /v1/messages renders it (tools and system included), without
    /// max_tokens; its errors come in Anthropic's shape.
    @Test func countTokensIsThePromptAsMessagesRendersIt() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let tools: [[String: Any]] = [["name": "get_weather", "description": "Weather of a city.",
                                       "input_schema": ["type": "object", "properties": ["city": ["type": "string"]]]]]
        let body: [String: Any] = ["system": "Be brief.", "messages": ToolCallAPITests.question, "tools": tools]
        let counted = try await HTTP.post(s.base + "/v1/messages/count_tokens", body)
        let n = try #require(counted.json?["input_tokens"] as? Int, "\(counted.text)")
        let sent = try await HTTP.post(s.base + "/v1/messages", body.merging(["max_tokens": 1]) { $1 })
        #expect(Self.prompt(sent.json?["usage"] as? [String: Any]) == n, "\(sent.text)")
        let plain = try await HTTP.post(s.base + "/v1/messages/count_tokens", ["messages": ToolCallAPITests.question])
        #expect((plain.json?["input_tokens"] as? Int ?? .max) < n)
        let bad = try await HTTP.post(s.base + "/v1/messages/count_tokens", ["messages": "hi"])
        #expect(bad.status == 400 && bad.json?["type"] as? String == "error", "\(bad.text)")
    }
}
