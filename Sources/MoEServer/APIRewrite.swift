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

    /// The rewritten body (sorted keys: a tool's schema reaches the template in that order, not the client's).
    static func body(_ object: [String: Any]) throws -> Data {
        guard JSONSerialization.isValidJSONObject(object) else { throw APIError.invalid("request body holds values JSON cannot carry") }
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
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
