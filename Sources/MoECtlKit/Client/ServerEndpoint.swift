import Foundation

/// Where requests go and which token they carry, resolved from flags, then environment, then defaults.
public struct ServerEndpoint: Sendable, Equatable {
    public static let defaultURL = "http://127.0.0.1:8080"
    public static let serverVariable = "MOE_SERVER"
    public static let tokenVariable = "MOE_API_TOKEN"

    public var baseURL: URL
    public var token: String?

    public init(baseURL: URL, token: String? = nil) {
        self.baseURL = baseURL
        self.token = token
    }

    /// A flag wins over its environment variable; an empty value counts as unset, so that
    /// `MOE_API_TOKEN= moectl ...` can switch a token off.
    public static func resolve(serverFlag: String?, tokenFlag: String?,
                               environment: [String: String]) throws -> ServerEndpoint {
        func nonEmpty(_ value: String?) -> String? {
            guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
            return value
        }
        let server = nonEmpty(serverFlag) ?? nonEmpty(environment[serverVariable]) ?? defaultURL
        let token = nonEmpty(tokenFlag) ?? nonEmpty(environment[tokenVariable])
        return ServerEndpoint(baseURL: try parseBaseURL(server), token: token)
    }

    /// Accepts `host:port` without a scheme (people type it that way) and drops trailing slashes, so
    /// that a path prefix (a server behind a proxy at `/moe`) survives and `/v1/...` appends cleanly.
    public static func parseBaseURL(_ text: String) throws -> URL {
        let withScheme = text.contains("://") ? text : "http://" + text
        guard var components = URLComponents(string: withScheme),
              let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = components.host, !host.isEmpty
        else {
            throw MoECtlError.usage("invalid server URL '\(text)': expected http://HOST:PORT")
        }
        guard components.query == nil, components.fragment == nil else {
            throw MoECtlError.usage("invalid server URL '\(text)': it must not have a query or fragment")
        }
        while components.path.hasSuffix("/") { components.path.removeLast() }
        guard let url = components.url else {
            throw MoECtlError.usage("invalid server URL '\(text)'")
        }
        return url
    }

    /// `path` starts with `/`; each job id is escaped by the caller with `pathSegment(_:)`.
    public func url(_ path: String) -> URL {
        // Cannot fail for the paths moectl builds (fixed text plus escaped ids); the fallback keeps it total.
        URL(string: baseURL.absoluteString + path) ?? baseURL.appendingPathComponent(path)
    }

    /// Job ids come from the user's command line: escape everything that could change the path.
    public static func pathSegment(_ text: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/?#%;")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    /// The base URL as the user should see it in messages.
    public var display: String { baseURL.absoluteString }
}
