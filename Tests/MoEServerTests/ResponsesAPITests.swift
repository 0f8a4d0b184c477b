import Foundation
import MoETestSupport
import MoETokenizer
import Testing
@testable import MoEServer

/// OpenAI's Responses API (POST /v1/responses) against the chat route it rides on: the same prompt, the same greedy
/// reply, as the API's items and events. (Checked by hand with the `openai` client 3.57: responses.create, .stream,
/// .parse with a Pydantic model, function calls and their outputs sent back.)
struct ResponsesAPITests {
    static var tools: [[String: Any]] {
        (ToolCallAPITests.tools).map { t in
            var f = t["function"] as! [String: Any]
            f["type"] = "function"
            return f
        }
    }

    static func events(_ r: HTTP.Reply) -> [[String: Any]] {
        HTTP.events(r.text).compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func outputText(_ response: [String: Any]?) -> String? {
        let items = response?["output"] as? [[String: Any]] ?? []
        let texts = items.filter { $0["type"] as? String == "message" }.flatMap { ($0["content"] as? [[String: Any]]) ?? [] }
        return texts.isEmpty ? nil : texts.compactMap { $0["text"] as? String }.joined()
    }

    /// A tool sent to /v1/responses or /v1/messages reaches the template as the same tool sent to the chat route
    /// does, its schema's keys in the client's order (Qwen3's template shows the JSON; Qwen3-Coder's lists the
    /// parameters in that order): the prompts are the same text.
    @Test func toolsKeepTheClientsKeyOrderThroughTheRewrites() throws {
        let schema = #"{"type": "object", "properties": {"zeta": {"type": "string", "description": "last letter"}, "alpha": {"type": "integer"}}, "required": ["zeta"]}"#
        let chat = #"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "description": "Does f.", "parameters": "# + schema + "}}]}"
        let responses = #"{"input": "hi", "tools": [{"type": "function", "name": "f", "description": "Does f.", "parameters": "# + schema + "}]}"
        let messages = #"{"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "f", "description": "Does f.", "input_schema": "# + schema + "}]}"
        let tokenizer = try Tokenizer(directory: Fixtures.model("tiny-qwen3-moe"))
        func prompt(_ body: Data, template file: String) throws -> String {
            let r = try JSONDecoder().decode(ChatRequest.self, from: body)
            let tools = try ToolRequest(r, body: body)
            let source = try String(contentsOf: ToolCallTests.dir.appendingPathComponent(file), encoding: .utf8)
            return try ChatTemplate(source: source, tokenizer: tokenizer).render(r.messages, tools: tools.shown(rendersTools: true))
        }
        for file in ["qwen3.jinja", "qwen3-coder.jinja"] {
            let expected = try prompt(Data(chat.utf8), template: file)
            #expect(expected.contains(file == "qwen3.jinja" ? #"{"zeta": {"type": "string", "description": "last letter"}, "alpha""# : "<name>zeta</name>"))
            #expect(try prompt(ResponsesAPI.translate(Data(responses.utf8)).chatBody, template: file) == expected, "\(file)")
            #expect(try prompt(MessagesAPI.translate(Data(messages.utf8)).chatBody, template: file) == expected, "\(file)")
        }
    }

    @Test func aResponseIsTheChatReplyAsOutputItems() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": [["role": "system", "content": "Be brief."]] + ToolCallAPITests.question,
                                                                       "temperature": 0, "max_tokens": 6])
        let r = try await HTTP.post(s.base + "/v1/responses", ["instructions": "Be brief.", "input": ToolCallAPITests.question[0]["content"]!,
                                                              "temperature": 0, "max_output_tokens": 6, "metadata": ["k": "v"]])
        #expect(r.status == 200, "\(r.text)")
        let o = r.json
        #expect(o?["object"] as? String == "response" && (o?["id"] as? String)?.hasPrefix("resp_") == true)
        #expect(o?["status"] as? String == "incomplete" && (o?["incomplete_details"] as? [String: Any])?["reason"] as? String == "max_output_tokens")
        let message = (ToolCallAPITests.choice(chat)?["message"] as? [String: Any])?["content"] as? String
        #expect(Self.outputText(o) == message && message?.isEmpty == false)
        let usage = o?["usage"] as? [String: Any], chatUsage = chat.json?["usage"] as? [String: Any]
        #expect(usage?["input_tokens"] as? Int == chatUsage?["prompt_tokens"] as? Int && usage?["output_tokens"] as? Int == 6)
        #expect(usage?["total_tokens"] as? Int == chatUsage?["total_tokens"] as? Int)
        #expect((o?["metadata"] as? [String: String]) == ["k": "v"] && o?["temperature"] as? Double == 0 && o?["max_output_tokens"] as? Int == 6)
        #expect((o?["text"] as? [String: Any]).flatMap { $0["format"] as? [String: String] } == ["type": "text"])

        // The same reply streamed as the API's events, numbered in order, deltas adding up to the text.
        let st = try await HTTP.post(s.base + "/v1/responses", ["instructions": "Be brief.", "input": ToolCallAPITests.question[0]["content"]!,
                                                               "temperature": 0, "max_output_tokens": 6, "stream": true])
        let ev = Self.events(st)
        let types = ev.compactMap { $0["type"] as? String }
        #expect(Array(types.prefix(4)) == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"])
        #expect(Array(types.suffix(4)) == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"])
        #expect(ev.compactMap { $0["sequence_number"] as? Int } == Array(0..<ev.count))
        #expect(st.text.contains("event: response.created\ndata: "))
        let deltas = ev.filter { $0["type"] as? String == "response.output_text.delta" }.compactMap { $0["delta"] as? String }.joined()
        #expect(deltas == message && ev.first { $0["type"] as? String == "response.output_text.done" }?["text"] as? String == message)
        let final = ev.last?["response"] as? [String: Any]
        #expect(Self.outputText(final) == message && (final?["usage"] as? [String: Any])?["output_tokens"] as? Int == 6)
    }

    /// A named function: one function_call item; sent back with its output, the conversation goes on.
    @Test func functionCallsAndTheirOutputs() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let ask: [String: Any] = ["input": [["role": "user", "content": "Weather in Paris for two days?"]], "tools": Self.tools,
                                  "tool_choice": ["type": "function", "name": "get_weather"], "temperature": 0, "max_output_tokens": 60]
        let r = try await HTTP.post(s.base + "/v1/responses", ask)
        let items = r.json?["output"] as? [[String: Any]] ?? []
        #expect(items.count == 1 && items.first?["type"] as? String == "function_call" && r.json?["status"] as? String == "completed", "\(r.text)")
        let call = items.first ?? [:]
        let args = (call["arguments"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(call["name"] as? String == "get_weather" && ["Paris", "Rome"].contains(args?["city"] as? String ?? ""))
        #expect((call["call_id"] as? String)?.hasPrefix("call_") == true && (call["id"] as? String)?.hasPrefix("fc_") == true)
        #expect((r.json?["tool_choice"] as? [String: String]) == ["type": "function", "name": "get_weather"])

        // Streamed: the call's item, its argument deltas adding up to the arguments, then done.
        var streamed = ask
        streamed["stream"] = true
        let ev = Self.events(try await HTTP.post(s.base + "/v1/responses", streamed))
        let added = ev.first { $0["type"] as? String == "response.output_item.added" }?["item"] as? [String: Any]
        #expect(added?["type"] as? String == "function_call" && added?["name"] as? String == "get_weather")
        let pieces = ev.filter { $0["type"] as? String == "response.function_call_arguments.delta" }.compactMap { $0["delta"] as? String }.joined()
        #expect(pieces == call["arguments"] as? String)
        #expect(ev.first { $0["type"] as? String == "response.function_call_arguments.done" }?["arguments"] as? String == pieces)
        #expect(ev.last?["type"] as? String == "response.completed")

        // The call and its output sent back: rendered as the chat route renders an assistant call and a tool answer.
        let back: [[String: Any]] = [["role": "user", "content": "Weather in Paris for two days?"], call,
                                     ["type": "function_call_output", "call_id": call["call_id"] ?? "", "output": "sunny"]]
        let next = try await HTTP.post(s.base + "/v1/responses", ["input": back, "tools": Self.tools, "temperature": 0, "max_output_tokens": 4])
        let history: [[String: Any]] = ToolCallAPITests.question + [
            ["role": "assistant", "content": NSNull(), "tool_calls": [["id": "c", "type": "function", "function": ["name": "get_weather", "arguments": call["arguments"] ?? ""]]]],
            ["role": "tool", "tool_call_id": "c", "content": "sunny"]]
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": history, "tools": ToolCallAPITests.tools, "temperature": 0, "max_tokens": 4])
        #expect(next.status == 200, "\(next.text)")
        #expect((next.json?["usage"] as? [String: Any])?["input_tokens"] as? Int == (chat.json?["usage"] as? [String: Any])?["prompt_tokens"] as? Int)
        #expect(Self.outputText(next.json) == (ToolCallAPITests.choice(chat)?["message"] as? [String: Any])?["content"] as? String)
    }

    @Test func textFormatConstrainsTheMessage() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let schema: [String: Any] = ["type": "object", "properties": ["city": ["type": "string", "enum": ["Paris", "Rome"]], "sunny": ["type": "boolean"]],
                                     "required": ["city", "sunny"], "additionalProperties": false]
        let r = try await HTTP.post(s.base + "/v1/responses", ["input": "Pick one", "temperature": 0, "max_output_tokens": 200,
                                                              "text": ["format": ["type": "json_schema", "name": "pick", "schema": schema, "strict": true]]])
        let text = Self.outputText(r.json)
        let obj = text.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(["Paris", "Rome"].contains(obj?["city"] as? String ?? "") && obj?["sunny"] is Bool, "\(r.text)")
    }

    @Test func aThinkingModelsReasoningIsItsOwnItem() async throws {
        let template = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("qwen3-thinking.jinja"), encoding: .utf8)
        let s = try await LiveServer(chatTemplate: template)
        defer { Task { await s.stop() } }
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": ToolCallAPITests.question, "temperature": 0, "max_tokens": 8])
        let r = try await HTTP.post(s.base + "/v1/responses", ["input": ToolCallAPITests.question, "temperature": 0, "max_output_tokens": 8])
        let item = (r.json?["output"] as? [[String: Any]])?.first
        let text = (item?["content"] as? [[String: Any]])?.first?["text"] as? String
        #expect(item?["type"] as? String == "reasoning" && text == (ToolCallAPITests.choice(chat)?["message"] as? [String: Any])?["reasoning_content"] as? String)
        let ev = Self.events(try await HTTP.post(s.base + "/v1/responses", ["input": ToolCallAPITests.question, "temperature": 0,
                                                                           "max_output_tokens": 8, "stream": true]))
        let deltas = ev.filter { $0["type"] as? String == "response.reasoning_text.delta" }.compactMap { $0["delta"] as? String }.joined()
        #expect(deltas == text && text?.isEmpty == false)
    }

    @Test func whatThisServerCannotDoIsAClearError() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        func refused(_ body: [String: Any], _ words: String, status: Int = 400) async throws {
            let r = try await HTTP.post(s.base + "/v1/responses", body)
            let message = (r.json?["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(r.status == status && message.contains(words), "\(body) → \(r.status) \(r.text)")
        }
        try await refused(["input": "x", "conversation": "conv_1"], "Conversations API")
        try await refused(["input": "x", "previous_response_id": "resp_1"], "not found", status: 404)
        try await refused(["input": "x", "tools": [["type": "web_search"]]], "only function tools")
        try await refused(["input": [["role": "user", "content": [["type": "input_image", "image_url": "http://x"]]]]], "only text parts")
        try await refused(["input": [["type": "computer_call"]]], "computer_call")
        try await refused(["instructions": "x"], "input")
        try await refused(["input": "x", "text": ["format": ["type": "yaml"]]], "yaml")
        try await refused(["input": "x", "model": "other"], "does not exist", status: 404)   // as chat completions
    }
}
