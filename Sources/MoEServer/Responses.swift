import Foundation
import Hummingbird

/// OpenAI's Responses API (`POST /v1/responses`) over the chat pipeline, as vLLM serves it: `input` (text, or a list
/// of messages, function calls and their outputs), `instructions`, function `tools`, `tool_choice`, `text.format`
/// (JSON object or schema), `max_output_tokens` and the sampling fields; the reply as output items (reasoning, a
/// message with its text, function calls), whole or as the API's stream of events. Nothing is stored: a request
/// that names a previous response or a conversation is a 400.
enum ResponsesAPI {
    /// What a Responses request asks, as a chat-completions body, and the fields its response repeats.
    struct Translated {
        var chatBody: Data
        var stream: Bool
        /// The request's own values of the fields a response object repeats (tools, tool_choice, …).
        var echo: [String: Any]
    }

    /// Translates a Responses body into the chat-completions body that asks the same.
    static func translate(_ body: Data) throws -> Translated {
        let r = try APIRewrite.object(body)
        for key in ["previous_response_id", "conversation"] where r[key] != nil && !(r[key] is NSNull) {
            throw APIError.invalid("`\(key)` needs stored responses, which this server does not keep: send the whole conversation in `input`",
                                   param: key, code: "unsupported_parameter")
        }
        if r["background"] as? Bool == true {
            throw APIError.invalid("background responses are not supported", param: "background", code: "unsupported_parameter")
        }
        var messages: [[String: Any]] = []
        if let i = r["instructions"], !(i is NSNull) {
            guard let text = i as? String else { throw APIRewrite.invalid("instructions must be a string", "instructions") }
            messages.append(["role": "system", "content": text])
        }
        guard let input = r["input"], !(input is NSNull) else { throw APIError.invalid("missing required field 'input'", param: "input") }
        messages += try Self.messages(input)
        var chat: [String: Any] = ["messages": messages]
        // Sampling fields shared with chat completions (vLLM's Responses request takes the same extras).
        for key in ["model", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "presence_penalty", "frequency_penalty",
                    "repetition_penalty", "logit_bias", "ignore_eos", "parallel_tool_calls", "chat_template_kwargs",
                    "reasoning_format", "chat_template", "user"] {
            if let v = r[key] { chat[key] = v }
        }
        if let v = r["max_output_tokens"] { chat["max_tokens"] = v }
        if let v = r["top_logprobs"], !(v is NSNull) {
            throw APIError.invalid("top_logprobs is not supported on /v1/responses; use /v1/chat/completions", param: "top_logprobs",
                                   code: "unsupported_parameter")
        }
        if let tools = r["tools"], !(tools is NSNull) {
            guard let list = tools as? [[String: Any]] else { throw APIRewrite.invalid("tools must be a list of tools", "tools") }
            chat["tools"] = try list.enumerated().map { i, t in
                guard t["type"] as? String == "function", let name = t["name"] as? String else {
                    throw APIError.invalid("tools[\(i)]: only function tools ({\"type\": \"function\", \"name\": …, \"parameters\": …}) are supported, not \(t["type"] ?? "a tool without a type")",
                                           param: "tools", code: "unsupported_tool")
                }
                var f: [String: Any] = ["name": name]
                for k in ["description", "parameters", "strict"] { if let v = t[k] { f[k] = v } }
                return ["type": "function", "function": f]
            }
        }
        if let c = r["tool_choice"], !(c is NSNull) {
            if let s = c as? String {
                chat["tool_choice"] = s
            } else if let o = c as? [String: Any], o["type"] as? String == "function", let name = o["name"] as? String {
                chat["tool_choice"] = ["type": "function", "function": ["name": name]]
            } else {
                throw APIRewrite.invalid("tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"name\": …}", "tool_choice")
            }
        }
        if let text = r["text"] as? [String: Any], let format = text["format"] as? [String: Any] {
            switch format["type"] as? String {
            case "text", nil: break
            case "json_object": chat["response_format"] = ["type": "json_object"]
            case "json_schema":
                var schema: [String: Any] = [:]
                for k in ["name", "schema", "strict", "description"] { if let v = format[k] { schema[k] = v } }
                chat["response_format"] = ["type": "json_schema", "json_schema": schema]
            case let other?:
                throw APIRewrite.invalid("text.format.type must be text, json_object or json_schema (got \(other))", "text")
            }
        }
        let stream = r["stream"] as? Bool ?? false
        var echo: [String: Any] = [:]
        for key in ["instructions", "max_output_tokens", "metadata", "temperature", "top_p", "text", "user"] { echo[key] = r[key] ?? NSNull() }
        echo["tools"] = r["tools"] ?? []
        echo["tool_choice"] = r["tool_choice"] ?? "auto"
        echo["parallel_tool_calls"] = r["parallel_tool_calls"] ?? true
        if echo["text"] is NSNull { echo["text"] = ["format": ["type": "text"]] }
        let ordered = chat["tools"] == nil ? nil : APIRewrite.orderedTools(body, schemaKey: "parameters")
        return Translated(chatBody: try APIRewrite.body(chat, tools: ordered), stream: stream, echo: echo)
    }

