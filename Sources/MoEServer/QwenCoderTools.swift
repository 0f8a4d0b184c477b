import Foundation

/// Qwen3-Coder's tool format (Qwen3-Coder-30B-A3B-Instruct, Qwen3-Coder-480B-A35B): tools listed in XML in the system
/// turn, and calls written as
///
///     <tool_call>
///     <function=NAME>
///     <parameter=KEY>
///     VALUE
///     </parameter>
///     </function>
///     </tool_call>
///
/// with each value as plain text. The template's rendering is in `ChatTemplate.renderQwenCoder` (checked against
/// transformers on Tests/Fixtures/chat-templates/qwen3-coder.jinja); a reply's calls are read as vLLM's
/// `qwen3_coder` tool parser reads them, each value converted by the type its tool's schema gives that parameter.
enum QwenCoderCalls {
    /// The calls in a `<tool_call>` block's body (nil when it holds no `<function=`): each `<function=NAME>` up to
    /// its `</function>` (or the end), each `<parameter=KEY>` up to `</parameter>`, the next parameter, the function's
    /// end or the end; one newline trimmed from each end of a value.
    static func calls(_ body: String, schemas: [String: JSONValue?]) -> [ToolCallScanner.Call]? {
        guard body.contains("<function=") else { return nil }
        var calls: [ToolCallScanner.Call] = []
        var rest = Substring(body)
        while let open = rest.range(of: "<function=") {
            var fn = rest[open.upperBound...]
            if let close = fn.range(of: "</function>") {
                rest = fn[close.upperBound...]
                fn = fn[..<close.lowerBound]
            } else {
                rest = ""
            }
            guard let gt = fn.firstIndex(of: ">") else { return nil }
            let name = String(fn[..<gt])
            let properties = Self.properties(schemas[name] ?? nil)
            var args: [OrderedJSON.Member] = []
            var params = fn[fn.index(after: gt)...]
            while let p = params.range(of: "<parameter=") {
                let text = params[p.upperBound...]
                let body: Substring
                let close = text.range(of: "</parameter>"), next = text.range(of: "<parameter=")
                if let c = close, next.map({ c.lowerBound < $0.lowerBound }) ?? true {
                    body = text[..<c.lowerBound]
                    params = text[c.upperBound...]
                } else if let n = next {
                    body = text[..<n.lowerBound]
                    params = text[n.lowerBound...]
                } else {
                    body = text
                    params = ""
                }
                guard let k = body.firstIndex(of: ">") else { return nil }
                var scalars = String(body[body.index(after: k)...]).unicodeScalars
                if scalars.first == "\n" { scalars.removeFirst() }
                if scalars.last == "\n" { scalars.removeLast() }
                let value = String(scalars)
                let key = String(body[..<k]), converted = convert(value, key: key, properties: properties)
                // A repeated key keeps its first place with the last value, as a Python dict does.
                if let at = args.firstIndex(where: { $0.key == key }) { args[at].value = converted } else {
                    args.append(.init(key: key, value: converted))
                }
            }
            calls.append(.init(name: name, arguments: OrderedJSON.object(args).python))
        }
        return calls
    }

    /// A tool's `parameters.properties` (or, as vLLM reads it, the parameters object itself when it has none).
    static func properties(_ schema: JSONValue?) -> [String: JSONValue] {
        guard case .object(let o)? = schema else { return [:] }
        if case .object(let p)? = o["properties"] { return p }
        return o
    }

