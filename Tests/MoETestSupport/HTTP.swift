import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A minimal HTTP client for tests (URLSession, no extra packages).
public enum HTTP {
    public struct Reply: Sendable {
        public let status: Int
        public let headers: [String: String]
        public let body: Data
        public var text: String { String(decoding: body, as: UTF8.self) }
        public var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
    }

    public static func request(_ method: String, _ url: String, json: Any? = nil, body: Data? = nil,
                               headers: [String: String] = [:], timeout: Double = 120) async throws -> Reply {
        var r = URLRequest(url: URL(string: url)!)
        r.httpMethod = method
        r.timeoutInterval = timeout
        // Keys sorted: a dictionary's order varies from one body to the next, and the server keeps what order it
        // reads where it matters (tools in a prompt), so the same request must be the same bytes.
        if let j = json { r.httpBody = try JSONSerialization.data(withJSONObject: j, options: .sortedKeys); r.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        if let b = body { r.httpBody = b }
        for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
        let (data, resp) = try await URLSession.shared.data(for: r)
        let h = resp as! HTTPURLResponse
        var hs: [String: String] = [:]
        for (k, v) in h.allHeaderFields { hs[String(describing: k).lowercased()] = String(describing: v) }
        return Reply(status: h.statusCode, headers: hs, body: data)
    }

    public static func get(_ url: String, headers: [String: String] = [:]) async throws -> Reply {
        try await request("GET", url, headers: headers)
    }

    public static func post(_ url: String, _ json: Any, headers: [String: String] = [:]) async throws -> Reply {
        try await request("POST", url, json: json, headers: headers)
    }

    /// A usage object's counts: its integer fields (prompt, completion and total tokens), its nested details left out.
    public static func counts(_ usage: Any?) -> [String: Int]? {
        (usage as? [String: Any])?.compactMapValues { $0 as? Int }
    }

    /// The `data:` payloads of a server-sent-events body.
    public static func events(_ body: String) -> [String] {
        body.components(separatedBy: "\n\n").compactMap { block in
            block.split(separator: "\n").first { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
        }
    }
}
