import Foundation
import MoETestSupport
import MoETokenizer
import Testing
@testable import MoEServer

/// llama.cpp's fill-in-the-middle route (POST /infill) against llama.cpp's own server on the same checkpoint
/// (Tests/Fixtures/tiny-mixtral-fim/cases.json, made by its make.py): the prompt it builds (text and length), the
/// greedy text that follows, and where llama.cpp's `n_indent` ends it (on /infill and /completion).
struct InfillTests {
    typealias JSON = [String: Any]

    /// A list of llama.cpp's answers in tiny-mixtral-fim/cases.json: `cases` (these), `grammar_cases`.
    static func llamaCppAnswers(_ key: String) -> [JSON] {
        let url = Fixtures.model("tiny-mixtral-fim").appendingPathComponent("cases.json")
        let root = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? JSON
        return root?[key] as? [JSON] ?? []
    }

    static var cases: [JSON] { llamaCppAnswers("cases") }

    @Test func theInfillPromptAndReplyAreLlamaCppsOnEveryCase() async throws {
        // A KV pool that holds llama.cpp's context (8192 tokens, the checkpoint's own): how much extra context the
        // prompt takes depends on it.
        let s = try await LiveServer(model: "tiny-mixtral-fim", kvBlocks: 8192 / 16 + 1)
        defer { Task { await s.stop() } }
        #expect(Self.cases.count == 10)
        for c in Self.cases {
            let name = c["name"] as? String ?? ""
            let r = try await HTTP.post(s.base + (c["endpoint"] as? String ?? ""), c["request"] ?? [:])
            #expect(r.status == 200, "\(name): \(r.text)")
            let o = r.json ?? [:]
            #expect(o["prompt"] as? String == c["prompt"] as? String, "\(name)")
            #expect(o["tokens_evaluated"] as? Int == c["tokens_evaluated"] as? Int, "\(name)")
            #expect(o["content"] as? String == c["content"] as? String && o["stop_type"] as? String == c["stop_type"] as? String, "\(name)")
            #expect(o["tokens_predicted"] as? Int == c["tokens_predicted"] as? Int, "\(name)")
            #expect(o["has_new_line"] as? Bool == c["has_new_line"] as? Bool, "\(name)")
        }
        // Streamed: the same text in chunks, the last with the counts.
        var streamed = Self.cases[0]["request"] as? JSON ?? [:]
        streamed["stream"] = true
        let st = try await HTTP.post(s.base + "/infill", streamed)
        let chunks = HTTP.events(st.text).compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? JSON }
        #expect(chunks.compactMap { $0["content"] as? String }.joined() == Self.cases[0]["content"] as? String)
        #expect(chunks.last?["stop"] as? Bool == true && chunks.last?["tokens_evaluated"] as? Int == Self.cases[0]["tokens_evaluated"] as? Int)
    }

    /// Without a file separator the extra chunks are joined by llama.cpp's snippet line and carry no file names;
    /// a BOS goes right before the prefix token; the prefix keeps its end and the suffix its start.
    @Test(arguments: [
        // (repo and file separator, BOS, context) → the prompt, with P/S/M/R/F/B the FIM tokens and BOS.
        (true, false, 4096, "R myproject F a.py X F filename P p1 p2 q S s1 s2 M"),
        (false, false, 4096, "N X P p1 p2 q S s1 s2 M"),
        (false, true, 4096, "N X B P p1 p2 q S s1 s2 M"),
        (true, false, 2047, "filename P p1 p2 q S s1 s2 M"),
        (true, false, 2046, "P p1 p2 q S s1 s2 M"),
    ] as [(Bool, Bool, Int, String)])
    func thePromptsPartsAndTheirOrder(repoAndSep: Bool, bos: Bool, context: Int, expected: String) {
        // Words as tokens: each text's words, one id per distinct word.
        var words: [String] = ["P", "S", "M", "R", "F", "B"]
        func id(_ w: String) -> Int {
            if let i = words.firstIndex(of: w) { return i }
            words.append(w)
            return words.count - 1
        }
        let text = { (s: String) -> [Int] in
            s == "\n\n--- snippet ---\n\n" ? [id("N")] : s.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { id(String($0)) }
        }
        let fim = FIMTokens(prefix: 0, suffix: 1, middle: 2, pad: nil, repo: repoAndSep ? 3 : nil, fileSep: repoAndSep ? 4 : nil)
        let ids = Infill.prompt(prefix: [id("p1"), id("p2")], suffix: [id("s1"), id("s2")], extra: [.init(filename: "a.py", text: "X")],
                                prompt: [id("q")], fim: fim, bos: bos ? 5 : nil, contextLimit: context, text: text)
        #expect(ids.map { words[$0] }.joined(separator: " ") == expected)
    }

    @Test func longPrefixesKeepTheirEndAndSuffixesTheirStart() {
        let fim = FIMTokens(prefix: -1, suffix: -2, middle: -3, pad: nil, repo: nil, fileSep: nil)
        let ids = Infill.prompt(prefix: Array(0..<2000), suffix: Array(10_000..<11_000), extra: [], prompt: [7, 7, 7], fim: fim,
                                bos: nil, contextLimit: 8192, text: { _ in [] })
        // 3/4 of a batch of 2048 from the prefix's end; 1/4 less the prompt and two from the suffix's start.
        #expect(ids.first == -1 && Array(ids[1...1536]) == Array(464..<2000) && Array(ids[1537...1539]) == [7, 7, 7])
        #expect(ids[1540] == -2 && Array(ids[1541...]) == Array(10_000..<10_507) + [-3])
    }

    @Test func whatInfillRefusesIsA400() async throws {
        let s = try await LiveServer(model: "tiny-mixtral-fim")
        defer { Task { await s.stop() } }
        func refused(_ body: JSON, _ words: String) async throws {
            let r = try await HTTP.post(s.base + "/infill", body)
            let message = (r.json?["error"] as? JSON)?["message"] as? String ?? ""
            #expect(r.status == 400 && message.contains(words), "\(body) → \(r.status) \(r.text)")
        }
        try await refused(["input_suffix": ""], #""input_prefix" is required"#)
        try await refused(["input_prefix": ""], #""input_suffix" is required"#)
        try await refused(["input_prefix": "", "input_suffix": "", "prompt": 3], #""prompt" must be a string"#)
        try await refused(["input_prefix": "", "input_suffix": "", "input_extra": "x"], #""input_extra" must be an array"#)
        try await refused(["input_prefix": "", "input_suffix": "", "input_extra": [["filename": "a"]]], #"a "text" field"#)
        try await refused(["input_prefix": "", "input_suffix": "", "input_extra": [["text": "a", "filename": 1]]], #""filename" field must be a string"#)
        try await refused(["input_prefix": [true], "input_suffix": ""], "texts and token ids")
        try await refused(["input_prefix": [99_999], "input_suffix": ""], "outside the vocabulary")

        // A model without fill-in-the-middle tokens says so.
        let plain = try await LiveServer(model: "tiny-mixtral")
        defer { Task { await plain.stop() } }
        let r = try await HTTP.post(plain.base + "/infill", ["input_prefix": "a", "input_suffix": "b"])
        let message = (r.json?["error"] as? JSON)?["message"] as? String ?? ""
        #expect(r.status == 400 && message.contains("prefix token is missing. suffix token is missing. middle token is missing."), "\(r.text)")
    }

    /// `split_special_tokens` (what the prefix and suffix are read with): a special token's text is text; other
    /// text reads as before. Ids from the `tokenizers` library 0.23.3 (`encode_special_tokens = True`).
    @Test func specialTokensTextCanBeReadAsText() throws {
        let t = try Tokenizer(directory: Fixtures.model("tiny-mixtral-fim"))
        let text = "s = '<|fim_pad|>' </s> end"
        #expect(t.encode(text, addSpecialTokens: false) == [85, 223, 31, 223, 9, 515, 9, 223, 2, 223, 268, 70])
        #expect(t.encode(text, addSpecialTokens: false, splitSpecialTokens: true)
            == [85, 223, 31, 223, 9, 30, 94, 72, 381, 65, 82, 67, 70, 94, 32, 9, 223, 30, 17, 85, 32, 223, 268, 70])
        #expect(try FIMTokens.find(t).get() == FIMTokens(prefix: 512, suffix: 514, middle: 513, pad: 515, repo: 516, fileSep: 517))
        // A byte-level token that is half a character: its own byte, where the text reads U+FFFD (what grammars read).
        #expect(t.decodeBytes([120]) == [0xB9] && t.decode([120]) == "\u{FFFD}" && t.decodeBytes([171, 108, 230]) == Array("쬅".utf8))
    }

    /// n_indent and t_max_predict_ms as llama.cpp checks them after each token.
    @Test(arguments: [
        // (n_indent, pieces) → text kept, the piece that ended it (nil: none did).
        (4, ["def f():", "\n", "    x", " = 1\n", "print", "(x)"], "def f():\n    x = 1\n", 4),
        (4, ["\n", "    x\n", "  ", "  y\n", "z"], "\n    x\n    y\n", 4),
        // The line looked at moves on by one newline a token, so here it is still "\ta" (one column) when " b" comes.
        (2, ["\n", "\ta\n", " b"], "\n\t", 2),
        (0, ["\n", "a\n", "b"], "\na\nb", nil),
        // The first line is never checked, and a line of only spaces so far is not yet short.
        (4, ["x\n", "  "], "x\n  ", nil),
    ] as [(Int, [String], String, Int?)])
    func indentationEndsAGenerationAsLlamaCppDoes(indent: Int, pieces: [String], kept: String, endedAt: Int?) {
        var limits = CompletionLimits(indent: indent)
        let stopped = pieces.firstIndex { limits.add($0, elapsedMs: 0) }
        #expect(stopped == endedAt && String(decoding: limits.text, as: UTF8.self) == (endedAt == nil ? pieces.joined() : kept))
    }

    @Test func aTimeLimitEndsItOnlyAtANewlineAfterTheFirst() {
        var limits = CompletionLimits(maxPredictMs: 100)
        #expect(!limits.add("a\n", elapsedMs: 50) && !limits.add("b", elapsedMs: 150) && limits.add("c\n", elapsedMs: 160))
        var late = CompletionLimits(maxPredictMs: 100)
        #expect(late.add("\n", elapsedMs: 500) && late.hasNewLine)
    }
}
