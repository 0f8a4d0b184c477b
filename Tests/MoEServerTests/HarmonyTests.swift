import Foundation
import MoETestSupport
import MoETokenizer
import Testing
@testable import MoEServer

/// gpt-oss's harmony format (Tests/Fixtures/gpt-oss): its tokenizer's form (o200k's split regex, harmony's special
/// tokens) against the tokenizers library, its prompts against transformers' apply_chat_template and tokenizer, and
/// its replies read by channel: analysis → reasoning_content, final → content, a message to functions.NAME → a call.
struct HarmonyTests {
    static let dir = Fixtures.root.appendingPathComponent("gpt-oss")
    static let model = "gpt-oss/gpt-oss-f32-clamped"

    static func json(_ name: String) throws -> [[String: Any]] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name))) as! [[String: Any]]
    }

    @Test func tokenizerEncodesAsTokenizersDoes() throws {
        let t = try Tokenizer(directory: Fixtures.model(Self.model))
        for c in try Self.json("tokenizer-cases.json") {
            let text = c["text"] as! String
            #expect(t.encode(text, addSpecialTokens: false) == c["ids"] as! [Int], "\(text)")
        }
    }

    /// /tokenize of a chat request gives the ids of the prompt transformers renders (its day made today's), and the
    /// tokenizer gives transformers' ids for transformers' own prompt.
    @Test func chatPromptsAreTransformersPromptsAndTokens() async throws {
        let s = try await LiveServer(model: Self.model)
        defer { Task { await s.stop() } }
        let t = try Tokenizer(directory: Fixtures.model(Self.model))
        for c in try Self.json("chat-cases.json") {
            let prompt = c["prompt"] as! String
            #expect(t.encode(prompt, addSpecialTokens: false) == c["ids"] as! [Int])
            let today = prompt.replacingOccurrences(of: #"Current date: \d{4}-\d{2}-\d{2}"#, with: "Current date: " + Harmony.today(),
                                                    options: .regularExpression)
            let r = try await HTTP.post(s.base + "/tokenize", c["request"] as! [String: Any])
            #expect(r.json?["tokens"] as? [Int] == t.encode(today, addSpecialTokens: false), "\(r.text)")
        }
        let bad = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": ToolCallAPITests.question, "reasoning_effort": "extreme"])
        #expect(bad.status == 400 && bad.text.contains("reasoning_effort"), "\(bad.text)")
    }

    /// A reply forced into harmony's call form, as gpt-oss writes one: reasoning on the analysis channel, then a
    /// message to functions.get_weather whose text is the arguments; streamed or not.
    @Test func callsAreReadFromTheCommentaryChannel() async throws {
        let s = try await LiveServer(model: Self.model)
        defer { Task { await s.stop() } }
        let regex = #"<\|channel\|>analysis<\|message\|>Need the tool\.<\|end\|><\|start\|>assistant<\|channel\|>commentary to=functions\.get_weather <\|constrain\|>json<\|message\|>\{"city": "(Paris|Rome)", "days": [1-7]\}<\|call\|>"#
        let body: [String: Any] = ["messages": ToolCallAPITests.question, "tools": ToolCallAPITests.tools, "temperature": 0,
                                   "max_tokens": 300, "guided_regex": regex]
        let r = try await HTTP.post(s.base + "/v1/chat/completions", body)
        let message = ToolCallAPITests.choice(r)?["message"] as? [String: Any]
        #expect(message?["reasoning_content"] as? String == "Need the tool." && message?["content"] is NSNull, "\(r.text)")
        let calls = ToolCallAPITests.calls(r)
        #expect(calls.count == 1 && (calls.first?["function"] as? [String: Any])?["name"] as? String == "get_weather", "\(r.text)")
        let args = calls.first.flatMap(ToolCallAPITests.arguments)
        #expect(["Paris", "Rome"].contains(args?["city"] as? String ?? "") && (1...7).contains(args?["days"] as? Int ?? 0), "\(r.text)")
        #expect(ToolCallAPITests.choice(r)?["finish_reason"] as? String == "tool_calls")

        var streamed = body
        streamed["stream"] = true
        let st = ToolCallAPITests.deltas(try await HTTP.post(s.base + "/v1/chat/completions", streamed))
        let reasoning = st.compactMap { ($0["delta"] as? [String: Any])?["reasoning_content"] as? String }.joined()
        let pieces = st.compactMap { ($0["delta"] as? [String: Any])?["tool_calls"] as? [[String: Any]] }.flatMap { $0 }
        let arguments = pieces.compactMap { ($0["function"] as? [String: Any])?["arguments"] as? String }.joined()
        #expect(reasoning == "Need the tool.")
        #expect(pieces.first?["id"] is String && (pieces.first?["function"] as? [String: Any])?["name"] as? String == "get_weather")
        #expect(arguments == (calls.first?["function"] as? [String: Any])?["arguments"] as? String)
        #expect(st.last?["finish_reason"] as? String == "tool_calls")

        // The call goes back into the conversation as the template writes it, after its reasoning.
        let history: [[String: Any]] = ToolCallAPITests.question + [
            ["role": "assistant", "content": NSNull(), "reasoning_content": "Need the tool.",
             "tool_calls": [["id": "call_1", "type": "function", "function": ["name": "get_weather", "arguments": "{\"city\": \"Rome\", \"days\": 2}"]]]],
            ["role": "tool", "tool_call_id": "call_1", "content": "sunny"]]
        let ids = try await HTTP.post(s.base + "/tokenize", ["messages": history, "tools": ToolCallAPITests.tools])
        let text = try await HTTP.post(s.base + "/detokenize", ["tokens": ids.json?["tokens"] as? [Int] ?? []])
        let prompt = text.json?["prompt"] as? String ?? ""
        #expect(prompt.hasSuffix("<|start|>assistant<|channel|>analysis<|message|>Need the tool.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Rome\", \"days\": 2}<|call|><|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>\"sunny\"<|end|><|start|>assistant"), "\(prompt)")
    }

    /// Reasoning and answer forced into their channels: reasoning_content and content, streamed or not; with
    /// reasoning_format none the reply is the raw text, markers and all (llama.cpp's choice).
    @Test func analysisAndFinalChannelsSplitTheReply() async throws {
        let s = try await LiveServer(model: Self.model)
        defer { Task { await s.stop() } }
        let regex = #"<\|channel\|>analysis<\|message\|>Think\.<\|end\|><\|start\|>assistant<\|channel\|>final<\|message\|>(Yes|No)\."#
        let body: [String: Any] = ["messages": ToolCallAPITests.question, "temperature": 0, "max_tokens": 200, "guided_regex": regex]
        let r = try await HTTP.post(s.base + "/v1/chat/completions", body)
        let message = ToolCallAPITests.choice(r)?["message"] as? [String: Any]
        #expect(message?["reasoning_content"] as? String == "Think." && ["Yes.", "No."].contains(message?["content"] as? String ?? ""), "\(r.text)")
        var streamed = body
        streamed["stream"] = true
        let st = ToolCallAPITests.deltas(try await HTTP.post(s.base + "/v1/chat/completions", streamed))
        #expect(st.compactMap { ($0["delta"] as? [String: Any])?["reasoning_content"] as? String }.joined() == "Think.")
        #expect(st.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined() == message?["content"] as? String)
        var raw = body
        raw["reasoning_format"] = "none"
        let plain = try await HTTP.post(s.base + "/v1/chat/completions", raw)
        let content = (ToolCallAPITests.choice(plain)?["message"] as? [String: Any])?["content"] as? String ?? ""
        #expect(content.hasPrefix("<|channel|>analysis<|message|>Think.<|end|>"), "\(plain.text)")
    }

    /// A call given back with both a preamble (content) and reasoning_content renders as the template renders content
    /// alone (its analysis); with the template's own `thinking` beside content it is refused, as the template refuses it.
    @Test func aCallWithContentAndReasoningRendersItsContent() throws {
        let source = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("gpt-oss.jinja"), encoding: .utf8)
        let template = ChatTemplate(source: source, tokenizer: try Tokenizer(directory: Fixtures.model("tiny-qwen3-moe")))
        #expect(template.kind == .harmony && template.rendersTools)
        var reply = ChatMessage(role: "assistant", content: "Let me check.", toolCalls: [.init(name: "f", arguments: try OrderedJSON.parse("{}"))])
        reply.reasoningContent = "Need f."
        let turns = [ChatMessage(role: "user", content: "Go"), reply, ChatMessage(role: "tool", content: "ok")]
        let text = try template.render(turns)
        #expect(text.hasSuffix("<|start|>assistant<|channel|>analysis<|message|>Let me check.<|end|><|start|>assistant to=functions.f<|channel|>commentary json<|message|>{}<|call|><|start|>functions.f to=assistant<|channel|>commentary<|message|>\"ok\"<|end|><|start|>assistant"), "\(text)")
        reply.thinking = "Need f."
        #expect(throws: ChatTemplate.Unsupported.self) { try template.render([turns[0], reply, turns[2]]) }
    }

    /// gpt-oss writes its markers as special tokens: a reply's text keeps them (special tokens kept) and the reader
    /// takes the reply from its token ids, token by token, as the server streams it.
    @Test func repliesOfSpecialTokensAreReadByChannel() throws {
        let t = try Tokenizer(directory: Fixtures.model(Self.model))
        func special(_ s: String) throws -> Int32 { Int32(try #require(t.encode(s, addSpecialTokens: false).first)) }
        let reply = [try special("<|channel|>")] + t.encode("analysis", addSpecialTokens: false).map(Int32.init) + [try special("<|message|>")]
            + t.encode("Hmm.", addSpecialTokens: false).map(Int32.init) + [try special("<|end|>"), try special("<|start|>")]
            + t.encode("assistant", addSpecialTokens: false).map(Int32.init) + [try special("<|channel|>")]
            + t.encode("final", addSpecialTokens: false).map(Int32.init) + [try special("<|message|>")]
            + t.encode("Yes.", addSpecialTokens: false).map(Int32.init)
        #expect(t.encode("<|channel|>", addSpecialTokens: false).count == 1)
        var text = TextAssembler(tokenizer: t, stops: [], skipSpecialTokens: false), reader = HarmonyReader()
        var pieces: [HarmonyReader.Piece] = []
        for id in reply { pieces += reader.feed(text.push(id).text) }
        pieces += reader.feed(text.finish().text) + reader.finish()
        let reasoning = pieces.compactMap { if case .reasoning(let r) = $0 { return r } else { return nil } }.joined()
        let content = pieces.compactMap { if case .content(let c) = $0 { return c } else { return nil } }.joined()
        #expect(reasoning == "Hmm." && content == "Yes.", "\(pieces)")
    }

    static func read(_ text: String, chunk: Int) -> [HarmonyReader.Piece] {
        var r = HarmonyReader(), out: [HarmonyReader.Piece] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            out += r.feed(String(rest.prefix(chunk)))
            rest = rest.dropFirst(chunk)
        }
        out += r.finish()
        // Adjacent pieces of one kind joined: how they were cut depends on the chunks.
        var joined: [HarmonyReader.Piece] = []
        for p in out {
            switch (joined.last, p) {
            case (.reasoning(let a)?, .reasoning(let b)): joined[joined.count - 1] = .reasoning(a + b)
            case (.content(let a)?, .content(let b)): joined[joined.count - 1] = .content(a + b)
            case (.arguments(let a)?, .arguments(let b)): joined[joined.count - 1] = .arguments(a + b)
            default: joined.append(p)
            }
        }
        return joined
    }

    @Test func readerTable() {
        let cases: [(String, [HarmonyReader.Piece])] = [
            ("<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant<|channel|>final<|message|>Yes.<|return|>",
             [.reasoning("Hmm."), .content("Yes.")]),
            ("<|channel|>final<|message|>Only an answer", [.content("Only an answer")]),
            ("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": 1}<|call|>", [.call("f"), .arguments("{\"a\": 1}")]),
            (" to=functions.f<|channel|>commentary json<|message|>{}<|call|>", [.call("f"), .arguments("{}")]),
            ("<|channel|>commentary<|message|>Let me check.<|end|><|start|>assistant<|channel|>commentary to=functions.g <|constrain|>json<|message|>{}",
             [.content("Let me check."), .call("g"), .arguments("{}")]),
            ("<|channel|>analysis<|message|>a<b <|end|", [.reasoning("a<b <|end|")]),
            ("<|channel|>analysis<|message|>Search.<|end|><|start|>assistant<|channel|>analysis to=browser.search<|message|>{\"q\": 1}<|call|>",
             [.reasoning("Search.{\"q\": 1}")]),
            ("{\"plain\": true}", [.content("{\"plain\": true}")]),
            ("<|chan", []),
            ("<|channel|>final", []),
            ("", []),
        ]
        for (text, want) in cases {
            for chunk in [1, 2, 5, 1000] {
                #expect(Self.read(text, chunk: chunk) == Self.read(text, chunk: 1000) || chunk == 1000, "\(text) in \(chunk)s")
            }
            #expect(Self.read(text, chunk: 1000) == want, "\(text)")
        }
    }
}
