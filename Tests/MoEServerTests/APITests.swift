import Foundation
import MoETestSupport
import Testing
@testable import MoEServer

/// Every route and every error, against a real server in this process (real engine, tiny fixture model).
@Suite(.serialized) struct APITests {
    static let chatML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

    func expectError(_ r: HTTP.Reply, _ status: Int, _ fragment: String, _ param: String? = nil) {
        #expect(r.status == status, "\(r.status) \(r.text)")
        let e = r.json?["error"] as? [String: Any]
        #expect((e?["message"] as? String)?.contains(fragment) == true, "\(r.text)")
        #expect(e?["type"] is String && e?.keys.contains("param") == true && e?.keys.contains("code") == true)
        if let p = param { #expect(e?["param"] as? String == p) }
    }

    @Test func healthModelsAndCompletions() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let h = try await HTTP.get(s.base + "/health")
        #expect(h.status == 200 && h.json?["status"] as? String == "ok")
        let m = try await HTTP.get(s.base + "/v1/models")
        #expect(((m.json?["data"] as? [[String: Any]])?.first?["id"] as? String) == "tiny-mixtral")
        let one = try await HTTP.get(s.base + "/v1/models/tiny-mixtral")
        #expect(one.json?["id"] as? String == "tiny-mixtral" && one.json?["object"] as? String == "model")
        expectError(try await HTTP.get(s.base + "/v1/models/gpt-4"), 404, "does not exist", "model")

        // Token-id prompt, greedy: the golden continuation, with usage.
        let g = try Fixtures.golden("tiny-mixtral").prompts[1]
        let c = try await HTTP.post(s.base + "/v1/completions", ["prompt": g.ids, "max_tokens": 16, "temperature": 0])
        #expect(c.status == 200)
        let usage = HTTP.counts(c.json?["usage"])
        #expect(usage == ["prompt_tokens": 10, "completion_tokens": 16, "total_tokens": 26])
        let choice = (c.json?["choices"] as? [[String: Any]])?.first
        #expect(choice?["finish_reason"] as? String == "length" && c.json?["object"] as? String == "text_completion")

        // Text prompt, streamed: chunks concatenate to the non-streamed text, then [DONE].
        let body: [String: Any] = ["prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0]
        let whole = try await HTTP.post(s.base + "/v1/completions", body)
        let text = ((whole.json?["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? "?"
        var streamed = body
        streamed["stream"] = true
        streamed["stream_options"] = ["include_usage": true]
        let sse = try await HTTP.post(s.base + "/v1/completions", streamed)
        #expect(sse.headers["content-type"]?.hasPrefix("text/event-stream") == true)
        let events = HTTP.events(sse.text)
        #expect(events.last == "[DONE]")
        let chunks = events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let pieces = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }.joined()
        #expect(pieces == text)
        #expect(HTTP.counts(chunks.last?["usage"]) == HTTP.counts(whole.json?["usage"]))

        // Sampling with a seed replays.
        let a = try await HTTP.post(s.base + "/v1/completions", ["prompt": "Hello", "max_tokens": 10, "temperature": 1.2, "top_p": 0.9, "top_k": 50, "seed": 3])
        let b = try await HTTP.post(s.base + "/v1/completions", ["prompt": "Hello", "max_tokens": 10, "temperature": 1.2, "top_p": 0.9, "top_k": 50, "seed": 3])
        #expect((a.json?["choices"] as? [[String: Any]])?.first?["text"] as? String == (b.json?["choices"] as? [[String: Any]])?.first?["text"] as? String)
    }

    /// vLLM's continuous_usage_stats (with include_usage): every chunk carries its choice's usage so far, the
    /// completion tokens never decreasing and reaching the final count on the choice's last chunk; without it only
    /// the last chunk has usage. For completions (two prompts, each counted alone) and chat.
    @Test func continuousUsageStatsCountEachChoiceAsItStreams() async throws {
        let s = try await LiveServer(chatTemplate: Self.chatML)
        defer { Task { await s.stop() } }
        let prompts = ["The quick brown fox", "Hello"]
        var sizes: [Int] = []
        for p in prompts {
            sizes.append(((try await HTTP.post(s.base + "/tokenize", ["prompt": p])).json?["tokens"] as? [Int] ?? []).count)
        }
        let chatSize = ((try await HTTP.post(s.base + "/tokenize", ["messages": [["role": "user", "content": "Hi"]]])).json?["tokens"] as? [Int] ?? []).count
        for (route, body, promptTokens) in [
            ("/v1/completions", ["prompt": prompts] as [String: Any], sizes),
            ("/v1/chat/completions", ["messages": [["role": "user", "content": "Hi"]]] as [String: Any], [chatSize]),
        ] {
            var streamed = body.merging(["max_tokens": 7, "temperature": 0, "ignore_eos": true, "stream": true,
                                         "stream_options": ["include_usage": true, "continuous_usage_stats": true]]) { $1 }
            let events = HTTP.events(try await HTTP.post(s.base + route, streamed).text)
            let chunks = events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            var last = [Int](repeating: 0, count: promptTokens.count)
            for c in chunks.dropLast() {
                let i = try #require((c["choices"] as? [[String: Any]])?.first?["index"] as? Int)
                let u = try #require(HTTP.counts(c["usage"]), "\(route): \(c)")
                #expect(u["prompt_tokens"] == promptTokens[i] && u["total_tokens"] == promptTokens[i] + (u["completion_tokens"] ?? -1))
                #expect((u["completion_tokens"] ?? -1) >= last[i] && (u["completion_tokens"] ?? 99) <= 7, "\(route) \(u)")
                last[i] = u["completion_tokens"] ?? 0
            }
            #expect(last == [Int](repeating: 7, count: promptTokens.count), "\(route)")
            #expect(HTTP.counts(chunks.last?["usage"])?["completion_tokens"] == 7 * promptTokens.count, "\(route)")

            streamed["stream_options"] = ["include_usage": true]
            let plain = HTTP.events(try await HTTP.post(s.base + route, streamed).text).dropLast()
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(plain.dropLast().allSatisfy { $0["usage"] == nil || $0["usage"] is NSNull } && HTTP.counts(plain.last?["usage"]) != nil, "\(route)")
        }
    }

    /// A list of prompts streams as vLLM streams it: chunks of either choice by its index, interleaved as they
    /// come; each choice's pieces concatenate to its text without streaming, each ends with its finish reason, and
    /// the usage chunk comes once, last, with the totals.
    @Test func streamingSeveralPromptsSendsEachChoiceByItsIndex() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let body: [String: Any] = ["prompt": ["The quick brown fox", "Once upon", "Hello"], "max_tokens": 10, "temperature": 0]
        let whole = try await HTTP.post(s.base + "/v1/completions", body)
        let texts = (whole.json?["choices"] as? [[String: Any]])?.map { $0["text"] as? String ?? "?" } ?? []
        try #require(texts.count == 3)
        var streamed = body
        streamed["stream"] = true
        streamed["stream_options"] = ["include_usage": true]
        let sse = try await HTTP.post(s.base + "/v1/completions", streamed)
        #expect(sse.status == 200)
        let events = HTTP.events(sse.text)
        #expect(events.last == "[DONE]")
        let chunks = events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        var pieces = [String](repeating: "", count: 3), finish = [String?](repeating: nil, count: 3)
        for c in chunks {
            for choice in c["choices"] as? [[String: Any]] ?? [] {
                let i = try #require(choice["index"] as? Int)
                #expect(finish[i] == nil, "choice \(i) has text after its finish")
                pieces[i] += choice["text"] as? String ?? ""
                if let f = choice["finish_reason"] as? String { finish[i] = f }
            }
        }
        #expect(pieces == texts)
        #expect(finish == ["length", "length", "length"])
        let usage = chunks.filter { HTTP.counts($0["usage"]) != nil }
        #expect(usage.count == 1 && (usage.first?["choices"] as? [Any])?.isEmpty == true)
        #expect(HTTP.counts(chunks.last?["usage"]) == HTTP.counts(whole.json?["usage"]))
    }

    /// `n` choices a prompt, in vLLM's order (choice k is prompt k / n's sample k % n): with a seed, sample j is
    /// what one choice with seed + j gives; greedy samples are equal; usage counts each prompt once and every
    /// choice's completion; streamed chat gives each choice its role once and the same texts; n outside 1...64 is
    /// a 400 naming `n`.
    @Test func nChoicesPerPromptAreSeparateSamplesInVLLMOrder() async throws {
        let s = try await LiveServer(chatTemplate: Self.chatML)
        defer { Task { await s.stop() } }
        func texts(_ r: HTTP.Reply) -> [String] { (r.json?["choices"] as? [[String: Any]])?.map { $0["text"] as? String ?? "?" } ?? [] }
        let prompts = ["The quick brown fox", "Once upon"]
        let sampled = try await HTTP.post(s.base + "/v1/completions",
                                          ["prompt": prompts, "n": 3, "max_tokens": 8, "temperature": 1.0, "seed": 5, "ignore_eos": true])
        #expect(sampled.status == 200, "\(sampled.text)")
        let got = texts(sampled)
        try #require(got.count == 6)
        #expect((sampled.json?["choices"] as? [[String: Any]])?.map { $0["index"] as? Int } == [0, 1, 2, 3, 4, 5])
        var promptTokens = 0
        for (k, text) in got.enumerated() {
            let one = try await HTTP.post(s.base + "/v1/completions",
                                          ["prompt": prompts[k / 3], "max_tokens": 8, "temperature": 1.0, "seed": 5 + k % 3, "ignore_eos": true])
            #expect(texts(one) == [text], "choice \(k)")
            if k % 3 == 0 { promptTokens += HTTP.counts(one.json?["usage"])?["prompt_tokens"] ?? -1 }
        }
        #expect(Set(got.prefix(3)).count > 1, "three seeds, three samples: \(got)")
        #expect(HTTP.counts(sampled.json?["usage"]) == ["prompt_tokens": promptTokens, "completion_tokens": 48, "total_tokens": promptTokens + 48])

        let greedy = try await HTTP.post(s.base + "/v1/completions", ["prompt": "Hello", "n": 2, "max_tokens": 6, "temperature": 0])
        #expect(texts(greedy).count == 2 && Set(texts(greedy)).count == 1)

        let msgs = [["role": "user", "content": "Hi"]]
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": msgs, "n": 2, "max_tokens": 6, "temperature": 0.9, "seed": 1])
        let chatTexts = (chat.json?["choices"] as? [[String: Any]])?.map { ($0["message"] as? [String: Any])?["content"] as? String ?? "?" } ?? []
        #expect(chatTexts.count == 2)
        let st = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": msgs, "n": 2, "max_tokens": 6, "temperature": 0.9, "seed": 1,
                                                                       "stream": true, "stream_options": ["include_usage": true]])
        let chunks = HTTP.events(st.text).dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        var pieces = ["", ""], roles = [0, 0]
        for c in chunks {
            for choice in c["choices"] as? [[String: Any]] ?? [] {
                let i = try #require(choice["index"] as? Int)
                let delta = choice["delta"] as? [String: Any]
                pieces[i] += delta?["content"] as? String ?? ""
                if delta?["role"] as? String == "assistant" { roles[i] += 1 }
            }
        }
        #expect(pieces == chatTexts && roles == [1, 1])
        #expect(HTTP.counts(chunks.last?["usage"]) == HTTP.counts(chat.json?["usage"]))

        for bad in [0, 65] {
            expectError(try await HTTP.post(s.base + "/v1/completions", ["prompt": "Hello", "n": bad, "max_tokens": 2]), 400, "n must be", "n")
        }
    }