    /// A value by its parameter's schema type, as vLLM's qwen3_coder parser converts it: "null" (any case) is null;
    /// a parameter the schema does not list, or a string type, stays text; integer types as Python's int(), number
    /// types as float() (whole numbers as integers); booleans true only for "true" (any case); objects and arrays as
    /// JSON, else as a Python literal; any other type as a Python literal; text whenever a conversion fails.
    static func convert(_ value: String, key: String, properties: [String: JSONValue]) -> OrderedJSON {
        if value.lowercased() == "null" { return .null }
        guard let field = properties[key] else { return .string(value) }
        var type = "string"
        if case .object(let f) = field, let t = f["type"] {
            if case .string(let s) = t { type = s.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() } else { type = "" }
        }
        if ["string", "str", "text", "varchar", "char", "enum"].contains(type) { return .string(value) }
        if ["int", "uint", "long", "short", "unsigned"].contains(where: { type.hasPrefix($0) }) {
            return pythonInt(value).map { .integer($0) } ?? .string(value)
        }
        if type.hasPrefix("num") || type.hasPrefix("float") {
            guard let d = pythonFloat(value), d.isFinite else { return .string(value) }
            return d == d.rounded(.towardZero) ? .integer(String(format: "%.0f", d == 0 ? 0 : d)) : .double(d)
        }
        if ["boolean", "bool", "binary"].contains(type) { return .bool(value.lowercased() == "true") }
        if ["object", "array", "arr"].contains(type) || type.hasPrefix("dict") || type.hasPrefix("list"),
           let v = try? OrderedJSON.parse(value) { return v }
        return pythonLiteral(value) ?? .string(value)
    }

    /// Python's int() of a string: surrounding whitespace, a sign, decimal digits with single underscores between
    /// them; the digits as JSON writes the number.
    static func pythonInt(_ s: String) -> String? {
        var t = Substring(s.trimmingCharacters(in: .whitespacesAndNewlines))
        var negative = false
        if let c = t.first, c == "+" || c == "-" { negative = c == "-"; t = t.dropFirst() }
        guard let f = t.first, f.isASCII && f.isNumber, let l = t.last, l.isASCII && l.isNumber, !t.contains("__"),
              t.allSatisfy({ ($0.isASCII && $0.isNumber) || $0 == "_" }) else { return nil }
        let digits = String(t.filter { $0 != "_" }.drop { $0 == "0" })
        return digits.isEmpty ? "0" : (negative ? "-" : "") + digits
    }

    /// Python's float() of a string (decimal forms, underscores between digits, inf and nan), or nil.
    static func pythonFloat(_ s: String) -> Double? {
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !t.lowercased().contains("x"), !t.contains("__"), !t.hasPrefix("_"), !t.hasSuffix("_") else { return nil }
        let chars = Array(t)
        for (i, c) in chars.enumerated() where c == "_" {
            guard i > 0, i < chars.count - 1, chars[i - 1].isNumber, chars[i + 1].isNumber else { return nil }
        }
        return Double(t.replacingOccurrences(of: "_", with: ""))
    }

    /// What Python's ast.literal_eval reads here: None, True, False, a number, a quoted string, or a list or dict
    /// written as JSON without JSON's own true, false and null (which are not Python).
    static func pythonLiteral(_ s: String) -> OrderedJSON? {
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        switch t {
        case "None": return .null
        case "True": return .bool(true)
        case "False": return .bool(false)
        default: break
        }
        // A Python integer literal has no leading zeros (int() takes them).
        if let i = pythonInt(t), !t.drop(while: { $0 == "+" || $0 == "-" }).hasPrefix("0") || i == "0" { return .integer(i) }
        // A float literal has a point or an exponent (and no inf or nan).
        if let d = pythonFloat(t), d.isFinite, t.rangeOfCharacter(from: CharacterSet(charactersIn: ".eE")) != nil,
           t.rangeOfCharacter(from: .letters.subtracting(CharacterSet(charactersIn: "eE"))) == nil {
            return .double(d)
        }
        if t.count >= 2, let q = t.first, q == "'", t.last == q, !t.dropFirst().dropLast().contains(q), !t.contains("\\") {
            return .string(String(t.dropFirst().dropLast()))
        }
        guard let v = try? OrderedJSON.parse(t) else { return nil }
        func python(_ v: OrderedJSON) -> Bool {
            switch v {
            case .bool, .null: return false
            case .array(let a): return a.allSatisfy(python)
            case .object(let m): return m.allSatisfy { python($0.value) }
            default: return true
            }
        }
        return python(v) ? v : nil
    }
}

