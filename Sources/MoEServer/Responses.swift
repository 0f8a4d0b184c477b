import Foundation
import Hummingbird

/// OpenAI's Responses API (`POST /v1/responses`) over the chat pipeline, as vLLM serves it: `input` (text, or a list
/// of messages, function calls and their outputs), `instructions`, function `tools`, `tool_choice`, `text.format`
/// (JSON object or schema), `max_output_tokens` and the sampling fields; the reply as output items (reasoning, a
/// message with its text, function calls), whole or as the API's stream of events. Responses are stored unless
/// `store` is false (ResponseStore), and `previous_response_id` goes on from a stored one: its input items and its
/// output come before the request's input, its instructions do not (OpenAI's rule: a request's `instructions` are
/// its own).
enum ResponsesAPI {
    /// What a Responses request asks, as a chat-completions body, and the fields its response repeats.
    struct Translated {
        var chatBody: Data
        var stream: Bool
        /// The request's own values of the fields a response object repeats (tools, tool_choice, …).
        var echo: [String: Any]
        /// Whether the response is to be stored, and the conversation items it continues (a previous response's,
        /// then this request's input), each with an id: what the store keeps beside it.
        var store: Bool
        /// Answered at once as queued, run on its own, read back with GET /v1/responses/{id} (BackgroundResponses).
        var background: Bool
        var items: [[String: Any]]
    }

    /// Translates a Responses body into the chat-completions body that asks the same; `previous` finds a stored
    /// response by id (nil: no such response).
    static func translate(_ body: Data, previous: (String) throws -> ResponseStore.Stored? = { _ in nil }) throws -> Translated {
        let r = try APIRewrite.object(body)
        if let c = r["conversation"], !(c is NSNull) {
            throw APIError.invalid("`conversation` (the Conversations API) is not supported: use `previous_response_id`, or send the whole conversation in `input`",
                                   param: "conversation", code: "unsupported_parameter")
        }
        func flag(_ key: String, default d: Bool) throws -> Bool {
            guard let v = r[key], !(v is NSNull) else { return d }
            guard let b = v as? Bool else { throw APIRewrite.invalid("\(key) must be true or false", key) }
            return b
        }
        let store = try flag("store", default: true), background = try flag("background", default: false)
        let stream = try flag("stream", default: false)
        if background && !store {
            throw APIError.invalid("a background response is read back from the store: it needs `store` true", param: "background")
        }
        if background && stream {
            throw APIError.invalid("background responses are not streamed here: poll GET /v1/responses/{id} instead",
                                   param: "stream", code: "unsupported_parameter")
        }
        var history: [[String: Any]] = []
        if let p = r["previous_response_id"], !(p is NSNull) {
            guard let id = p as? String else { throw APIRewrite.invalid("previous_response_id must be a string", "previous_response_id") }
            guard let stored = try previous(id) else {
                throw APIError(.notFound, "Previous response with id '\(id)' not found (a response is kept only when its request did not set `store` false).",
                               param: "previous_response_id", code: "previous_response_not_found")
            }
            history = stored.conversation
        }
        var messages: [[String: Any]] = []
        if let i = r["instructions"], !(i is NSNull) {
            guard let text = i as? String else { throw APIRewrite.invalid("instructions must be a string", "instructions") }
            messages.append(["role": "system", "content": text])
        }
        guard let input = r["input"], !(input is NSNull) else { throw APIError.invalid("missing required field 'input'", param: "input") }
        let items = history + (try Self.items(input))
        messages += try Self.messages(items, inputFrom: history.count)
        var chat: [String: Any] = ["messages": messages]
        // Sampling fields shared with chat completions (vLLM's Responses request takes the same extras).
        for key in ["model", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "presence_penalty", "frequency_penalty",
                    "repetition_penalty", "logit_bias", "ignore_eos", "parallel_tool_calls", "chat_template_kwargs",
                    "reasoning_format", "chat_template", "user"] {
            if let v = r[key] { chat[key] = v }
        }
        if let v = r["max_output_tokens"] { chat["max_tokens"] = v }
        // reasoning.effort: gpt-oss's reasoning effort (its template's "Reasoning:" line).
        if let e = (r["reasoning"] as? [String: Any])?["effort"], !(e is NSNull) { chat["reasoning_effort"] = e }
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
        var echo: [String: Any] = [:]
        for key in ["instructions", "max_output_tokens", "metadata", "temperature", "top_p", "text", "user"] { echo[key] = r[key] ?? NSNull() }
        echo["tools"] = r["tools"] ?? []
        echo["tool_choice"] = r["tool_choice"] ?? "auto"
        echo["parallel_tool_calls"] = r["parallel_tool_calls"] ?? true
        echo["previous_response_id"] = r["previous_response_id"] ?? NSNull()
        echo["store"] = store
        echo["background"] = background
        if echo["text"] is NSNull { echo["text"] = ["format": ["type": "text"]] }
        let ordered = chat["tools"] == nil ? nil : APIRewrite.orderedTools(body, schemaKey: "parameters")
        return Translated(chatBody: try APIRewrite.body(chat, tools: ordered), stream: stream, echo: echo, store: store,
                          background: background, items: items)
    }

