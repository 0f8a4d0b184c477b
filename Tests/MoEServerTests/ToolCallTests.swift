import Foundation
import MoETestSupport
import MoEModel
import MoETokenizer
import Testing
@testable import MoEServer

/// Chat templates against transformers' renderings (Qwen2.5's, Qwen3's and Qwen3-Coder's with tools and thinking, Llama 2's, Llama
/// 3's, Mixtral's, mistral-common's v3 with tools, Tulu's), the Hermes-format reply scanner, and the tool request rules (tool_choice, constrained calls).
struct ToolCallTests {
    static let dir = Fixtures.root.appendingPathComponent("chat-templates")

    static func json(_ name: String) throws -> [[String: Any]] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name))) as! [[String: Any]]
    }

    @Test func orderedJSONWritesWhatPythonsJSONDumpsWrites() throws {
        for c in try Self.json("json-dumps.json") {
            let input = c["input"] as! String
            #expect(try OrderedJSON.parse(input).python == c["python"] as! String, "\(input)")
        }
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "tru", "{} x", "\"a\u{01}\""] {
            #expect(throws: OrderedJSON.Malformed.self, "\(bad)") { try OrderedJSON.parse(bad) }
        }
    }

    /// "template: case name" of every golden.
    static let goldenNames: [String] = (try? json("goldens.json"))?.map { "\($0["template"] as! String): \($0["name"] as! String)" } ?? []

    @Test(arguments: ToolCallTests.goldenNames)
    func chatTemplatesRenderAsTransformersDoes(_ key: String) throws {
        let golden = try Self.json("goldens.json").first { "\($0["template"] as! String): \($0["name"] as! String)" == key }!
        let name = golden["name"] as! String, file = golden["template"] as! String
        let cases = try String(contentsOf: Self.dir.appendingPathComponent("cases.json"), encoding: .utf8)
        guard case .array(let all) = try OrderedJSON.parse(cases),
              let c = all.first(where: { $0["name"]?.stringValue == name && $0["template"]?.stringValue == file }),
              let request = c["request"] else { Issue.record("no case \(name) for \(file)"); return }
        // The request as the server reads it: messages through Codable, tools in their written order.
        let body = Data(request.python.utf8)
        let r = try JSONDecoder().decode(ChatRequest.self, from: body)
        let tools = try ToolRequest(r, body: body)
        let source = try String(contentsOf: Self.dir.appendingPathComponent(file), encoding: .utf8)
        let tokenizer = c["tokenizer"]?.stringValue ?? "tiny-qwen3-moe"
        let template = ChatTemplate(source: source, tokenizer: try Tokenizer(directory: Fixtures.model(tokenizer)))
        #expect(template.kind != .unsupported && template.rendersTools == ["qwen", "mistral-v3", "glm", "gpt-oss", "deepseek-v3.1-tools"].contains { file.hasPrefix($0) })
        let text = try template.render(r.messages, tools: tools.shown(rendersTools: true), options: r.templateOptions)
        // gpt-oss's template writes the day it renders (strftime_now): the golden's day is today's here.
        let expected = (golden["expected"] as! String).replacingOccurrences(of: #"Current date: \d{4}-\d{2}-\d{2}"#,
                                                                              with: "Current date: " + Harmony.today(), options: .regularExpression)
        #expect(text == expected, "\(file): \(name)")
    }

    /// DeepSeek-R1's template opens the reply inside its reasoning, so a reply's text up to </think> is
    /// reasoning_content (as vLLM's deepseek_r1 parser reads it); tools are refused with a clear error.
    @Test func deepSeekR1RepliesBeginInsideTheirReasoning() throws {
        let source = try String(contentsOf: Self.dir.appendingPathComponent("deepseek-r1.jinja"), encoding: .utf8)
        let template = ChatTemplate(source: source, tokenizer: try Tokenizer(directory: Fixtures.model("tiny-qwen3-moe")))
        #expect(template.kind == .deepseek && template.thinks && template.opensThinking && !template.rendersTools)
        let asked = ChatMessage(role: "assistant", content: "", toolCalls: [ChatMessage.ToolCall(name: "f", arguments: try OrderedJSON.parse("{}"))])
        #expect(throws: ChatTemplate.Unsupported.self) {
            try template.render([ChatMessage(role: "user", content: "a"), asked, ChatMessage(role: "tool", content: "1")])
        }
    }

    /// DeepSeek-V3.1's template leaves thinking to each request: off by default (the reply opens after "</think>",
    /// all content), on with `thinking` or `enable_thinking` (it opens with "<think>", so the reply starts as
    /// reasoning); tools are refused with a clear error, as its template lists none.
    @Test func deepSeekV31ChoosesThinkingPerRequest() throws {
        let source = try String(contentsOf: Self.dir.appendingPathComponent("deepseek-v3.1.jinja"), encoding: .utf8)
        let template = ChatTemplate(source: source, tokenizer: try Tokenizer(directory: Fixtures.model("tiny-qwen3-moe")))
        #expect(template.kind == .deepseek && template.hybridThinking && template.thinks && !template.rendersTools)
        var on = ChatTemplate.Options()
        on.thinking = true
        var alsoOn = ChatTemplate.Options()
        alsoOn.enableThinking = true
        #expect(!template.opensThinking(.init()) && template.thinkingOff(.init()))
        #expect(template.opensThinking(on) && template.opensThinking(alsoOn) && !template.thinkingOff(on))
        let r1 = ChatTemplate(source: try String(contentsOf: Self.dir.appendingPathComponent("deepseek-r1.jinja"), encoding: .utf8),
                              tokenizer: try Tokenizer(directory: Fixtures.model("tiny-qwen3-moe")))
        #expect(!r1.hybridThinking && r1.opensThinking(.init()) && r1.opensThinking(on))
        #expect(throws: ChatTemplate.Unsupported.self) {
            try template.render([ChatMessage(role: "user", content: "a")], tools: [try OrderedJSON.parse(#"{"type": "function", "function": {"name": "f"}}"#)])
        }
    }

    /// What the [INST] templates refuse (they raise), a clear error here too.
    @Test func instTemplatesRefuseWhatTheirJinjaRefuses() throws {
        let tokenizer = try Tokenizer(directory: Fixtures.model("tiny-mixtral"))
        func template(_ file: String) throws -> ChatTemplate {
            ChatTemplate(source: try String(contentsOf: Self.dir.appendingPathComponent(file), encoding: .utf8), tokenizer: tokenizer)
        }
        let twoUsers = [ChatMessage(role: "user", content: "a"), ChatMessage(role: "user", content: "b")]
        for file in ["llama2.jinja", "mixtral-v0.1.jinja", "mixtral-v0.1-first.jinja"] {
            #expect(throws: ChatTemplate.Unsupported.self, "\(file)") { try template(file).render(twoUsers) }
            #expect(throws: ChatTemplate.Unsupported.self, "\(file)") {
                try template(file).render([ChatMessage(role: "user", content: "a"), ChatMessage(role: "assistant", content: "b")])
            }
        }
        do {
            _ = try template("mixtral-v0.1-first.jinja").render([ChatMessage(role: "system", content: "s"), ChatMessage(role: "user", content: "u")])
            Issue.record("a system message was rendered with a template that has none")
        } catch let e as ChatTemplate.Unsupported {
            #expect(e.description.contains("no system message"))
        }
    }

    /// Only Qwen's tool layout is taken for it: a ChatML template that words its tools otherwise (as Hermes' do) is
    /// not rendered as if it were Qwen's.
    @Test func onlyQwensToolLayoutIsRenderedAsQwens() throws {
        let tokenizer = try Tokenizer(directory: Fixtures.model("tiny-qwen3-moe"))
        let other = "{{- '<|im_start|>system\\nYou are provided with function signatures within <tools></tools> XML tags. You may call one or more functions to assist with the user query. <tools>' }}{%- for tool in tools %}{{- tool | tojson }}{%- endfor %}{{- '</tools> <tool_call>' }}"
        #expect(!ChatTemplate(source: other, tokenizer: tokenizer).rendersTools)
        let qwen = try String(contentsOf: Self.dir.appendingPathComponent("qwen2.5.jinja"), encoding: .utf8)
        #expect(ChatTemplate(source: qwen, tokenizer: tokenizer).rendersTools)
    }

    /// Llama 3.2's template dates its system block today when the request gives no date_string (strftime "%d %b %Y").
    @Test func llamaTemplatesDateTheSystemBlockToday() throws {
        let source = try String(contentsOf: Self.dir.appendingPathComponent("llama3.2.jinja"), encoding: .utf8)
        let template = ChatTemplate(source: source, tokenizer: try Tokenizer(directory: Fixtures.model("tiny-mixtral")))
        let text = try template.render([ChatMessage(role: "user", content: "hi")])
        let year = Calendar.current.component(.year, from: Date())
        let date = try #require(text.components(separatedBy: "Today Date: ").last?.components(separatedBy: "\n").first)
        #expect(date.range(of: #"^[0-3][0-9] (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4}$"#, options: .regularExpression) != nil
                && date.hasSuffix(String(year)), "\(date)")
    }

    typealias Piece = ToolCallScanner.Piece
    static func call(_ name: String, _ args: String) -> Piece { .call(.init(name: name, arguments: args)) }

    /// Reply text → pieces, each whether fed at once, a character at a time or in pieces that split the tags.
    static let scans: [(String, [Piece])] = [
        ("Hello there.\n", [.text("Hello there.\n")]),
        ("  spaced  out  ", [.text("  spaced  out  ")]),
        ("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\":\"Paris\",\"n\":1.50}}\n</tool_call>",
         [call("get_weather", "{\"location\": \"Paris\", \"n\": 1.5}")]),
        ("Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>\n",
         [.text("Let me check."), call("a", "{}"), call("b", "{\"x\": [1, 2]}")]),
        // Arguments as a JSON text, no arguments, and an unclosed last block whose JSON is whole.
        ("<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"k\\\": true}\"}</tool_call><tool_call>{\"name\": \"b\"}</tool_call><tool_call>\n{\"name\": \"c\", \"arguments\": {\"q\": \"é\"}}",
         [call("a", "{\"k\": true}"), call("b", "{}"), call("c", "{\"q\": \"é\"}")]),
        // Blocks that are not calls stay text, as written; text between and after calls is kept.
        ("<tool_call>not json</tool_call> then <tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\nDone.",
         [.text("<tool_call>not json</tool_call> then"), call("a", "{}"), .text("\nDone.")]),
        ("<tool_call>{\"arguments\": {}}", [.text("<tool_call>{\"arguments\": {}}")]),
        ("a < b <tool_ca", [.text("a < b <tool_ca")]),
        // Non-ASCII text and a partial closing tag inside the arguments.
        ("<tool_call>{\"name\": \"w\", \"arguments\": {\"t\": \"日本語 </tool é\"}}</tool_call>", [call("w", "{\"t\": \"日本語 </tool é\"}")]),
        ("x <tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>", [.text("x"), .text("<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>")]),
    ]

    /// Each reply read by a fresh `scanner()` whole gives `expected`, and fed character by character or cut in two
    /// anywhere gives the same.
    static func expectSameHoweverSplit(_ scans: [(String, [Piece])], _ scanner: () -> ToolCallScanner) {
        for (reply, expected) in scans {
            func scan(_ chunks: [String]) -> [Piece] {
                var s = scanner()
                // Adjacent text pieces are one text: streaming may split text anywhere.
                return Self.mergedText(chunks.flatMap { s.feed($0) } + s.finish())
            }
            let whole = scan([reply])
            #expect(whole == Self.mergedText(expected), "\(reply)")
            #expect(scan(reply.map { String($0) }) == whole, "character by character: \(reply)")
            for cut in stride(from: 1, to: reply.count, by: 3) {
                #expect(scan([String(reply.prefix(cut)), String(reply.dropFirst(cut))]) == whole, "cut at \(cut): \(reply)")
            }
        }
    }

    @Test func hermesScannerFindsTheSameCallsHoweverTheReplyIsSplit() {
        Self.expectSameHoweverSplit(Self.scans) { ToolCallScanner() }
    }

    /// Mistral replies as vLLM's `mistral` parser reads them (pre-v11 tokenizers): text up to `[TOOL_CALLS]`, then a
    /// JSON list of calls (or one found from its first `[{` to its last `}]`); anything else after the marker is
    /// text without it. Whole or split anywhere, the same pieces.
    static let mistralScans: [(String, [Piece])] = [
        ("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}]",
         [call("get_weather", "{\"city\": \"Paris\", \"days\": 2}")]),
        ("Let me check.[TOOL_CALLS] [{\"name\":\"a\",\"arguments\":{}}, {\"name\":\"b\",\"arguments\":{\"x\":[1,2.50,\"é\\n\"]}}]",
         [.text("Let me check."), call("a", "{}"), call("b", "{\"x\": [1, 2.5, \"é\\n\"]}")]),
        ("[TOOL_CALLS][{\"name\": \"a\", \"arguments\": \"{\\\"q\\\": 1}\"}]", [call("a", "{\"q\": 1}")]),
        ("[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {}}] and then some", [call("a", "{}")]),
        ("[TOOL_CALLS] {\"name\": \"a\", \"arguments\": {}}", [.text("{\"name\": \"a\", \"arguments\": {}}")]),
        ("Hi [TOOL_CALLS] [{\"name\": \"a\", \"argu", [.text("Hi"), .text("[{\"name\": \"a\", \"argu")]),
        ("[TOOL_CALLS] []", [.text("[]")]),
        ("[TOOL_CALLS] [{\"arguments\": {}}]", [.text("[{\"arguments\": {}}]")]),
        ("Just text, [TOOL_ and [TOOL_CALL", [.text("Just text, [TOOL_ and [TOOL_CALL")]),
    ]

    @Test func mistralRepliesAreReadAsVLLMsMistralParserReadsThem() {
        Self.expectSameHoweverSplit(Self.mistralScans) { ToolCallScanner(format: .mistral) }
        // Ids of calls read in Mistral's format are its own: 9 letters and digits.
        let tools = try! ToolRequest(Self.request(["tools": [Self.weather]]).0, body: Self.request(["tools": [Self.weather]]).1, format: .mistral)
        let ids = (0..<50).map { _ in tools.newCallId() }
        #expect(ids.allSatisfy { $0.count == 9 && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } } && Set(ids).count == 50)
    }

    /// What mistral-common's templates raise on is refused with their words; ids longer than 9 are cut to their last
    /// 9 on both sides of a call (as vLLM does for Mistral models), shorter ones refused.
    @Test func mistralTemplatesRefuseWhatTheirJinjaRefusesAndCutLongIds() throws {
        let tokenizer = try Tokenizer(directory: Fixtures.model("tiny-mistral-sp"))
        let call = ChatMessage.ToolCall(name: "f", arguments: .object([]), id: "call_0123456789abcdef")
        var result = ChatMessage(role: "tool", content: "7")
        result.toolCallId = "call_0123456789abcdef"
        let user = ChatMessage(role: "user", content: "u"), reply = ChatMessage(role: "assistant", content: "r")
        for file in ["mistral-v3-spm.jinja", "mistral-v3.jinja"] {
            let t = ChatTemplate(source: try String(contentsOf: Self.dir.appendingPathComponent(file), encoding: .utf8), tokenizer: tokenizer)
            #expect(t.toolFormat == .mistral && t.rendersTools)
            func refused(_ m: [ChatMessage], _ words: String) {
                do { _ = try t.render(m); Issue.record("\(file): rendered \(m.map(\.role))") } catch let e as ChatTemplate.Unsupported {
                    #expect(e.description.contains(words), "\(file): \(e)")
                } catch { Issue.record("\(error)") }
            }
            refused([user, user], "must alternate")
            refused([user, reply, reply], "must alternate")
            refused([user, ChatMessage(role: "assistant", content: "x", toolCalls: [call])], "both content and tool calls")
            refused([user, ChatMessage(role: "assistant", content: "")], "a list of tool calls")
            refused([user, reply, ChatMessage(role: "system", content: "late"), user], "got system")
            var short = call
            short.id = "call_1"
            refused([user, ChatMessage(role: "assistant", content: "", toolCalls: [short])], "Tool call must have an id of 9")
            var anonymous = result
            anonymous.toolCallId = nil
            refused([user, ChatMessage(role: "assistant", content: "", toolCalls: [call]), anonymous], "call_id or tool_call_id")
            let text = try t.render([user, ChatMessage(role: "assistant", content: "", toolCalls: [call]), result, reply, user])
            #expect(text.contains("\"id\": \"789abcdef\"}]") && text.contains("{\"content\": 7, \"call_id\": \"789abcdef\"}"), "\(text)")
            // call_id (Mistral's own field) is read before tool_call_id.
            var both = result
            both.callId = "ZZZZZZZZZ"
            #expect(try t.render([user, ChatMessage(role: "assistant", content: "", toolCalls: [call]), both, reply, user]).contains("\"call_id\": \"ZZZZZZZZZ\""))
        }
        // Another template with the same control tokens is not taken for mistral-common's (vLLM's older example).
        let older = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{% if tools %}{{ '[AVAILABLE_TOOLS]'+ tools|string + '[/AVAILABLE_TOOLS]' }}{% endif %}{{ '[INST]' + message['content'] + '[/INST]' }}{% elif message['role'] == 'assistant' and message['tool_calls'] %}{{ '[TOOL_CALLS]' + message['content']|string + eos_token }}{% elif message['role'] == 'tool' %}{{ '[TOOL_RESULTS]' + message['content']|string + '[/TOOL_RESULTS]' }}{% endif %}{% endfor %}"
        #expect(!ChatTemplate(source: older, tokenizer: tokenizer).rendersTools && ChatTemplate(source: older, tokenizer: tokenizer).toolFormat == .hermes)
        // A result's text is a number exactly when Python reads it back the same (Jinja's int and float filters).
        let numbers: [(String, String)] = [("42", "42"), ("-3", "-3"), ("0", "0"), ("3.5", "3.5"), ("1e-05", "1e-05"), ("1e+16", "1e+16"),
                                           ("inf", "Infinity"), ("nan", "NaN"), ("-0", "\"-0\""), ("007", "\"007\""), ("1e5", "\"1e5\""),
                                           ("+5", "\"+5\""), (" 5", "\" 5\""), ("-nan", "\"-nan\""), ("0x10", "\"0x10\""), ("", "\"\""), ("٣", "\"٣\"")]
        for (text, json) in numbers { #expect(ChatTemplate.mistralResult(text).python == json, "\(text)") }
    }

    /// Qwen3-Coder's XML calls, read as vLLM's qwen3_coder parser reads them: each value converted by its
    /// parameter's schema type (arguments as Python's json.dumps writes them), however the reply is split.
    @Test func qwenCoderCallsConvertEachValueByItsSchemaType() throws {
        let schema = try OrderedJSON.parse(#"""
            {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "ratio": {"type": "number"},
             "hourly": {"type": "boolean"}, "filters": {"type": "object"}, "ids": {"type": "array"}, "tag": {"type": ["string", "null"]},
             "mode": {"description": "no type"}}}
            """#)
        let data = Data(schema.python.utf8)
        let tools = [ToolRequest.Function(name: "get_weather", parameters: try JSONDecoder().decode(JSONValue.self, from: data)),
                     ToolRequest.Function(name: "now", parameters: nil)]
        func xml(_ name: String, _ params: [(String, String)], close: Bool = true) -> String {
            "<tool_call>\n<function=\(name)>\n" + params.map { "<parameter=\($0.0)>\n\($0.1)\n</parameter>\n" }.joined()
                + "</function>\n" + (close ? "</tool_call>" : "")
        }
        let cases: [(String, [Piece])] = [
            // Types: text stays text; int() and float() (whole numbers as integers); true only for "true" in any case;
            // objects and arrays as JSON; "null" in any case is null whatever the type; an unlisted parameter is text.
            ("Checking.\n" + xml("get_weather", [("city", "Paris, FR"), ("days", " 1_000 "), ("ratio", "2.50"), ("hourly", "TRUE"),
                                                ("filters", "{\"year\": 2024, \"names\": [\"é\"]}"), ("ids", "[1, 2.0]"), ("extra", "7")]),
             [.text("Checking."), Self.call("get_weather", #"{"city": "Paris, FR", "days": 1000, "ratio": 2.5, "hourly": true, "filters": {"year": 2024, "names": ["é"]}, "ids": [1, 2.0], "extra": "7"}"#)]),
            (xml("get_weather", [("days", "-007"), ("ratio", "1e3"), ("hourly", "yes"), ("city", "NULL"), ("tag", "5"), ("mode", "12")]),
             [Self.call("get_weather", #"{"days": -7, "ratio": 1000, "hourly": false, "city": null, "tag": 5, "mode": "12"}"#)]),
            // Other types, and arrays that are not JSON, are read as Python literals: no leading zeros there, Python's
            // None, a quoted string.
            (xml("get_weather", [("tag", "007"), ("mode", "x")]) + xml("get_weather", [("tag", "None"), ("ids", "'a'")]),
             [Self.call("get_weather", #"{"tag": "007", "mode": "x"}"#), Self.call("get_weather", #"{"tag": null, "ids": "a"}"#)]),
            // Failed conversions stay text: not an integer, not finite, not JSON (nor a Python literal).
            (xml("get_weather", [("days", "3.5"), ("ratio", "inf"), ("filters", "not json"), ("tag", "true"), ("ids", "[1,")]),
             [Self.call("get_weather", #"{"days": "3.5", "ratio": "inf", "filters": "not json", "tag": "true", "ids": "[1,"}"#)]),
            // Multi-line text keeps its inner newlines (one is trimmed at each end); a parameter left open ends at
            // the next; a repeated one keeps its first place with the last value; a tool without parameters.
            (xml("get_weather", [("city", "line one\n\nline two")]) + "\n" + xml("now", []),
             [Self.call("get_weather", #"{"city": "line one\n\nline two"}"#), Self.call("now", "{}")]),
            ("<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n<parameter=days>\n2\n</parameter>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
             [Self.call("get_weather", #"{"city": "Paris", "days": 2}"#)]),
            // An unclosed last block (a reply cut by max_tokens) is still read; a block with no function stays text.
            (xml("get_weather", [("days", "4")], close: false), [Self.call("get_weather", #"{"days": 4}"#)]),
            ("<tool_call>\n<function=broken\n</tool_call>", [.text("<tool_call>\n<function=broken\n</tool_call>")]),
        ]
        for (reply, expected) in cases {
            func scan(_ chunks: [String]) -> [Piece] {
                var s = ToolCallScanner(tools: tools)
                return Self.mergedText(chunks.flatMap { s.feed($0) } + s.finish())
            }
            let whole = scan([reply])
            #expect(whole == Self.mergedText(expected), "\(reply)")
            #expect(scan(reply.map { String($0) }) == whole, "character by character: \(reply)")
        }
    }

    /// GLM-4.5/4.6's calls, read as vLLM's glm45 parser reads them: the name before the first <arg_key>, each
    /// key and value trimmed, a value typed "string" by the schema kept as text and the others read as JSON, else as a
    /// Python literal, else kept as text; whole or streamed character by character.
    @Test func glmCallsTypeEachValueAsVLLMsParserDoes() throws {
        let schema = try OrderedJSON.parse(#"""
            {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "opts": {"type": "object"},
             "code": {"type": "string"}, "tag": {"type": ["string", "null"]}}}
            """#)
        let tools = [ToolRequest.Function(name: "get_weather", parameters: try JSONDecoder().decode(JSONValue.self, from: Data(schema.python.utf8))),
                     ToolRequest.Function(name: "now", parameters: nil)]
        func glm(_ name: String, _ args: [(String, String)], close: Bool = true) -> String {
            "<tool_call>\(name)\n" + args.map { "<arg_key>\($0.0)</arg_key>\n<arg_value>\($0.1)</arg_value>\n" }.joined() + (close ? "</tool_call>" : "")
        }
        let cases: [(String, [Piece])] = [
            // A string parameter stays text even when it reads as JSON; the others are JSON where they parse.
            ("Checking.\n" + glm("get_weather", [("city", " Paris "), ("days", "3"), ("opts", "{\"hourly\": true, \"f\": [\"é\"]}"),
                                                 ("code", "42"), ("tag", "null")]),
             [.text("Checking."), Self.call("get_weather", #"{"city": "Paris", "days": 3, "opts": {"hourly": true, "f": ["é"]}, "code": "42", "tag": null}"#)]),
            // Not JSON: a Python literal (None, True, a quoted string), else the text as written.
            (glm("get_weather", [("days", "None"), ("tag", "True"), ("opts", "'x'"), ("extra", "two words")]),
             [Self.call("get_weather", #"{"days": null, "tag": true, "opts": "x", "extra": "two words"}"#)]),
            // Two calls; one without arguments; a repeated key keeps its first place with the last value; GLM-4.7's
            // form without the newlines; whitespace between a key and its value.
            (glm("now", []) + "\n" + glm("get_weather", [("city", "Rome"), ("days", "2"), ("city", "Oslo")]),
             [Self.call("now", "{}"), Self.call("get_weather", #"{"city": "Oslo", "days": 2}"#)]),
            ("<tool_call>get_weather<arg_key>city</arg_key> \n <arg_value>Rome</arg_value></tool_call>",
             [Self.call("get_weather", #"{"city": "Rome"}"#)]),
            // An unclosed last block (cut by max_tokens) is still read; a block without a name stays text.
            (glm("get_weather", [("days", "4")], close: false), [Self.call("get_weather", #"{"days": 4}"#)]),
            ("<tool_call>\n<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>", [.text("<tool_call>\n<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>")]),
        ]
        for (reply, expected) in cases {
            func scan(_ chunks: [String]) -> [Piece] {
                var s = ToolCallScanner(tools: tools, format: .glm)
                return Self.mergedText(chunks.flatMap { s.feed($0) } + s.finish())
            }
            let whole = scan([reply])
            #expect(whole == Self.mergedText(expected), "\(reply)")
            #expect(scan(reply.map { String($0) }) == whole, "character by character: \(reply)")
        }
        let source = try String(contentsOf: Self.dir.appendingPathComponent("glm-4.6.jinja"), encoding: .utf8)
        let template = ChatTemplate(source: source, tokenizer: try Tokenizer(directory: Fixtures.model("tiny-qwen3-moe")))
        #expect(template.kind == .glm && template.rendersTools && template.thinks && !template.opensThinking && template.toolFormat == .glm)
    }

    /// Any reply, however malformed, is read without a crash and the same whether fed whole or in pieces: replies
    /// made of random tags, names, values and newlines (a fixed seed), with and without schemas.
    @Test func malformedQwenCoderRepliesReadTheSameHoweverSplit() throws {
        let tools = [ToolRequest.Function(name: "f", parameters: try JSONDecoder().decode(JSONValue.self, from: Data(
            #"{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array"}, "c": {"type": "boolean"}}}"#.utf8)))]
        let parts = ["<tool_call>", "</tool_call>", "<function=", "</function>", "<parameter=", "</parameter>", ">", "\n", "f", "a", "b",
                     "c", "1", "[1]", "null", "é", " ", "<", "{\"name\": \"f\"}", "true"]
        var rng = SeededRNG(seed: 7)
        for _ in 0..<400 {
            let reply = (0..<Int(rng.next() % 24)).map { _ in parts[Int(rng.next() % UInt64(parts.count))] }.joined()
            for schema in [tools, []] {
                var whole = ToolCallScanner(tools: schema)
                let once = Self.mergedText(whole.feed(reply) + whole.finish())
                var split = ToolCallScanner(tools: schema)
                let cut = reply.isEmpty ? 0 : Int(rng.next() % UInt64(reply.count))
                let twice = Self.mergedText(split.feed(String(reply.prefix(cut))) + split.feed(String(reply.dropFirst(cut))) + split.finish())
                #expect(once == twice, "\(reply) cut at \(cut)")
            }
        }
    }

    static func mergedText(_ pieces: [Piece]) -> [Piece] {
        var merged: [Piece] = []
        for p in pieces {
            if case .text(let t) = p, case .text(let prev)? = merged.last { merged[merged.count - 1] = .text(prev + t) } else { merged.append(p) }
        }
        return merged
    }

    static func request(_ fields: [String: Any]) throws -> (ChatRequest, Data) {
        var body: [String: Any] = ["messages": [["role": "user", "content": "hi"]]]
        body.merge(fields) { $1 }
        let data = try JSONSerialization.data(withJSONObject: body)
        return (try JSONDecoder().decode(ChatRequest.self, from: data), data)
    }

    static var weather: [String: Any] {
        ["type": "function", "function": [
        "name": "get_weather", "parameters": ["type": "object", "properties": ["city": ["type": "string"]], "required": ["city"]]]] }
    static var anything: [String: Any] { ["type": "function", "function": ["name": "log", "parameters": ["type": "object"]]] }
    static var noArgs: [String: Any] { ["type": "function", "function": ["name": "now"]] }

    @Test func toolChoiceDecidesWhatIsShownAndHowTheReplyIsRead() throws {
        // Defaults: auto with tools, none without; none shows no tools.
        #expect(try ToolRequest(Self.request(["tools": [Self.weather]]).0, body: Self.request(["tools": [Self.weather]]).1).choice == .auto)
        let (plain, plainBody) = try Self.request([:])
        #expect(try ToolRequest(plain, body: plainBody).choice == ToolRequest.Choice.none)
        let (none, noneBody) = try Self.request(["tools": [Self.weather], "tool_choice": "none"])
        let off = try ToolRequest(none, body: noneBody)
        #expect(off.shown(rendersTools: true).isEmpty && off.reply("<tool_call>{\"name\": \"get_weather\"}</tool_call>").calls.isEmpty)

        // A named function: the reply is its arguments (a function without parameters: an empty object).
        let (named, namedBody) = try Self.request(["tools": [Self.weather, Self.anything, Self.noArgs],
                                                   "tool_choice": ["type": "function", "function": ["name": "get_weather"]]])
        let n = try ToolRequest(named, body: namedBody)
        guard case .jsonSchema? = n.outputFormat() else { Issue.record("named: not a schema"); return }
        let r = n.reply("{\"city\":\"Oslo\"}")
        #expect(r.content == nil && r.calls == [.init(name: "get_weather", arguments: "{\"city\":\"Oslo\"}")])
        #expect(n.reply("{\"city\": \"Os").calls.isEmpty && n.reply("{\"city\": \"Os").content == "{\"city\": \"Os")
        var noParameters = n
        noParameters.choice = .named("now")
        guard case .jsonSchema(.object(let empty))? = noParameters.outputFormat(), case .object(let props)? = empty["properties"], props.isEmpty else {
            Issue.record("no parameters: not an empty object"); return
        }

        // required: a list of {name, parameters}; at most one without parallel calls.
        let (req, reqBody) = try Self.request(["tools": [Self.weather, Self.noArgs], "tool_choice": "required", "parallel_tool_calls": false])
        let q = try ToolRequest(req, body: reqBody)
        guard case .jsonSchema(.object(let schema))? = q.outputFormat() else { Issue.record("required: not a schema"); return }
        if case .number(let m)? = schema["maxItems"] { #expect(m == 1) } else { Issue.record("no maxItems") }
        let calls = q.reply("[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}, {\"name\": \"now\", \"parameters\": {}}]")
        #expect(calls.content == nil && calls.calls.map(\.name) == ["get_weather", "now"] && calls.calls[0].arguments == "{\"city\": \"Rome\"}")
        #expect(q.reply("[{\"name\": \"get_weather\"").calls.isEmpty)
        // Every tool's schema compiles, a free-form one included.
        let (all, allBody) = try Self.request(["tools": [Self.weather, Self.anything, Self.noArgs], "tool_choice": "required"])
        guard case .jsonSchema(let every)? = try ToolRequest(all, body: allBody).outputFormat() else { Issue.record("required: not a schema"); return }
        #expect(throws: Never.self) { try JSONSchema(every.foundation) }

        #expect(ToolRequest.finishReason("stop", calls: 1) == "tool_calls")
        #expect(ToolRequest.finishReason("length", calls: 1) == "length" && ToolRequest.finishReason("stop", calls: 0) == "stop")
    }

    @Test func badToolRequestsAreRefusedWithTheReason() throws {
        func refused(_ fields: [String: Any], _ words: String) {
            do {
                let (r, body) = try Self.request(fields)
                _ = try ToolRequest(r, body: body)
                Issue.record("accepted: \(fields)")
            } catch let e as APIError {
                #expect(e.message.contains(words), "\(e.message)")
            } catch {
                #expect(String(describing: error).contains(words), "\(error)")
            }
        }
        refused(["tools": [["type": "retrieval", "function": ["name": "x"]]]], "must be \"function\"")
        refused(["tools": [["type": "function", "function": ["name": "has space"]]]], "letters, digits")
        refused(["tools": [Self.weather, Self.weather]], "distinct")
        refused(["tool_choice": "required"], "needs tools")
        refused(["tools": [Self.weather], "tool_choice": ["type": "function", "function": ["name": "other"]]], "not among the tools")
        refused(["tools": [Self.weather], "tool_choice": "sometimes"], "sometimes")
    }
}

/// Tool calling through the server: a model with Qwen2.5's template, greedy.
struct ToolCallAPITests {
    static var qwen25: String {
        (try? String(contentsOf: ToolCallTests.dir.appendingPathComponent("qwen2.5.jinja"), encoding: .utf8)) ?? ""
    }
    static var tools: [[String: Any]] {
        [["type": "function", "function": ["name": "get_weather", "description": "Weather of a city.",
          "parameters": ["type": "object", "properties": ["city": ["type": "string", "enum": ["Paris", "Rome"]],
                                                          "days": ["type": "integer", "minimum": 1, "maximum": 7]],
                         "required": ["city", "days"], "additionalProperties": false]]],
         ["type": "function", "function": ["name": "now", "description": "The time."]]]
    }
    static var question: [[String: Any]] { [["role": "user", "content": "Weather in Paris for two days?"]] }

    static func choice(_ r: HTTP.Reply) -> [String: Any]? { (r.json?["choices"] as? [[String: Any]])?.first }
    static func calls(_ r: HTTP.Reply) -> [[String: Any]] {
        ((choice(r)?["message"] as? [String: Any])?["tool_calls"] as? [[String: Any]]) ?? []
    }
    static func arguments(_ call: [String: Any]) -> [String: Any]? {
        ((call["function"] as? [String: Any])?["arguments"] as? String).flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
    /// A stream's choice deltas, in order.
    static func deltas(_ r: HTTP.Reply) -> [[String: Any]] {
        HTTP.events(r.text).compactMap { e in
            (try? JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any]).flatMap { ($0["choices"] as? [[String: Any]])?.first }
        }
    }

    @Test func aNamedFunctionOrRequiredToolChoiceReturnsCallsWithValidArguments() async throws {
        let s = try await LiveServer(chatTemplate: Self.qwen25)
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/chat/completions"
        let named: [String: Any] = ["messages": Self.question, "tools": Self.tools, "temperature": 0, "max_tokens": 48,
                                    "tool_choice": ["type": "function", "function": ["name": "get_weather"]]]
        let r = try await HTTP.post(url, named)
        #expect(r.status == 200, "\(r.text)")
        let message = Self.choice(r)?["message"] as? [String: Any]
        #expect(message?.keys.contains("content") == true && message?["content"] is NSNull, "\(r.text)")
        let call = Self.calls(r).first ?? [:]
        #expect((call["function"] as? [String: Any])?["name"] as? String == "get_weather" && call["type"] as? String == "function")
        #expect((call["id"] as? String)?.hasPrefix("call_") == true)
        let args = Self.arguments(call)
        #expect(["Paris", "Rome"].contains(args?["city"] as? String ?? "") && (1...7).contains(args?["days"] as? Int ?? 0), "\(r.text)")
        #expect(Self.choice(r)?["finish_reason"] as? String == "tool_calls")

        // Streamed: the first delta names the call, the rest carry its arguments' pieces; together the same call.
        var streamed = named
        streamed["stream"] = true
        let st = Self.deltas(try await HTTP.post(url, streamed))
        let pieces = st.compactMap { (($0["delta"] as? [String: Any])?["tool_calls"] as? [[String: Any]])?.first }
        #expect((pieces.first?["function"] as? [String: Any])?["name"] as? String == "get_weather" && pieces.first?["id"] is String)
        #expect(pieces.dropFirst().allSatisfy { $0["id"] == nil && $0["index"] as? Int == 0 })
        let joined = pieces.compactMap { ($0["function"] as? [String: Any])?["arguments"] as? String }.joined()
        #expect(joined == (call["function"] as? [String: Any])?["arguments"] as? String)
        #expect(st.last?["finish_reason"] as? String == "tool_calls")

        // required, one call at most: a call of one of the tools, its arguments valid for it.
        var required = named
        required["tool_choice"] = "required"
        required["parallel_tool_calls"] = false
        let q = try await HTTP.post(url, required)
        let calls = Self.calls(q)
        #expect(q.status == 200 && calls.count == 1, "\(q.text)")
        let name = (calls.first?["function"] as? [String: Any])?["name"] as? String
        #expect(name == "now" ? Self.arguments(calls[0])?.isEmpty == true : ["Paris", "Rome"].contains(Self.arguments(calls[0])?["city"] as? String ?? ""),
                "\(q.text)")

        // A constrained tool choice cannot take another constraint.
        var both = required
        both["response_format"] = ["type": "json_object"]
        let b = try await HTTP.post(url, both)
        #expect(b.status == 400 && b.text.contains("already constrains"), "\(b.text)")
    }

    @Test func autoToolChoiceReadsHermesBlocksOutOfTheReply() async throws {
        let s = try await LiveServer(chatTemplate: Self.qwen25)
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/chat/completions"
        // The reply forced into a text and a Hermes tool-call block, as a Qwen model writes one.
        let regex = #"Checking\.\n<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "(Paris|Rome)", "days": [1-7]\}\}\n</tool_call>"#
        let body: [String: Any] = ["messages": Self.question, "tools": Self.tools, "temperature": 0, "max_tokens": 200, "guided_regex": regex]
        let r = try await HTTP.post(url, body)
        let message = Self.choice(r)?["message"] as? [String: Any]
        #expect(message?["content"] as? String == "Checking.", "\(r.text)")
        let calls = Self.calls(r)
        #expect(calls.count == 1 && (calls.first?["function"] as? [String: Any])?["name"] as? String == "get_weather", "\(r.text)")
        let args = calls.first.flatMap(Self.arguments)
        #expect(["Paris", "Rome"].contains(args?["city"] as? String ?? ""))
        #expect(Self.choice(r)?["finish_reason"] as? String == "tool_calls")

        var streamed = body
        streamed["stream"] = true
        let st = Self.deltas(try await HTTP.post(url, streamed))
        let text = st.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined()
        let streamedCalls = st.compactMap { ($0["delta"] as? [String: Any])?["tool_calls"] as? [[String: Any]] }.flatMap { $0 }
        #expect(text == "Checking." && streamedCalls.count == 1 && streamedCalls.first?["index"] as? Int == 0)
        #expect((streamedCalls.first?["function"] as? [String: Any])?["arguments"] as? String == (calls.first?["function"] as? [String: Any])?["arguments"] as? String)
        #expect(st.last?["finish_reason"] as? String == "tool_calls")

        // Without a block the reply is text, as it would be without tools.
        let plain = try await HTTP.post(url, ["messages": Self.question, "tools": Self.tools, "temperature": 0, "max_tokens": 8])
        #expect(Self.calls(plain).isEmpty && (Self.choice(plain)?["message"] as? [String: Any])?["content"] is String, "\(plain.text)")
    }

    /// vLLM's continue_final_message: the prompt ends inside the last (assistant) message, which the reply continues;
    /// with add_generation_prompt also true it is a 400.
    @Test func aReplyCanContinueTheLastMessage() async throws {
        let s = try await LiveServer(chatTemplate: Self.qwen25)
        defer { Task { await s.stop() } }
        let prefill: [[String: Any]] = Self.question + [["role": "assistant", "content": "The weather is "]]
        let body: [String: Any] = ["messages": prefill, "continue_final_message": true, "add_generation_prompt": false]
        let tokens = try await HTTP.post(s.base + "/tokenize", body)
        let text = try await HTTP.post(s.base + "/tokenize", ["prompt": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWeather in Paris for two days?<|im_end|>\n<|im_start|>assistant\nThe weather is ",
                                                              "add_special_tokens": false])
        #expect(tokens.json?["tokens"] as? [Int] != nil && tokens.json?["tokens"] as? [Int] == text.json?["tokens"] as? [Int], "\(tokens.text)")
        let r = try await HTTP.post(s.base + "/v1/chat/completions", body.merging(["max_tokens": 3]) { $1 })
        #expect(r.status == 200 && (r.json?["usage"] as? [String: Any])?["prompt_tokens"] as? Int == tokens.json?["count"] as? Int, "\(r.text)")
        let both = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": prefill, "continue_final_message": true, "add_generation_prompt": true])
        #expect(both.status == 400 && both.text.contains("cannot both be true"), "\(both.text)")
    }

    @Test func toolHistoryRendersAndOtherTemplatesRefuseTools() async throws {
        let s = try await LiveServer(chatTemplate: Self.qwen25)
        defer { Task { await s.stop() } }
        let history: [[String: Any]] = Self.question + [
            ["role": "assistant", "content": NSNull(), "tool_calls": [["id": "call_1", "type": "function",
                                                                      "function": ["name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"]]]],
            ["role": "tool", "tool_call_id": "call_1", "content": "sunny"]]
        let r = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": history, "tools": Self.tools, "max_tokens": 4])
        #expect(r.status == 200, "\(r.text)")
        // /tokenize counts the prompt the chat route runs: the tools' block included.
        let counted = try await HTTP.post(s.base + "/tokenize", ["messages": history, "tools": Self.tools])
        let bare = try await HTTP.post(s.base + "/tokenize", ["messages": history])
        let usage = r.json?["usage"] as? [String: Any]
        #expect(counted.json?["count"] as? Int == usage?["prompt_tokens"] as? Int, "\(counted.text)")
        #expect((bare.json?["count"] as? Int ?? .max) < (counted.json?["count"] as? Int ?? 0))
        var broken = history
        broken[1]["tool_calls"] = [["id": "call_1", "type": "function", "function": ["name": "get_weather", "arguments": "{city: Paris}"]]]
        let bad = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": broken, "tools": Self.tools])
        #expect(bad.status == 400 && bad.text.contains("not JSON"), "\(bad.text)")
        let completion = try await HTTP.post(s.base + "/v1/completions", ["prompt": "hi", "tools": Self.tools])
        #expect(completion.status == 400 && completion.text.contains("unsupported_parameter"), "\(completion.text)")
        let job = try await HTTP.post(s.base + "/v1/jobs", ["prompts": ["hi"], "tools": Self.tools])
        #expect(job.status == 400 && job.text.contains("tools"), "\(job.text)")

        let plain = try await LiveServer(chatTemplate: APITests.chatML)
        defer { Task { await plain.stop() } }
        let refused = try await HTTP.post(plain.base + "/v1/chat/completions", ["messages": Self.question, "tools": Self.tools])
        #expect(refused.status == 400 && refused.text.contains("no tool-call format"), "\(refused.text)")
        let off = try await HTTP.post(plain.base + "/v1/chat/completions", ["messages": Self.question, "tools": Self.tools,
                                                                             "tool_choice": "none", "max_tokens": 2])
        #expect(off.status == 200, "\(off.text)")
        // A call the reply is constrained to needs no tool format (vLLM's guided function calls work with any model).
        let named = try await HTTP.post(plain.base + "/v1/chat/completions", ["messages": Self.question, "tools": Self.tools, "max_tokens": 48,
                                                                               "temperature": 0, "tool_choice": ["type": "function", "function": ["name": "get_weather"]]])
        #expect(Self.calls(named).count == 1, "\(named.text)")
    }

    /// The reply forced by `regex` (the text "Checking." and a get_weather call, as the template's format writes
    /// one), asked for whole and streamed: each has that one call, with valid arguments, and finishes with
    /// "tool_calls". The whole reply's call and the streamed one.
    static func forcedCall(_ s: LiveServer, _ regex: String, extra: [String: Any] = [:]) async throws -> (whole: [String: Any], streamed: [String: Any]) {
        let url = s.base + "/v1/chat/completions"
        let body = (["messages": question, "tools": tools, "temperature": 0, "max_tokens": 200, "guided_regex": regex] as [String: Any])
            .merging(extra) { $1 }
        let r = try await HTTP.post(url, body)
        #expect((choice(r)?["message"] as? [String: Any])?["content"] as? String == "Checking.", "\(r.text)")
        let calls = calls(r)
        #expect(calls.count == 1 && (calls.first?["function"] as? [String: Any])?["name"] as? String == "get_weather", "\(r.text)")
        let args = calls.first.flatMap(arguments)
        #expect(["Paris", "Rome"].contains(args?["city"] as? String ?? "") && (1...7).contains(args?["days"] as? Int ?? 0), "\(r.text)")
        #expect(choice(r)?["finish_reason"] as? String == "tool_calls")

        var streamed = body
        streamed["stream"] = true
        let st = deltas(try await HTTP.post(url, streamed))
        let streamedCalls = st.compactMap { ($0["delta"] as? [String: Any])?["tool_calls"] as? [[String: Any]] }.flatMap { $0 }
        #expect(streamedCalls.count == 1 && (streamedCalls.first?["function"] as? [String: Any])?["arguments"] as? String
                == (calls.first?["function"] as? [String: Any])?["arguments"] as? String)
        #expect(st.last?["finish_reason"] as? String == "tool_calls")
        return (calls.first ?? [:], streamedCalls.first ?? [:])
    }

    /// A Qwen3-Coder model's reply forced into its XML call (as the model writes one): auto tool choice returns the
    /// call, its values typed by the tool's schema, streamed or not.
    @Test func autoToolChoiceReadsQwenCoderCallsOutOfTheReply() async throws {
        let template = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("qwen3-coder.jinja"), encoding: .utf8)
        let s = try await LiveServer(chatTemplate: template)
        defer { Task { await s.stop() } }
        _ = try await Self.forcedCall(s, #"Checking\.\n<tool_call>\n<function=get_weather>\n<parameter=city>\n(Paris|Rome)\n</parameter>\n<parameter=days>\n[1-7]\n</parameter>\n</function>\n</tool_call>"#)

        // The prompt shows the tools in Qwen3-Coder's XML, and the call goes back into the history as its template writes it.
        let prompt = try await HTTP.post(s.base + "/tokenize", ["messages": Self.question, "tools": Self.tools])
        let ids = prompt.json?["tokens"] as? [Int] ?? []
        let text = (try await HTTP.post(s.base + "/detokenize", ["tokens": ids])).json?["prompt"] as? String ?? ""
        #expect(text.contains("<function>\n<name>get_weather</name>\n<description>Weather of a city.</description>"), "\(text)")
    }
}

extension ToolCallAPITests {
    /// A DeepSeek-V3.1 reply (vLLM's tool template) forced into its call format: auto tool choice returns the call,
    /// streamed or not; the prompt lists the tools as DeepSeek documents them.
    @Test func autoToolChoiceReadsDeepSeekV31CallsOutOfTheReply() async throws {
        let template = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("deepseek-v3.1-tools.jinja"), encoding: .utf8)
        let s = try await LiveServer(chatTemplate: template)
        defer { Task { await s.stop() } }
        _ = try await Self.forcedCall(s, #"Checking\.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>\{"city": "(Paris|Rome)", "days": [1-7]\}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"#)
        let prompt = try await HTTP.post(s.base + "/tokenize", ["messages": Self.question, "tools": Self.tools])
        let text = (try await HTTP.post(s.base + "/detokenize", ["tokens": prompt.json?["tokens"] as? [Int] ?? []])).json?["prompt"] as? String ?? ""
        #expect(text.contains("### get_weather\nDescription: Weather of a city.\n\nParameters: {\""), "\(text)")
    }

    /// vLLM's deepseek_v31 parser: every call of a block, names trimmed, JSON-object arguments as json.dumps writes
    /// them and any other text as written.
    @Test func deepSeekCallsAreEveryCallOfTheBlock() {
        let b = DeepSeekCalls.callBegin, sep = DeepSeekCalls.sep, e = DeepSeekCalls.callEnd
        let body = b + " f " + sep + #"{"a":1,"b":[2,3]}"# + e + b + "g" + sep + "not json" + e + b + "h" + sep + "{}"
        #expect(DeepSeekCalls.calls(body) == [.init(name: "f", arguments: #"{"a": 1, "b": [2, 3]}"#), .init(name: "g", arguments: "not json")])
        var scan = ToolCallScanner(format: .deepseek)
        let reply = "Sure." + DeepSeekCalls.begin + b + "f" + sep + "{}" + e + DeepSeekCalls.end
        let pieces = reply.map { scan.feed(String($0)) }.flatMap { $0 } + scan.finish()
        let text = pieces.compactMap { if case .text(let t) = $0 { return t } else { return nil } }.joined()
        #expect(text == "Sure." && pieces.last == .call(.init(name: "f", arguments: "{}")) && pieces.filter { if case .call = $0 { true } else { false } }.count == 1)
    }

    /// A GLM-4.5 model's reply forced into its XML call (as the model writes one, thinking turned off as GLM's
    /// template does it): auto tool choice returns the call, its values typed by the tool's schema, streamed or not;
    /// the call goes back into the history as GLM's template writes it. (The reasoning before a call is split off as
    /// Qwen3's is: ReasoningSplitterTests.)
    @Test func autoToolChoiceReadsGLMCallsOutOfTheReply() async throws {
        let template = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("glm-4.6.jinja"), encoding: .utf8)
        let s = try await LiveServer(chatTemplate: template)
        defer { Task { await s.stop() } }
        let (call, _) = try await Self.forcedCall(s, #"Checking\.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>(Paris|Rome)</arg_value>\n<arg_key>days</arg_key>\n<arg_value>[1-7]</arg_value>\n</tool_call>"#,
                                                  extra: ["chat_template_kwargs": ["enable_thinking": false]])
        let (arguments, prompt) = try await Self.promptAfter(call, s)
        let days = (try? JSONSerialization.jsonObject(with: Data(arguments.utf8)) as? [String: Any])?["days"] as? Int ?? 0
        #expect(prompt.contains("<|assistant|>\n<think></think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>") &&
                prompt.contains("</arg_value>\n<arg_key>days</arg_key>\n<arg_value>\(days)</arg_value>\n</tool_call><|observation|>\n<tool_response>\nsunny\n</tool_response><|assistant|>"), "\(prompt)")
    }

    /// The prompt (as text) of the question, the reply's `call` and its result "sunny", with the call's arguments.
    static func promptAfter(_ call: [String: Any], _ s: LiveServer) async throws -> (arguments: String, prompt: String) {
        let arguments = (call["function"] as? [String: Any])?["arguments"] as? String ?? "{}"
        let history: [[String: Any]] = question + [
            ["role": "assistant", "content": NSNull(), "tool_calls": [["id": "call_1", "type": "function", "function": ["name": "get_weather", "arguments": arguments]]]],
            ["role": "tool", "tool_call_id": "call_1", "content": "sunny"]]
        let ids = (try await HTTP.post(s.base + "/tokenize", ["messages": history, "tools": tools])).json?["tokens"] as? [Int] ?? []
        return (arguments, (try await HTTP.post(s.base + "/detokenize", ["tokens": ids])).json?["prompt"] as? String ?? "")
    }

    /// GLM-4.7's compact form: the reply opens inside its reasoning unless thinking is off; a reply forced into its
    /// call (no newlines) is read as a call, and goes back into the history as GLM-4.7's template writes it.
    @Test func glm47CallsAndThinkingFollowItsCompactTemplate() async throws {
        let source = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("glm-4.7-flash.jinja"), encoding: .utf8)
        let template = ChatTemplate(source: source, tokenizer: try Tokenizer(directory: Fixtures.model("tiny-qwen3-moe")))
        var off = ChatTemplate.Options()
        off.enableThinking = false
        #expect(template.kind == .glm && template.glmCompact && template.rendersTools && template.thinks)
        #expect(template.opensThinking(ChatTemplate.Options()) && !template.opensThinking(off) && template.thinkingOff(off))
        let s = try await LiveServer(chatTemplate: source)
        defer { Task { await s.stop() } }
        let (call, _) = try await Self.forcedCall(s, #"Checking\.<tool_call>get_weather<arg_key>city</arg_key><arg_value>(Paris|Rome)</arg_value><arg_key>days</arg_key><arg_value>[1-7]</arg_value></tool_call>"#,
                                                  extra: ["chat_template_kwargs": ["enable_thinking": false]])
        let (_, prompt) = try await Self.promptAfter(call, s)
        #expect(prompt.contains("<|user|>Weather in Paris for two days?<|assistant|></think><tool_call>get_weather<arg_key>city</arg_key><arg_value>")
                && prompt.hasSuffix("</tool_call><|observation|><tool_response>sunny</tool_response><|assistant|><think>"), "\(prompt)")
    }

    /// A Mistral model's reply forced into its `[TOOL_CALLS]` list (as Mixtral-8x22B writes one): auto tool choice
    /// returns the call with a 9-character id, streamed or not; the call and its result go back into the history as
    /// mistral-common's template writes them; and the reply keeps special tokens, as [TOOL_CALLS] is one.
    @Test func autoToolChoiceReadsMistralCallsOutOfTheReply() async throws {
        let template = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("mistral-v3-spm.jinja"), encoding: .utf8)
        let s = try await LiveServer(chatTemplate: template)
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/chat/completions"
        let (call, streamedCall) = try await Self.forcedCall(s, #"Checking\. \[TOOL_CALLS\] \[\{"name": "get_weather", "arguments": \{"city": "(Paris|Rome)", "days": [1-7]\}\}\]"#)
        let id = call["id"] as? String ?? ""
        #expect(id.count == 9 && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }, "\(id)")
        #expect((streamedCall["id"] as? String)?.count == 9)

        // The call and its result back in the history, as the template writes them.
        let arguments = (call["function"] as? [String: Any])?["arguments"] as? String ?? "{}"
        let history: [[String: Any]] = Self.question + [
            ["role": "assistant", "content": NSNull(), "tool_calls": [["id": id, "type": "function", "function": ["name": "get_weather", "arguments": arguments]]]],
            ["role": "tool", "tool_call_id": id, "content": "sunny"]]
        let next = try await HTTP.post(url, ["messages": history, "tools": Self.tools, "max_tokens": 2])
        #expect(next.status == 200, "\(next.text)")
        let ids = (try await HTTP.post(s.base + "/tokenize", ["messages": history, "tools": Self.tools])).json?["tokens"] as? [Int] ?? []
        let prompt = (try await HTTP.post(s.base + "/detokenize", ["tokens": ids])).json?["prompt"] as? String ?? ""
        #expect(prompt.contains("[/INST][TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": \(arguments), \"id\": \"\(id)\"}]</s>[TOOL_RESULTS] {\"content\": \"sunny\", \"call_id\": \"\(id)\"}[/TOOL_RESULTS]"), "\(prompt)")
        // The tools as sent (this client sends keys sorted).
        #expect(prompt.hasPrefix("<s>[AVAILABLE_TOOLS] [{\"function\": {\"description\": \"Weather of a city.\", \"name\": \"get_weather\""), "\(prompt)")

        // Special tokens stay in a reply read for calls (the BOS forced here), and are left out without tools.
        let forced: [String: Any] = ["messages": Self.question, "max_tokens": 2, "logit_bias": ["1": 100]]
        let kept = try await HTTP.post(url, forced.merging(["tools": Self.tools]) { $1 })
        let dropped = try await HTTP.post(url, forced)
        #expect(((Self.choice(kept)?["message"] as? [String: Any])?["content"] as? String)?.contains("<s>") == true, "\(kept.text)")
        #expect(((Self.choice(dropped)?["message"] as? [String: Any])?["content"] as? String)?.contains("<s>") == false, "\(dropped.text)")
    }
}

/// A thinking model's reply split into reasoning and content, whole or streamed.
struct ReasoningSplitterTests {
    typealias Piece = ReasoningSplitter.Piece
    static let cases: [(String, String?, String)] = [
        ("<think>\nI should add.\n</think>\n\n4", "I should add.", "4"),
        ("4 is the answer.\n", nil, "4 is the answer.\n"),
        ("<think>\ncut short\n", "cut short", ""),
        ("<think>\n\n</think>\n\nHi", nil, "Hi"),
        ("<thi", nil, "<thi"),
        // GLM writes a newline before its <think>; text before a <think> makes it content.
        ("\n<think>x</think>\ny", "x", "y"),
        ("\n\n<think>", nil, ""),
        ("a\n<think>x</think>y", nil, "a\n<think>x</think>y"),
        ("\nNo thinking.", nil, "\nNo thinking."),
        ("<think>a\n\nb\n</think>c\n\nd\n", "a\n\nb", "c\n\nd\n"),
        ("<think>a</think>b</think>c", "a", "b</think>c"),
        ("<think>a</thin", "a</thin", ""),
        ("", nil, ""),
    ]

    /// The reply fed in pieces of `size` characters: its reasoning and content.
    static func streamed(_ reply: String, size: Int, opened: Bool = false) -> (String?, String) {
        var s = ReasoningSplitter(enabled: true, opened: opened)
        var r: String?, c = ""
        var chunks: [String] = []
        var rest = Substring(reply)
        while !rest.isEmpty { chunks.append(String(rest.prefix(size))); rest = rest.dropFirst(size) }
        for p in chunks.flatMap({ s.feed($0) }) + s.finish() {
            switch p {
            case .reasoning(let t): r = (r ?? "") + t
            case .content(let t): c += t
            }
        }
        return (r, c)
    }

    @Test func reasoningIsSplitOffTheSameWayWholeOrStreamed() {
        for (reply, reasoning, content) in Self.cases {
            let whole = ReasoningSplitter.split(reply, enabled: true)
            #expect(whole.reasoning == reasoning && whole.content == content, "\(reply.debugDescription) → \(whole)")
            for size in [1, 2, 5] {
                let (r, c) = Self.streamed(reply, size: size)
                #expect(r == reasoning && c == content, "\(reply.debugDescription) in pieces of \(size)")
            }
            // Off (a model that does not think, or reasoning_format "none"): all content, as written.
            #expect(ReasoningSplitter.split(reply, enabled: false) == (nil, reply))
        }
    }

    /// After a prompt that ends in "<think>\n" (Qwen3 thinking models), the reply starts as reasoning.
    @Test func aReplyOpenedInsideThinkingIsReasoningUntilItsEnd() {
        let cases: [(String, String?, String)] = [
            ("Let me see.\n</think>\n\n42", "Let me see.", "42"),
            ("still thinking\n", "still thinking", ""),
            ("</think>\n\nDirect.", nil, "Direct."),
        ]
        for (reply, reasoning, content) in cases {
            let whole = ReasoningSplitter.split(reply, enabled: true, opened: true)
            #expect(whole.reasoning == reasoning && whole.content == content, "\(reply.debugDescription) → \(whole)")
            let (r, c) = Self.streamed(reply, size: 1, opened: true)
            #expect(r == reasoning && c == content, "\(reply.debugDescription) a character at a time")
        }
    }
}

/// A Qwen3-template model's thinking and tool calls through the server.
struct ReasoningAPITests {
    /// Replies forced whole, <think> block included, by a regex constraining the reasoning too (vLLM's
    /// enable_in_reasoning), so the server's split of a known reply is checked.
    @Test func qwen3RepliesCarryReasoningContentApartFromContentAndCalls() async throws {
        let template = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("qwen3.jinja"), encoding: .utf8)
        let s = try await LiveServer(chatTemplate: template, structuredOutputsInReasoning: true)
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/chat/completions"
        // Replies forced into the shape Qwen3 writes.
        let thought = #"<think>\nIt is (sunny|rainy)\.\n</think>\n\nTake (a hat|an umbrella)\."#
        let body: [String: Any] = ["messages": ToolCallAPITests.question, "temperature": 0, "max_tokens": 200, "guided_regex": thought]
        let r = try await HTTP.post(url, body)
        let m = ToolCallAPITests.choice(r)?["message"] as? [String: Any]
        #expect((m?["reasoning_content"] as? String)?.hasPrefix("It is ") == true, "\(r.text)")
        #expect(m?["reasoning"] as? String == m?["reasoning_content"] as? String)   // vLLM 0.11+'s name
        #expect((m?["content"] as? String)?.hasPrefix("Take ") == true, "\(r.text)")
        var streamed = body
        streamed["stream"] = true
        let st = ToolCallAPITests.deltas(try await HTTP.post(url, streamed))
        let reasoning = st.compactMap { ($0["delta"] as? [String: Any])?["reasoning_content"] as? String }.joined()
        let content = st.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined()
        #expect(reasoning == m?["reasoning_content"] as? String && content == m?["content"] as? String)
        // reasoning_format "none": the reply as written, in content.
        var raw = body
        raw["reasoning_format"] = "none"
        let plain = try await HTTP.post(url, raw)
        let text = (ToolCallAPITests.choice(plain)?["message"] as? [String: Any])?["content"] as? String
        #expect(text?.hasPrefix("<think>\nIt is ") == true && (ToolCallAPITests.choice(plain)?["message"] as? [String: Any])?["reasoning_content"] == nil)

        // Thinking, then a tool call: the call is read from the content after </think>.
        let call = #"<think>\nI need the weather\.\n</think>\n\n<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "(Paris|Rome)", "days": 2\}\}\n</tool_call>"#
        let t = try await HTTP.post(url, ["messages": ToolCallAPITests.question, "tools": ToolCallAPITests.tools, "temperature": 0,
                                          "max_tokens": 300, "guided_regex": call])
        let tm = ToolCallAPITests.choice(t)?["message"] as? [String: Any]
        #expect(tm?["reasoning_content"] as? String == "I need the weather." && tm?["content"] is NSNull, "\(t.text)")
        #expect(ToolCallAPITests.calls(t).count == 1 && ToolCallAPITests.choice(t)?["finish_reason"] as? String == "tool_calls")
    }
}

/// By default a constrained reply's <think> block is free text and the constraint holds after it (vLLM with a
/// reasoning parser).
struct ConstrainedReasoningAPITests {
    @Test func aThinkingTemplatesConstrainedReplyThinksFreelyFirst() async throws {
        let template = try String(contentsOf: ToolCallTests.dir.appendingPathComponent("qwen3-thinking.jinja"), encoding: .utf8)
        let body: [String: Any] = ["messages": ToolCallAPITests.question, "temperature": 0, "max_tokens": 40,
                                   "response_format": ["type": "json_object"]]
        let free = try await LiveServer(chatTemplate: template)
        defer { Task { await free.stop() } }
        let r = try await HTTP.post(free.base + "/v1/chat/completions", body)
        let m = ToolCallAPITests.choice(r)?["message"] as? [String: Any]
        // The tiny model never writes </think>: its 40 tokens are all reasoning, and not JSON (no '{' first).
        let reasoning = m?["reasoning_content"] as? String
        #expect(reasoning?.isEmpty == false && reasoning?.hasPrefix("{") == false, "\(r.text)")
        #expect((m?["content"] as? String ?? "").isEmpty && m?["reasoning"] as? String == reasoning)
        // Constrained in reasoning too, the reply is the JSON object from its first token, as content.
        let strict = try await LiveServer(chatTemplate: template, structuredOutputsInReasoning: true)
        defer { Task { await strict.stop() } }
        let s = try await HTTP.post(strict.base + "/v1/chat/completions", body)
        let sm = ToolCallAPITests.choice(s)?["message"] as? [String: Any]
        #expect((sm?["content"] as? String)?.hasPrefix("{") == true && sm?["reasoning_content"] == nil, "\(s.text)")
    }
}