extension ChatTemplate {
    /// Qwen3-Coder's template (Tests/Fixtures/chat-templates/qwen3-coder.jinja): a system turn with the system
    /// message (or, with tools and none, its default) and the tools in XML; assistant calls as XML blocks, each
    /// argument's value as text (objects and lists as JSON); tool results in `<tool_response>` blocks of one user
    /// turn, which a tool message at the very start does not open.
    func renderQwenCoder(_ messages: [ChatMessage], tools: [OrderedJSON], options: Options) -> String {
        var out = ""
        let system = messages.first?.role == "system" ? messages.first?.content : nil
        let turns = system == nil ? messages[...] : messages.dropFirst()
        if let system { out += "<|im_start|>system\n" + system }
        if !tools.isEmpty {
            if system == nil { out += "<|im_start|>system\nYou are Qwen, a helpful AI assistant that can interact with a computer to solve tasks." }
            out += "\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>"
            for tool in tools {
                let f = tool["function"] ?? tool
                out += "\n<function>\n<name>" + Self.pythonString(f["name"] ?? .null) + "</name>"
                if let d = f["description"] { out += "\n<description>" + Self.pythonString(d).trimmingCharacters(in: .whitespacesAndNewlines) + "</description>" }
                out += "\n<parameters>"
                let parameters = f["parameters"]
                if case .object(let props)? = parameters?["properties"] {
                    for p in props {
                        out += "\n<parameter>\n<name>" + p.key + "</name>"
                        if let t = p.value["type"] { out += "\n<type>" + Self.pythonString(t) + "</type>" }
                        if let d = p.value["description"] {
                            out += "\n<description>" + Self.pythonString(d).trimmingCharacters(in: .whitespacesAndNewlines) + "</description>"
                        }
                        out += Self.extraKeys(p.value, handled: ["name", "type", "description"]) + "\n</parameter>"
                    }
                }
                out += (parameters.map { Self.extraKeys($0, handled: ["type", "properties"]) } ?? "") + "\n</parameters>"
                out += Self.extraKeys(f, handled: ["type", "name", "description", "parameters"]) + "\n</function>"
            }
            out += "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
            out += "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
            out += "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
            out += "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified "
            out += "format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
            out += "- Required parameters MUST be specified\n- You may provide optional reasoning for your function call in "
            out += "natural language BEFORE the function call, but NOT after\n- If there is no function call available, answer "
            out += "the question like normal with your current knowledge and do not tell the user about function calls\n</IMPORTANT>"
        }
        if system != nil || !tools.isEmpty { out += "<|im_end|>\n" }
        let list = Array(turns)
        for (i, m) in list.enumerated() {
            if m.role == "assistant" && !m.toolCalls.isEmpty {
                out += "<|im_start|>assistant"
                let content = m.content.trimmingCharacters(in: .whitespacesAndNewlines)
                if !content.isEmpty { out += "\n" + content + "\n" }
                for call in m.toolCalls {
                    out += "\n<tool_call>\n<function=" + call.name + ">\n"
                    if case .object(let args) = call.arguments {
                        for a in args { out += "<parameter=" + a.key + ">\n" + Self.jinjaText(a.value) + "\n</parameter>\n" }
                    }
                    out += "</function>\n</tool_call>"
                }
                out += "<|im_end|>\n"
            } else if m.role == "tool" {
                if i > 0 && list[i - 1].role != "tool" { out += "<|im_start|>user\n" }
                out += "<tool_response>\n" + m.content + "\n</tool_response>\n"
                if i == list.count - 1 || list[i + 1].role != "tool" { out += "<|im_end|>\n" }
            } else {
                out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n"
            }
        }
        return out + (options.addGenerationPrompt ? "<|im_start|>assistant\n" : "")
    }

    /// The template's render_extra_keys: each key not handled, in order, as `\n<key>value</key>` (`jinjaText`).
    static func extraKeys(_ v: OrderedJSON, handled: Set<String>) -> String {
        guard case .object(let members) = v else { return "" }
        return members.filter { !handled.contains($0.key) }.map { "\n<" + $0.key + ">" + jinjaText($0.value) + "</" + $0.key + ">" }.joined()
    }

    /// A value as the template writes it: objects and lists as JSON (`tojson`), anything else as Jinja's `| string`.
    static func jinjaText(_ v: OrderedJSON) -> String {
        switch v {
        case .object, .array: return v.python
        default: return pythonString(v)
        }
    }

    /// Jinja's `| string` of a JSON value as transformers holds it: Python's str() (the text itself for a string).
    static func pythonString(_ v: OrderedJSON) -> String {
        if case .string(let s) = v { return s }
        return v.pythonRepr
    }
}
