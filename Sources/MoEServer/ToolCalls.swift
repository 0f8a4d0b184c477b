import Foundation

/// A chat request's `tools`, `tool_choice` and `parallel_tool_calls`, as OpenAI and vLLM define them:
/// - `auto` (the default with tools): the template shows the tools and the reply is scanned for `<tool_call>` blocks
///   (vLLM's Hermes parser, the format of Qwen2.5 and Qwen3);
/// - `required`: the reply is constrained to a JSON list of one or more `{"name", "parameters"}` calls;
/// - a named function: the reply is constrained to that function's arguments (its `parameters` schema);
/// - `none` (the default without tools): tools are neither shown nor looked for.
struct ToolRequest: Sendable {
    enum Choice: Equatable, Sendable { case none, auto, required, named(String) }

    struct Function: Sendable {
        var name: String
        /// The `parameters` schema (nil: the function takes no arguments).
        var parameters: JSONValue?
    }

    /// Each tool as the client wrote it, for the template.
    var definitions: [OrderedJSON]
    var functions: [Function]
    var choice: Choice
    /// false: at most one call (`required` is constrained to one, `auto` keeps the first).
    var parallel: Bool
    /// How the template writes calls, and so how a reply's are read and named: Hermes' `<tool_call>` blocks (Qwen),
    /// Mistral's `[TOOL_CALLS]` list, whose ids are 9 letters and digits, GLM's `<tool_call>` blocks of
    /// `<arg_key>`/`<arg_value>` pairs, or DeepSeek-V3.1's `<｜tool▁calls▁begin｜>` blocks (the template's `toolFormat`;
    /// gpt-oss's harmony calls are read by HarmonyReader).
    enum Format: Sendable { case hermes, mistral, glm, deepseek }
    let format: Format

    /// A new call's id in the reply: OpenAI's form, or Mistral's.
    func newCallId() -> String { format == .mistral ? MistralCalls.newId() : randomId("call_") }

    /// OpenAI's rule for function names (they are written into the prompt's JSON unescaped, as the templates do).
    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 64 && s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-") }
    }

    /// From the decoded request and its body (read again keeping key order, for the tools' definitions), for a
    /// template that writes calls in `format`.
    init(_ r: ChatRequest, body: Data, format: Format = .hermes) throws {
        self.format = format
        let wire = r.tools ?? []
        for (i, t) in wire.enumerated() {
            guard t.type == "function" else {
                throw APIError.invalid("tools[\(i)].type must be \"function\" (got \"\(t.type)\")", param: "tools")
            }
            guard Self.validName(t.function.name) else {
                throw APIError.invalid("tools[\(i)].function.name must be 1–64 letters, digits, '_' or '-' (got \"\(t.function.name)\")", param: "tools")
            }
        }
        functions = wire.map { Function(name: $0.function.name, parameters: $0.function.parameters) }
        if Set(functions.map(\.name)).count < functions.count {
            throw APIError.invalid("tools must have distinct function names", param: "tools")
        }
        if wire.isEmpty {
            definitions = []
        } else {
            guard case .array(let defs)? = try? OrderedJSON.parse(String(decoding: body, as: UTF8.self))["tools"], defs.count == wire.count else {
                throw APIError.invalid("tools could not be read", param: "tools")
            }
            definitions = defs
        }
        parallel = r.parallelToolCalls ?? true
        switch r.toolChoice {
        case nil: choice = wire.isEmpty ? .none : .auto
        case .none?: choice = .none
        case .auto?, .required?, .named?:
            guard !wire.isEmpty else {
                throw APIError.invalid("tool_choice needs tools", param: "tool_choice")
            }
            choice = r.toolChoice!
        }
        if case .named(let n) = choice, !functions.contains(where: { $0.name == n }) {
            throw APIError.invalid("tool_choice names \(n), which is not among the tools (\(functions.map(\.name).joined(separator: ", ")))",
                                   param: "tool_choice")
        }
    }

    /// Tools as the template shows them: none when the choice is `none`. A template without a tool format shows none
    /// to a reply constrained to calls (`required`, a named function), which needs no format, as vLLM's guided
    /// function calls work with any model; `auto` needs one, and such a template refuses the tools.
    func shown(rendersTools: Bool) -> [OrderedJSON] {
        switch choice {
        case .none: return []
        case .required, .named: return rendersTools ? definitions : []
        case .auto: return definitions
        }
    }

    /// What the reply is constrained to, for `required` and a named function.
    func outputFormat() -> OutputFormat? {
        switch choice {
        case .none, .auto: return nil
        case .named(let n):
            return .jsonSchema(functions.first { $0.name == n }!.parameters ?? Self.noArguments)
        case .required:
            let calls: [JSONValue] = functions.map { f in
                let p = f.parameters ?? Self.noArguments
                return .object(["type": .string("object"),
                                "properties": .object(["name": .object(["const": .string(f.name)]), "parameters": p]),
                                "required": .array([.string("name"), .string("parameters")])])
            }
            var list: [String: JSONValue] = ["type": .string("array"), "minItems": .number(1), "items": .object(["anyOf": .array(calls)])]
            if !parallel { list["maxItems"] = .number(1) }
            return .jsonSchema(.object(list))
        }
    }

    /// A function without `parameters` takes an empty object.
    static let noArguments: JSONValue = .object(["type": .string("object"), "properties": .object([:])])

    /// A reply's text and calls once it is whole. A constrained reply that does not parse (cut by max_tokens) stays
    /// text.
    func reply(_ text: String) -> (content: String?, calls: [ToolCallScanner.Call]) {
        switch choice {
        case .none: return (text, [])
        case .auto:
            var scanner = ToolCallScanner(tools: functions, format: format)
            let pieces = scanner.feed(text) + scanner.finish()
            var content = "", calls: [ToolCallScanner.Call] = []
            for p in pieces {
                switch p {
                case .text(let t): content += t
                case .call(let c): if parallel || calls.isEmpty { calls.append(c) }
                }
            }
            return (calls.isEmpty || !content.isEmpty ? content : nil, calls)
        case .named(let n):
            guard (try? OrderedJSON.parse(text)) != nil else { return (text, []) }
            return (nil, [ToolCallScanner.Call(name: n, arguments: text)])
        case .required:
            guard case .array(let items)? = try? OrderedJSON.parse(text) else { return (text, []) }
            let calls = items.compactMap { item -> ToolCallScanner.Call? in
                guard let name = item["name"]?.stringValue, let args = item["parameters"] else { return nil }
                return ToolCallScanner.Call(name: name, arguments: args.python)
            }
            return calls.count == items.count && !calls.isEmpty ? (nil, calls) : (text, [])
        }
    }

    /// OpenAI's finish reason "tool_calls" for a reply that ended by itself with calls.
    static func finishReason(_ why: String, calls: Int) -> String { calls > 0 && why == "stop" ? "tool_calls" : why }
}

