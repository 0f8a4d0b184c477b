import Foundation
import MoETestSupport
import Testing
@testable import MoEServer

/// Stored responses (OpenAI's `store`, `previous_response_id`, GET / DELETE /v1/responses/{id} and its input items):
/// a continuation reads as the whole conversation sent to the chat route reads.
struct StoredResponsesTests {
    typealias JSON = [String: Any]

    /// A fresh SQLite file for a store (its directory removed when the test process ends).
    static func database() -> String { Fixtures.tempDir("responses").appendingPathComponent("jobs.sqlite").path }

    static func usage(_ r: HTTP.Reply, _ key: String) -> Int? { (r.json?["usage"] as? JSON)?[key] as? Int }
    static func chatText(_ r: HTTP.Reply) -> String? { (ToolCallAPITests.choice(r)?["message"] as? JSON)?["content"] as? String }

    @Test func inputBecomesItemsWithIdsAndPartsAsTheStoreKeepsThem() throws {
        let items = try ResponsesAPI.items("hi")
        #expect(items.count == 1 && items[0]["type"] as? String == "message" && items[0]["role"] as? String == "user")
        #expect((items[0]["content"] as? [JSON])?.first?["type"] as? String == "input_text" && (items[0]["id"] as? String)?.hasPrefix("msg_") == true)
        let list = try ResponsesAPI.items([["role": "assistant", "content": "ok"], ["type": "function_call_output", "call_id": "c", "output": "1"],
                                           ["type": "message", "role": "user", "content": [["type": "input_text", "text": "x"]], "id": "msg_mine"]])
        #expect((list[0]["content"] as? [JSON])?.first?["type"] as? String == "output_text")
        #expect((list[1]["id"] as? String)?.hasPrefix("fco_") == true && list[1]["output"] as? String == "1")
        #expect(list[2]["id"] as? String == "msg_mine")
        // Parts and text render alike: an item kept as parts reads back as the message it was.
        #expect(try ResponsesAPI.messages(list).first?["content"] as? String == "ok")
    }

