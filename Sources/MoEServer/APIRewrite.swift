import Foundation

/// What the Responses, Messages and llama.cpp routes share: each reads its body as a JSON object and rewrites it as
/// the body of the route it rides on (chat or text completions), with 400s naming the field.
enum APIRewrite {
    static func object(_ body: Data) throws -> [String: Any] {
        guard let r = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw APIError.invalid("request body must be a JSON object")
        }
        return r
    }

    /// The rewritten body. Its `tools`, when given, are written as they are, so that each tool's schema reaches the
    /// template with the client's key order (the templates show it, and Qwen3-Coder's lists parameters in it); the
    /// rest with sorted keys.
    static func body(_ object: [String: Any], tools: [OrderedJSON]? = nil) throws -> Data {
        var object = object
        if tools != nil { object["tools"] = nil }
        guard JSONSerialization.isValidJSONObject(object) else { throw APIError.invalid("request body holds values JSON cannot carry") }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        guard let tools else { return data }
        var text = String(decoding: data, as: UTF8.self)
        text.removeLast()                                       // the object's closing brace
        return Data((text + (text == "{" ? "" : ",") + "\"tools\":" + OrderedJSON.array(tools).python + "}").utf8)
    }

    /// The request's `tools` list read again keeping key order, each as a chat tool: {"type": "function",
    /// "function": {"name", "description", "parameters" (from `schemaKey`, else `defaultSchema`), "strict"}} with
    /// the client's values. Call after the tools were checked.
    static func orderedTools(_ body: Data, schemaKey: String, defaultSchema: OrderedJSON? = nil) -> [OrderedJSON]? {
        guard case .array(let items)? = try? OrderedJSON.parse(String(decoding: body, as: UTF8.self))["tools"] else { return nil }
        return items.map { t in
            var f: [OrderedJSON.Member] = []
            for (from, to) in [("name", "name"), ("description", "description"), (schemaKey, "parameters"), ("strict", "strict")] {
                if let v = t[from] ?? (to == "parameters" ? defaultSchema : nil) { f.append(.init(key: to, value: v)) }
            }
            return .object([.init(key: "type", value: .string("function")), .init(key: "function", value: .object(f))])
        }
    }

    static func invalid(_ message: String, _ param: String) -> APIError { APIError.invalid(message, param: param) }

    /// Content as text: a string, or its text parts (of `types`) joined with newlines, as chat completions join them.
    static func text(_ content: Any?, types: Set<String>, at place: String, param: String) throws -> String {
        if let s = content as? String { return s }
        guard let parts = content as? [[String: Any]] else { throw invalid("\(place) must be text or a list of text parts", param) }
        return try parts.map { p in
            guard types.contains(p["type"] as? String ?? ""), let t = p["text"] as? String else {
                throw APIError.invalid("\(place): only text parts are supported, not \(p["type"] ?? "a part without a type")", param: param,
                                       code: "unsupported_content")
            }
            return t
        }.joined(separator: "\n")
    }
}
