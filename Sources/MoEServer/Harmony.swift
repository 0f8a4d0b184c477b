import Foundation

/// gpt-oss's chat format, OpenAI's "harmony": every message is `<|start|>ROLE HEADER<|message|>TEXT<|end|>`, where the
/// header names a channel (`<|channel|>analysis` for reasoning, `final` for the answer, `commentary` for calls and
/// preambles) and for a call its recipient (`to=functions.NAME`) and content type (`<|constrain|>json` or ` json`);
/// a reply ends with `<|return|>` (its last message) or `<|call|>` (a call), both stop tokens. The prompt is rendered
/// as gpt-oss's published template (Tests/Fixtures/chat-templates/gpt-oss.jinja, checked against transformers); a
/// reply is read as vLLM's harmony parsing reads it: analysis → reasoning_content, final and preambles → content,
/// messages to functions.NAME → tool calls with the message as their arguments.
enum Harmony {
    static let start = "<|start|>", end = "<|end|>", message = "<|message|>", channel = "<|channel|>"
    static let call = "<|call|>", returnTag = "<|return|>"
    static let model = "You are ChatGPT, a large language model trained by OpenAI."

    /// Python's truthiness of a JSON value, as Jinja tests it.
    static func truthy(_ v: OrderedJSON?) -> Bool {
        switch v {
        case nil, .null?: return false
        case .bool(let b)?: return b
        case .integer(let s)?: return Int(s) != 0
        case .double(let d)?: return d != 0
        case .string(let s)?: return !s.isEmpty
        case .array(let a)?: return !a.isEmpty
        case .object(let o)?: return !o.isEmpty
        }
    }

    /// A value joined into the template's text: a string as itself, anything else as json.dumps writes it.
    static func text(_ v: OrderedJSON) -> String { v.stringValue ?? v.python }

    /// The names of `required` (a list of strings).
    static func names(_ v: OrderedJSON?) -> [String] {
        guard case .array(let a)? = v else { return [] }
        return a.compactMap(\.stringValue)
    }

    static func members(_ v: OrderedJSON?) -> [OrderedJSON.Member] {
        guard case .object(let m)? = v else { return [] }
        return m
    }

    /// The template's render_typescript_type: a JSON schema as a TypeScript type, with the template's own spacing
    /// (an object's properties each after a newline and 16 spaces, a oneOf's alternatives after " | " and a newline).
    static func typeScript(_ spec: OrderedJSON?) -> String {
        let type = spec?["type"], nullable = truthy(spec?["nullable"])
        switch type {
        case .string("array")?:
            guard let items = spec?["items"], truthy(items) else { return "any[]" + (nullable ? " | null" : "") }
            let named: [String: String] = ["string": "string[]", "number": "number[]", "integer": "number[]", "boolean": "boolean[]"]
            var out: String
            if let t = items["type"]?.stringValue, let n = named[t] {
                out = n
            } else {
                let inner = typeScript(items)
                out = inner == "object | object" || inner.unicodeScalars.count > 50 ? "any[]" : inner + "[]"
            }
            return out + (nullable ? " | null" : "")
        case .array(let types)? where !types.isEmpty:
            return types.map(text).joined(separator: " | ")
        default:
            break
        }
        if let variants = spec?["oneOf"], truthy(variants), case .array(let all) = variants {
            // The template's check for object variants sets a variable inside its loop, which Jinja scopes to the
            // loop: it never takes effect, so every oneOf is written out.
            var out = ""
            for (i, v) in all.enumerated() {
                out += typeScript(v)
                if let d = v["description"], truthy(d) { out += "// " + text(d) }
                if let d = v["default"] { out += String(repeating: " ", count: 20) + "// default: " + d.python }
                if i < all.count - 1 { out += " | \n" }
            }
            return out
        }
        switch type?.stringValue {
        case "string":
            if let e = spec?["enum"], truthy(e), case .array(let values) = e {
                return "\"" + values.map(text).joined(separator: "\" | \"") + "\""
            }
            return "string" + (nullable ? " | null" : "")
        case "number", "integer": return "number"
        case "boolean": return "boolean"
        case "object":
            guard let props = spec?["properties"], truthy(props) else { return "object" }
            let required = names(spec?["required"])
            return "{\n" + members(props).map { p in
                p.key + (required.contains(p.key) ? "" : "?") + ": " + "\n" + String(repeating: " ", count: 16) + typeScript(p.value)
            }.joined(separator: ", ") + "}"
        default:
            return "any"
        }
    }

