import Foundation
import Testing
@testable import MoECtlKit

@Suite("SSE parser")
struct SSEParserTests {
    /// Feeds `text` in pieces cut at `cuts` (byte offsets) and collects every event, finish included.
    private func parse(_ text: String, cuts: [Int] = []) -> [SSEEvent] {
        let bytes = Array(text.utf8)
        var parser = SSEParser()
        var events: [SSEEvent] = []
        var start = 0
        for cut in cuts.sorted() + [bytes.count] where cut >= start {
            events += parser.feed(bytes[start..<cut])
            start = cut
        }
        return events + parser.finish()
    }

    @Test func emitsOneEventPerBlankLineTerminatedBlock() {
        let events = parse("data: one\n\ndata: two\n\n")
        #expect(events.map(\.data) == ["one", "two"])
        #expect(events.allSatisfy { $0.type == "message" })
    }

    @Test func joinsMultipleDataLinesWithNewlines() {
        #expect(parse("data: first\ndata: second\ndata:\n\n").map(\.data) == ["first\nsecond\n"])
    }

    @Test func givesTheSameEventsWhateverTheChunkBoundaries() {
        let stream = "data: {\"text\": \"héllo wörld\"}\r\n\r\n: keep-alive\r\ndata: [DONE]\r\n\r\n"
        let expected = parse(stream)
        #expect(expected.map(\.data) == ["{\"text\": \"héllo wörld\"}", "[DONE]"])
        let count = stream.utf8.count
        // Every single cut point (including inside multi-byte characters and between \r and \n)...
        for cut in 0...count {
            #expect(parse(stream, cuts: [cut]) == expected, "cut at byte \(cut)")
        }
        // ...and byte-at-a-time delivery.
        #expect(parse(stream, cuts: Array(0...count)) == expected)
    }

    @Test func acceptsCRLFAndLoneCRLineEndings() {
        #expect(parse("data: a\r\n\r\ndata: b\r\rdata: c\n\n").map(\.data) == ["a", "b", "c"])
    }

    @Test func ignoresCommentLines() {
        #expect(parse(": hello\n\n:ping\ndata: x\n: between\n\n").map(\.data) == ["x"])
    }

    @Test func blockWithoutDataDispatchesNothing() {
        #expect(parse("event: ping\n\nid: 3\n\n").isEmpty)
    }

    @Test func readsEventTypeAndIDAndResetsTypeAfterDispatch() {
        let events = parse("event: update\nid: 7\ndata: a\n\ndata: b\n\n")
        #expect(events == [SSEEvent(type: "update", data: "a", id: "7"), SSEEvent(type: "message", data: "b", id: "7")])
    }

    @Test func stripsOnlyOneLeadingSpaceAndAcceptsNoSpace() {
        #expect(parse("data:x\n\ndata:  two spaces\n\n").map(\.data) == ["x", " two spaces"])
    }

    @Test func ignoresUnknownFieldsAndRetry() {
        #expect(parse("retry: 100\nfoo: bar\ndata: z\n\n").map(\.data) == ["z"])
    }

    @Test func stripsByteOrderMarkAtStreamStart() {
        #expect(parse("\u{FEFF}data: bom\n\n").map(\.data) == ["bom"])
    }

    @Test func dispatchesAnUnterminatedFinalEventAtEndOfStream() {
        var parser = SSEParser()
        #expect(parser.feed(Array("data: [DONE]".utf8)).isEmpty)
        #expect(parser.finish().map(\.data) == ["[DONE]"])
    }

    @Test func deliversNothingUntilTheBlankLineArrives() {
        var parser = SSEParser()
        #expect(parser.feed(Array("data: partial\n".utf8)).isEmpty)
        #expect(parser.feed(Array("\n".utf8)).map(\.data) == ["partial"])
    }
}

@Suite("Completion stream events")
struct CompletionStreamEventTests {
    @Test func doneMarkerEndsTheStream() throws {
        #expect(try CompletionStreamEvent.decode("[DONE]") == .done)
    }

    @Test func chunkCarriesTheNewPiece() throws {
        let event = try CompletionStreamEvent.decode(
            #"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" hum","logprobs":null,"finish_reason":null}]}"#)
        guard case .chunk(let chunk) = event else { Issue.record("not a chunk"); return }
        #expect(chunk.choices == [CompletionChoice(index: 0, text: " hum", finishReason: nil)])
    }

    @Test func usageChunkHasNoChoices() throws {
        let event = try CompletionStreamEvent.decode(
            #"{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":64,"total_tokens":69}}"#)
        guard case .chunk(let chunk) = event else { Issue.record("not a chunk"); return }
        #expect(chunk.choices.isEmpty)
        #expect(chunk.usage == TokenUsage(promptTokens: 5, completionTokens: 64, totalTokens: 69))
    }

    @Test func errorObjectInTheStreamIsAServerError() {
        #expect(throws: MoECtlError.streamError("worker died")) {
            try CompletionStreamEvent.decode(#"{"error":{"message":"worker died","type":"server_error"}}"#)
        }
    }

    @Test func nonJSONPayloadIsAnUnexpectedResponseNotACrash() {
        #expect { try CompletionStreamEvent.decode("not json") } throws: { error in
            ExitStatus.of(error) == .serverError
        }
    }
}
