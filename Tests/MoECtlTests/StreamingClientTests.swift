import Foundation
import Testing
@testable import MoECtlKit

/// In-process checks of the streaming reader against the protocol stand-in (see EndToEndTests).
@Suite("Streaming client", .serialized)
struct StreamingClientTests {
    @Test func eventsArriveWhileTheResponseIsStillBeingSent() async throws {
        try await FakeServer.with { server in
            let client = APIClient(endpoint: ServerEndpoint(baseURL: URL(string: server.url)!))
            // The stand-in waits 0.4 s between the chunks of "__slow__".
            let events = try client.streamCompletion(
                CompletionRequest(prompt: "__slow__", sampling: SamplingParameters(maxTokens: 3), includeUsage: true))
            let clock = ContinuousClock()
            let start = clock.now
            var arrivals: [(String, Duration)] = []
            for try await event in events {
                if case .chunk(let chunk) = try CompletionStreamEvent.decode(event.data), let text = chunk.choices.first?.text {
                    arrivals.append((text, clock.now - start))
                }
            }
            #expect(arrivals.map(\.0) == ["Silicon", " routers", " hum"])
            let first = try #require(arrivals.first?.1)
            let last = try #require(arrivals.last?.1)
            #expect(last - first >= .milliseconds(500), "first piece at \(first), last at \(last): the body was buffered")
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
