import Foundation

/// Anthropic's Messages API (`POST /v1/messages`) over the chat pipeline, as vLLM and llama.cpp's server serve it:
/// `system`, `messages` whose content is text or blocks (text, `tool_use` in assistant turns, `tool_result` in user
/// turns, `thinking`), `max_tokens` (required), `stop_sequences`, `temperature`, `top_p`, `top_k`, custom `tools`
/// with `tool_choice` (auto, any, tool, none), `thinking` (a thinking model's switch), `output_config.format` (a JSON
/// schema the text must follow); the reply as content blocks
/// (thinking, text, tool_use) with Anthropic's stop reasons, whole or as its event stream.
enum MessagesAPI {
    struct Translated {
        var chatBody: Data
        var stream: Bool
    }

    static func invalid(_ message: String, _ param: String) -> APIError { APIError.invalid(message, param: param) }

    static func translate(_ body: Data) throws -> Translated {
        guard let r = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw APIError.invalid("request body must be a JSON object")
        }
        guard r["max_tokens"] is NSNumber else { throw invalid("max_tokens: field required (a positive number of tokens)", "max_tokens") }
        var messages: [[String: Any]] = []
        if let s = r["system"], !(s is NSNull) {
            messages.append(["role": "system", "content": try text(s, at: "system")])
        }
        guard let list = r["messages"] as? [[String: Any]] else { throw invalid("messages: field required (a list of messages)", "messages") }
        for (i, m) in list.enumerated() { messages += try Self.messages(m, at: i) }
        var chat: [String: Any] = ["messages": messages, "max_tokens": r["max_tokens"]!]
        for key in ["model", "temperature", "top_p", "top_k", "min_p", "seed", "repetition_penalty", "chat_template_kwargs", "chat_template"] {
            if let v = r[key] { chat[key] = v }
        }
        if let s = r["stop_sequences"], !(s is NSNull) { chat["stop"] = s }
        if let t = r["thinking"] as? [String: Any] {
            var kwargs = chat["chat_template_kwargs"] as? [String: Any] ?? [:]
            kwargs["enable_thinking"] = t["type"] as? String == "enabled"
            chat["chat_template_kwargs"] = kwargs
        }
        // Structured outputs: output_config.format (output_format before it) holds a JSON schema.
        if let f = (r["output_config"] as? [String: Any])?["format"] ?? r["output_format"], !(f is NSNull) {
            guard let format = f as? [String: Any], format["type"] as? String == "json_schema", let schema = format["schema"] else {
                throw invalid("output_config.format must be {\"type\": \"json_schema\", \"schema\": …}", "output_config")
            }
            chat["response_format"] = ["type": "json_schema", "json_schema": ["name": "output", "schema": schema]]
        }
        if let tools = r["tools"], !(tools is NSNull) {
            guard let list = tools as? [[String: Any]] else { throw invalid("tools must be a list of tools", "tools") }
            chat["tools"] = try list.enumerated().map { i, t in
                guard (t["type"] as? String ?? "custom") == "custom", let name = t["name"] as? String else {
                    throw APIError.invalid("tools[\(i)]: only custom tools ({\"name\": …, \"input_schema\": …}) are supported, not \(t["type"] ?? "a tool without a name")",
                                           param: "tools", code: "unsupported_tool")
                }
                var f: [String: Any] = ["name": name, "parameters": t["input_schema"] ?? ["type": "object"]]
                if let d = t["description"] { f["description"] = d }
                return ["type": "function", "function": f]
            }
        }
        if let c = r["tool_choice"] as? [String: Any] {
            switch c["type"] as? String {
            case "auto": chat["tool_choice"] = "auto"
            case "any": chat["tool_choice"] = "required"
            case "none": chat["tool_choice"] = "none"
            case "tool":
                guard let name = c["name"] as? String else { throw invalid("tool_choice of type tool needs a name", "tool_choice") }
                chat["tool_choice"] = ["type": "function", "function": ["name": name]]
            default: throw invalid("tool_choice.type must be auto, any, tool or none", "tool_choice")
            }
            if c["disable_parallel_tool_use"] as? Bool == true { chat["parallel_tool_calls"] = false }
        }
        guard JSONSerialization.isValidJSONObject(chat) else { throw APIError.invalid("request body holds values JSON cannot carry") }
        return Translated(chatBody: try JSONSerialization.data(withJSONObject: chat, options: [.sortedKeys]),
                          stream: r["stream"] as? Bool ?? false)
    }

    /// One Anthropic message as chat messages: its text (and thinking, and tool_use blocks as calls) as one message;
    /// each tool_result block a tool message, before the text that comes with them.
    static func messages(_ m: [String: Any], at i: Int) throws -> [[String: Any]] {
        guard let role = m["role"] as? String, role == "user" || role == "assistant" else {
            throw invalid("messages[\(i)].role must be user or assistant", "messages")
        }
        if let s = m["content"] as? String { return [["role": role, "content": s]] }
        guard let blocks = m["content"] as? [[String: Any]] else { throw invalid("messages[\(i)].content must be text or a list of blocks", "messages") }
        var out: [[String: Any]] = [], texts: [String] = [], calls: [[String: Any]] = [], thinking: String?
        for b in blocks {
            switch b["type"] as? String {
            case "text": texts.append(b["text"] as? String ?? "")
            case "thinking": thinking = b["thinking"] as? String
            case "redacted_thinking": break
            case "tool_use" where role == "assistant":
                guard let id = b["id"] as? String, let name = b["name"] as? String else { throw invalid("messages[\(i)]: tool_use needs id and name", "messages") }
                let input = b["input"] ?? [String: Any]()
                guard JSONSerialization.isValidJSONObject(input), let json = try? JSONSerialization.data(withJSONObject: input, options: [.sortedKeys]) else {
                    throw invalid("messages[\(i)]: tool_use input must be an object", "messages")
                }
                calls.append(["id": id, "type": "function", "function": ["name": name, "arguments": String(decoding: json, as: UTF8.self)]])
            case "tool_result" where role == "user":
                guard let id = b["tool_use_id"] as? String else { throw invalid("messages[\(i)]: tool_result needs tool_use_id", "messages") }
                out.append(["role": "tool", "tool_call_id": id, "content": try b["content"].map { try text($0, at: "messages[\(i)]") } ?? ""])
            case let type:
                throw APIError.invalid("messages[\(i)]: \(type ?? "untyped") blocks are not supported in \(role) turns (text, thinking, tool_use, tool_result)",
                                       param: "messages", code: "unsupported_content")
            }
        }
        if !texts.isEmpty || !calls.isEmpty || thinking != nil || out.isEmpty {
            var msg: [String: Any] = ["role": role, "content": texts.joined(separator: "\n")]
            if !calls.isEmpty { msg["tool_calls"] = calls }
            if let t = thinking { msg["reasoning_content"] = t }
            out.append(msg)
        }
        return out
    }

    /// Text, or text blocks joined with newlines.
    static func text(_ v: Any, at place: String) throws -> String {
        if let s = v as? String { return s }
        guard let blocks = v as? [[String: Any]] else { throw invalid("\(place) must be text or a list of text blocks", place) }
        return try blocks.map { b in
            guard b["type"] as? String == "text", let t = b["text"] as? String else {
                throw APIError.invalid("\(place): only text blocks are supported, not \(b["type"] ?? "an untyped block")", param: place,
                                       code: "unsupported_content")
            }
            return t
        }.joined(separator: "\n")
    }

    /// Anthropic's stop reason for a finished reply.
    static func stopReason(finish: String, calls: Int, stop: StopMatch?) -> (reason: String, sequence: Any) {
        if calls > 0 { return ("tool_use", NSNull()) }
        if finish == "length" { return ("max_tokens", NSNull()) }
        if let s = stop?.text { return ("stop_sequence", s) }
        return ("end_turn", NSNull())
    }

    static func toolUse(_ call: ToolCallOut) -> [String: Any] {
        let input = (try? JSONSerialization.jsonObject(with: Data(call.function.arguments.utf8))) ?? [String: Any]()
        return ["type": "tool_use", "id": "toolu_" + (call.id ?? randomId("")).replacingOccurrences(of: "call_", with: ""),
                "name": call.function.name ?? "", "input": input]
    }

    static func message(id: String, model: String, content: [[String: Any]], stop: (reason: String, sequence: Any)?, usage: Usage) -> [String: Any] {
        ["id": id, "type": "message", "role": "assistant", "model": model, "content": content,
         "stop_reason": stop?.reason ?? NSNull(), "stop_sequence": stop?.sequence ?? NSNull(),
         "usage": ["input_tokens": usage.promptTokens, "output_tokens": usage.completionTokens,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0]]
    }

    /// A whole reply's content blocks.
    static func content(reasoning: String?, text: String?, calls: [ToolCallOut]) -> [[String: Any]] {
        var blocks: [[String: Any]] = []
        if let r = reasoning { blocks.append(["type": "thinking", "thinking": r, "signature": ""]) }
        if let t = text, !t.isEmpty { blocks.append(["type": "text", "text": t]) }
        blocks += calls.map(toolUse)
        return blocks
    }
}

