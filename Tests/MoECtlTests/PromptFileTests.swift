import Foundation
import Testing
@testable import MoECtlKit

@Suite("Prompt file (JSON lines)")
struct PromptFileTests {
    private func problem(_ text: String) -> PromptFileError? {
        do {
            _ = try PromptFile.parse(text)
            return nil
        } catch {
            return error as? PromptFileError
        }
    }

    @Test func readsObjectsWithPerPromptFields() throws {
        let items = try PromptFile.parse("""
            {"prompt": "a", "max_tokens": 32, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "seed": 7, "stop": ["\\n"]}
            {"prompt": "b", "stop": "END", "seed": null}
            {"prompt": "c", "presence_penalty": 0.5, "frequency_penalty": 1, "repetition_penalty": 1.2, "min_tokens": 3, "stop_token_ids": [2, 7]}
            """)
        #expect(items == [
            PromptItem(prompt: "a", overrides: SamplingParameters(maxTokens: 32, temperature: 0.5, topP: 0.9, topK: 40,
                                                                  seed: 7, stop: ["\n"])),
            PromptItem(prompt: "b", overrides: SamplingParameters(stop: ["END"])),
            PromptItem(prompt: "c", overrides: SamplingParameters(presencePenalty: 0.5, frequencyPenalty: 1, repetitionPenalty: 1.2,
                                                                  minTokens: 3, stopTokenIds: [2, 7])),
        ])
    }

    @Test func readsBareJSONStrings() throws {
        #expect(try PromptFile.parse("\"just text\"\n\"with \\\"quotes\\\"\"") ==
            [PromptItem(prompt: "just text"), PromptItem(prompt: "with \"quotes\"")])
    }

    @Test func skipsBlankLinesAndAcceptsCRLF() throws {
        let items = try PromptFile.parse("\n\"a\"\r\n   \r\n\t\n\"b\"\r\n\n")
        #expect(items.map(\.prompt) == ["a", "b"])
    }

    @Test func invalidJSONNamesItsLineCountingBlankLines() {
        #expect(problem("\"a\"\n\n{not json\n") == PromptFileError(line: 3, message: "not valid JSON"))
    }

    @Test func missingPromptIsAnError() {
        #expect(problem(#"{"max_tokens": 3}"#) == PromptFileError(line: 1, message: #"missing "prompt""#))
    }

    @Test func wrongFieldTypesNameTheField() {
        #expect(problem(#"{"prompt": 1}"#)?.message == #""prompt" must be a string"#)
        #expect(problem(#"{"prompt": "a", "max_tokens": "many"}"#)?.message == #""max_tokens" must be an integer"#)
        #expect(problem(#"{"prompt": "a", "max_tokens": 2.5}"#)?.message == #""max_tokens" must be an integer"#)
        #expect(problem(#"{"prompt": "a", "stop": [1]}"#)?.message == #""stop" must be a string or an array of strings"#)
    }

    @Test func unknownFieldsAreRejectedToCatchTypos() {
        #expect(problem(#"{"prompt": "a", "max_token": 3}"#)?.message.hasPrefix(#"unknown field "max_token""#) == true)
    }

    @Test func otherJSONValuesAreRejected() {
        #expect(problem("42")?.message == #"expected a JSON object with a "prompt" field, or a JSON string"#)
        #expect(problem("[\"a\"]")?.line == 1)
        #expect(problem("null")?.line == 1)
    }

    @Test func outOfRangeSamplingValuesAreRejected() {
        #expect(problem("\"ok\"\n{\"prompt\": \"a\", \"max_tokens\": 0}") ==
            PromptFileError(line: 2, message: "max_tokens must be at least 1 (got 0)"))
    }

    @Test func invalidUTF8IsReportedWithItsLine() {
        var data = Data("\"a\"\n".utf8)
        data.append(contentsOf: [0x22, 0xFF, 0x22, 0x0A])
        #expect(throws: PromptFileError(line: 2, message: "not valid UTF-8")) { try PromptFile.parse(data) }
    }

    @Test func loadMapsProblemsToUsageErrorsNamingFileAndLine() async throws {
        try await withTemporaryFile("\"a\"\n{\"prompt\": true}\n") { path in
            #expect(throws: MoECtlError.usage("\(path) line 2: \"prompt\" must be a string")) {
                try PromptFile.load(path: path)
            }
        }
    }

    @Test func loadRejectsAnEmptyFileAndAMissingFile() async throws {
        try await withTemporaryFile("\n\n") { path in
            #expect(throws: MoECtlError.usage("\(path) contains no prompts")) { try PromptFile.load(path: path) }
        }
        #expect(throws: MoECtlError.usage("cannot read prompt file '/nonexistent/p.jsonl': no such file")) {
            try PromptFile.load(path: "/nonexistent/p.jsonl")
        }
    }
}
