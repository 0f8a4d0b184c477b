import Foundation
import Hummingbird

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

    /// `counting`: for count_tokens, whose requests have no max_tokens.
    static func translate(_ body: Data, counting: Bool = false) throws -> Translated {
        var r = try APIRewrite.object(body)
        if counting && r["max_tokens"] == nil { r["max_tokens"] = 1 }
        guard r["max_tokens"] is NSNumber else { throw APIRewrite.invalid("max_tokens: field required (a positive number of tokens)", "max_tokens") }
        var messages: [[String: Any]] = []
        if let s = r["system"], !(s is NSNull) {
            messages.append(["role": "system", "content": try text(s, at: "system")])
        }
        guard let list = r["messages"] as? [[String: Any]] else { throw APIRewrite.invalid("messages: field required (a list of messages)", "messages") }
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
                throw APIRewrite.invalid("output_config.format must be {\"type\": \"json_schema\", \"schema\": …}", "output_config")
            }
            chat["response_format"] = ["type": "json_schema", "json_schema": ["name": "output", "schema": schema]]
        }
        if let tools = r["tools"], !(tools is NSNull) {
            guard let list = tools as? [[String: Any]] else { throw APIRewrite.invalid("tools must be a list of tools", "tools") }
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
                guard let name = c["name"] as? String else { throw APIRewrite.invalid("tool_choice of type tool needs a name", "tool_choice") }
                chat["tool_choice"] = ["type": "function", "function": ["name": name]]
            default: throw APIRewrite.invalid("tool_choice.type must be auto, any, tool or none", "tool_choice")
            }
            if c["disable_parallel_tool_use"] as? Bool == true { chat["parallel_tool_calls"] = false }
        }
        let ordered = chat["tools"] == nil ? nil
            : APIRewrite.orderedTools(body, schemaKey: "input_schema", defaultSchema: .object([.init(key: "type", value: .string("object"))]))
        return Translated(chatBody: try APIRewrite.body(chat, tools: ordered), stream: r["stream"] as? Bool ?? false)
    }

    /// One Anthropic message as chat messages: its text (and thinking, and tool_use blocks as calls) as one message;
    /// each tool_result block a tool message, before the text that comes with them.
    static func messages(_ m: [String: Any], at i: Int) throws -> [[String: Any]] {
        guard let role = m["role"] as? String, role == "user" || role == "assistant" else {
            throw APIRewrite.invalid("messages[\(i)].role must be user or assistant", "messages")
        }
        if let s = m["content"] as? String { return [["role": role, "content": s]] }
        guard let blocks = m["content"] as? [[String: Any]] else { throw APIRewrite.invalid("messages[\(i)].content must be text or a list of blocks", "messages") }
        var out: [[String: Any]] = [], texts: [String] = [], calls: [[String: Any]] = [], thinking: String?
        for b in blocks {
            switch b["type"] as? String {
            case "text": texts.append(b["text"] as? String ?? "")
            case "thinking": thinking = b["thinking"] as? String
            case "redacted_thinking": break
            case "tool_use" where role == "assistant":
                guard let id = b["id"] as? String, let name = b["name"] as? String else { throw APIRewrite.invalid("messages[\(i)]: tool_use needs id and name", "messages") }
                let input = b["input"] ?? [String: Any]()
                guard JSONSerialization.isValidJSONObject(input), let json = try? JSONSerialization.data(withJSONObject: input, options: [.sortedKeys]) else {
                    throw APIRewrite.invalid("messages[\(i)]: tool_use input must be an object", "messages")
                }
                calls.append(["id": id, "type": "function", "function": ["name": name, "arguments": String(decoding: json, as: UTF8.self)]])
            case "tool_result" where role == "user":
                guard let id = b["tool_use_id"] as? String else { throw APIRewrite.invalid("messages[\(i)]: tool_result needs tool_use_id", "messages") }
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

    /// Text, or text blocks.
    static func text(_ v: Any, at place: String) throws -> String {
        try APIRewrite.text(v, types: ["text"], at: place, param: place)
    }

    /// Anthropic's stop reason for a finished reply.
    static func stopReason(finish: String, calls: Int, stop: StopMatch?) -> (reason: String, sequence: Any) {
        if calls > 0 { return ("tool_use", NSNull()) }
        if finish == "length" { return ("max_tokens", NSNull()) }
        if let s = stop?.text { return ("stop_sequence", s) }
        return ("end_turn", NSNull())
    }

    /// A call as a tool_use block: its input the call's arguments, or `input` when given (a stream's block opens
    /// empty and its arguments follow as deltas).
    static func toolUse(_ call: ToolCallOut, input: Any? = nil) -> [String: Any] {
        let input = input ?? (try? JSONSerialization.jsonObject(with: Data(call.function.arguments.utf8))) ?? [String: Any]()
        let id = call.id.map { $0.hasPrefix("call_") ? String($0.dropFirst(5)) : $0 } ?? randomId("")
        return ["type": "tool_use", "id": "toolu_" + id, "name": call.function.name ?? "", "input": input]
    }

    static func message(id: String, model: String, content: [[String: Any]], stop: (reason: String, sequence: Any)?, usage: Usage) -> [String: Any] {
        ["id": id, "type": "message", "role": "assistant", "model": model, "content": content,
         "stop_reason": stop?.reason ?? NSNull(), "stop_sequence": stop?.sequence ?? NSNull(),
         "usage": counts(usage)]
    }

    /// Anthropic's usage: `input_tokens` are the prompt tokens computed, `cache_read_input_tokens` those read from the
    /// prefix cache instead (as llama.cpp's server counts them; this cache needs no cache_control, so nothing is
    /// written to it at a price: `cache_creation_input_tokens` 0).
    static func counts(_ usage: Usage) -> [String: Any] {
        ["input_tokens": usage.promptTokens - usage.cachedTokens, "output_tokens": usage.completionTokens,
         "cache_creation_input_tokens": 0, "cache_read_input_tokens": usage.cachedTokens]
    }

    /// A whole reply's content blocks.
    static func content(reasoning: String?, text: String?, calls: [ToolCallOut]) -> [[String: Any]] {
        var blocks: [[String: Any]] = []
        if let r = reasoning { blocks.append(["type": "thinking", "thinking": r, "signature": ""]) }
        if let t = text, !t.isEmpty { blocks.append(["type": "text", "text": t]) }
        blocks += calls.map { toolUse($0) }
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
                out += begin(.tool(k), MessagesAPI.toolUse(call, input: [String: Any]()))
            }
            if !call.function.arguments.isEmpty { out.append(delta(["type": "input_json_delta", "partial_json": call.function.arguments])) }
        }
        return out
    }

    func finish(_ why: String, _ stop: StopMatch?, _ usage: Usage) -> [(String, [String: Any])] {
        let s = MessagesAPI.stopReason(finish: why, calls: toolCalls, stop: stop)
        return close() + [
            ("message_delta", ["type": "message_delta", "delta": ["stop_reason": s.reason, "stop_sequence": s.sequence],
                               // Cumulative, as Anthropic's API sends them: the prompt's counts are known by now.
                               "usage": MessagesAPI.counts(usage)]),
            ("message_stop", ["type": "message_stop"]),
        ]
    }
}

