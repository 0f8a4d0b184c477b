import Foundation

/// The `{"error": {...}}` body of every 4xx/5xx answer (and of an error event inside a stream).
public struct ServerErrorBody: Decodable, Sendable, Equatable {
    public var message: String
    public var type: String?
    public var param: String?
    public var code: String?

    enum Outer: String, CodingKey { case error }
    enum CodingKeys: String, CodingKey { case message, type, param, code }

    public init(message: String, type: String? = nil, param: String? = nil, code: String? = nil) {
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public init(from decoder: any Decoder) throws {
        let outer = try decoder.container(keyedBy: Outer.self)
        let inner = try outer.nestedContainer(keyedBy: CodingKeys.self, forKey: .error)
        message = try inner.decode(String.self, forKey: .message)
        type = try? inner.decodeIfPresent(String.self, forKey: .type)
        param = try? inner.decodeIfPresent(String.self, forKey: .param)
        // OpenAI-style servers use string codes, some others numbers: either is only shown, never matched.
        if let text = try? inner.decodeIfPresent(String.self, forKey: .code) {
            code = text
        } else if let number = try? inner.decodeIfPresent(Int.self, forKey: .code) {
            code = String(number)
        } else {
            code = nil
        }
    }

    /// Nil when the body is not the documented error shape (a proxy's HTML page, an empty body, ...).
    public static func decode(_ data: Data) -> ServerErrorBody? {
        try? JSONDecoder().decode(ServerErrorBody.self, from: data)
    }
}