    /// `input` as chat messages: text is one user message; items are messages (content as text or parts),
    /// `function_call`s (joined to the assistant turn before them) and `function_call_output`s (tool messages).
    /// A `reasoning` item goes with the assistant turn that follows it.
    static func messages(_ input: Any) throws -> [[String: Any]] {
        if let text = input as? String { return [["role": "user", "content": text]] }
        guard let items = input as? [[String: Any]] else { throw APIRewrite.invalid("input must be text or a list of items", "input") }
        var out: [[String: Any]] = []
        var reasoning: String?
        func assistant() -> Int {
            if let last = out.last, last["role"] as? String == "assistant" { return out.count - 1 }
            out.append(["role": "assistant", "content": ""])
            return out.count - 1
        }
        for (i, item) in items.enumerated() {
            let type = item["type"] as? String ?? "message"
            switch type {
            case "message":
                guard let role = item["role"] as? String else { throw APIRewrite.invalid("input[\(i)] needs a role", "input") }
                var m: [String: Any] = ["role": role, "content": try text(item["content"], at: i)]
                if role == "assistant", let r = reasoning { m["reasoning_content"] = r; reasoning = nil }
                out.append(m)
            case "function_call":
                guard let name = item["name"] as? String, let callId = item["call_id"] as? String else {
                    throw APIRewrite.invalid("input[\(i)]: a function_call needs name and call_id", "input")
                }
                let k = assistant()
                if let r = reasoning { out[k]["reasoning_content"] = r; reasoning = nil }
                var calls = out[k]["tool_calls"] as? [[String: Any]] ?? []
                calls.append(["id": callId, "type": "function",
                              "function": ["name": name, "arguments": item["arguments"] as? String ?? "{}"]])
                out[k]["tool_calls"] = calls
            case "function_call_output":
                guard let callId = item["call_id"] as? String else { throw APIRewrite.invalid("input[\(i)]: a function_call_output needs call_id", "input") }
                let output = item["output"] as? String ?? (try? text(item["output"], at: i)) ?? ""
                out.append(["role": "tool", "tool_call_id": callId, "content": output])
            case "reasoning":
                let parts = (item["content"] as? [[String: Any]] ?? []) + (item["summary"] as? [[String: Any]] ?? [])
                reasoning = parts.compactMap { $0["text"] as? String }.first
            default:
                throw APIError.invalid("input[\(i)]: items of type \(type) are not supported (message, function_call, function_call_output, reasoning)",
                                       param: "input", code: "unsupported_input")
            }
        }
        return out
    }

    /// A message's content: text, or its text parts.
    static func text(_ content: Any?, at i: Int) throws -> String {
        try APIRewrite.text(content, types: ["input_text", "output_text", "text"], at: "input[\(i)].content", param: "input")
    }

    /// A response object (`status` completed, or incomplete when cut by max_output_tokens).
    static func response(id: String, created: Int, model: String, echo: [String: Any], output: [[String: Any]],
                         status: String, usage: Usage?) -> [String: Any] {
        var r = echo
        r["id"] = id
        r["object"] = "response"
        r["created_at"] = created
        r["model"] = model
        r["status"] = status
        r["output"] = output
        r["error"] = NSNull()
        r["incomplete_details"] = status == "incomplete" ? ["reason": "max_output_tokens"] : NSNull()
        r["previous_response_id"] = NSNull()
        r["reasoning"] = ["effort": NSNull(), "summary": NSNull()]
        r["store"] = false
        r["truncation"] = "disabled"
        if let u = usage {
            r["usage"] = ["input_tokens": u.promptTokens, "input_tokens_details": ["cached_tokens": 0],
                          "output_tokens": u.completionTokens, "output_tokens_details": ["reasoning_tokens": 0],
                          "total_tokens": u.totalTokens]
        } else {
            r["usage"] = NSNull()
        }
        return r
    }

    static func reasoningItem(id: String, text: String, done: Bool) -> [String: Any] {
        ["type": "reasoning", "id": id, "summary": [], "content": done ? [["type": "reasoning_text", "text": text]] : [],
         "status": done ? "completed" : "in_progress"]
    }