/// The Messages API's stream for one reply: message_start; per content block its start, deltas and stop; then
/// message_delta (stop reason, output tokens) and message_stop.
final class MessagesStream: @unchecked Sendable {
    let id: String, model: String, promptTokens: Int
    private enum Open { case thinking, text, tool(Int) }
    private var open: Open?
    private var index = -1
    private var toolCalls = 0

    init(id: String, model: String, promptTokens: Int) {
        self.id = id
        self.model = model
        self.promptTokens = promptTokens
    }

    func start() -> [(String, [String: Any])] {
        let m = MessagesAPI.message(id: id, model: model, content: [], stop: nil, usage: Usage(prompt: promptTokens, completion: 0))
        return [("message_start", ["type": "message_start", "message": m])]
    }

    private func begin(_ kind: Open, _ block: [String: Any]) -> [(String, [String: Any])] {
        var out = close()
        index += 1
        open = kind
        out.append(("content_block_start", ["type": "content_block_start", "index": index, "content_block": block]))
        return out
    }

    private func close() -> [(String, [String: Any])] {
        guard let o = open else { return [] }
        var out: [(String, [String: Any])] = []
        if case .thinking = o { out.append(delta(["type": "signature_delta", "signature": ""])) }
        out.append(("content_block_stop", ["type": "content_block_stop", "index": index]))
        open = nil
        return out
    }

