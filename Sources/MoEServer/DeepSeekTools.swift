import Foundation

/// DeepSeek-V3.1's tool calls, written as
///
///     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{arguments}<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>
///
/// with the tools listed in the system prompt as DeepSeek documents them (`### NAME`, `Description:`, `Parameters:`
/// and the format's rules). The prompt is rendered as vLLM's tool template for V3.1 renders it
/// (Tests/Fixtures/chat-templates/deepseek-v3.1-tools.jinja, checked against transformers, its indentation included);
/// a reply's calls are read as vLLM's `deepseek_v31` parser reads them.
enum DeepSeekCalls {
    static let begin = "<｜tool▁calls▁begin｜>", end = "<｜tool▁calls▁end｜>"
    static let callBegin = "<｜tool▁call▁begin｜>", sep = "<｜tool▁sep｜>", callEnd = "<｜tool▁call▁end｜>"
    static let outputBegin = "<｜tool▁output▁begin｜>", outputEnd = "<｜tool▁output▁end｜>"
    static let eos = "<｜end▁of▁sentence｜>"

    /// The calls of a block's body: each `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>`, its name
    /// trimmed; arguments that are a JSON object are written as json.dumps writes them, others kept as the model wrote
    /// them (vLLM returns them as written).
    static func calls(_ body: String) -> [ToolCallScanner.Call] {
        var out: [ToolCallScanner.Call] = []
        var rest = body[...]
        while let b = rest.range(of: callBegin), let s = rest[b.upperBound...].range(of: sep),
              let e = rest[s.upperBound...].range(of: callEnd) {
            let name = rest[b.upperBound..<s.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
            let args = String(rest[s.upperBound..<e.lowerBound])
            let parsed = try? OrderedJSON.parse(args)
            if case .object? = parsed { out.append(.init(name: name, arguments: parsed!.python)) } else { out.append(.init(name: name, arguments: args)) }
            rest = rest[e.upperBound...]
        }
        return out
    }
}

extension ChatTemplate {
    /// vLLM's tool template for DeepSeek-V3.1: "\n\n", BOS, the system messages joined by a blank line and the tools'
    /// list, then the turns, each output with the spaces that indent it in the template's source (Jinja keeps a line's
    /// indentation before an expression when the tag before it does not trim it): a reply that follows a user turn opens
    /// with "<｜Assistant｜>" and "</think>", a reply of calls writes its text and its calls, a tool result stands in its
    /// output markers, and the reply asked for opens with "<think>" or "</think>" by `opensThinking(options)`.
    func renderDeepSeekV31Tools(_ messages: [ChatMessage], tools: [OrderedJSON], options: Options) -> String {
        var system = messages.filter { $0.role == "system" }.map(\.content).joined(separator: "\n\n")
        if !tools.isEmpty {
            var list = "## Tools\nYou have access to the following tools:\n"
            for t in tools {
                let f = t["function"]
                list += "\n### " + (f?["name"]?.stringValue ?? "") + "\nDescription: " + (f?["description"]?.stringValue ?? "")
                list += "\n\nParameters: " + (f?["parameters"]?.python ?? "null") + "\n"
            }
            list += "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n" + DeepSeekCalls.begin + DeepSeekCalls.callBegin
            list += "tool_call_name" + DeepSeekCalls.sep + "tool_call_arguments" + DeepSeekCalls.callEnd + "{{additional_tool_calls}}"
            list += DeepSeekCalls.end + "\n\nWhere:\n\n- `tool_call_name` must be an exact match to one of the available tools\n"
            list += "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
            list += "- For multiple tool calls, chain them directly without separators or spaces\n"
            system += "\n\n" + list
        }
        func pad(_ n: Int) -> String { String(repeating: " ", count: n) }
        var out = "\n\n" + bos + system
        var lastUser = false, afterTool = false
        for m in messages {
            switch m.role {
            case "user":
                out += "<｜User｜>" + m.content
                lastUser = true
                afterTool = false
            case "assistant" where !m.toolCalls.isEmpty:
                if lastUser { out += pad(6) + "<｜Assistant｜></think>" }
                lastUser = false
                afterTool = false
                for (i, call) in m.toolCalls.enumerated() {
                    let one = DeepSeekCalls.callBegin + call.name + DeepSeekCalls.sep + call.arguments.python + DeepSeekCalls.callEnd
                    out += i == 0 ? pad(10) + m.content + DeepSeekCalls.begin + one : pad(8) + one
                }
                out += pad(4) + DeepSeekCalls.end + DeepSeekCalls.eos
            case "assistant":
                if lastUser { out += pad(6) + "<｜Assistant｜>" + pad(8) + "</think>" }
                lastUser = false
                var content = m.content
                if !afterTool, let close = content.range(of: "</think>") { content = String(content[close.upperBound...]) }
                out += pad(6) + content + DeepSeekCalls.eos
                afterTool = false
            case "tool":
                out += DeepSeekCalls.outputBegin + m.content + DeepSeekCalls.outputEnd
                lastUser = false
                afterTool = true
            default:
                continue
            }
        }
        guard options.addGenerationPrompt && lastUser && !afterTool else { return out }
        return out + pad(2) + "<｜Assistant｜>" + pad(4) + (opensThinking(options) ? "<think>" : "</think>")
    }
}