    static func messageItem(id: String, text: String, done: Bool) -> [String: Any] {
        ["type": "message", "id": id, "role": "assistant", "status": done ? "completed" : "in_progress",
         "content": done ? [outputText(text)] : []]
    }

    static func outputText(_ text: String) -> [String: Any] { ["type": "output_text", "text": text, "annotations": [], "logprobs": []] }

    static func callItem(id: String, callId: String, name: String, arguments: String, done: Bool) -> [String: Any] {
        ["type": "function_call", "id": id, "call_id": callId, "name": name, "arguments": arguments,
         "status": done ? "completed" : "in_progress"]
    }

    /// A whole reply's output items: its reasoning, its text, its calls.
    static func output(reasoning: String?, content: String?, calls: [ToolCallOut]) -> [[String: Any]] {
        var items: [[String: Any]] = []
        if let r = reasoning { items.append(reasoningItem(id: randomId("rs_"), text: r, done: true)) }
        if let c = content, !c.isEmpty { items.append(messageItem(id: randomId("msg_"), text: c, done: true)) }
        for c in calls {
            items.append(callItem(id: randomId("fc_"), callId: c.id ?? randomId("call_"), name: c.function.name ?? "",
                                  arguments: c.function.arguments, done: true))
        }
        // A reply with no text and no call is still one (empty) message, as the stream gives it.
        if items.isEmpty { items.append(messageItem(id: randomId("msg_"), text: "", done: true)) }
        return items
    }
}

/// The Responses API's stream for one reply: chat deltas in, the API's events out (each with its type and sequence
/// number): the response created and in progress; per output item its `added`, its content's deltas and `done`s;
/// then the response completed (or incomplete) with every item and the usage.
final class ResponsesStream: @unchecked Sendable {
    let id: String, created: Int, model: String, echo: [String: Any]
    private var sequence = 0
    private var items: [[String: Any]] = []
    /// The two items that carry text: its part's type, its delta and done events, and the item itself.
    private enum TextItem {
        case reasoning, message
        var idPrefix: String { self == .reasoning ? "rs_" : "msg_" }
        var eventPrefix: String { self == .reasoning ? "response.reasoning_text" : "response.output_text" }
        /// Fields the text events carry besides the text (a message's logprobs, none here).
        var extra: [String: Any] { self == .reasoning ? [:] : ["logprobs": []] }
        func part(_ text: String) -> [String: Any] {
            self == .reasoning ? ["type": "reasoning_text", "text": text] : ResponsesAPI.outputText(text)
        }
        func item(id: String, text: String, done: Bool) -> [String: Any] {
            self == .reasoning ? ResponsesAPI.reasoningItem(id: id, text: text, done: done) : ResponsesAPI.messageItem(id: id, text: text, done: done)
        }
    }
    private enum Open { case text(TextItem, id: String, text: String), calls }
    private var open: Open?
    /// Calls of the chat stream (by its index) → (output index, item id, call id, name, arguments so far).
    private var calls: [Int: (output: Int, id: String, callId: String, name: String, arguments: String)] = [:]

    init(id: String, created: Int, model: String, echo: [String: Any]) {
        self.id = id
        self.created = created
        self.model = model
        self.echo = echo
    }

    private func event(_ type: String, _ fields: [String: Any]) -> (String, [String: Any]) {
        var e = fields
        e["type"] = type
        e["sequence_number"] = sequence
        sequence += 1
        return (type, e)
    }

    func start() -> [(String, [String: Any])] {
        let r = ResponsesAPI.response(id: id, created: created, model: model, echo: echo, output: [], status: "in_progress", usage: nil)
        return [event("response.created", ["response": r]), event("response.in_progress", ["response": r])]
    }

    private func close() -> [(String, [String: Any])] {
        var out: [(String, [String: Any])] = []
        let index = items.count
        switch open {
        case .text(let kind, let itemId, let text):
            let at: [String: Any] = ["item_id": itemId, "output_index": index, "content_index": 0]
            out.append(event(kind.eventPrefix + ".done", at.merging(kind.extra) { $1 }.merging(["text": text]) { $1 }))
            out.append(event("response.content_part.done", at.merging(["part": kind.part(text)]) { $1 }))
            let item = kind.item(id: itemId, text: text, done: true)
            out.append(event("response.output_item.done", ["output_index": index, "item": item]))
            items.append(item)
        case .calls:
            for c in calls.values.sorted(by: { $0.output < $1.output }) {
                out.append(event("response.function_call_arguments.done", ["item_id": c.id, "output_index": c.output, "name": c.name,
                                                                           "arguments": c.arguments]))
                let item = ResponsesAPI.callItem(id: c.id, callId: c.callId, name: c.name, arguments: c.arguments, done: true)
                out.append(event("response.output_item.done", ["output_index": c.output, "item": item]))
                items.append(item)
            }
            calls = [:]
        case nil:
            break
        }
        open = nil
        return out
    }