/// Splits a reply in the Hermes format (Qwen2.5, Qwen3), or in Mistral's (one block from `[TOOL_CALLS]` to the end),
/// into text and tool calls as it streams: each
/// `<tool_call>{"name": …, "arguments": {…}}</tool_call>` block becomes a call (an unclosed last block too, if its
/// JSON is whole), with its arguments written as Python's json.dumps writes them (as vLLM returns them). A block
/// holding Qwen3-Coder's `<function=…>` form instead is read as vLLM's qwen3_coder parser reads it
/// (QwenCoderCalls); with GLM's format, a block is read as vLLM's glm45 parser reads it (GLMCalls). A block whose
/// JSON is not a call stays text, as written. Whitespace before a block, and after the last one, is dropped;
/// text the model wrote around blocks is kept. Fed the whole reply at once it gives what streaming gave, piece by piece.
struct ToolCallScanner {
    struct Call: Equatable, Sendable {
        var name: String
        var arguments: String
    }
    enum Piece: Equatable, Sendable {
        case text(String)
        case call(Call)
    }

    static let open = "<tool_call>", close = "</tool_call>"
    private var buffer = ""
    private var inside = false
    /// UTF-8 bytes at the start of the buffer already searched for the closing tag: a long block (a tool writing a
    /// file) is searched once, not again at every token.
    private var searched = 0
    /// Whitespace after the last text, kept back until it is known not to precede a block or end the reply.
    private var held = ""
    private var called = false
    /// Each tool's `parameters` schema by name: Qwen3-Coder's XML calls write every value as text, which is
    /// converted by its parameter's type.
    let schemas: [String: JSONValue?]

    /// Mistral's format is one block: it opens at `[TOOL_CALLS]` and closes at the reply's end (MistralCalls).
    let format: ToolRequest.Format
    private let openTag: String, closeTag: String?

    init(tools: [ToolRequest.Function] = [], format: ToolRequest.Format = .hermes) {
        schemas = Dictionary(tools.map { ($0.name, $0.parameters) }) { first, _ in first }
        self.format = format
        (openTag, closeTag) = format == .mistral ? (MistralCalls.marker, nil)
            : format == .deepseek ? (DeepSeekCalls.begin, DeepSeekCalls.end) : (Self.open, Self.close)
    }