    /// A continuation is the previous response's items and output, then the new input; its instructions are its
    /// own (the previous request's are not carried over).
    @Test func aContinuationStartsFromThePreviousItemsAndOutputNotItsInstructions() throws {
        let prev = ResponseStore.Stored(response: ["id": "resp_a", "output": [ResponsesAPI.messageItem(id: "msg_o", text: "Paris", done: true)]],
                                        input: try ResponsesAPI.items("Where?"))
        let body = Data(#"{"previous_response_id": "resp_a", "input": "Why?", "instructions": "Be brief."}"#.utf8)
        let t = try ResponsesAPI.translate(body) { $0 == "resp_a" ? prev : nil }
        let chat = try JSONSerialization.jsonObject(with: t.chatBody) as? JSON
        let messages = (chat?["messages"] as? [JSON])?.map { "\($0["role"] ?? "")=\($0["content"] ?? "")" }
        #expect(messages == ["system=Be brief.", "user=Where?", "assistant=Paris", "user=Why?"])
        #expect(t.store && t.items.count == 3 && t.echo["previous_response_id"] as? String == "resp_a" && t.echo["store"] as? Bool == true)
        #expect(try !ResponsesAPI.translate(Data(#"{"input": "x", "store": false}"#.utf8)).store)

        // An unknown id is a 404 naming it; a bad item in the new input is named by its place in `input`.
        #expect {
            try ResponsesAPI.translate(Data(#"{"previous_response_id": "resp_b", "input": "x"}"#.utf8)) { _ in nil }
        } throws: { e in
            let a = e as? APIError
            return a?.status == .notFound && a?.code == "previous_response_not_found" && a?.message.contains("resp_b") == true
        }
        #expect {
            try ResponsesAPI.translate(Data(#"{"previous_response_id": "resp_a", "input": [{"type": "function_call"}]}"#.utf8)) { _ in prev }
        } throws: { e in (e as? APIError)?.message.hasPrefix("input[0]") == true }
    }

    @Test(arguments: [
        // (limit, order, after, before) → ids on the page, has_more; items are i1 … i5.
        (nil, nil, nil, nil, ["i5", "i4", "i3", "i2", "i1"], false),
        ("2", nil, nil, nil, ["i5", "i4"], true),
        ("2", "asc", nil, nil, ["i1", "i2"], true),
        ("2", "asc", "i2", nil, ["i3", "i4"], true),
        (nil, "desc", "i2", nil, ["i1"], false),
        (nil, "asc", nil, "i3", ["i1", "i2"], false),
        ("5", "asc", "i5", nil, [], false),
    ] as [(String?, String?, String?, String?, [String], Bool)])
    func inputItemsArePagedAsOpenAIPagesThem(limit: String?, order: String?, after: String?, before: String?, ids: [String], more: Bool) throws {
        let items: [JSON] = (1...5).map { ["id": "i\($0)", "type": "message"] }
        let page = try ResponsesAPI.itemPage(items, limit: limit, order: order, after: after, before: before)
        #expect((page["data"] as? [JSON])?.compactMap { $0["id"] as? String } == ids && page["has_more"] as? Bool == more)
        #expect(page["first_id"] as? String == ids.first && page["last_id"] as? String == ids.last && page["object"] as? String == "list")
    }

    @Test func badPageQueriesAreA400() {
        let items: [JSON] = [["id": "i1"]]
        for (limit, order, after) in [("0", nil, nil), ("101", nil, nil), ("x", nil, nil), (nil, "up", nil), (nil, nil, "i9")] as [(String?, String?, String?)] {
            #expect(throws: APIError.self) { try ResponsesAPI.itemPage(items, limit: limit, order: order, after: after, before: nil) }
        }
    }

    /// Kept in the SQLite file: a store opened again on it (a restarted server) finds the response; deleting it
    /// leaves the jobs' tables alone.
    @Test func storedResponsesOutliveTheServer() throws {
        let path = Self.database()
        let job: String
        do {
            let jobs = try JobStore(path: path)
            job = try jobs.create([try JSONDecoder().decode(JobItemRequest.self, from: Data(#"{"prompt": "a"}"#.utf8))])
            try ResponseStore(db: jobs.db).save(["id": "resp_k", "created_at": Int(Date().timeIntervalSince1970), "output": [], "status": "completed"], input: try ResponsesAPI.items("hi"))
        }
        let jobs = try JobStore(path: path)
        let store = try ResponseStore(db: jobs.db)
        let s = try store.get("resp_k")
        #expect(s?.response["status"] as? String == "completed" && s?.input.first?["role"] as? String == "user")
        #expect(try store.delete("resp_k") && !store.delete("resp_k") && store.get("resp_k") == nil)
        #expect(try jobs.jobs().map(\.id) == [job])
    }

    /// Responses older than the retention (OpenAI's 30 days by default) go as new ones are stored; 0 keeps them all.
    @Test(arguments: [(30, false), (0, true)])
    func oldResponsesAreDeletedAfterTheRetention(days: Int, kept: Bool) throws {
        let store = try ResponseStore(db: try JobStore(path: Self.database()).db, retentionDays: days)
        let now = Int(Date().timeIntervalSince1970)
        try store.save(["id": "resp_old", "created_at": now - 31 * 86_400, "output": []], input: [])
        try store.save(["id": "resp_recent", "created_at": now - 29 * 86_400, "output": []], input: [])
        try store.save(["id": "resp_new", "created_at": now, "output": []], input: [])
        #expect(try (store.get("resp_old") != nil) == kept && store.get("resp_recent") != nil && store.get("resp_new") != nil)
    }

    /// Over HTTP: a chain of responses, each continuing the last by id, gives what the chat route gives for the
    /// whole conversation; stored ones can be read, listed and deleted; `store: false` keeps nothing.
    @Test func aChainOfResponsesIsTheWholeConversation() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let first = try await HTTP.post(s.base + "/v1/responses", ["instructions": "Be brief.", "input": "Weather in Paris?", "temperature": 0, "max_output_tokens": 5])
        let id1 = first.json?["id"] as? String ?? ""
        let said = ResponsesAPITests.outputText(first.json) ?? ""
        #expect(first.status == 200 && first.json?["store"] as? Bool == true && !said.isEmpty, "\(first.text)")

        // Streamed, continuing the first: the previous instructions are not carried over.
        let second = try await HTTP.post(s.base + "/v1/responses", ["previous_response_id": id1, "input": "And tomorrow?", "temperature": 0,
                                                                   "max_output_tokens": 5, "stream": true])
        let final = ResponsesAPITests.events(second).last?["response"] as? JSON
        let id2 = final?["id"] as? String ?? ""
        let chat = try await HTTP.post(s.base + "/v1/chat/completions", ["messages": [["role": "user", "content": "Weather in Paris?"],
                                                                                      ["role": "assistant", "content": said],
                                                                                      ["role": "user", "content": "And tomorrow?"]],
                                                                         "temperature": 0, "max_tokens": 5])
        #expect(ResponsesAPITests.outputText(final) == Self.chatText(chat) && final?["previous_response_id"] as? String == id1)
        #expect((final?["usage"] as? JSON)?["input_tokens"] as? Int == Self.usage(chat, "prompt_tokens"))

        // The same prompt again on the chat route: its whole blocks (of 16) are read from the prefix cache.
        let chatCached = (chat.json?["usage"] as? JSON).flatMap { ($0["prompt_tokens_details"] as? JSON)?["cached_tokens"] as? Int }
        #expect(chatCached == (Self.usage(chat, "prompt_tokens")! - 1) / 16 * 16, "\(chat.text)")

        // Stored as returned; its input items are the conversation it continued, newest first.
        let got = try await HTTP.get(s.base + "/v1/responses/\(id2)")
        #expect(got.status == 200 && ResponsesAPITests.outputText(got.json) == ResponsesAPITests.outputText(final) && got.json?["status"] as? String == final?["status"] as? String)
        let listed = try await HTTP.get(s.base + "/v1/responses/\(id2)/input_items")
        let texts = (listed.json?["data"] as? [JSON])?.map { item in
            ((item["content"] as? [JSON])?.first?["text"] as? String) ?? ""
        }
        #expect(texts == ["And tomorrow?", said, "Weather in Paris?"] && listed.json?["has_more"] as? Bool == false, "\(listed.text)")

        // A third turn from the second, after the first is deleted: each stored response holds its whole past.
        let deleted = try await HTTP.request("DELETE", s.base + "/v1/responses/\(id1)")
        #expect(deleted.status == 200 && deleted.json?["deleted"] as? Bool == true && deleted.json?["id"] as? String == id1)
        #expect(try await HTTP.get(s.base + "/v1/responses/\(id1)").status == 404)
        let third = try await HTTP.post(s.base + "/v1/responses", ["previous_response_id": id2, "input": "Thanks", "temperature": 0, "max_output_tokens": 3])
        #expect(third.status == 200 && Self.usage(third, "input_tokens")! > Self.usage(chat, "prompt_tokens")!, "\(third.text)")
        // It starts with the second's prompt, so at least that many whole blocks come from the prefix cache.
        let cached = (third.json?["usage"] as? JSON).flatMap { ($0["input_tokens_details"] as? JSON)?["cached_tokens"] as? Int } ?? 0
        #expect(cached >= Self.usage(chat, "prompt_tokens")! / 16 * 16 && cached % 16 == 0 && cached < Self.usage(third, "input_tokens")!,
                "\(third.text)")
        let gone = try await HTTP.post(s.base + "/v1/responses", ["previous_response_id": id1, "input": "x"])
        #expect(gone.status == 404 && (gone.json?["error"] as? JSON)?["code"] as? String == "previous_response_not_found")

        // Not stored when asked not to be.
        let unstored = try await HTTP.post(s.base + "/v1/responses", ["input": "x", "store": false, "max_output_tokens": 2])
        #expect(unstored.json?["store"] as? Bool == false)
        #expect(try await HTTP.get(s.base + "/v1/responses/\(unstored.json?["id"] as? String ?? "")").status == 404)
        #expect(try await HTTP.request("DELETE", s.base + "/v1/responses/resp_none").status == 404)
    }

    /// A function call's output sent as the only input of a continuation: the same prompt as the whole exchange
    /// sent at once (ResponsesAPITests.functionCallsAndTheirOutputs).
    @Test func aFunctionCallsOutputContinuesTheResponseThatMadeIt() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let question: [[String: Any]] = [["role": "user", "content": "Weather in Paris for two days?"]]
        let r = try await HTTP.post(s.base + "/v1/responses", ["input": question, "tools": ResponsesAPITests.tools, "temperature": 0, "max_output_tokens": 60,
                                                              "tool_choice": ["type": "function", "name": "get_weather"]])
        let call = (r.json?["output"] as? [JSON])?.first ?? [:]
        #expect(call["type"] as? String == "function_call", "\(r.text)")
        let output: JSON = ["type": "function_call_output", "call_id": call["call_id"] ?? "", "output": "sunny"]
        let next = try await HTTP.post(s.base + "/v1/responses", ["previous_response_id": r.json?["id"] ?? "", "input": [output],
                                                                 "tools": ResponsesAPITests.tools, "temperature": 0, "max_output_tokens": 4])
        let whole = try await HTTP.post(s.base + "/v1/responses", ["input": question + [call, output], "tools": ResponsesAPITests.tools,
                                                                  "temperature": 0, "max_output_tokens": 4])
        #expect(next.status == 200 && Self.usage(next, "input_tokens") == Self.usage(whole, "input_tokens"), "\(next.text)")
        #expect(ResponsesAPITests.outputText(next.json) == ResponsesAPITests.outputText(whole.json))
    }

    /// `background: true`: answered at once as queued, then read back with GET until it has finished, with the
    /// reply the same request gives in the foreground; a running one can be cancelled (once), a finished one not.
    @Test func backgroundResponsesArePolledAndCanBeCancelled() async throws {
        let s = try await LiveServer(chatTemplate: ToolCallAPITests.qwen25)
        defer { Task { await s.stop() } }
        let ask: JSON = ["input": "Weather in Paris?", "temperature": 0, "max_output_tokens": 6]
        let queued = try await HTTP.post(s.base + "/v1/responses", ask.merging(["background": true]) { $1 })
        let id = queued.json?["id"] as? String ?? ""
        #expect(queued.status == 200 && queued.json?["status"] as? String == "queued" && queued.json?["background"] as? Bool == true, "\(queued.text)")
        var polled = queued.json
        for _ in 0..<600 {
            guard ["queued", "in_progress"].contains(polled?["status"] as? String ?? "") else { break }
            try await Task.sleep(nanoseconds: 20_000_000)
            polled = try await HTTP.get(s.base + "/v1/responses/\(id)").json
        }
        let foreground = try await HTTP.post(s.base + "/v1/responses", ask)
        #expect(polled?["status"] as? String == "incomplete" && ResponsesAPITests.outputText(polled) == ResponsesAPITests.outputText(foreground.json))
        #expect((polled?["usage"] as? JSON)?["output_tokens"] as? Int == 6)
        let late = try await HTTP.post(s.base + "/v1/responses/\(id)/cancel", [:] as JSON)
        #expect(late.status == 400 && ((late.json?["error"] as? JSON)?["message"] as? String ?? "").contains("Cannot cancel"))

        // A long one cancelled while it runs: cancelled, and stays so.
        let long = try await HTTP.post(s.base + "/v1/responses", ["input": "x", "max_output_tokens": 1800, "ignore_eos": true, "background": true])
        let longId = long.json?["id"] as? String ?? ""
        let cancelled = try await HTTP.post(s.base + "/v1/responses/\(longId)/cancel", [:] as JSON)
        #expect(cancelled.status == 200 && cancelled.json?["status"] as? String == "cancelled", "\(cancelled.text)")
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(try await HTTP.get(s.base + "/v1/responses/\(longId)").json?["status"] as? String == "cancelled")
        #expect(try await HTTP.post(s.base + "/v1/responses/\(longId)/cancel", [:] as JSON).status == 400)
        #expect(try await HTTP.post(s.base + "/v1/responses/resp_none/cancel", [:] as JSON).status == 404)

        // What background cannot be.
        #expect(try await HTTP.post(s.base + "/v1/responses", ["input": "x", "background": true, "store": false]).status == 400)
        #expect(try await HTTP.post(s.base + "/v1/responses", ["input": "x", "background": true, "stream": true]).status == 400)
    }

    /// A background response a stopped server left unfinished is failed when the store opens again, not queued
    /// forever.
    @Test func unfinishedBackgroundResponsesFailOnRestart() throws {
        let path = Self.database()
        do {
            let store = try ResponseStore(db: try JobStore(path: path).db)
            try store.save(["id": "resp_q", "status": "queued", "error": NSNull(), "output": []], input: [])
            try store.save(["id": "resp_c", "status": "completed", "error": NSNull(), "output": []], input: [])
        }
        let store = try ResponseStore(db: try JobStore(path: path).db)
        let q = try store.get("resp_q")?.response
        #expect(q?["status"] as? String == "failed" && ((q?["error"] as? JSON)?["message"] as? String ?? "").contains("stopped"))
        #expect(try store.get("resp_c")?.response["status"] as? String == "completed")
    }
}
