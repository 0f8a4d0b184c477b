import Foundation

/// Mistral's tool format (mistral-common's v3 tokenizer: Mixtral-8x22B-Instruct-v0.1, Mistral-7B-Instruct-v0.3, and
/// Tekken's v3 without the spaces): the tools as a JSON list in `[AVAILABLE_TOOLS] … [/AVAILABLE_TOOLS]` before the
/// last user turn, calls as `[TOOL_CALLS] [{"name": …, "arguments": {…}, "id": "…"}]`, results as
/// `[TOOL_RESULTS] {"content": …, "call_id": "…"}[/TOOL_RESULTS]`, every call id 9 letters or digits.
extension ChatTemplate {
    /// A prompt as mistral-common's templates render it (Tests/Fixtures/chat-templates/mistral-v3*.jinja, against
    /// transformers' renderings). `spaced`: the SentencePiece template's, with a space after each control token and
    /// before a reply that follows a turn. What the templates raise on is refused with their words. Call ids longer
    /// than 9 are cut to their last 9, as vLLM cuts them for Mistral models, so ids from other servers (`call_…`,
    /// Anthropic's `toolu_…`) go through the same on both sides of a call.
    func renderMistral(_ messages: [ChatMessage], tools: [OrderedJSON], spaced: Bool) throws -> String {
        var turns = messages[...]
        let system = turns.first?.role == "system" ? turns.removeFirst().content : ""
        // User turns and plain replies alternate, from a user turn; calls and results do not count.
        var plain = 0, lastUser = -1
        for m in turns where m.role == "user" || (m.role == "assistant" && m.toolCalls.isEmpty) {
            guard (m.role == "user") == (plain % 2 == 0) else {
                throw Unsupported(description: "After the optional system message, conversation roles must alternate user and assistant roles except for tool calls and results.")
            }
            plain += 1
            if m.role == "user" { lastUser += 1 }
        }
        let gap = spaced ? " " : ""
        var out = bos, user = 0
        // The SentencePiece template's: a space before the next reply or result after a turn; none between results.
        var space = false, afterResult = false
        for (k, m) in turns.enumerated() {
            switch m.role {
            case "user":
                // The tools and the system message go with the last user turn only.
                if user == lastUser && !tools.isEmpty {
                    out += "[AVAILABLE_TOOLS]" + gap + OrderedJSON.array(tools).python + "[/AVAILABLE_TOOLS]"
                }
                out += "[INST]" + gap + (user == lastUser && !system.isEmpty ? system + "\n\n" : "") + m.content + "[/INST]"
                if spaced && k < turns.count - 1 { space = true }
                afterResult = false
                user += 1
            case "assistant":
                if !m.content.isEmpty && !m.toolCalls.isEmpty {
                    throw Unsupported(description: "Assistant message cannot have both content and tool calls. (Mistral's format holds one or the other: send the turn's calls with empty content.)")
                }
                if !m.content.isEmpty {
                    if space { out += " " }
                    out += m.content
                } else if !m.toolCalls.isEmpty {
                    let calls = try m.toolCalls.map { c in
                        "{\"name\": \"\(c.name)\", \"arguments\": \(c.arguments.python), \"id\": \"\(try Self.mistralId(c.id, of: "Tool call"))\"}"
                    }
                    out += "[TOOL_CALLS]" + gap + "[" + calls.joined(separator: ", ") + "]"
                } else {
                    throw Unsupported(description: "Assistant message must have a string or a list of chunks in content or a list of tool calls.")
                }
                space = false
                out += eos
                afterResult = false
            case "tool":
                if space && !afterResult { out += " " }
                space = false
                let id = try Self.mistralId(m.callId.flatMap { $0.count >= 9 ? $0 : nil } ?? m.toolCallId, of: "Tool message")
                let result = OrderedJSON.object([.init(key: "content", value: Self.mistralResult(m.content)), .init(key: "call_id", value: .string(id))])
                out += "[TOOL_RESULTS]" + gap + result.python + "[/TOOL_RESULTS]"
                space = spaced
                afterResult = true
            default:
                throw Unsupported(description: "Only user, assistant and tool roles are supported, got \(m.role).")
            }
        }
        return out
    }

    /// A call's id as Mistral's format takes it: 9 characters (the last 9 of a longer one).
    static func mistralId(_ id: String?, of what: String) throws -> String {
        guard let id, id.count >= 9 else {
            throw Unsupported(description: "\(what) must have an id of 9 characters or numbers (Mistral's tool format\(what == "Tool message" ? ": call_id or tool_call_id" : ""); got \(id.map { "\"\($0)\"" } ?? "none"))")
        }
        return String(id.suffix(9))
    }

    /// A tool result's content as the template writes it: a number when Python's int() or float() reads the text and
    /// str() writes it back unchanged (Jinja's `int` and `float` filters, then `string`), else the text.
    static func mistralResult(_ s: String) -> OrderedJSON {
        let digits = s.hasPrefix("-") ? s.dropFirst() : s[...]
        if !digits.isEmpty, digits.count <= 4300, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
           digits == "0" ? s == "0" : digits.first != "0" {
            return .integer(s)
        }
        // Swift writes a double as Python's repr does (shortest digits, the same switch to exponents, "inf", "nan").
        if let d = Double(s), d.description == s { return .double(d) }
        return .string(s)
    }
}

/// A reply in Mistral's format read as vLLM's `mistral` parser reads it (its form for tokenizers before v11): no
/// `[TOOL_CALLS]`, all text; else everything but the markers is a JSON list of `{"name", "arguments"}` calls, or
/// holds one from its first `[{` to its last `}]`. Each call as a Hermes block's (ToolCallScanner.call); nil when it
/// is not such a list.
enum MistralCalls {
    static let marker = "[TOOL_CALLS]"

    static func calls(_ text: String) -> [ToolCallScanner.Call]? {
        let body = text.replacingOccurrences(of: marker, with: "").trimmingCharacters(in: .whitespacesAndNewlines)
        var list = try? OrderedJSON.parse(body)
        if list == nil, let open = body.range(of: "[{"), let close = body.range(of: "}]", options: .backwards), open.lowerBound < close.lowerBound {
            list = try? OrderedJSON.parse(String(body[open.lowerBound..<close.upperBound]))
        }
        guard case .array(let items)? = list, !items.isEmpty else { return nil }
        let calls = items.compactMap(ToolCallScanner.call)
        return calls.count == items.count ? calls : nil
    }

    /// A new call's id: 9 letters and digits, as Mistral's format needs them (vLLM's MistralToolCall ids).
    static func newId() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return String((0..<9).map { _ in alphabet.randomElement()! })
    }
}
