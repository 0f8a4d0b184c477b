import Foundation

/// GLM-4.5/4.6's chat format (`[gMASK]<sop>`, `<|system|>`, `<|user|>`, `<|assistant|>`, `<|observation|>` turns; the
/// reply's reasoning in `<think>…</think>`) and its tool calls, written as
///
///     <tool_call>NAME
///     <arg_key>KEY</arg_key>
///     <arg_value>VALUE</arg_value>
///     </tool_call>
///
/// with string values as plain text and the others as JSON. The rendering follows GLM-4.6's published template
/// (Tests/Fixtures/chat-templates/glm-4.6.jinja, checked against transformers); a reply's calls are read as vLLM's
/// `glm45` tool parser reads them.
enum GLMCalls {
    /// The call in a `<tool_call>` block's body (nil when it has no name): the name is the text before the first
    /// `<arg_key>` (all of it without arguments), trimmed; each `<arg_key>K</arg_key>` followed (after whitespace)
    /// by `<arg_value>V</arg_value>` is one argument, both trimmed. A value stays text where the tool's schema types
    /// the parameter as a string; otherwise it is read as JSON, else as a Python literal, else kept as text.
    static func calls(_ body: String, schemas: [String: JSONValue?]) -> [ToolCallScanner.Call]? {
        let nameEnd = body.range(of: "<arg_key>")?.lowerBound ?? body.endIndex
        let name = body[..<nameEnd].trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, !name.contains("<"), !name.contains("\n") else { return nil }
        let properties = QwenCoderCalls.properties(schemas[name] ?? nil)
        var args: [OrderedJSON.Member] = []
        var rest = body[nameEnd...]
        while let k = rest.range(of: "<arg_key>") {
            guard let kEnd = rest[k.upperBound...].range(of: "</arg_key>") else { break }
            let afterKey = rest[kEnd.upperBound...]
            let gap = afterKey.prefix { $0.isWhitespace }
            guard afterKey.dropFirst(gap.count).hasPrefix("<arg_value>") else {
                rest = afterKey
                continue
            }
            let valueStart = afterKey.index(gap.endIndex, offsetBy: "<arg_value>".count)
            guard let vEnd = afterKey[valueStart...].range(of: "</arg_value>") else { break }
            let key = rest[k.upperBound..<kEnd.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
            let text = afterKey[valueStart..<vEnd.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
            let value = isString(properties[key]) ? .string(text) : (try? OrderedJSON.parse(text)) ?? QwenCoderCalls.pythonLiteral(text) ?? .string(text)
            // A repeated key keeps its first place with the last value, as a Python dict does.
            if let at = args.firstIndex(where: { $0.key == key }) { args[at].value = value } else { args.append(.init(key: key, value: value)) }
            rest = afterKey[vEnd.upperBound...]
        }
        return [ToolCallScanner.Call(name: name, arguments: OrderedJSON.object(args).python)]
    }

    /// vLLM's rule: a parameter is text when its schema's `type` is exactly "string".
    static func isString(_ schema: JSONValue?) -> Bool {
        guard case .object(let o)? = schema, case .string(let t)? = o["type"] else { return false }
        return t == "string"
    }
}

extension ChatTemplate {
    /// GLM-4.5/4.6's template: the tools (each as JSON) in a first system turn; each user turn (with "/nothink" added
    /// when thinking is off), each reply as `<think>` reasoning (kept only after the last user turn, else empty),
    /// its text and its calls; tool results in `<tool_response>` blocks of one `<|observation|>` turn.
    /// GLM-4.7's (`compact`, GLM-4.7 and 4.7-Flash) writes the same turns without the newlines between their parts,
    /// no "/nothink", an earlier reply without reasoning as a bare "</think>", calls as `<tool_call>NAME<arg_key>…`,
    /// results without newlines; the reply opens with "<think>" (or "</think>" with thinking off), and
    /// `clear_thinking: false` keeps every earlier reply's reasoning.
    func renderGLM(_ messages: [ChatMessage], tools: [OrderedJSON], options: Options) -> String {
        let nl = glmCompact ? "" : "\n"
        var out = "[gMASK]<sop>"
        if !tools.isEmpty {
            out += "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            out += "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            for t in tools { out += t.python + "\n" }
            out += "</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\n"
            out += "<tool_call>{function-name}" + nl + "<arg_key>{arg-key-1}</arg_key>" + nl + "<arg_value>{arg-value-1}</arg_value>" + nl
            out += "<arg_key>{arg-key-2}</arg_key>" + nl + "<arg_value>{arg-value-2}</arg_value>" + nl + "..." + nl + "</tool_call>"
        }
        let thinkingOff = options.enableThinking == false
        let lastUser = messages.lastIndex { $0.role == "user" } ?? -1
        for (i, m) in messages.enumerated() {
            switch m.role {
            case "user":
                out += "<|user|>" + nl + m.content + (thinkingOff && !glmCompact && !m.content.hasSuffix("/nothink") ? "/nothink" : "")
            case "assistant":
                var content = m.content, reasoning = m.reasoningContent ?? ""
                if m.reasoningContent == nil, content.contains("</think>") {
                    let parts = content.components(separatedBy: "</think>")
                    reasoning = String(parts[0].rstrippingNewlines.components(separatedBy: "<think>").last!).lstrippingNewlines
                    content = parts.last!.lstrippingNewlines
                }
                out += "<|assistant|>"
                let kept = (glmCompact && options.clearThinking == false) || i > lastUser
                out += kept && !reasoning.isEmpty ? nl + "<think>" + reasoning.trimmingCharacters(in: .whitespacesAndNewlines) + "</think>"
                    : glmCompact ? "</think>" : "\n<think></think>"
                let text = content.trimmingCharacters(in: .whitespacesAndNewlines)
                if !text.isEmpty { out += nl + text }
                for call in m.toolCalls {
                    out += nl + "<tool_call>" + call.name + nl
                    if case .object(let args) = call.arguments {
                        for a in args {
                            let value: String
                            if case .string(let s) = a.value { value = s } else { value = a.value.python }
                            out += "<arg_key>" + a.key + "</arg_key>" + nl + "<arg_value>" + value + "</arg_value>" + nl
                        }
                    }
                    out += "</tool_call>"
                }
            case "tool":
                if i == 0 || messages[i - 1].role != "tool" { out += "<|observation|>" }
                out += nl + "<tool_response>" + nl + m.content + nl + "</tool_response>"
            default:
                out += "<|system|>" + nl + m.content
            }
        }
        guard options.addGenerationPrompt else { return out }
        if glmCompact { return out + "<|assistant|>" + (thinkingOff ? "</think>" : "<think>") }
        return out + "<|assistant|>" + (thinkingOff ? "\n<think></think>" : "")
    }
}
