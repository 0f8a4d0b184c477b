import Foundation
import MoETestSupport
import Testing
@testable import MoEServer

/// logprobs, echo, penalties, min_tokens, stop_token_ids and logit_bias through the HTTP API, in OpenAI's shapes.
@Suite(.serialized) struct LogprobsAPITests {
    func choice(_ r: HTTP.Reply) -> [String: Any] { ((r.json?["choices"] as? [[String: Any]])?.first) ?? [:] }

    func chunks(_ r: HTTP.Reply) -> [[String: Any]] {
        HTTP.events(r.text).dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .compactMap { ($0["choices"] as? [[String: Any]])?.first }
    }

    func expectError(_ r: HTTP.Reply, _ fragment: String, _ param: String) {
        #expect(r.status == 400, "\(r.text)")
        let e = r.json?["error"] as? [String: Any]
        #expect((e?["message"] as? String)?.contains(fragment) == true, "\(r.text)")
        #expect(e?["param"] as? String == param, "\(r.text)")
    }

    /// What lm-evaluation-harness sends to score a text (echo, logprobs 1, max_tokens 0): the prompt back as the
    /// text, and each of its tokens' log-probabilities as transformers' log_softmax gives them (the first null).
    @Test func echoWithLogprobsScoresThePromptAsTransformersDoes() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let g = try Fixtures.golden("tiny-mixtral"), p = g.prompts[1], V = p.logitsShape[1]
        let r = try await HTTP.post(s.base + "/v1/completions", ["prompt": p.text, "echo": true, "logprobs": 1, "max_tokens": 0])
        #expect(r.status == 200, "\(r.text)")
        let c = choice(r)
        #expect(c["text"] as? String == p.text && c["finish_reason"] as? String == "length")
        #expect(HTTP.counts(r.json?["usage"])?["completion_tokens"] == 0)
        let lp = try #require(c["logprobs"] as? [String: Any])
        let tokens = try #require(lp["tokens"] as? [String]), values = try #require(lp["token_logprobs"] as? [Any])
        let tops = try #require(lp["top_logprobs"] as? [Any]), offsets = try #require(lp["text_offset"] as? [Int])
        #expect(tokens.count == p.ids.count && values.count == p.ids.count && tops.count == p.ids.count)
        #expect(values[0] is NSNull && tops[0] is NSNull && offsets.first == 0 && offsets == offsets.sorted())
        #expect(tokens.joined() == p.text)
        let logits = try g.logits(p)
        for t in 1..<p.ids.count {
            let row = logits[((t - 1) * V)..<(t * V)]
            let m = Double(row.max()!), lse = m + Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
            let expected = Double(row[row.startIndex + p.ids[t]]) - lse
            #expect(abs((values[t] as? Double ?? 0) - expected) < 1e-4, "position \(t)")
            // The token itself and the most likely one: one entry, or two.
            let top = try #require(tops[t] as? [String: Double])
            #expect((1...2).contains(top.count) && top[tokens[t]] != nil)
        }
    }

    /// vLLM's prompt_logprobs: per prompt position (the first null) the prompt token keyed by its id with its
    /// log-probability and rank, and the most likely tokens with ranks 1…n, as transformers' logits give them; a
    /// chat's at the top of the response; refused in streams and jobs.
    @Test func promptLogprobsGiveEachPromptTokenItsLogprobAndRank() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let g = try Fixtures.golden("tiny-mixtral"), p = g.prompts[1], V = p.logitsShape[1]
        let r = try await HTTP.post(s.base + "/v1/completions", ["prompt": p.ids, "prompt_logprobs": 2, "max_tokens": 1])
        #expect(r.status == 200, "\(r.text)")
        let entries = try #require(choice(r)["prompt_logprobs"] as? [Any])
        #expect(entries.count == p.ids.count && entries[0] is NSNull)
        let logits = try g.logits(p)
        for t in 1..<p.ids.count {
            let row = Array(logits[((t - 1) * V)..<(t * V)])
            let m = Double(row.max()!), lse = m + Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
            let entry = try #require(entries[t] as? [String: [String: Any]])
            let own = try #require(entry[String(p.ids[t])])
            #expect(abs((own["logprob"] as? Double ?? 0) - (Double(row[p.ids[t]]) - lse)) < 1e-4, "position \(t)")
            #expect(own["rank"] as? Int == row.filter { $0 > row[p.ids[t]] }.count + 1, "position \(t)")
            #expect(own["decoded_token"] is String)
            let best = row.indices.max { row[$0] < row[$1] }!
            #expect(entry[String(best)]?["rank"] as? Int == 1 && (2...3).contains(entry.count), "position \(t)")
        }
        let chat = try await LiveServer(chatTemplate: APITests.chatML)
        defer { Task { await chat.stop() } }
        let c = try await HTTP.post(chat.base + "/v1/chat/completions", ["messages": [["role": "user", "content": "Hi"]], "prompt_logprobs": 0, "max_tokens": 1])
        let top = try #require(c.json?["prompt_logprobs"] as? [Any], "\(c.text)")
        #expect(top.first is NSNull && top.dropFirst().allSatisfy { ($0 as? [String: Any])?.count == 1 })
        expectError(try await HTTP.post(s.base + "/v1/completions", ["prompt": "a", "prompt_logprobs": 1, "stream": true]), "not returned in streams", "prompt_logprobs")
        expectError(try await HTTP.post(s.base + "/v1/completions", ["prompt": "a", "prompt_logprobs": 21]), "between 0 and 20", "prompt_logprobs")
        let job = try await HTTP.post(s.base + "/v1/jobs", ["prompts": ["a"], "prompt_logprobs": 1])
        #expect(job.status == 400 && job.text.contains("prompt_logprobs"), "\(job.text)")
    }

    /// Generated tokens' logprobs: as many entries as completion tokens, each with up to logprobs + 1
    /// alternatives; streamed, the chunks' entries concatenate to the same; with echo, the prompt's come first and
    /// the completion's offsets continue from the echoed text.
    @Test func completionLogprobsStreamedOrNotAgree() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let body: [String: Any] = ["prompt": "The quick brown fox", "max_tokens": 8, "temperature": 0, "logprobs": 3]
        let whole = try await HTTP.post(s.base + "/v1/completions", body)
        let lp = try #require(choice(whole)["logprobs"] as? [String: Any])
        let tokens = lp["tokens"] as? [String] ?? [], values = lp["token_logprobs"] as? [Double] ?? []
        #expect(tokens.count == 8 && values.count == 8 && values.allSatisfy { $0 <= 0 })
        // Keyed by text, alternatives that decode alike (parts of one UTF-8 character) share a key; by id, none do.
        for top in lp["top_logprobs"] as? [[String: Double]] ?? [] { #expect((1...4).contains(top.count)) }
        let byId = try await HTTP.post(s.base + "/v1/completions", body.merging(["return_tokens_as_token_ids": true]) { $1 })
        let idLP = try #require(choice(byId)["logprobs"] as? [String: Any])
        for top in idLP["top_logprobs"] as? [[String: Double]] ?? [] {
            #expect((3...4).contains(top.count) && top.keys.allSatisfy { $0.hasPrefix("token_id:") })
        }
        #expect(idLP["token_logprobs"] as? [Double] == values)
        // Greedy: each token is its position's most likely, so its own log-probability is the largest listed.
        for (t, top) in zip(values, lp["top_logprobs"] as? [[String: Double]] ?? []) { #expect(abs(top.values.max()! - t) < 1e-6) }

        var streamed = body
        streamed["stream"] = true
        let cs = chunks(try await HTTP.post(s.base + "/v1/completions", streamed))
        let parts = cs.compactMap { $0["logprobs"] as? [String: Any] }
        #expect(parts.flatMap { $0["tokens"] as? [String] ?? [] } == tokens)
        #expect(parts.flatMap { $0["token_logprobs"] as? [Double] ?? [] } == values)
        #expect(cs.map { $0["text"] as? String ?? "" }.joined() == choice(whole)["text"] as? String)

        var echoed = body
        echoed["echo"] = true
        let e = try await HTTP.post(s.base + "/v1/completions", echoed)
        let elp = try #require(choice(e)["logprobs"] as? [String: Any])
        let etokens = elp["tokens"] as? [String] ?? [], eoffsets = elp["text_offset"] as? [Int] ?? []
        #expect(choice(e)["text"] as? String == "The quick brown fox" + (choice(whole)["text"] as? String ?? "?"))
        #expect(Array(etokens.suffix(8)) == tokens && eoffsets[etokens.count - 8] == "The quick brown fox".count)
        let estream = chunks(try await HTTP.post(s.base + "/v1/completions", echoed.merging(["stream": true]) { $1 }))
        #expect(estream.first?["text"] as? String == "The quick brown fox")
        #expect(estream.map { $0["text"] as? String ?? "" }.joined() == choice(e)["text"] as? String)
    }

    /// Chat: `logprobs: true` with `top_logprobs` gives {"content": [...]}, one entry per completion token with its
    /// UTF-8 bytes and that many alternatives, most likely first; streamed, the deltas' entries concatenate to it.
    @Test func chatLogprobsHaveOpenAIsShape() async throws {
        let s = try await LiveServer(chatTemplate: APITests.chatML)
        defer { Task { await s.stop() } }
        let body: [String: Any] = ["messages": [["role": "user", "content": "hello"]], "max_tokens": 6, "temperature": 0,
                                   "logprobs": true, "top_logprobs": 2]
        let r = try await HTTP.post(s.base + "/v1/chat/completions", body)
        #expect(r.status == 200, "\(r.text)")
        let content = try #require((choice(r)["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
        #expect(content.count == HTTP.counts(r.json?["usage"])?["completion_tokens"])
        for entry in content {
            let token = try #require(entry["token"] as? String)
            #expect((entry["bytes"] as? [Int]) == Array(token.utf8).map(Int.init))
            let top = try #require(entry["top_logprobs"] as? [[String: Any]])
            let values = top.compactMap { $0["logprob"] as? Double }
            #expect(top.count == 2 && values == values.sorted(by: >) && top[0]["token"] as? String == token)
        }
        let cs = chunks(try await HTTP.post(s.base + "/v1/chat/completions", body.merging(["stream": true]) { $1 }))
        let streamed = cs.flatMap { ($0["logprobs"] as? [String: Any])?["content"] as? [[String: Any]] ?? [] }
        #expect(streamed.map { $0["token"] as? String } == content.map { $0["token"] as? String })
        let without = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": [["role": "user", "content": "hello"]], "max_tokens": 2])
        #expect(choice(without)["logprobs"] is NSNull)
    }

    /// A stop token id ends the completion as EOS does: finish_reason "stop", the token counted but not shown.
    /// min_tokens keeps it (and EOS) from ending the text early; penalties and logit_bias change greedy text.
    @Test func stopTokenIdsMinTokensPenaltiesAndBias() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/completions"
        let g = try Fixtures.golden("tiny-mixtral").prompts[1]
        let stopAt = g.greedy.newTokens[3]
        #expect(!g.greedy.newTokens.prefix(3).contains(stopAt))
        let short = try await HTTP.post(url, ["prompt": g.ids, "max_tokens": 3, "temperature": 0])
        let stopped = try await HTTP.post(url, ["prompt": g.ids, "max_tokens": 16, "temperature": 0, "stop_token_ids": [stopAt]])
        #expect(choice(stopped)["finish_reason"] as? String == "stop" && choice(stopped)["text"] as? String == choice(short)["text"] as? String)
        #expect(choice(stopped)["stop_reason"] as? Int == stopAt)   // vLLM names the stop token id
        #expect(HTTP.counts(stopped.json?["usage"])?["completion_tokens"] == 4)
        let shown = try await HTTP.post(url, ["prompt": g.ids, "max_tokens": 16, "temperature": 0, "stop_token_ids": [stopAt],
                                              "include_stop_str_in_output": true])
        let four = try await HTTP.post(url, ["prompt": g.ids, "max_tokens": 4, "temperature": 0])
        #expect(choice(shown)["text"] as? String == choice(four)["text"] as? String)
        let held = try await HTTP.post(url, ["prompt": g.ids, "max_tokens": 16, "temperature": 0, "stop_token_ids": [stopAt], "min_tokens": 8])
        #expect(HTTP.counts(held.json?["usage"])?["completion_tokens"] ?? 0 >= 8)

        let greedy = choice(try await HTTP.post(url, ["prompt": g.ids, "max_tokens": 16, "temperature": 0]))["text"] as? String
        for extra in [["repetition_penalty": 1.5], ["presence_penalty": 2.0], ["frequency_penalty": 2.0],
                      ["logit_bias": [String(g.greedy.newTokens[0]): -100.0]]] as [[String: Any]] {
            let r = try await HTTP.post(url, ["prompt": g.ids, "max_tokens": 16, "temperature": 0].merging(extra) { $1 })
            #expect(r.status == 200 && choice(r)["text"] as? String != greedy, "\(extra)")
        }
    }

    /// min_p 1 keeps only the most likely token: sampling at any temperature then gives the greedy text.
    @Test func minPOfOneSamplesTheGreedyText() async throws {
        let s = try await LiveServer()
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/completions"
        let greedy = try await HTTP.post(url, ["prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0])
        let sampled = try await HTTP.post(url, ["prompt": "The quick brown fox", "max_tokens": 12, "temperature": 1.5, "min_p": 1, "seed": 5])
        #expect(choice(sampled)["text"] as? String == choice(greedy)["text"] as? String)
        let loose = try await HTTP.post(url, ["prompt": "The quick brown fox", "max_tokens": 12, "temperature": 1.5, "seed": 5])
        #expect(choice(loose)["text"] as? String != choice(greedy)["text"] as? String)
    }

    /// vLLM's /tokenize and /detokenize give what the tokenizers library gives for the fixture's tokenizer.
    @Test func tokenizeAndDetokenizeMatchTheTokenizersLibrary() async throws {
        let s = try await LiveServer(chatTemplate: APITests.chatML)
        defer { Task { await s.stop() } }
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizer-cases/bytelevel.json"))
        let cases = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["cases"] as? [[String: Any]])
        for c in cases {
            let text = try #require(c["text"] as? String)
            let t = try await HTTP.post(s.base + "/tokenize", ["prompt": text])
            #expect(t.json?["tokens"] as? [Int] == c["ids"] as? [Int], "\(c["name"] ?? "")")
            #expect(t.json?["count"] as? Int == (c["ids"] as? [Int])?.count && t.json?["max_model_len"] is Int)
            let d = try await HTTP.post(s.base + "/detokenize", ["tokens": c["ids"] ?? []])
            #expect(d.json?["prompt"] as? String == c["decoded"] as? String, "\(c["name"] ?? "")")
        }
        // Messages count as the chat route counts its prompt.
        let messages = [["role": "user", "content": "hello"]]
        let tokens = try await HTTP.post(s.base + "/tokenize", ["messages": messages])
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": messages, "max_tokens": 1])
        #expect(tokens.json?["count"] as? Int == HTTP.counts(chat.json?["usage"])?["prompt_tokens"])
        expectError(try await HTTP.post(s.base + "/tokenize", ["model": "tiny-mixtral"]), "either `prompt` (text) or `messages`", "prompt")
        expectError(try await HTTP.post(s.base + "/detokenize", ["tokens": [1, 600]]), "outside the vocabulary", "tokens")
    }

    @Test func badValuesAreFourHundredsNamingTheField() async throws {
        let s = try await LiveServer(chatTemplate: APITests.chatML)
        defer { Task { await s.stop() } }
        let url = s.base + "/v1/completions", chat = s.base + "/v1/chat/completions"
        let messages = [["role": "user", "content": "hi"]]
        expectError(try await HTTP.post(url, ["prompt": "hi", "logprobs": 21]), "between 0 and 20", "logprobs")
        expectError(try await HTTP.post(url, ["prompt": "hi", "logprobs": true]), "number of alternatives", "logprobs")
        expectError(try await HTTP.post(url, ["prompt": "hi", "max_tokens": 0]), "0 only with echo", "max_tokens")
        expectError(try await HTTP.post(chat, ["messages": messages, "logprobs": 2]), "true or false", "logprobs")
        expectError(try await HTTP.post(chat, ["messages": messages, "top_logprobs": 2]), "needs logprobs: true", "top_logprobs")
        expectError(try await HTTP.post(chat, ["messages": messages, "logprobs": true, "top_logprobs": 30]), "between 0 and 20", "top_logprobs")
        expectError(try await HTTP.post(chat, ["messages": messages, "echo": true]), "echo is for /v1/completions", "echo")
        expectError(try await HTTP.post(url, ["prompt": "hi", "presence_penalty": 2.5]), "between -2 and 2", "presence_penalty")
        expectError(try await HTTP.post(url, ["prompt": "hi", "min_p": 1.5]), "min_p must be in [0, 1]", "min_p")
        expectError(try await HTTP.post(url, ["prompt": "hi", "frequency_penalty": -3]), "between -2 and 2", "frequency_penalty")
        expectError(try await HTTP.post(url, ["prompt": "hi", "repetition_penalty": 0]), "greater than 0", "repetition_penalty")
        expectError(try await HTTP.post(url, ["prompt": "hi", "max_tokens": 4, "min_tokens": 5]), "min_tokens must be between 0 and max_tokens", "min_tokens")
        expectError(try await HTTP.post(url, ["prompt": "hi", "stop_token_ids": [512]]), "outside the vocabulary", "stop_token_ids")
        expectError(try await HTTP.post(url, ["prompt": "hi", "logit_bias": ["x": 1]]), "keys must be token ids", "logit_bias")
        expectError(try await HTTP.post(url, ["prompt": "hi", "logit_bias": ["5": 101]]), "between -100 and 100", "logit_bias")
        expectError(try await HTTP.post(s.base + "/v1/jobs", ["prompts": ["hi"], "presence_penalty": 9]), "between -2 and 2", "presence_penalty")
        #expect(try await HTTP.post(url, ["prompt": "still here", "max_tokens": 2]).status == 200)
    }
}