    mutating func feed(_ text: String) -> [Piece] {
        buffer += text
        var out: [Piece] = []
        while true {
            if inside {
                guard let closeTag else { break }
                // The tag may begin in the last bytes searched before.
                let tag = Array(closeTag.utf8), from = max(0, searched - tag.count + 1)
                let found: Int? = buffer.withUTF8 { b in
                    guard b.count >= tag.count, from <= b.count - tag.count else { return nil }
                    return (from...(b.count - tag.count)).first { i in (0..<tag.count).allSatisfy { b[i + $0] == tag[$0] } }
                }
                guard let at = found else {
                    searched = buffer.utf8.count
                    break
                }
                // The tag starts with an ASCII byte, so its offset is a scalar boundary.
                let start = buffer.utf8.index(buffer.utf8.startIndex, offsetBy: at)
                let end = buffer.utf8.index(start, offsetBy: tag.count)
                out += block(String(buffer[..<start]), closed: true)
                buffer = String(buffer[end...])
                inside = false
            } else if let r = buffer.range(of: openTag) {
                out += emit(String(buffer[..<r.lowerBound]), beforeBlock: true)
                buffer = String(buffer[r.upperBound...])
                inside = true
                searched = 0
            } else {
                // Keep back a tail that may be the start of the opening tag.
                let keep = buffer.partialSuffix(of: openTag)
                out += emit(String(buffer.dropLast(keep)), beforeBlock: false)
                buffer = String(buffer.suffix(keep))
                break
            }
        }
        return out
    }

    /// The end of the reply.
    mutating func finish() -> [Piece] {
        var out: [Piece]
        if inside { out = block(buffer, closed: false) } else { out = emit(buffer, beforeBlock: false) }
        buffer = ""
        inside = false
        searched = 0
        if !called && !held.isEmpty { out.append(.text(held)) }
        held = ""
        return out
    }

    private mutating func emit(_ text: String, beforeBlock: Bool) -> [Piece] {
        let all = held + text
        let body = String(all.reversed().drop { $0.isWhitespace }.reversed())
        held = beforeBlock ? "" : String(all.dropFirst(body.count))
        return body.isEmpty ? [] : [.text(body)]
    }

    /// A block's calls; else it stays text, as written (Mistral's: without its markers, as vLLM gives it back).
    private mutating func block(_ body: String, closed: Bool) -> [Piece] {
        let calls = format == .mistral ? MistralCalls.calls(body)
            : format == .glm ? GLMCalls.calls(body, schemas: schemas)
            : format == .deepseek ? DeepSeekCalls.calls(body)
            : QwenCoderCalls.calls(body, schemas: schemas) ?? Self.call(body).map { [$0] }
        if let calls, !calls.isEmpty {
            called = true
            held = ""
            return calls.map { .call($0) }
        }
        if format == .mistral {
            return emit(body.replacingOccurrences(of: MistralCalls.marker, with: "").trimmingCharacters(in: .whitespacesAndNewlines), beforeBlock: false)
        }
        return emit(openTag + body + (closed ? closeTag ?? "" : ""), beforeBlock: false)
    }

    /// A block's JSON as a call: {"name": string, "arguments": object (or a JSON text of one)}.
    static func call(_ body: String) -> Call? { (try? OrderedJSON.parse(body)).flatMap(call) }

    static func call(_ v: OrderedJSON) -> Call? {
        guard let name = v["name"]?.stringValue else { return nil }
        var args = v["arguments"] ?? .object([])
        if case .string(let s) = args, let parsed = try? OrderedJSON.parse(s) { args = parsed }
        guard case .object = args else { return nil }
        return Call(name: name, arguments: args.python)
    }
}

/// One choice's reply as it streams: the delta each piece of text makes. A thinking model's reasoning is split off
/// first (`reasoning_content`); the rest is read under the request's tool choice: `auto` streams text and each call
/// once its block is whole; a named function streams its arguments as they come (the first delta with the call's id
/// and name, as OpenAI streams them); `required` sends its calls at the end, when the list is whole.
struct StreamedReply: Sendable {
    let tools: ToolRequest
    private var splitter: ReasoningSplitter
    private var scanner: ToolCallScanner
    private var buffered = ""
    /// Calls sent so far.
    private(set) var calls = 0

    /// gpt-oss's harmony reply (channels, calls as messages to functions.NAME), read instead of the splitter and scanner.
    private var harmony: HarmonyReader?
    /// Whether the harmony message being read is a call sent out (else its arguments are content).
    private var inCall = false

