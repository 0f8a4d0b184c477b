import Foundation
import Hummingbird

/// An error as OpenAI's API returns it: status plus {"error": {"message", "type", "param", "code"}}.
public struct APIError: HTTPResponseError, CustomStringConvertible, Sendable {
    public let status: HTTPResponse.Status
    public let message: String
    public let type: String
    public let param: String?
    public let code: String?
    public var retryAfter: Int?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error", param: String? = nil,
                code: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retryAfter = retryAfter
    }

    public var description: String { "\(status.code) \(message)" }

    static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param, code: code)
    }

    /// 413 for a request body past the configured size.
    static func bodyTooLarge(_ maxBytes: Int) -> APIError { APIError(.contentTooLarge, "request body larger than \(maxBytes) bytes") }

    public func response(from request: Request, context: some RequestContext) throws -> Response { response }

    public var response: Response {
        var r = jsonResponse(Body(error: .init(message: message, type: type, param: param, code: code)), status: status)
        if let retryAfter { r.headers[.retryAfter] = String(retryAfter) }
        return r
    }

    /// {"error": {...}}; `param` and `code` are sent as null when absent, as OpenAI does.
    struct Body: Encodable {
        struct Inner: Encodable {
            var message, type: String
            var param, code: String?
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(message, forKey: .message)
                try c.encode(type, forKey: .type)
                try c.encode(param, forKey: .param)
                try c.encode(code, forKey: .code)
            }
            enum CodingKeys: String, CodingKey { case message, type, param, code }
        }
        var error: Inner
    }
}
