import Foundation
import MoEModel
import MoETestSupport
import Testing
@testable import MoEServer

/// `response_format: {"type": "json_object"}`: whatever the model, the sampling or speculation, the text is a
/// prefix of one JSON object, and a whole one (Foundation's parser reads it) when generation stopped by itself.
@Suite(.serialized) struct StructuredOutputTests {
    func choice(_ r: HTTP.Reply) -> [String: Any] { ((r.json?["choices"] as? [[String: Any]])?.first) ?? [:] }

    /// Checks one answer; returns whether it was a whole object.
    func check(_ text: String, _ finish: String?, _ what: String) -> Bool {
        var s = JSONPrefix()
        let prefix = s.feed(Array(text.utf8))
        #expect(prefix, "\(what): \(text.debugDescription)")
        guard finish == "stop" else { #expect(finish == "length", "\(what)"); return false }
        #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any], "\(what): \(text.debugDescription)")
        return true
    }

    func run(model: String, draft: String? = nil, prompt: Any) async throws -> Int {
        let s = try await LiveServer(model: model, draft: draft)
        defer { Task { await s.stop() } }
        var whole = 0
        for (i, sampling) in ([["temperature": 0]] + (1...5).map { ["temperature": 0.9, "seed": $0] }).enumerated() {
            let body: [String: Any] = ["prompt": prompt, "max_tokens": 160, "response_format": ["type": "json_object"]]
            let r = try await HTTP.post(s.base + "/v1/completions", body.merging(sampling) { $1 })
            #expect(r.status == 200, "\(r.text)")
            if check(choice(r)["text"] as? String ?? "?", choice(r)["finish_reason"] as? String, "\(model) run \(i)") { whole += 1 }
        }
        return whole
    }

    @Test func byteLevelModelsAnswerWithJSONObjects() async throws {
        #expect(try await run(model: "tiny-mixtral", prompt: "The answer:") >= 1)
        _ = try await run(model: "tiny-qwen3-moe", prompt: [5, 6, 7])
    }

    /// SentencePiece pieces carry their leading space ("▁x"): the grammar counts it, as the text shows it. With
    /// the tokens that close an object forbidden (logit_bias), the model must write keys and values.
    @Test func sentencePieceModelAnswersWithJSONObjects() async throws {
        _ = try await run(model: "tiny-mistral-sp", prompt: "The answer:")
        let s = try await LiveServer(model: "tiny-mistral-sp")
        defer { Task { await s.stop() } }
        let g = s.server.service.tokenTable
        let closing = g.tokenBytes.indices.filter { g.tokenBytes[$0].contains(UInt8(ascii: "}")) }
        #expect(!closing.isEmpty)
        for seed in 1...4 {
            let r = try await HTTP.post(s.base + "/v1/completions", ["prompt": "The answer:", "max_tokens": 40, "temperature": 1, "seed": seed,
                                                                     "response_format": ["type": "json_object"],
                                                                     "logit_bias": Dictionary(uniqueKeysWithValues: closing.map { (String($0), -100) })])
            let text = choice(r)["text"] as? String ?? "?"
            _ = check(text, choice(r)["finish_reason"] as? String, "sp seed \(seed)")
            #expect(text.count > 10 && text.hasPrefix("{"), "\(text.debugDescription)")
        }
    }

    /// A token's grammar bytes are the text it adds to what came before, as the response's text shows it: over
    /// random token sequences, the first token's decoding followed by the others' bytes is the decoding of all.
    @Test func grammarBytesAreWhatEachTokenAddsToTheText() async throws {
        for model in ["tiny-mixtral", "tiny-mistral-sp"] {
            let s = try await LiveServer(model: model)
            defer { Task { await s.stop() } }
            let service = s.server.service, g = service.tokenTable
            let ordinary = g.tokenBytes.indices.filter { !g.tokenBytes[$0].isEmpty && g.tokenBytes[$0].allSatisfy { $0 < 0x80 } }
            var rng = SeededRNG(seed: 3)
            for _ in 0..<200 {
                let ids = (0..<6).map { _ in ordinary[Int(rng.next() % UInt64(ordinary.count))] }
                let whole = Array(service.tokenizer.decode(ids).utf8), first = Array(service.tokenizer.decode([ids[0]]).utf8)
                #expect(whole == first + ids.dropFirst().flatMap { g.tokenBytes[$0] }, "\(model) \(ids)")
            }
        }
    }

    /// Verification masks each draft's row with the drafts before it: the same guarantees with speculation, and
    /// greedy text identical to that without it.
    @Test func speculationKeepsTheGrammarAndTheGreedyText() async throws {
        _ = try await run(model: "tiny-mixtral-spec", draft: "tiny-mixtral-spec-draft", prompt: "Say it in JSON:")
        let body: [String: Any] = ["prompt": "Say it in JSON:", "max_tokens": 60, "temperature": 0, "response_format": ["type": "json_object"]]
        let plain = try await LiveServer(model: "tiny-mixtral-spec")
        defer { Task { await plain.stop() } }
        let spec = try await LiveServer(model: "tiny-mixtral-spec", draft: "tiny-mixtral-spec-draft")
        defer { Task { await spec.stop() } }
        let a = try await HTTP.post(plain.base + "/v1/completions", body), b = try await HTTP.post(spec.base + "/v1/completions", body)
        #expect(choice(a)["text"] as? String == choice(b)["text"] as? String)
    }

    /// A Pydantic-like schema: every whole answer has the required keys, no others, each value of its type; an
    /// answer cut by max_tokens is a prefix of one. Through response_format json_schema and vLLM's guided_json, with
    /// speculation too.
    /// A schema's keys are generated in the order the request wrote them (a Pydantic model's fields in declaration
    /// order), through every route that takes a schema; JSON decoding keeps no order, so it is read from the raw body.
    @Test func schemaKeysComeInTheOrderTheRequestWroteThem() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let schema = #"{"type": "object", "properties": {"zeta": {"type": "integer"}, "mid": {"type": "boolean"}, "alpha": {"type": "integer"}}, "required": ["zeta", "alpha"]}"#
        let bodies = [
            ("/v1/completions", #"{"prompt": "Answer:", "max_tokens": 80, "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": \#(schema)}}}"#),
            ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 80, "temperature": 0, "guided_json": \#(schema)}"#),
            ("/v1/responses", #"{"input": "Hi", "max_output_tokens": 80, "temperature": 0, "text": {"format": {"type": "json_schema", "name": "x", "schema": \#(schema)}}}"#),
        ]
        for (route, body) in bodies {
            let r = try await HTTP.request("POST", s.base + route, body: Data(body.utf8), headers: ["Content-Type": "application/json"])
            let text = (choice(r)["text"] as? String) ?? ((choice(r)["message"] as? [String: Any])?["content"] as? String) ?? ResponsesAPITests.outputText(r.json) ?? ""
            let at = ["\"zeta\"", "\"alpha\""].map { text.range(of: $0)?.lowerBound }
            #expect(r.status == 200 && at[0] != nil && at[1] != nil && at[0]! < at[1]!, "\(route): \(text)")
        }
        let orders = PropertyOrder.orders(in: Data(#"[{"properties": {"b": 1, "a": {"properties": {"y": 1, "x": 2}}}}, {"properties": {"a": 1, "b": 2}}]"#.utf8))
        #expect(orders == [["a", "b"]: ["b", "a"], ["x", "y"]: ["y", "x"]])
    }

    @Test func jsonSchemaAnswersFollowTheSchema() async throws {
        let schema: [String: Any] = [
            "type": "object", "additionalProperties": false, "required": ["name", "age", "role", "score"],
            "properties": ["name": ["type": "string"], "age": ["type": "integer", "minimum": 0, "maximum": 120], "role": ["enum": ["admin", "user", 7]],
                           "score": ["type": "number", "minimum": -1.5, "exclusiveMaximum": 2.5],
                           "tags": ["type": "array", "items": ["type": "string"], "maxItems": 2],
                           "boss": ["anyOf": [["type": "null"], ["$ref": "#/$defs/Ref"]]]],
            "$defs": ["Ref": ["type": "object", "properties": ["id": ["type": "number"]], "required": ["id"]]],
        ]
        let compiled = try JSONSchema(schema)
        var whole = 0
        for (model, draft) in [("tiny-mixtral", nil), ("tiny-mixtral-spec", "tiny-mixtral-spec-draft"), ("tiny-mistral-sp", nil)] as [(String, String?)] {
            let s = try await LiveServer(model: model, draft: draft)
            defer { Task { await s.stop() } }
            for (i, sampling) in ([["temperature": 0]] + (1...6).map { ["temperature": 1.0, "seed": $0] }).enumerated() {
                var body: [String: Any] = ["prompt": "Person:", "max_tokens": 300]
                if i % 2 == 0 { body["response_format"] = ["type": "json_schema", "json_schema": ["name": "person", "schema": schema, "strict": true]] }
                else { body["guided_json"] = schema }
                let r = try await HTTP.post(s.base + "/v1/completions", body.merging(sampling) { $1 })
                #expect(r.status == 200, "\(r.text)")
                let text = choice(r)["text"] as? String ?? "?"
                var state = JSONSchemaState(compiled)
                let prefix = state.feed(Array(text.utf8), compiled)
                #expect(prefix, "\(model) \(i): \(text.debugDescription)")
                guard choice(r)["finish_reason"] as? String == "stop" else { continue }
                let obj = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                #expect(obj?["name"] is String && (obj?["age"] as? Int).map { (0...120).contains($0) } == true, "\(text.debugDescription)")
                let keys = Set((obj ?? [:]).keys)
                #expect(keys.isSubset(of: ["name", "age", "role", "score", "tags", "boss"]))
                let score = (obj?["score"] as? NSNumber)?.doubleValue
                #expect(score.map { $0 >= -1.5 && $0 < 2.5 } == true, "\(text.debugDescription)")
                #expect((obj?["tags"] as? [String]).map { $0.count <= 2 } ?? (obj?["tags"] == nil))
                let role = obj?["role"]
                #expect(role as? String == "admin" || role as? String == "user" || role as? Int == 7)
                whole += 1
            }
        }
        #expect(whole >= 3)
    }

    /// A job's prompts take response_format (the job's, or their own) and keep it across the database: each result
    /// is a prefix of one value, whole when it stopped; options jobs do not carry out are a 400 naming them.
    @Test func jobsTakeResponseFormatAndRefuseWhatTheyCannotReturn() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let schema: [String: Any] = ["type": "object", "properties": ["ok": ["type": "boolean"]], "required": ["ok"]]
        let create = try await HTTP.post(s.base + "/v1/jobs", [
            "prompts": ["A:", ["prompt": "B:", "response_format": ["type": "json_schema", "json_schema": ["name": "s", "schema": schema]]]],
            "max_tokens": 200, "temperature": 0, "response_format": ["type": "json_object"]])
        #expect(create.status == 202, "\(create.text)")
        let id = create.json?["id"] as? String ?? "?"
        var job: [String: Any]? = nil
        for _ in 0..<500 {
            job = try await HTTP.get(s.base + "/v1/jobs/\(id)").json
            if job?["status"] as? String == "completed" { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let lines = try await HTTP.get(s.base + "/v1/jobs/\(id)/results").text.split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 2, "\(job ?? [:])")
        for line in lines { _ = check(line["text"] as? String ?? "?", line["finish_reason"] as? String, "job item \(line["index"] ?? "")") }
        let second = lines.first { $0["index"] as? Int == 1 }
        if second?["finish_reason"] as? String == "stop" {
            let obj = try JSONSerialization.jsonObject(with: Data((second?["text"] as? String ?? "").utf8)) as? [String: Any]
            #expect(obj?["ok"] is Bool && obj?.count == 1)
        }
        for (field, value) in [("logprobs", 2), ("echo", true), ("n", 3), ("stream", true)] as [(String, Any)] {
            let job = try await HTTP.post(s.base + "/v1/jobs", ["prompts": ["x"], field: value])
            #expect(job.status == 400 && job.text.contains("`\(field)` is not supported in jobs"), "\(job.text)")
            let item = try await HTTP.post(s.base + "/v1/jobs", ["prompts": [["prompt": "x", field: value]]])
            #expect(item.status == 400 && item.text.contains("`\(field)` is not supported in jobs"), "\(item.text)")
        }
        let bad = try await HTTP.post(s.base + "/v1/jobs", ["prompts": ["x"], "guided_json": ["type": "string", "format": "uri"]])
        #expect(bad.status == 400 && bad.text.contains("the format uri is not supported"), "\(bad.text)")
    }

    /// What Pydantic writes for date, UUID and constrained-string fields: every whole answer's strings match
    /// their format or pattern.
    @Test func formattedStringsFollowTheirFormats() async throws {
        let schema: [String: Any] = ["type": "object", "required": ["day", "id", "code"], "properties": [
            "day": ["type": "string", "format": "date"], "id": ["type": "string", "format": "uuid"],
            "code": ["type": "string", "pattern": "^[A-Z]{3}[0-9]{2}$"]]]
        let compiled = try JSONSchema(schema)
        let checks = ["day": #"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"#, "id": "^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$",
                      "code": "^[A-Z]{3}[0-9]{2}$"].mapValues { try! NSRegularExpression(pattern: $0) }
        var whole = 0
        for model in ["tiny-mixtral", "tiny-mistral-sp"] {
            let s = try await LiveServer(model: model)
            defer { Task { await s.stop() } }
            for sampling in [["temperature": 0]] + (1...4).map({ ["temperature": 1.0, "seed": $0] }) as [[String: Any]] {
                let r = try await HTTP.post(s.base + "/v1/completions", (["prompt": "Record:", "max_tokens": 160, "guided_json": schema] as [String: Any])
                    .merging(sampling) { $1 })
                let text = choice(r)["text"] as? String ?? "?"
                var state = JSONSchemaState(compiled)
                let prefix = state.feed(Array(text.utf8), compiled)
                #expect(prefix, "\(model) \(sampling): \(text.debugDescription)")
                guard choice(r)["finish_reason"] as? String == "stop" else { continue }
                let obj = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
                for (key, re) in checks {
                    let v = obj[key] as? String ?? "?"
                    #expect(re.firstMatch(in: v, range: NSRange(v.startIndex..., in: v)) != nil, "\(key): \(v)")
                }
                whole += 1
            }
        }
        #expect(whole >= 3)
    }

    /// vLLM's guided_choice: the text is one of the choices, whatever the sampling, and generation ends with it.
    @Test func guidedChoiceAnswersWithOneChoice() async throws {
        for model in ["tiny-mixtral", "tiny-mistral-sp"] {
            let s = try await LiveServer(model: model)
            defer { Task { await s.stop() } }
            let choices = ["positive", "negative", "neutral", "pos"]
            for sampling in [["temperature": 0]] + (1...5).map({ ["temperature": 1.0, "seed": $0] }) as [[String: Any]] {
                let r = try await HTTP.post(s.base + "/v1/completions", (["prompt": "Sentiment:", "max_tokens": 20, "guided_choice": choices] as [String: Any])
                    .merging(sampling) { $1 })
                let text = choice(r)["text"] as? String ?? "?"
                #expect(choices.contains(text) && choice(r)["finish_reason"] as? String == "stop", "\(model) \(sampling): \(text.debugDescription) \(r.text)")
            }
            let bad = try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "guided_choice": [String]()])
            #expect(bad.status == 400 && bad.text.contains("guided_choice must be"), "\(bad.text)")
        }
    }

    /// vLLM's guided_regex: with bounded patterns every answer ends by itself and matches the whole pattern
    /// (checked with NSRegularExpression); bad patterns are a 400 naming the problem.
    @Test func guidedRegexAnswersMatchThePattern() async throws {
        let patterns = [#"\d{3}-\d{4}"#, "(yes|no|maybe)", #"[A-Z][a-z]{1,6} [A-Z][a-z]{1,6}"#, #"-?[1-9]\d{0,3}(\.\d{1,2})?"#]
        for model in ["tiny-mixtral", "tiny-mistral-sp"] {
            let s = try await LiveServer(model: model)
            defer { Task { await s.stop() } }
            for pattern in patterns {
                let re = try NSRegularExpression(pattern: "^(?:" + pattern + ")$")
                for sampling in [["temperature": 0], ["temperature": 1.0, "seed": 4]] as [[String: Any]] {
                    let r = try await HTTP.post(s.base + "/v1/completions", (["prompt": "Answer:", "max_tokens": 30, "guided_regex": pattern] as [String: Any])
                        .merging(sampling) { $1 })
                    let text = choice(r)["text"] as? String ?? "?"
                    #expect(re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil && choice(r)["finish_reason"] as? String == "stop",
                            "\(model) \(pattern) \(sampling): \(text.debugDescription) \(r.text)")
                }
            }
            let bad = try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "guided_regex": "(?<=a)b"])
            #expect(bad.status == 400 && bad.text.contains("guided_regex: only (?: … ) groups"), "\(bad.text)")
        }
    }

