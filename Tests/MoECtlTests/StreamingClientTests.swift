import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import MoECtlKit

/// In-process checks of the streaming reader against the protocol stand-in (see EndToEndTests).
@Suite("Streaming client", .serialized)
struct StreamingClientTests {
    @Test(.timeLimit(.minutes(2)))
    func eventsArriveWhileTheResponseIsStillBeingSent() async throws {
        try await FakeServer.with { server in
            let client = APIClient(endpoint: ServerEndpoint(baseURL: URL(string: server.url)!))
            // The stand-in sends the first chunk of "__slow__" and then waits for /_debug/continue (10 s at most):
            // only a client that hands events over as they arrive sees that chunk before asking to continue.
            let events = try client.streamCompletion(
                CompletionRequest(prompt: "__slow__", sampling: SamplingParameters(maxTokens: 3), includeUsage: true))
            let clock = ContinuousClock()
            let start = clock.now
            var arrivals: [(String, Duration)] = []
            for try await event in events {
                if case .chunk(let chunk) = try CompletionStreamEvent.decode(event.data), let text = chunk.choices.first?.text {
                    arrivals.append((text, clock.now - start))
                    if arrivals.count == 1 {
                        _ = try? await URLSession.shared.data(from: URL(string: server.url + "/_debug/continue")!)
                    }
                }
            }
            #expect(arrivals.map(\.0) == ["Silicon", " routers", " hum"])
            let (answer, _) = try await URLSession.shared.data(from: URL(string: server.url + "/_debug/continued")!)
            let continued = (try JSONSerialization.jsonObject(with: answer) as? [String: Any])?["continued"] as? Bool
            #expect(continued == true, "the stand-in gave up waiting: the first piece did not arrive before the rest (buffered)")
        }
    }

    @Test func httpErrorOnAStreamIsThrownWithTheServerMessage() async throws {
        try await FakeServer.with { server in
            let client = APIClient(endpoint: ServerEndpoint(baseURL: URL(string: server.url)!))
            let events = try client.streamCompletion(CompletionRequest(prompt: "__429__"))
            await #expect(throws: MoECtlError.http(HTTPFailure(status: 429, message: "server overloaded, too many waiting requests",
                                                               type: "rate_limit_error", retryAfter: "7"))) {
                for try await _ in events {}
            }
        }
    }
}