    /// A piece of reasoning or answer text: a delta of the open item of that kind, or a new item (the open one closed).
    private func text(_ kind: TextItem, _ piece: String) -> [(String, [String: Any])] {
        var out: [(String, [String: Any])] = []
        let itemId: String, sofar: String
        if case .text(let k, let i, let t) = open, k == kind {
            (itemId, sofar) = (i, t)
        } else {
            out += close()
            (itemId, sofar) = (randomId(kind.idPrefix), "")
            out.append(event("response.output_item.added", ["output_index": items.count, "item": kind.item(id: itemId, text: "", done: false)]))
            out.append(event("response.content_part.added", ["item_id": itemId, "output_index": items.count, "content_index": 0,
                                                             "part": kind.part("")]))
        }
        open = .text(kind, id: itemId, text: sofar + piece)
        if !piece.isEmpty {
            let at: [String: Any] = ["item_id": itemId, "output_index": items.count, "content_index": 0, "delta": piece]
            out.append(event(kind.eventPrefix + ".delta", at.merging(kind.extra) { $1 }))
        }
        return out
    }

    func add(_ d: ChatDelta) -> [(String, [String: Any])] {
        var out: [(String, [String: Any])] = []
        if let r = d.reasoningContent, !r.isEmpty { out += text(.reasoning, r) }
        if let c = d.content, !c.isEmpty { out += text(.message, c) }
        for call in d.toolCalls ?? [] {
            let k = call.index ?? 0
            if case .calls = open {} else { out += close(); open = .calls }
            if var c = calls[k] {
                c.arguments += call.function.arguments
                calls[k] = c
                out.append(event("response.function_call_arguments.delta", ["item_id": c.id, "output_index": c.output,
                                                                            "delta": call.function.arguments]))
            } else {
                let c = (output: items.count + calls.count, id: randomId("fc_"), callId: call.id ?? randomId("call_"),
                         name: call.function.name ?? "", arguments: call.function.arguments)
                calls[k] = c
                out.append(event("response.output_item.added", ["output_index": c.output,
                                                                "item": ResponsesAPI.callItem(id: c.id, callId: c.callId, name: c.name, arguments: "", done: false)]))
                if !c.arguments.isEmpty {
                    out.append(event("response.function_call_arguments.delta", ["item_id": c.id, "output_index": c.output, "delta": c.arguments]))
                }
            }
        }
        return out
    }

    /// The last events: open items closed, then the whole response.
    func finish(why: String, usage: Usage) -> [(String, [String: Any])] {
        var out = close()
        // A reply with no text at all is still one (empty) message, as the whole response gives it.
        if items.isEmpty { out += text(.message, "") + close() }
        let status = why == "length" ? "incomplete" : "completed"
        let r = ResponsesAPI.response(id: id, created: created, model: model, echo: echo, output: items, status: status, usage: usage)
        out.append(event(status == "completed" ? "response.completed" : "response.incomplete", ["response": r]))
        return out
    }
}

extension Routes {
    /// POST /v1/responses: OpenAI's Responses API as a chat completion (ResponsesAPI), whole or as its event stream.
    func responses(_ req: Request) async throws -> Response {
        let t = try ResponsesAPI.translate(try await body(req))
        let r = try decode(ChatRequest.self, t.chatBody)
        let run = try prepareChat(r, body: t.chatBody)
        let id = randomId("resp_"), created = Int(Date().timeIntervalSince1970), model = service.modelName
        if t.stream {
            let stream = ResponsesStream(id: id, created: created, model: model, echo: t.echo)
            return try namedEvents(run, start: stream.start, add: stream.add) { why, _, usage in stream.finish(why: why, usage: usage) }
        }
        let (outs, usage) = await GenerationService.collect(try service.start(run.samples), run.samples, choicesPerPrompt: 1)
        let reply = run.read(outs[0].text)
        let output = ResponsesAPI.output(reasoning: reply.reasoning, content: reply.content, calls: reply.calls)
        return jsonResponse(object: ResponsesAPI.response(id: id, created: created, model: model, echo: t.echo, output: output,
                                                          status: outs[0].finish == "length" ? "incomplete" : "completed", usage: usage))
    }
}