    init(_ tools: ToolRequest, reasoning: Bool, opened: Bool = false, harmony: Bool = false) {
        self.tools = tools
        scanner = ToolCallScanner(tools: tools.functions, format: tools.format)
        splitter = ReasoningSplitter(enabled: reasoning, opened: opened)
        self.harmony = harmony ? HarmonyReader() : nil
    }

    mutating func add(_ text: String) -> ChatDelta {
        if harmony != nil { return route(harmony!.feed(text)) }
        return route(splitter.feed(text), finishing: false)
    }

    mutating func finish() -> ChatDelta {
        if harmony != nil { return route(harmony!.finish()) }
        return route(splitter.finish(), finishing: true)
    }

    /// A harmony reply's pieces: a call goes out when tools are on `auto` (its name first, then its arguments as
    /// they come); with `tool_choice` none, or past the one call `parallel_tool_calls` false allows, its text is content.
    private mutating func route(_ pieces: [HarmonyReader.Piece]) -> ChatDelta {
        var delta = ChatDelta()
        func text(_ t: String) { delta.content = (delta.content ?? "") + t }
        func call(_ c: ToolCallOut) { delta.toolCalls = (delta.toolCalls ?? []) + [c] }
        for p in pieces {
            switch p {
            case .reasoning(let t): delta.reasoningContent = (delta.reasoningContent ?? "") + t
            case .content(let t): text(t)
            case .call(let name):
                inCall = tools.choice == .auto && (tools.parallel || calls == 0)
                guard inCall else { continue }
                call(ToolCallOut(index: calls, id: tools.newCallId(), function: .init(name: name, arguments: "")))
                calls += 1
            case .arguments(let t):
                if inCall { call(ToolCallOut(index: calls - 1, id: nil, type: nil, function: .init(name: nil, arguments: t))) } else { text(t) }
            }
        }
        return delta
    }

    /// A whole reply read as its stream: the reasoning, the text and each call with its arguments joined.
    static func whole(_ deltas: [ChatDelta]) -> (reasoning: String?, content: String?, calls: [ToolCallOut]) {
        var reasoning: String?, content: String?, calls: [ToolCallOut] = []
        for d in deltas {
            if let r = d.reasoningContent { reasoning = (reasoning ?? "") + r }
            if let c = d.content { content = (content ?? "") + c }
            for c in d.toolCalls ?? [] {
                if let i = c.index, i < calls.count { calls[i].function.arguments += c.function.arguments } else {
                    calls.append(ToolCallOut(id: c.id, function: c.function))
                }
            }
        }
        return (reasoning, content, calls)
    }

    private mutating func route(_ pieces: [ReasoningSplitter.Piece], finishing: Bool) -> ChatDelta {
        var delta = ChatDelta()
        func merge(_ d: ChatDelta) {
            if let c = d.content { delta.content = (delta.content ?? "") + c }
            if let t = d.toolCalls { delta.toolCalls = (delta.toolCalls ?? []) + t }
        }
        for p in pieces {
            switch p {
            case .reasoning(let t): delta.reasoningContent = (delta.reasoningContent ?? "") + t
            case .content(let t): merge(content(t))
            }
        }
        if finishing { merge(endOfContent()) }
        return delta
    }

    private mutating func content(_ text: String) -> ChatDelta {
        switch tools.choice {
        case .none: return ChatDelta(content: text)
        case .auto: return delta(scanner.feed(text))
        case .named(let name):
            let first = calls == 0
            calls = 1
            return ChatDelta(toolCalls: [ToolCallOut(index: 0, id: first ? tools.newCallId() : nil, type: first ? "function" : nil,
                                                     function: .init(name: first ? name : nil, arguments: text))])
        case .required:
            buffered += text
            return ChatDelta()
        }
    }

    private mutating func endOfContent() -> ChatDelta {
        switch tools.choice {
        case .none, .named: return ChatDelta()
        case .auto: return delta(scanner.finish())
        case .required:
            let r = tools.reply(buffered)
            return delta((r.content.map { [.text($0)] } ?? []) + r.calls.map { .call($0) })
        }
    }

    private mutating func delta(_ pieces: [ToolCallScanner.Piece]) -> ChatDelta {
        var text: String?, out: [ToolCallOut] = []
        for p in pieces {
            switch p {
            case .text(let t): text = (text ?? "") + t
            case .call(let c):
                guard tools.parallel || calls == 0 else { continue }
                out.append(ToolCallOut(index: calls, id: tools.newCallId(), function: .init(name: c.name, arguments: c.arguments)))
                calls += 1
            }
        }
        return ChatDelta(content: text, toolCalls: out.isEmpty ? nil : out)
    }
}