    /// llama.cpp's `grammar` (GBNF), vLLM's `guided_grammar` and `structured_outputs.grammar`: every answer is a
    /// whole text of the grammar (checked by the grammar itself and by an equivalent regex), on a byte-level and a
    /// SentencePiece model; a bad grammar is a 400 naming the problem.
    @Test func gbnfGrammarAnswersAreTextsOfTheGrammar() async throws {
        let grammar = #"""
        root ::= answer " " city
        answer ::= "yes" | "no"
        city ::= ("Paris" | "Rome" | [A-Z] [a-z]{2,5}) "!"?
        """#
        let re = try NSRegularExpression(pattern: #"^(yes|no) (Paris|Rome|[A-Z][a-z]{2,5})!?$"#)
        let g = try GBNFGrammar(grammar)
        for model in ["tiny-mixtral", "tiny-mistral-sp"] {
            let s = try await LiveServer(model: model)
            defer { Task { await s.stop() } }
            for (field, sampling) in [("grammar", ["temperature": 0]), ("guided_grammar", ["temperature": 1.0, "seed": 3]),
                                      ("structured_outputs", ["temperature": 1.0, "seed": 8])] as [(String, [String: Any])] {
                let value: Any = field == "structured_outputs" ? ["grammar": grammar] : grammar
                let r = try await HTTP.post(s.base + "/v1/completions", (["prompt": "Answer:", "max_tokens": 30, field: value] as [String: Any])
                    .merging(sampling) { $1 })
                let text = choice(r)["text"] as? String ?? "?"
                var st = g.start
                let fed = Array(text.utf8).allSatisfy { g.feed(&st, $0) }
                #expect(fed && g.isComplete(st) && re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil,
                        "\(model) \(field): \(text.debugDescription) \(r.text)")
                #expect(choice(r)["finish_reason"] as? String == "stop" || !g.isClosed(st))
            }
            let bad = try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "grammar": #"root ::= root "a" | "b""#])
            #expect(bad.status == 400 && bad.text.contains("grammar: rule `root` is left-recursive"), "\(bad.text)")
        }
    }

    @Test func chatStreamedAndRefusedFormats() async throws {
        let s = try await LiveServer(chatTemplate: APITests.chatML)
        defer { Task { await s.stop() } }
        let body: [String: Any] = ["messages": [["role": "user", "content": "JSON please"]], "max_tokens": 80, "temperature": 0,
                                   "response_format": ["type": "json_object"]]
        let r = try await HTTP.post(s.base + "/v1/chat/completions", body)
        let message = choice(r)["message"] as? [String: Any]
        _ = check(message?["content"] as? String ?? "?", choice(r)["finish_reason"] as? String, "chat")
        let streamed = try await HTTP.post(s.base + "/v1/chat/completions", body.merging(["stream": true]) { $1 })
        let pieces = HTTP.events(streamed.text).dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .compactMap { (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String }
        #expect(pieces.joined() == message?["content"] as? String)
        let noSchema = try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "response_format": ["type": "json_schema"]])
        #expect(noSchema.status == 400 && noSchema.text.contains("json_schema.schema"), "\(noSchema.text)")
        let pattern = try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "response_format": ["type": "json_schema",
            "json_schema": ["name": "p", "schema": ["type": "object", "properties": ["a": ["type": "integer", "multipleOf": 3]]]]]])
        #expect(pattern.status == 400 && pattern.text.contains("/properties/a: the keyword multipleOf is not supported"), "\(pattern.text)")
        let grammar = try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "response_format": ["type": "grammar"]])
        #expect(grammar.status == 400 && grammar.text.contains("json_schema"), "\(grammar.text)")
        let minTokens = try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "min_tokens": 3, "response_format": ["type": "json_object"]])
        #expect(minTokens.status == 400 && minTokens.text.contains("min_tokens cannot be used"), "\(minTokens.text)")
    }
}