    @Test func stopStringsEndTheTextBeforeThem() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let full = try await HTTP.post(s.base + "/v1/completions", ["prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0])
        let text = ((full.json?["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
        try #require(text.count > 6)
        let stop = String(text.dropFirst(3).prefix(2))
        let cut = String(text[..<text.range(of: stop)!.lowerBound])
        for stream in [false, true] {
            let r = try await HTTP.post(s.base + "/v1/completions", ["prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0, "stop": [stop], "stream": stream])
            if stream {
                let chunks = HTTP.events(r.text).dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                let got = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }.joined()
                #expect(got == cut)
                #expect((chunks.last?["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String == "stop")
                #expect((chunks.last?["choices"] as? [[String: Any]])?.first?["stop_reason"] as? String == stop)   // vLLM's
            } else {
                let c = (r.json?["choices"] as? [[String: Any]])?.first
                #expect(c?["text"] as? String == cut && c?["finish_reason"] as? String == "stop" && c?["stop_reason"] as? String == stop)
            }
        }
        // Cut by length: stop_reason is there, null.
        #expect((full.json?["choices"] as? [[String: Any]])?.first?["stop_reason"] is NSNull)
        // vLLM's include_stop_str_in_output keeps the stop string at the end.
        let kept = try await HTTP.post(s.base + "/v1/completions", ["prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0,
                                                                    "stop": [stop], "include_stop_str_in_output": true])
        #expect((kept.json?["choices"] as? [[String: Any]])?.first?["text"] as? String == cut + stop)
    }

    /// Special tokens' text is left out unless skip_special_tokens is false (EOS forced by logit_bias, then ignored).
    @Test func specialTokensShowOnlyWhenNotSkipped() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        func text(_ extra: [String: Any]) async throws -> String {
            let body: [String: Any] = ["prompt": "The", "max_tokens": 2, "temperature": 0, "ignore_eos": true, "logit_bias": ["2": 100]]
            let r = try await HTTP.post(s.base + "/v1/completions", body.merging(extra) { $1 })
            return ((r.json?["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? "?"
        }
        #expect(try await text([:]) == "")
        #expect(try await text(["skip_special_tokens": false]) == "</s></s>")
    }

    @Test func chatCompletionsRenderKnownTemplatesAndRefuseOthers() async throws {
        let s = try await LiveServer(chatTemplate: Self.chatML)
        defer { Task { await s.stop() } }
        let msgs: [[String: String]] = [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi"]]
        let r = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": msgs, "max_tokens": 6, "temperature": 0])
        #expect(r.status == 200 && r.json?["object"] as? String == "chat.completion", "\(r.text)")
        let msg = (r.json?["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]
        #expect(msg?["role"] as? String == "assistant" && msg?["content"] is String)
        // The same text as a completion of the rendered ChatML prompt.
        let rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        let c = try await HTTP.post(s.base + "/v1/completions", ["prompt": rendered, "max_tokens": 6, "temperature": 0])
        #expect(msg?["content"] as? String == (c.json?["choices"] as? [[String: Any]])?.first?["text"] as? String)
        let plainRendered = try await HTTP.post(s.base + "/tokenize", ["messages": msgs])
        let st = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": msgs, "max_tokens": 4, "temperature": 0, "stream": true])
        #expect(HTTP.events(st.text).last == "[DONE]" && st.text.contains("chat.completion.chunk"))
        expectError(try await HTTP.post(s.base + "/v1/chat/completions", ["messages": [["role": "tool", "content": "x"]]]), 400, "no tool-call format")
        // Content as text parts (joined by newlines, as vLLM joins them) and the developer role read as plain content
        // and the system role; other parts are a 400 naming the field.
        let plain = try await HTTP.post(s.base + "/tokenize", ["messages": [["role": "system", "content": "Be brief"],
                                                                            ["role": "user", "content": "hi\nthere"]]])
        let parts = try await HTTP.post(s.base + "/tokenize", ["messages": [["role": "developer", "content": [["type": "text", "text": "Be brief"]]],
                                                                            ["role": "user", "content": [["type": "text", "text": "hi"], ["type": "text", "text": "there"]]]]])
        #expect(plain.json?["tokens"] as? [Int] != nil && plain.json?["tokens"] as? [Int] == parts.json?["tokens"] as? [Int], "\(parts.text)")
        let withParts = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": [["role": "user", "content": [["type": "text", "text": "hi"]]]], "max_tokens": 2])
        #expect(withParts.status == 200, "\(withParts.text)")
        expectError(try await HTTP.post(s.base + "/v1/chat/completions", ["messages": [["role": "user", "content": [["type": "image_url", "image_url": ["url": "x"]]]]]]),
                    400, "only text parts", "messages[0].content")

        let odd = try await LiveServer(chatTemplate: "{{ messages[0].content }} ### {% raw %}")
        defer { Task { await odd.stop() } }
        expectError(try await HTTP.post(odd.base + "/v1/chat/completions", ["messages": msgs]), 400, "chat template is not one moe-serve renders")
        let none = try await LiveServer()
        defer { Task { await none.stop() } }
        expectError(try await HTTP.post(none.base + "/v1/chat/completions", ["messages": msgs]), 400, "has no chat template")
        // vLLM's per-request chat_template: the same prompt as a model that has it.
        let own = try await HTTP.post(none.base + "/tokenize", ["messages": msgs, "chat_template": Self.chatML])
        #expect(own.json?["tokens"] as? [Int] != nil && own.json?["tokens"] as? [Int] == plainRendered.json?["tokens"] as? [Int], "\(own.text)")
        #expect(try await HTTP.post(none.base + "/v1/chat/completions", ["messages": msgs, "chat_template": Self.chatML, "max_tokens": 2]).status == 200)
    }

    @Test func badRequestsAreFourHundredsAndTheServerKeepsServing() async throws {
        let s = try await LiveServer(maxBody: 4096)
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/completions"
        expectError(try await HTTP.request("POST", url, body: Data("{\"prompt\": ".utf8)), 400, "not valid JSON")
        expectError(try await HTTP.post(url, ["prompt": 5]), 400, "wrong type", "prompt")
        expectError(try await HTTP.post(url, ["max_tokens": 5]), 400, "missing required field 'prompt'", "prompt")
        expectError(try await HTTP.post(url, ["prompt": "hi", "max_tokens": "many"]), 400, "wrong type", "max_tokens")
        expectError(try await HTTP.post(url, ["prompt": "hi", "model": "gpt-4"]), 404, "does not exist", "model")
        expectError(try await HTTP.post(url, ["prompt": "hi", "max_tokens": -3]), 400, "max_tokens must be at least 1", "max_tokens")
        expectError(try await HTTP.post(url, ["prompt": "hi", "max_tokens": 10_000_000]), 400, "maximum context length", "max_tokens")
        expectError(try await HTTP.request("POST", url, body: Data([0x7b, 0x22, 0x70, 0xff, 0xfe, 0x22, 0x7d])), 400, "not valid UTF-8")
        expectError(try await HTTP.post(url, ["prompt": Array(repeating: 5, count: 3000)]), 413, "larger than")
        expectError(try await HTTP.post(url, ["prompt": [9999]]), 400, "outside the vocabulary", "prompt")
        expectError(try await HTTP.post(url, ["prompt": "hi", "temperature": -1]), 400, "temperature", "temperature")
        expectError(try await HTTP.post(url, ["prompt": "hi", "top_p": 0]), 400, "top_p", "top_p")
        let long = try await LiveServer(maxBody: 1 << 20)
        defer { Task { await long.stop() } }
        expectError(try await HTTP.post(long.base + "/v1/completions", ["prompt": Array(repeating: 5, count: 2100)]), 400, "maximum context length", "prompt")
        #expect(try await HTTP.get(s.base + "/health").status == 200)
        #expect(try await HTTP.post(url, ["prompt": "still here", "max_tokens": 2]).status == 200)
    }

    /// OpenAI/vLLM options that would change the output and that this server does not implement are a 400 naming
    /// the field, never silently ignored; their defaults (as LangChain and others send on every request) pass.
    @Test func optionsThatWouldChangeTheOutputButAreNotImplementedAreRefused() async throws {
        let s = try await LiveServer(chatTemplate: Self.chatML)
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/completions"
        let refused: [(String, Any)] = [("best_of", 3), ("suffix", "end"), ("tools", [["type": "function"]]),
                                        ("response_format", ["type": "structural_tag"])]
        for (field, value) in refused {
            expectError(try await HTTP.post(url, ["prompt": "hi", "max_tokens": 2, field: value]), 400, "`\(field)` is not supported", field)
        }
        let defaults: [String: Any] = ["prompt": "hi", "max_tokens": 2, "logprobs": NSNull(), "presence_penalty": 0,
                                       "frequency_penalty": 0, "repetition_penalty": 1, "best_of": 1, "n": 1, "echo": false,
                                       "logit_bias": [String: Any](), "tools": [Any](), "response_format": ["type": "text"],
                                       "min_tokens": 0, "stop_token_ids": [Int](), "user": "someone"]
        #expect(try await HTTP.post(url, defaults).status == 200)
        var chatDefaults = defaults
        chatDefaults["prompt"] = nil
        chatDefaults["echo"] = nil
        chatDefaults["messages"] = [["role": "user", "content": "hi"]]
        chatDefaults["logprobs"] = false
        chatDefaults["top_logprobs"] = 0
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", chatDefaults)
        #expect(chat.status == 200, "\(chat.text)")
        let plain = try await HTTP.post(url, ["prompt": "hi", "max_tokens": 2])
        #expect(((plain.json?["choices"] as? [[String: Any]])?.first?.keys.contains("logprobs")) == true)
    }

    @Test func rebalanceReadsItsBodyStrictly() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/rebalance"
        // A body that is not {"dry_run": bool} is refused before anything is re-placed.
        expectError(try await HTTP.request("POST", url, body: Data("{\"dry_run\": tru".utf8)), 400, "not valid JSON")
        expectError(try await HTTP.post(url, ["dry_run": "yes"]), 400, "wrong type", "dry_run")
        expectError(try await HTTP.request("POST", url, body: Data("[true]".utf8)), 400, "must be a JSON object")
        // An empty body and a well-formed one reach the engine, which has no expert workers to rebalance here.
        for body in [Data(), Data("{\"dry_run\": true}".utf8)] {
            let r = try await HTTP.request("POST", url, body: body)
            expectError(r, 400, "no expert workers")
            #expect((r.json?["error"] as? [String: Any])?["code"] as? String == "no_expert_workers")
        }
    }

    @Test func severalPromptsRunTogetherAndKeepTheirOrder() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let g = try Fixtures.golden("tiny-mixtral").prompts
        let n = 12
        var alone: [String] = []
        for p in [g[0].ids, g[1].ids] {
            let r = try await HTTP.post(s.base + "/v1/completions", ["prompt": p, "max_tokens": n, "temperature": 0, "ignore_eos": true])
            alone.append(((r.json?["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? "?")
        }
        let steps0 = try await HTTP.get(s.base + "/v1/stats").json?["steps"] as? Int ?? -1
        let both = try await HTTP.post(s.base + "/v1/completions", ["prompt": [g[0].ids, g[1].ids], "max_tokens": n, "temperature": 0, "ignore_eos": true])
        let steps1 = try await HTTP.get(s.base + "/v1/stats").json?["steps"] as? Int ?? -1
        #expect(both.status == 200, "\(both.text)")
        let choices = both.json?["choices"] as? [[String: Any]] ?? []
        #expect(choices.map { $0["index"] as? Int } == [0, 1])
        #expect(choices.map { $0["text"] as? String } == alone.map { Optional($0) })
        #expect(HTTP.counts(both.json?["usage"]) == ["prompt_tokens": g[0].ids.count + g[1].ids.count, "completion_tokens": 2 * n,
                                                         "total_tokens": g[0].ids.count + g[1].ids.count + 2 * n])
        // Batched together: about n forward steps for both, where one after the other takes 2n.
        #expect(steps1 - steps0 >= n && steps1 - steps0 < 2 * n - 4, "\(steps1 - steps0) steps for two prompts of \(n) tokens")
    }

    @Test func bearerTokenGuardsEveryRouteButTheLivenessChecks() async throws {
        let s = try await LiveServer(token: "sesame")
        defer { Task { await s.stop() } }
        #expect(try await HTTP.get(s.base + "/health").status == 200)
        #expect(try await HTTP.get(s.base + "/ping").status == 200)
        #expect(try await HTTP.get(s.base + "/version").json?["version"] as? String == Routes.version)
        expectError(try await HTTP.post(s.base + "/apply-template", ["messages": [["role": "user", "content": "hi"]]]), 401, "bearer token")
        expectError(try await HTTP.get(s.base + "/v1/models"), 401, "bearer token")
        expectError(try await HTTP.get(s.base + "/v1/jobs", headers: ["Authorization": "Bearer nope"]), 401, "bearer token")
        #expect(try await HTTP.get(s.base + "/v1/models", headers: ["Authorization": "Bearer sesame"]).status == 200)
    }

    @Test func jobsRunTheirPromptsAndKeepResults() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let g = try Fixtures.golden("tiny-mixtral").prompts
        let create = try await HTTP.post(s.base + "/v1/jobs", ["prompts": [["prompt": g[0].ids], ["prompt": g[1].ids, "max_tokens": 8], "The quick"],
                                                              "max_tokens": 16, "temperature": 0])
        #expect(create.status == 202 && create.json?["total"] as? Int == 3, "\(create.text)")
        let id = create.json?["id"] as! String
        var job: [String: Any]? = nil
        for _ in 0..<300 {
            job = try await HTTP.get(s.base + "/v1/jobs/\(id)").json
            if job?["status"] as? String == "completed" { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(job?["status"] as? String == "completed" && job?["completed"] as? Int == 3)
        let res = try await HTTP.get(s.base + "/v1/jobs/\(id)/results")
        #expect(res.headers["content-type"]?.hasPrefix("application/x-ndjson") == true)
        let lines = res.text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.map { $0["index"] as? Int } == [0, 1, 2])
        // Each line carries its prompt as sent; the item's own max_tokens wins over the job's.
        #expect(lines[0]["prompt"] as? [Int] == g[0].ids && lines[2]["prompt"] as? String == "The quick")
        #expect(HTTP.counts(lines[1]["usage"])?["completion_tokens"] ?? 99 <= 8)
        #expect(lines.allSatisfy { $0["finish_reason"] is String && $0["error"] == nil })
        // Token-id prompts: compare through the tokenizer-independent route: re-run as completions.
        let again = try await HTTP.post(s.base + "/v1/completions", ["prompt": g[1].ids, "max_tokens": 8, "temperature": 0])
        #expect(lines[1]["text"] as? String == (again.json?["choices"] as? [[String: Any]])?.first?["text"] as? String)
        expectError(try await HTTP.get(s.base + "/v1/jobs/job_nope"), 404, "no job")
        expectError(try await HTTP.post(s.base + "/v1/jobs", ["prompts": []]), 400, "non-empty", "prompts")
        expectError(try await HTTP.post(s.base + "/v1/jobs", ["prompts": [["max_tokens": 3]]]), 400, "prompt must be text", "prompts")
        expectError(try await HTTP.post(s.base + "/v1/jobs", ["prompts": ["ok", 5]]), 400, "string or an object", "prompts[1]")
        expectError(try await HTTP.post(s.base + "/v1/jobs", ["prompts": ["ok", ["prompt": "x", "max_tokens": "many"]]]), 400, "wrong type",
                    "prompts[1].max_tokens")
        expectError(try await HTTP.post(s.base + "/v1/jobs", ["prompts": ["ok"], "max_tokens": 0]), 400, "max_tokens must be at least 1")
        expectError(try await HTTP.post(s.base + "/v1/jobs", ["max_tokens": 3]), 400, "missing required field 'prompts'", "prompts")

        // Cancelling a long job stops it; what finished stays.
        let big = try await HTTP.post(s.base + "/v1/jobs", ["prompts": Array(repeating: "Once upon a time", count: 40), "max_tokens": 60, "temperature": 0])
        let bid = big.json?["id"] as! String
        let del = try await HTTP.request("DELETE", s.base + "/v1/jobs/\(bid)")
        #expect(del.status == 200 && del.json?["status"] as? String == "cancelled")
        try await Task.sleep(nanoseconds: 300_000_000)
        let after = try await HTTP.get(s.base + "/v1/jobs/\(bid)").json
        #expect(after?["status"] as? String == "cancelled" && (after?["completed"] as? Int ?? 99) < 40)

        // The list: newest first, with the same counts as each job's own view; the refused bodies stored nothing.
        let list = try await HTTP.get(s.base + "/v1/jobs").json?["data"] as? [[String: Any]] ?? []
        #expect(list.map { $0["id"] as? String } == [bid, id])
        let first = try await HTTP.get(s.base + "/v1/jobs/\(id)").json
        #expect(list.last?["completed"] as? Int == 3 && list.last?["status"] as? String == "completed" && list.last?["total"] as? Int == 3)
        #expect(list.last?["finished_at"] as? Int == first?["finished_at"] as? Int && list.last?["finished_at"] is Int)
        #expect(list.first?["status"] as? String == "cancelled" && list.first?["total"] as? Int == 40)
    }

    @Test func aFullQueueAnswers429WithRetryAfter() async throws {
        let s = try await LiveServer(maxQueued: 1)
        defer { Task { await s.stop() } }
        let engine = s.server.service.engine
        // One long request fills the single slot; the next is refused while it runs. On a loaded machine the long one
        // can finish before the probe is sent, so the probe only counts while the slot is observed full.
        var busy: HTTP.Reply?
        for _ in 0..<5 where busy == nil {
            let slow = Task { try await HTTP.post(s.base + "/v1/completions", ["prompt": "a", "max_tokens": 2000, "temperature": 0, "ignore_eos": true]) }
            for _ in 0..<2000 where engine.outstandingRequests == 0 { try await Task.sleep(nanoseconds: 5_000_000) }
            let r = try await HTTP.post(s.base + "/v1/completions", ["prompt": "b", "max_tokens": 1])
            if r.status == 429 { busy = r }
            slow.cancel()
            _ = try? await slow.value
        }
        let r = try #require(busy)
        expectError(r, 429, "at capacity")
        #expect(r.headers["retry-after"] == "1")
    }

    /// One prompt or a list of them streamed: hanging up mid-stream cancels every generation of the request.
    @Test func aClientThatDisconnectsMidStreamFreesItsRequest() async throws {
        let s = try await LiveServer(kvBlocks: 128)
        defer { Task { await s.stop() } }
        let engine = s.server.service.engine
        for (prompt, count) in [(#""Once""#, 1), (#"["Once", "Upon a", "The"]"#, 3)] {
            // Read a few bytes of a long stream with a raw socket, then hang up.
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(URL(string: s.base)!.port!).bigEndian
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            try #require(ok == 0)
            let body = #"{"prompt": "# + prompt + #", "max_tokens": 1500, "temperature": 0, "ignore_eos": true, "stream": true}"#
            let req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            _ = req.withCString { send(fd, $0, strlen($0), 0) }
            var buf = [UInt8](repeating: 0, count: 4096)
            _ = recv(fd, &buf, buf.count, 0)
            #expect(engine.outstandingRequests == count)
            close(fd)
            // The load snapshot is refreshed by the engine's next step after the cancel: wait for both.
            for _ in 0..<200 where engine.outstandingRequests > 0 || engine.loadSnapshot.running > 0 {
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            #expect(engine.outstandingRequests == 0, "\(count) prompts")
            #expect(engine.loadSnapshot.running == 0, "\(count) prompts")
        }
    }

    /// llama.cpp's /apply-template answers the chat prompt as the chat route renders it (the same tokens as /tokenize
    /// gives for the messages); vLLM's POST /ping answers as /health.
    @Test func applyTemplateIsTheChatPrompt() async throws {
        let s = try await LiveServer(chatTemplate: Self.chatML)
        defer { Task { await s.stop() } }
        let msgs: [[String: String]] = [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi"]]
        let r = try await HTTP.post(s.base + "/apply-template", ["messages": msgs])
        #expect(r.json?["prompt"] as? String == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                "\(r.text)")
        let viaText = try await HTTP.post(s.base + "/tokenize", ["prompt": r.json?["prompt"] as? String ?? "", "add_special_tokens": false])
        let viaMessages = try await HTTP.post(s.base + "/tokenize", ["messages": msgs])
        #expect(viaText.json?["tokens"] as? [Int] == viaMessages.json?["tokens"] as? [Int])
        expectError(try await HTTP.post(s.base + "/apply-template", ["messages": [[String: String]]()]), 400, "must not be empty", "messages")
        #expect(try await HTTP.request("POST", s.base + "/ping", json: [String: Any]()).json?["status"] as? String == "ok")
    }

    /// vLLM's allowed_token_ids, bad_words and truncate_prompt_tokens: generated ids stay in the allowed set; no
    /// generated sequence ends with a bad word's tokens (the word as /tokenize spells it, bare and after a space);
    /// a truncated prompt is its last k tokens (the same text as that suffix sent as ids, k prompt tokens in usage);
    /// bad values are 400s naming the field.
    @Test func vllmAllowedTokensBadWordsAndPromptTruncation() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let base: [String: Any] = ["prompt": "The quick brown fox", "max_tokens": 10, "temperature": 0, "ignore_eos": true,
                                   "logprobs": 0, "return_tokens_as_token_ids": true]
        func ids(_ extra: [String: Any]) async throws -> [Int] {
            let r = try await HTTP.post(s.base + "/v1/completions", base.merging(extra) { $1 })
            #expect(r.status == 200, "\(r.text)")
            let lp = (r.json?["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any]
            return (lp?["tokens"] as? [String] ?? []).compactMap { Int($0.dropFirst("token_id:".count)) }
        }
        let plain = try await ids([:])
        #expect(plain.count == 10)

        let allowed = [plain[2], 5, 6, 7]
        let kept = try await ids(["allowed_token_ids": allowed])
        #expect(kept.count == 10 && kept.allSatisfy(allowed.contains) && kept != plain, "\(kept)")
        let sampled = try await ids(["allowed_token_ids": allowed, "temperature": 1, "seed": 3])
        #expect(sampled.allSatisfy(allowed.contains), "\(sampled)")

        // A generated token whose text, as a bad word, is spelled as that one token (bare or after a space): the
        // output is the same up to it, then turns away.
        func spellings(_ word: String) async throws -> [[Int]] {
            var out: [[Int]] = []
            for text in [String(word.drop { $0.isWhitespace }), " " + word.drop { $0.isWhitespace }] {
                let t = try await HTTP.post(s.base + "/tokenize", ["prompt": text, "add_special_tokens": false])
                out.append(t.json?["tokens"] as? [Int] ?? [])
            }
            return out[1].first != out[0].first && out[1].count == out[0].count ? out : [out[0]]
        }
        var chosen: (at: Int, word: String, spellings: [[Int]])?
        for (i, t) in plain.enumerated() where !plain[..<i].contains(t) {
            let word = (try await HTTP.post(s.base + "/detokenize", ["tokens": [t]])).json?["prompt"] as? String ?? ""
            guard !word.allSatisfy(\.isWhitespace) else { continue }
            let sp = try await spellings(word)
            if sp.contains([t]) { chosen = (i, word, sp); break }
        }
        let bad = try #require(chosen)
        let clean = try await ids(["bad_words": [bad.word]])
        #expect(Array(clean.prefix(bad.at)) == Array(plain.prefix(bad.at)) && clean[bad.at] != plain[bad.at], "\(bad)")
        for w in bad.spellings {
            for end in 0..<clean.count where end + 1 >= w.count {
                #expect(Array(clean[(end + 1 - w.count)...end]) != w, "\(bad) ends at \(end): \(clean)")
            }
        }

        let prompt = try #require((try await HTTP.post(s.base + "/tokenize", ["prompt": "The quick brown fox"])).json?["tokens"] as? [Int])
        #expect(prompt.count > 3)
        let cut = try await HTTP.post(s.base + "/v1/completions", ["prompt": "The quick brown fox", "max_tokens": 6, "temperature": 0,
                                                                   "truncate_prompt_tokens": 3])
        let asIds = try await HTTP.post(s.base + "/v1/completions", ["prompt": Array(prompt.suffix(3)), "max_tokens": 6, "temperature": 0])
        #expect((cut.json?["usage"] as? [String: Any])?["prompt_tokens"] as? Int == 3, "\(cut.text)")
        #expect((cut.json?["choices"] as? [[String: Any]])?.first?["text"] as? String
                == (asIds.json?["choices"] as? [[String: Any]])?.first?["text"] as? String)
        let long = try await HTTP.post(s.base + "/v1/completions", ["prompt": "The quick brown fox", "max_tokens": 2, "truncate_prompt_tokens": -1])
        #expect((long.json?["usage"] as? [String: Any])?["prompt_tokens"] as? Int == prompt.count)

        expectError(try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "allowed_token_ids": [Int]()]), 400, "must not be empty", "allowed_token_ids")
        expectError(try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "allowed_token_ids": [1, 1_000_000]]), 400, "outside the vocabulary", "allowed_token_ids")
        expectError(try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "bad_words": [" "]]), 400, "at least one token", "bad_words")
        expectError(try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "truncate_prompt_tokens": 0]), 400, ">= 1 or -1", "truncate_prompt_tokens")
        expectError(try await HTTP.post(s.base + "/v1/completions", ["prompt": "x", "truncate_prompt_tokens": 1_000_000]), 400,
                    "greater than max_model_len", "truncate_prompt_tokens")
    }
}