    /// The template's render_tool_namespace for the request's function tools.
    static func namespace(_ tools: [OrderedJSON]) -> String {
        var out = "## functions\n\nnamespace functions {\n\n"
        for t in tools {
            let f = t["function"]
            out += "// " + (f?["description"].map(text) ?? "") + "\n"
            out += "type " + (f?["name"].map(text) ?? "") + " = "
            let params = f?["parameters"]
            guard truthy(params), let props = params?["properties"], truthy(props) else {
                out += "() => any;\n\n"
                continue
            }
            out += "(_: {\n"
            let required = names(params?["required"])
            for p in members(props) {
                if let d = p.value["description"], truthy(d) { out += "// " + text(d) + "\n" }
                out += p.key + (required.contains(p.key) ? "" : "?") + ": " + typeScript(p.value)
                if let d = p.value["default"] {
                    if truthy(p.value["enum"]) { out += ", // default: " + text(d) }
                    else if truthy(p.value["oneOf"]) { out += "// default: " + text(d) }
                    else { out += ", // default: " + d.python }
                }
                out += ",\n"
            }
            out += "}) => any;\n\n"
        }
        return out + "} // namespace functions"
    }

    /// Today as strftime's "%Y-%m-%d".
    static func today() -> String { ChatTemplate.today("yyyy-MM-dd") }
}

extension ChatTemplate {
    /// gpt-oss's template: a system message (model identity, knowledge cut-off, today's date, the reasoning effort,
    /// the valid channels), a developer message with the first system message's instructions and the tools as a
    /// TypeScript namespace, then the turns: a user message as is; an assistant answer on the final channel (its
    /// reasoning dropped, except in a closed last turn); a call as a message to functions.NAME on the commentary
    /// channel, preceded by its reasoning unless a later answer exists; a tool result as a message from
    /// functions.NAME of the last call. The reply opens with "<|start|>assistant".
    func renderHarmony(_ messages: [ChatMessage], tools: [OrderedJSON], options: Options) throws -> String {
        var out = Harmony.start + "system" + Harmony.message
        out += (options.modelIdentity ?? Harmony.model) + "\nKnowledge cutoff: 2024-06\nCurrent date: " + Harmony.today() + "\n\n"
        out += "Reasoning: " + (options.reasoningEffort ?? "medium") + "\n\n"
        out += "# Valid channels: analysis, commentary, final. Channel must be included for every message."
        if !tools.isEmpty { out += "\nCalls to these tools must go to the commentary channel: 'functions'." }
        out += Harmony.end
        var turns = messages[...]
        let developer = turns.first?.role == "system" ? turns.removeFirst().content : ""
        if !developer.isEmpty || !tools.isEmpty {
            out += Harmony.start + "developer" + Harmony.message
            if !developer.isEmpty { out += "# Instructions\n\n" + developer + "\n\n" }
            if !tools.isEmpty { out += "# Tools\n\n" + Harmony.namespace(tools) }
            out += Harmony.end
        }
        var lastCall: String?
        for (i, m) in zip(turns.indices, turns) {
            switch m.role {
            case "assistant":
                let thinking = m.thinking ?? m.reasoningContent
                for (field, text) in [("content", m.content), ("thinking", thinking ?? "")]
                where text.contains("<|channel|>analysis<|message|>") || text.contains("<|channel|>final<|message|>") {
                    throw Unsupported(description: "an assistant message's \(field) holds <|channel|> tags: pass the reasoning (analysis) in `thinking` or `reasoning_content` and the answer (final) in `content`")
                }
                if let call = m.toolCalls.first {
                    let answered = turns[(i + 1)...].contains { $0.role == "assistant" && $0.toolCalls.isEmpty }
                    // The template refuses both of its own fields; a reply this server gave back (a preamble in
                    // content, its reasoning in reasoning_content) renders as the template renders content alone.
                    if !m.content.isEmpty, let t = m.thinking, !t.isEmpty {
                        throw Unsupported(description: "an assistant message with tool calls cannot have both content and thinking: put its analysis in one of them")
                    }
                    let analysis = !m.content.isEmpty ? m.content : thinking ?? ""
                    if !analysis.isEmpty && !answered { out += Harmony.start + "assistant<|channel|>analysis" + Harmony.message + analysis + Harmony.end }
                    out += Harmony.start + "assistant to=functions." + call.name + "<|channel|>commentary json" + Harmony.message
                    out += call.arguments.python + Harmony.call
                    lastCall = call.name
                } else if i == turns.indices.last && !options.addGenerationPrompt {
                    if let t = thinking { out += Harmony.start + "assistant<|channel|>analysis" + Harmony.message + t + Harmony.end }
                    out += Harmony.start + "assistant<|channel|>final" + Harmony.message + m.content + Harmony.returnTag
                } else {
                    out += Harmony.start + "assistant<|channel|>final" + Harmony.message + m.content + Harmony.end
                    lastCall = nil
                }
            case "tool":
                guard let name = lastCall else {
                    throw Unsupported(description: "a tool message must follow an assistant message with a tool call")
                }
                out += Harmony.start + "functions." + name + " to=assistant<|channel|>commentary" + Harmony.message
                out += OrderedJSON.string(m.content).python + Harmony.end
            case "user":
                out += Harmony.start + "user" + Harmony.message + m.content + Harmony.end
            default:
                continue                                  // later system messages: the template shows none
            }
        }
        return out + (options.addGenerationPrompt ? Harmony.start + "assistant" : "")
    }
}

