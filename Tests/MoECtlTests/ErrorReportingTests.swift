import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
@testable import MoECtlKit

@Suite("Errors and exit statuses")
struct ErrorReportingTests {
    @Test func decodesTheDocumentedErrorBody() {
        let body = Data(#"{"error": {"message": "job not found", "type": "invalid_request_error", "param": "job_id", "code": "job_not_found"}}"#.utf8)
        #expect(ServerErrorBody.decode(body) ==
            ServerErrorBody(message: "job not found", type: "invalid_request_error", param: "job_id", code: "job_not_found"))
    }

    @Test func acceptsNullAndNumericOptionalFields() {
        let body = Data(#"{"error": {"message": "m", "type": null, "param": null, "code": 500}}"#.utf8)
        #expect(ServerErrorBody.decode(body) == ServerErrorBody(message: "m", code: "500"))
    }

    @Test func otherBodiesAreNotMistakenForErrors() {
        #expect(ServerErrorBody.decode(Data("<html>Bad Gateway</html>".utf8)) == nil)
        #expect(ServerErrorBody.decode(Data(#"{"error": "plain"}"#.utf8)) == nil)
        #expect(ServerErrorBody.decode(Data()) == nil)
    }

    @Test func httpFailureUsesTheErrorMessageAndRetryAfter() throws {
        let url = URL(string: "http://x/v1/completions")!
        let response = try #require(HTTPURLResponse(url: url, statusCode: 429, httpVersion: "HTTP/1.1",
                                                    headerFields: ["Retry-After": "7"]))
        let failure = TransportError.failure(
            for: response, body: Data(#"{"error": {"message": "busy", "type": "rate_limit_error"}}"#.utf8), sentToken: false)
        #expect(failure == HTTPFailure(status: 429, message: "busy", type: "rate_limit_error", retryAfter: "7"))
    }

    @Test func httpFailureFallsBackToTheBodyTextOrStatusName() throws {
        let url = URL(string: "http://x/")!
        let response = try #require(HTTPURLResponse(url: url, statusCode: 502, httpVersion: nil, headerFields: [:]))
        #expect(TransportError.failure(for: response, body: Data("upstream down\n".utf8), sentToken: false).message
            == "upstream down")
        #expect(!TransportError.failure(for: response, body: Data(), sentToken: false).message.isEmpty)
    }

    @Test func everyErrorMapsToItsDocumentedExitStatus() {
        let job = Job(id: "job_1", status: .failed, total: 2, completed: 1, failed: 1)
        #expect(ExitStatus.of(MoECtlError.usage("x")).rawValue == 64)
        #expect(ExitStatus.of(MoECtlError.http(HTTPFailure(status: 404, message: "x"))).rawValue == 2)
        #expect(ExitStatus.of(MoECtlError.unexpectedResponse("x")).rawValue == 2)
        #expect(ExitStatus.of(MoECtlError.streamError("x")).rawValue == 2)
        #expect(ExitStatus.of(MoECtlError.unreachable(server: "s", reason: "r")).rawValue == 3)
        #expect(ExitStatus.of(MoECtlError.jobEnded(job)).rawValue == 4)
        #expect(ExitStatus.of(CocoaError(.fileReadUnknown)).rawValue == 1)
    }

    @Test func helpTextDocumentsEveryExitStatus() {
        for status in ExitStatus.allCases where status != .internalError {
            #expect(ExitStatus.helpDiscussion.contains("  \(status.rawValue) "), "exit \(status.rawValue)")
        }
    }

    @Test func httpErrorMessageNamesTheStatus() {
        #expect(ErrorReport.message(for: MoECtlError.http(HTTPFailure(status: 404, message: "job 'x' not found")))
            == "error: job 'x' not found (HTTP 404)")
    }

    @Test func rateLimitMessageMentionsRetryAfter() {
        let message = ErrorReport.message(for: MoECtlError.http(HTTPFailure(status: 429, message: "busy", retryAfter: "7")))
        #expect(message == "error: busy (HTTP 429); the server asks to retry after 7 s (Retry-After)")
    }

    @Test func unauthorizedMessageExplainsHowToSendAToken() {
        let withoutToken = ErrorReport.message(for: MoECtlError.http(HTTPFailure(status: 401, message: "no token")))
        #expect(withoutToken.contains("MOE_API_TOKEN") && withoutToken.contains("--token"))
        let withToken = ErrorReport.message(for: MoECtlError.http(HTTPFailure(status: 401, message: "bad", sentToken: true)))
        #expect(withToken.contains("rejected the token"))
    }

    @Test func unreachableMessageSaysHowToStartOrPointAtAServer() {
        let message = ErrorReport.message(for: MoECtlError.unreachable(server: "http://127.0.0.1:8080", reason: "connection refused"))
        #expect(message.hasPrefix("error: cannot reach the moe-serve server at http://127.0.0.1:8080 (connection refused). "
            + "Is it running? Start one with: moe-serve serve --model DIR"))
        #expect(message.contains("--server") && message.contains("MOE_SERVER"))
    }

    @Test func transportErrorsBecomeUnreachable() {
        let refused = TransportError.map(URLError(.cannotConnectToHost), server: "http://h:1")
        #expect(refused as? MoECtlError == .unreachable(server: "http://h:1", reason: "connection refused"))
        let timeout = TransportError.map(URLError(.timedOut), server: "http://h:1")
        #expect(timeout as? MoECtlError == .unreachable(server: "http://h:1", reason: "timed out"))
    }

    @Test func runnerPrintsTheErrorAndReturnsItsStatus() async {
        let captured = Captured()
        let console = Console(writeOut: { captured.append(out: $0) }, writeErr: { captured.append(err: $0) },
                              stderrIsTerminal: false)
        let status = await CommandRunner.run(console: console) { throw MoECtlError.usage("bad line") }
        #expect(status == 64)
        #expect(captured.err == "error: bad line\n")
        #expect(await CommandRunner.run(console: console) {} == 0)
    }

    @Test func decodingProblemsAreDescribedByFieldPath() {
        struct Shape: Decodable { var data: [Job] }
        do {
            _ = try JSONDecoder().decode(Shape.self, from: Data(#"{"data": [{"id": "j"}]}"#.utf8))
            Issue.record("decoded")
        } catch {
            #expect(DecodingProblem.describe(error) == "missing field 'data[0].status'")
        }
    }
}

/// Thread-safe capture of console output.
final class Captured: @unchecked Sendable {
    private let lock = NSLock()
    private var outText = ""
    private var errText = ""
    var out: String { lock.withLock { outText } }
    var err: String { lock.withLock { errText } }
    func append(out text: String) { lock.withLock { outText += text } }
    func append(err text: String) { lock.withLock { errText += text } }
}