    private func delta(_ d: [String: Any]) -> (String, [String: Any]) {
        ("content_block_delta", ["type": "content_block_delta", "index": index, "delta": d])
    }

    func add(_ d: ChatDelta) -> [(String, [String: Any])] {
        var out: [(String, [String: Any])] = []
        if let r = d.reasoningContent, !r.isEmpty {
            if case .thinking = open {} else { out += begin(.thinking, ["type": "thinking", "thinking": "", "signature": ""]) }
            out.append(delta(["type": "thinking_delta", "thinking": r]))
        }
        if let t = d.content, !t.isEmpty {
            if case .text = open {} else { out += begin(.text, ["type": "text", "text": ""]) }
            out.append(delta(["type": "text_delta", "text": t]))
        }
        for call in d.toolCalls ?? [] {
            let k = call.index ?? 0
            if case .tool(let current) = open, current == k {} else {
                toolCalls += 1
                var block = MessagesAPI.toolUse(ToolCallOut(id: call.id, function: .init(name: call.function.name, arguments: "{}")))
                block["input"] = [String: Any]()
                out += begin(.tool(k), block)
            }
            if !call.function.arguments.isEmpty { out.append(delta(["type": "input_json_delta", "partial_json": call.function.arguments])) }
        }
        return out
    }

    func finish(_ why: String, _ stop: StopMatch?, _ usage: Usage) -> [(String, [String: Any])] {
        let s = MessagesAPI.stopReason(finish: why, calls: toolCalls, stop: stop)
        return close() + [
            ("message_delta", ["type": "message_delta", "delta": ["stop_reason": s.reason, "stop_sequence": s.sequence],
                               "usage": ["output_tokens": usage.completionTokens]]),
            ("message_stop", ["type": "message_stop"]),
        ]
    }
}