/// Reads a harmony reply as it streams (the text with its special tokens kept). The reply continues the prompt's
/// "<|start|>assistant", so it opens with a header; each message's text goes out as it comes, by channel; a message
/// to functions.NAME is a call whose arguments are its text. A reply that opens with no header (a reply constrained
/// to a grammar, a model off its format) is all content; a header the reply leaves unfinished carries no text and is
/// dropped.
struct HarmonyReader: Sendable {
    enum Piece: Equatable, Sendable {
        case reasoning(String)
        case content(String)
        /// A call to function NAME begins; its arguments follow as `.arguments` pieces.
        case call(String)
        case arguments(String)
    }

    private enum State { case header, body(Body), plain }
    private enum Body: Equatable { case reasoning, content, call }
    private var state = State.header
    private var buffer = ""
    private var first = true
    static let ends = [Harmony.end, Harmony.call, Harmony.returnTag]

    mutating func feed(_ text: String) -> [Piece] {
        buffer += text
        var out: [Piece] = []
        while true {
            switch state {
            case .plain:
                if !buffer.isEmpty { out.append(.content(buffer)) }
                buffer = ""
                return out
            case .header:
                if first {
                    // The first header continues "<|start|>assistant": a channel, a recipient or (rarely) a new start.
                    let openings = [Harmony.channel, " to=", Harmony.start]
                    if !openings.contains(where: { buffer.hasPrefix($0) }) {
                        if openings.contains(where: { $0.hasPrefix(buffer) }) { return out }
                        state = .plain
                        continue
                    }
                }
                guard let m = buffer.range(of: Harmony.message) else { return out }
                let header = String(buffer[..<m.lowerBound])
                buffer = String(buffer[m.upperBound...])
                first = false
                let (channel, recipient) = Self.parse(header)
                if let r = recipient, r.hasPrefix("functions.") {
                    out.append(.call(String(r.dropFirst("functions.".count))))
                    state = .body(.call)
                } else if recipient != nil || channel == "analysis" {
                    state = .body(.reasoning)               // reasoning, or a call to a built-in tool
                } else {
                    state = .body(.content)                 // final, or a preamble on commentary
                }
            case .body(let kind):
                if let r = Self.ends.compactMap({ buffer.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
                    out += Self.piece(kind, String(buffer[..<r.lowerBound]))
                    buffer = String(buffer[r.upperBound...])
                    // The next message's header, after its "<|start|>" (and role).
                    state = .header
                    if buffer.hasPrefix(Harmony.start) { buffer.removeFirst(Harmony.start.count) }
                    continue
                }
                let keep = Self.ends.map { buffer.partialSuffix(of: $0) }.max() ?? 0
                out += Self.piece(kind, String(buffer.dropLast(keep)))
                buffer = String(buffer.suffix(keep))
                return out
            }
        }
    }

    /// The end of the reply: a message's text held back (the start of what might have been an end marker) goes out;
    /// an unfinished header carries no text and is dropped.
    mutating func finish() -> [Piece] {
        defer { buffer = "" }
        if case .body(let kind) = state { return Self.piece(kind, buffer) }
        return []
    }

    private static func piece(_ kind: Body, _ text: String) -> [Piece] {
        guard !text.isEmpty else { return [] }
        switch kind {
        case .reasoning: return [.reasoning(text)]
        case .content: return [.content(text)]
        case .call: return [.arguments(text)]
        }
    }

    /// A header's channel and recipient: "assistant<|channel|>commentary to=functions.f <|constrain|>json", or
    /// "assistant to=functions.f<|channel|>commentary json" (the prompt's form).
    static func parse(_ header: String) -> (channel: String?, recipient: String?) {
        func word(after tag: String) -> String? {
            guard let r = header.range(of: tag) else { return nil }
            let w = header[r.upperBound...].prefix { !$0.isWhitespace && $0 != "<" }
            return w.isEmpty ? nil : String(w)
        }
        return (word(after: Harmony.channel), word(after: "to="))
    }
}