extension Routes {
    /// POST /v1/messages: Anthropic's Messages API as a chat completion (MessagesAPI), whole or as its event stream;
    /// errors in Anthropic's shape ({"type": "error", "error": {"type", "message"}}).
    func messages(_ req: Request) async throws -> Response { try await anthropicErrors { try await anthropicMessages(req) } }

    /// POST /v1/messages/count_tokens: the prompt's tokens as /v1/messages would render it ({"input_tokens": N}), as
    /// Anthropic's API and llama.cpp's server answer it (clients such as Claude Code ask before sending).
    func countMessageTokens(_ req: Request) async throws -> Response {
        try await anthropicErrors {
            let t = try MessagesAPI.translate(try await body(req), counting: true)
            let run = try prepareChat(try decode(ChatRequest.self, t.chatBody), body: t.chatBody)
            return jsonResponse(object: ["input_tokens": run.samples[0].ids.count])
        }
    }

    private func anthropicErrors(_ route: () async throws -> Response) async throws -> Response {
        do { return try await route() } catch let e as APIError {
            let type = switch e.status.code {
            case 404: "not_found_error"
            case 413: "request_too_large"
            case 429: "rate_limit_error"
            case 500...: "api_error"
            default: "invalid_request_error"
            }
            var r = jsonResponse(object: ["type": "error", "error": ["type": type, "message": e.message]], status: e.status)
            if let after = e.retryAfter { r.headers[.retryAfter] = String(after) }
            return r
        }
    }

    func anthropicMessages(_ req: Request) async throws -> Response {
        let t = try MessagesAPI.translate(try await body(req))
        let r = try decode(ChatRequest.self, t.chatBody)
        let run = try prepareChat(r, body: t.chatBody)
        let id = randomId("msg_"), model = service.modelName
        if t.stream {
            let stream = MessagesStream(id: id, model: model, promptTokens: run.samples[0].ids.count)
            return try namedEvents(run, start: stream.start, add: stream.add, finish: stream.finish)
        }
        let (outs, usage) = await GenerationService.collect(try service.start(run.samples), run.samples, choicesPerPrompt: 1)
        let reply = run.read(outs[0].text)
        let content = MessagesAPI.content(reasoning: reply.reasoning, text: reply.content, calls: reply.calls)
        let stop = MessagesAPI.stopReason(finish: outs[0].finish, calls: reply.calls.count, stop: outs[0].stopReason)
        return jsonResponse(object: MessagesAPI.message(id: id, model: model, content: content, stop: stop, usage: usage))
    }
}
