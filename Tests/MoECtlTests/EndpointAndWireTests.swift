import Foundation
import Testing
@testable import MoECtlKit

@Suite("Server endpoint")
struct ServerEndpointTests {
    @Test func defaultsToLocalhost8080WithoutToken() throws {
        let endpoint = try ServerEndpoint.resolve(serverFlag: nil, tokenFlag: nil, environment: [:])
        #expect(endpoint.display == "http://127.0.0.1:8080")
        #expect(endpoint.token == nil)
    }

    @Test func environmentIsUsedWhenNoFlagIsGiven() throws {
        let endpoint = try ServerEndpoint.resolve(serverFlag: nil, tokenFlag: nil,
                                                  environment: ["MOE_SERVER": "http://gpu:9000", "MOE_API_TOKEN": "env"])
        #expect(endpoint.display == "http://gpu:9000")
        #expect(endpoint.token == "env")
    }

    @Test func flagsWinOverEnvironment() throws {
        let endpoint = try ServerEndpoint.resolve(serverFlag: "http://flag:1", tokenFlag: "flag",
                                                  environment: ["MOE_SERVER": "http://env:2", "MOE_API_TOKEN": "env"])
        #expect(endpoint.display == "http://flag:1")
        #expect(endpoint.token == "flag")
    }

    @Test func emptyValuesCountAsUnset() throws {
        let endpoint = try ServerEndpoint.resolve(serverFlag: "", tokenFlag: nil,
                                                  environment: ["MOE_SERVER": "", "MOE_API_TOKEN": ""])
        #expect(endpoint.display == "http://127.0.0.1:8080")
        #expect(endpoint.token == nil)
    }

    @Test func acceptsHostPortAndKeepsPathPrefixes() throws {
        #expect(try ServerEndpoint.parseBaseURL("localhost:8080").absoluteString == "http://localhost:8080")
        let proxied = ServerEndpoint(baseURL: try ServerEndpoint.parseBaseURL("https://h/moe/"))
        #expect(proxied.url("/v1/jobs").absoluteString == "https://h/moe/v1/jobs")
    }

    @Test func rejectsURLsThatAreNotHTTP() {
        for bad in ["ftp://h", "http://", "http://h/?q=1", "://"] {
            #expect(throws: MoECtlError.self, "\(bad)") { try ServerEndpoint.parseBaseURL(bad) }
        }
    }

    @Test func jobIDsCannotEscapeTheirPathSegment() {
        #expect(ServerEndpoint.pathSegment("job_1") == "job_1")
        #expect(ServerEndpoint.pathSegment("../health?x#y") == "..%2Fhealth%3Fx%23y")
    }
}

@Suite("Wire encoding")
struct WireEncodingTests {
    private func json(_ value: some Encodable) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(value)) as? [String: Any])
    }

    @Test func completionRequestOmitsUnsetSamplingFields() throws {
        let body = try json(CompletionRequest(prompt: "hi", sampling: SamplingParameters(maxTokens: 64)))
        #expect(Set(body.keys) == ["prompt", "max_tokens", "stream"])
    }

    @Test func streamingRequestAsksForUsage() throws {
        let body = try json(CompletionRequest(prompt: "hi", sampling: SamplingParameters(temperature: 0.8, topP: 0.95,
            topK: 40, seed: 1, stop: ["\n\n"]), stream: true, includeUsage: true))
        #expect(body["stream"] as? Bool == true)
        #expect((body["stream_options"] as? [String: Bool]) == ["include_usage": true])
        #expect(body["top_p"] as? Double == 0.95)
        #expect(body["top_k"] as? Int == 40)
        #expect(body["stop"] as? [String] == ["\n\n"])
    }

    @Test func jobRequestNestsPerPromptOverrides() throws {
        let request = JobRequest(prompts: [PromptItem(prompt: "a", overrides: SamplingParameters(maxTokens: 32)),
                                           PromptItem(prompt: "b")],
                                 sampling: SamplingParameters(maxTokens: 128, temperature: 0))
        let body = try json(request)
        #expect(body["max_tokens"] as? Int == 128)
        #expect(body["temperature"] as? Double == 0)
        let prompts = try #require(body["prompts"] as? [[String: Any]])
        #expect(prompts.count == 2)
        #expect(prompts[0]["max_tokens"] as? Int == 32)
        #expect(Set(prompts[1].keys) == ["prompt"])
    }

    @Test func jobDecodesFromTheDocumentedObject() throws {
        let job = try JSONDecoder().decode(Job.self, from: Data(
            #"{"id": "job_5f2c", "object": "job", "status": "queued", "total": 50, "completed": 0, "failed": 0, "created": 1764000000, "finished_at": null}"#.utf8))
        #expect(job == Job(id: "job_5f2c", status: .queued, total: 50, created: 1_764_000_000))
        #expect(!job.status.isTerminal)
        #expect(JobStatus(rawValue: "paused").isTerminal == false)
        #expect([JobStatus.completed, .failed, .cancelled].allSatisfy { $0.isTerminal })
    }
}
