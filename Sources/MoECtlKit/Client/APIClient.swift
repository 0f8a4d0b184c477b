import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A decoded response together with the exact bytes the server sent, which `--json` prints unchanged
/// (re-encoding would drop fields moectl does not model and reorder keys).
public struct Fetched<Value: Sendable>: Sendable {
    public var value: Value
    public var raw: Data
}

/// The moe-serve HTTP API, one method per endpoint moectl uses.
public final class APIClient: Sendable {
    public let endpoint: ServerEndpoint
    private let session: URLSession

    /// Completions can legitimately take minutes before the first byte (long prompt, busy server);
    /// everything else answers at once or not at all.
    static let generationTimeout: TimeInterval = 3600
    static let requestTimeout: TimeInterval = 60

    public init(endpoint: ServerEndpoint) {
        self.endpoint = endpoint
        let configuration = URLSessionConfiguration.ephemeral
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: configuration)
    }

    deinit { session.finishTasksAndInvalidate() }

    // MARK: Endpoints

    public func health() async throws -> Fetched<HealthStatus> {
        try await decoded(HealthStatus.self, "GET", "/health")
    }

    public func models() async throws -> Fetched<ModelList> {
        try await decoded(ModelList.self, "GET", "/v1/models")
    }

    public func complete(_ request: CompletionRequest) async throws -> Fetched<CompletionResponse> {
        var request = request
        request.stream = false
        return try await decoded(CompletionResponse.self, "POST", "/v1/completions", body: encode(request),
                                 timeout: Self.generationTimeout)
    }

    /// The raw SSE events of a streaming completion; decode each with `CompletionStreamEvent.decode`.
    public func streamCompletion(_ request: CompletionRequest) throws -> AsyncThrowingStream<SSEEvent, any Error> {
        var request = request
        request.stream = true
        var urlRequest = makeRequest("POST", "/v1/completions", body: try encode(request),
                                     timeout: Self.generationTimeout)
        urlRequest.setValue("text/event-stream", forHTTPHeaderField: "Accept")
        return SSEEventSource.events(for: urlRequest, server: endpoint.display, sentToken: endpoint.token != nil)
    }

    public func submitJob(_ request: JobRequest) async throws -> Fetched<Job> {
        try await decoded(Job.self, "POST", "/v1/jobs", body: encode(request))
    }

    public func jobs() async throws -> Fetched<JobList> {
        try await decoded(JobList.self, "GET", "/v1/jobs")
    }

    public func job(id: String) async throws -> Fetched<Job> {
        try await decoded(Job.self, "GET", "/v1/jobs/\(ServerEndpoint.pathSegment(id))")
    }

    public func cancelJob(id: String) async throws -> Fetched<Job> {
        try await decoded(Job.self, "DELETE", "/v1/jobs/\(ServerEndpoint.pathSegment(id))")
    }

    /// The NDJSON body as sent, after checking each line is a result object.
    public func jobResults(id: String) async throws -> Data {
        let path = "/v1/jobs/\(ServerEndpoint.pathSegment(id))/results"
        let body = try await send("GET", path, body: nil, timeout: Self.requestTimeout)
        let decoder = JSONDecoder()
        for (offset, line) in body.split(separator: UInt8(ascii: "\n")).enumerated()
        where !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) {
            do {
                _ = try decoder.decode(JobResultLine.self, from: Data(line))
            } catch {
                throw MoECtlError.unexpectedResponse(
                    "GET \(path): line \(offset + 1) is not a result object (\(DecodingProblem.describe(error)))")
            }
        }
        return body
    }

    /// GET /v1/stats as sent (a JSON object).
    public func stats() async throws -> Data {
        try await send("GET", "/v1/stats", body: nil, timeout: Self.requestTimeout)
    }

    /// POST /v1/rebalance: the report as sent.
    public func rebalance(dryRun: Bool) async throws -> Data {
        let body = try JSONSerialization.data(withJSONObject: ["dry_run": dryRun])
        return try await send("POST", "/v1/rebalance", body: body, timeout: Self.generationTimeout)
    }

    // MARK: Plumbing

    private func decoded<Value: Decodable & Sendable>(_ type: Value.Type, _ method: String, _ path: String,
                                                      body: Data? = nil,
                                                      timeout: TimeInterval = requestTimeout) async throws -> Fetched<Value> {
        let raw = try await send(method, path, body: body, timeout: timeout)
        do {
            return Fetched(value: try JSONDecoder().decode(type, from: raw), raw: raw)
        } catch {
            throw MoECtlError.unexpectedResponse(
                "\(method) \(path): \(DecodingProblem.describe(error)) in \(Snippet.of(String(decoding: raw, as: UTF8.self)))")
        }
    }

    /// One request; returns the body of a 2xx answer and throws `MoECtlError` for everything else.
    private func send(_ method: String, _ path: String, body: Data?, timeout: TimeInterval) async throws -> Data {
        let request = makeRequest(method, path, body: body, timeout: timeout)
        let server = endpoint.display
        let sentToken = endpoint.token != nil
        // dataTask + continuation rather than `session.data(for:)`: same behaviour on every Foundation.
        return try await withCheckedThrowingContinuation { continuation in
            let task = session.dataTask(with: request) { data, response, error in
                if let error {
                    continuation.resume(throwing: TransportError.map(error, server: server))
                    return
                }
                guard let response = response as? HTTPURLResponse else {
                    continuation.resume(throwing: MoECtlError.unexpectedResponse("not an HTTP response"))
                    return
                }
                let data = data ?? Data()
                guard (200..<300).contains(response.statusCode) else {
                    let failure = TransportError.failure(for: response, body: data, sentToken: sentToken)
                    continuation.resume(throwing: MoECtlError.http(failure))
                    return
                }
                continuation.resume(returning: data)
            }
            task.resume()
        }
    }

    private func makeRequest(_ method: String, _ path: String, body: Data?, timeout: TimeInterval) -> URLRequest {
        var request = URLRequest(url: endpoint.url(path), timeoutInterval: timeout)
        request.httpMethod = method
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        if let token = endpoint.token {
            request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        }
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        return request
    }

    private func encode(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return try encoder.encode(value)
    }
}