    /// `input` as items, as the store keeps them and `GET /v1/responses/{id}/input_items` lists them: text is one
    /// user message; an item without a type is a message; a message's text content becomes one text part; an item
    /// without an id gets one.
    static func items(_ input: Any) throws -> [[String: Any]] {
        if let text = input as? String { return try items([["role": "user", "content": text]]) }
        guard let list = input as? [[String: Any]] else { throw APIRewrite.invalid("input must be text or a list of items", "input") }
        return list.map { item in
            var m = item
            let type = m["type"] as? String ?? "message"
            m["type"] = type
            if type == "message", let text = m["content"] as? String {
                m["content"] = [["type": m["role"] as? String == "assistant" ? "output_text" : "input_text", "text": text]]
            }
            if m["id"] == nil {
                let prefix = ["message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"][type] ?? "item_"
                m["id"] = randomId(prefix)
            }
            return m
        }
    }

    /// Items as chat messages: messages (content as text or parts), `function_call`s (joined to the assistant turn
    /// before them) and `function_call_output`s (tool messages). A `reasoning` item goes with the assistant turn
    /// that follows it. Errors name an item by its place in the request's `input`, which starts at `inputFrom`.
    static func messages(_ items: [[String: Any]], inputFrom: Int = 0) throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        var reasoning: String?
        func assistant() -> Int {
            if let last = out.last, last["role"] as? String == "assistant" { return out.count - 1 }
            out.append(["role": "assistant", "content": ""])
            return out.count - 1
        }
        for (k, item) in items.enumerated() {
            let i = k - inputFrom
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
        r["reasoning"] = ["effort": NSNull(), "summary": NSNull()]
        r["truncation"] = "disabled"
        if let u = usage {
            r["usage"] = ["input_tokens": u.promptTokens, "input_tokens_details": ["cached_tokens": u.cachedTokens],
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

    /// Stores the finished response (nil: not stored).
    private let keep: (([String: Any]) throws -> Void)?

    init(id: String, created: Int, model: String, echo: [String: Any], keep: (([String: Any]) throws -> Void)? = nil) {
        self.keep = keep
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

    /// The last events: open items closed, then the whole response, stored first when the stream keeps it (if that
    /// fails the last event is an `error` instead, so a client never holds the id of a response that was not kept).
    func finish(why: String, usage: Usage) -> [(String, [String: Any])] {
        var out = close()
        // A reply with no text at all is still one (empty) message, as the whole response gives it.
        if items.isEmpty { out += text(.message, "") + close() }
        let status = why == "length" ? "incomplete" : "completed"
        let r = ResponsesAPI.response(id: id, created: created, model: model, echo: echo, output: items, status: status, usage: usage)
        do { try keep?(r) } catch {
            out.append(event("error", ["code": "server_error", "message": "the response could not be stored: \(error)", "param": NSNull()]))
            return out
        }
        out.append(event(status == "completed" ? "response.completed" : "response.incomplete", ["response": r]))
        return out
    }
}

extension Routes {
    /// POST /v1/responses: OpenAI's Responses API as a chat completion (ResponsesAPI), whole or as its event stream;
    /// stored (before it is returned, or before its last event is sent) unless the request sets `store` false.
    func responses(_ req: Request) async throws -> Response {
        let t = try ResponsesAPI.translate(try await body(req), previous: responseStore.get)
        let r = try decode(ChatRequest.self, t.chatBody)
        let run = try prepareChat(r, body: t.chatBody)
        let id = randomId("resp_"), created = Int(Date().timeIntervalSince1970), model = service.modelName
        let store = responseStore
        if t.stream {
            let items = t.items
            let stream = ResponsesStream(id: id, created: created, model: model, echo: t.echo,
                                         keep: t.store ? { try store.save($0, input: items) } : nil)
            return try namedEvents(run, start: stream.start, add: stream.add) { why, _, usage in stream.finish(why: why, usage: usage) }
        }
        let echo = t.echo, handedEcho = Handed(echo)
        // A background response is stored as queued before it starts, so a poll never misses it.
        let queued = ResponsesAPI.response(id: id, created: created, model: model, echo: echo, output: [], status: "queued", usage: nil)
        if t.background { try store.save(queued, input: t.items) }
        let streams: [AsyncStream<GenerationEvent>]
        do { streams = try service.start(run.samples) } catch {
            if t.background { _ = try? store.delete(id) }
            throw error
        }
        @Sendable func finished() async -> [String: Any] {
            let (outs, usage) = await GenerationService.collect(streams, run.samples, choicesPerPrompt: 1)
            let reply = run.read(outs[0].text)
            let output = ResponsesAPI.output(reasoning: reply.reasoning, content: reply.content, calls: reply.calls)
            return ResponsesAPI.response(id: id, created: created, model: model, echo: handedEcho.value, output: output,
                                         status: outs[0].finish == "length" ? "incomplete" : "completed", usage: usage)
        }
        if t.background {
            background.run(id, store: store, items: t.items, finished)
            return jsonResponse(object: queued)
        }
        let response = await finished()
        if t.store {
            do { try store.save(response, input: t.items) } catch {
                throw APIError(.internalServerError, "the response could not be stored: \(error)", type: "server_error")
            }
        }
        return jsonResponse(object: response)
    }

    /// GET /v1/responses/{id}, DELETE /v1/responses/{id} and GET /v1/responses/{id}/input_items (`limit` 1–100,
    /// default 20; `order` desc (default) or asc; `after`/`before` an item id), as OpenAI's API answers them.
    func registerStoredResponses(_ router: Router<BasicRequestContext>) {
        router.get("/v1/responses/:id") { req, ctx in
            if req.uri.queryParameters.get("stream") == "true" {
                throw APIError.invalid("streaming a stored response again is not supported", param: "stream", code: "unsupported_parameter")
            }
            return jsonResponse(object: try storedResponse(ctx).response)
        }
        router.delete("/v1/responses/:id") { _, ctx in
            let id = ctx.parameters.get("id") ?? ""
            _ = try background.cancel(id, store: responseStore)
            guard try responseStore.delete(id) else { throw Self.noResponse(id) }
            return jsonResponse(object: ["id": id, "object": "response", "deleted": true])
        }
        router.get("/v1/responses/:id/input_items") { req, ctx in
            let q = req.uri.queryParameters
            let stored = try storedResponse(ctx)
            return jsonResponse(object: try ResponsesAPI.itemPage(stored.input, limit: q.get("limit"), order: q.get("order"),
                                                                  after: q.get("after"), before: q.get("before")))
        }
        router.post("/v1/responses/:id/cancel") { _, ctx -> Response in
            let id = ctx.parameters.get("id") ?? ""
            guard try responseStore.get(id) != nil else { throw Self.noResponse(id) }
            guard let cancelled = try background.cancel(id, store: responseStore) else {
                throw APIError.invalid("Cannot cancel response '\(id)': only a background response that has not finished can be cancelled.")
            }
            return jsonResponse(object: cancelled)
        }
    }

    static func noResponse(_ id: String) -> APIError {
        APIError(.notFound, "Response with id '\(id)' not found.", code: "response_not_found")
    }

    func storedResponse(_ ctx: BasicRequestContext) throws -> ResponseStore.Stored {
        let id = ctx.parameters.get("id") ?? ""
        guard let s = try responseStore.get(id) else { throw Self.noResponse(id) }
        return s
    }
}

extension ResponsesAPI {
    /// One page of a stored response's input items as OpenAI lists them: {"object": "list", "data", "first_id",
    /// "last_id", "has_more"}; query values as sent (nil: left out).
    static func itemPage(_ items: [[String: Any]], limit: String?, order: String?, after: String?, before: String?) throws -> [String: Any] {
        let n: Int
        if let limit {
            guard let v = Int(limit), (1...100).contains(v) else { throw APIError.invalid("limit must be an integer from 1 to 100 (got \(limit))", param: "limit") }
            n = v
        } else {
            n = 20
        }
        guard [nil, "asc", "desc"].contains(order) else { throw APIError.invalid("order must be asc or desc (got \(order ?? ""))", param: "order") }
        var list = order == "asc" ? items : items.reversed()
        func position(_ id: String, _ param: String) throws -> Int {
            guard let k = list.firstIndex(where: { $0["id"] as? String == id }) else {
                throw APIError.invalid("no input item with id '\(id)' in this response", param: param)
            }
            return k
        }
        if let before { list = Array(list[..<(try position(before, "before"))]) }
        if let after { list = Array(list[(try position(after, "after") + 1)...]) }
        let page = Array(list.prefix(n))
        return ["object": "list", "data": page, "first_id": page.first?["id"] ?? NSNull(), "last_id": page.last?["id"] ?? NSNull(),
                "has_more": list.count > n]
    }
}
