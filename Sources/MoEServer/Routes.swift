import Foundation
import Hummingbird
import MoEEngine
import MoEModel
import NIOCore

/// Requires `Authorization: Bearer <token>` (or Anthropic clients' `x-api-key: <token>`) on every route but the
/// liveness checks (/health, /ping, /version) when a token is configured.
struct BearerAuth<Context: RequestContext>: RouterMiddleware {
    let token: String
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if ["/health", "/ping", "/version"].contains(request.uri.path) { return try await next(request, context) }
        let apiKey = request.headers.first { $0.name.canonicalName == "x-api-key" }?.value
        guard request.headers[.authorization] == "Bearer \(token)" || apiKey == token else {
            return APIError(.unauthorized, "missing or wrong bearer token (Authorization: Bearer …)", type: "invalid_request_error",
                            code: "invalid_api_key").response
        }
        return try await next(request, context)
    }
}

/// The OpenAI-compatible routes and the job routes.
struct Routes: Sendable {
    let service: GenerationService
    let store: JobStore
    let responseStore: ResponseStore
    let background: BackgroundResponses
    let runner: JobRunner
    let config: ServerConfig
    let info: ClusterInfo
    let started = Date()

    /// Most prompts one job may hold.
    static let maxJobPrompts = 100_000

    /// The server's version (GET /version).
    static let version = "0.1.0"

    func register(_ router: Router<BasicRequestContext>) {
        if let t = config.token { router.add(middleware: BearerAuth(token: t)) }
        router.add(middleware: PropertyOrder.Middleware(maxBytes: config.maxBodyBytes))
        router.get("/health") { _, _ in health() }
        // vLLM's liveness check (SageMaker's name) and version.
        router.get("/ping") { _, _ in health() }
        router.post("/ping") { _, _ in health() }
        router.get("/version") { _, _ in jsonResponse(object: ["version": Self.version]) }
        router.get("/v1/stats") { _, _ in jsonResponse(object: statsSnapshot()) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: PrometheusText.render(statsSnapshot()))))
        }
        router.post("/v1/rebalance") { req, _ in try await rebalance(req) }
        router.get("/v1/models") { _, _ in
            jsonResponse(ListResponse(data: service.modelNames.map { ModelCard(id: $0, created: service.created, maxModelLen: service.contextLimit) }))
        }
        router.get("/v1/models/:id") { _, ctx in
            let id = ctx.parameters.get("id") ?? ""
            try service.checkModel(id)
            return jsonResponse(ModelCard(id: id, created: service.created, maxModelLen: service.contextLimit))
        }
        router.post("/v1/completions") { req, _ in try await completions(req) }
        router.post("/v1/chat/completions") { req, _ in try await chat(req) }
        router.post("/v1/responses") { req, _ in try await responses(req) }
        registerStoredResponses(router)
        router.post("/v1/messages") { req, _ in try await messages(req) }
        router.post("/v1/messages/count_tokens") { req, _ in try await countMessageTokens(req) }
        router.post("/completion") { req, _ in try await llamaCompletion(try await body(req)) }
        router.post("/completions") { req, _ in try await llamaCompletion(try await body(req)) }
        router.post("/infill") { req, _ in try await infill(req) }
        router.get("/props") { _, _ in props() }
        router.post("/tokenize") { req, _ in try await tokenize(req) }
        // llama.cpp's: the chat prompt as the template renders it, not tokenized.
        router.post("/apply-template") { req, _ in
            let body = try await body(req)
            return jsonResponse(object: ["prompt": try chatPrompt(try decode(ChatRequest.self, body), body: body).text])
        }
        router.post("/detokenize") { req, _ in
            let r = try await decode(DetokenizeRequest.self, req)
            try service.checkModel(r.model)
            try service.checkVocabulary(r.tokens, param: "tokens")
            let text = service.tokenizer.decode(r.tokens)
            return jsonResponse(object: ["prompt": text, "content": text])   // vLLM's name and llama.cpp's
        }
        router.post("/v1/jobs") { req, _ in try await createJob(req) }
        router.get("/v1/jobs") { _, _ in jsonResponse(ListResponse(data: try store.jobs())) }
        router.get("/v1/jobs/:id") { _, ctx in jsonResponse(try job(ctx)) }
        router.delete("/v1/jobs/:id") { _, ctx in
            let j = try job(ctx)
            try store.cancel(j.id)
            runner.cancel(job: j.id)
            return jsonResponse(try store.job(j.id) ?? j)
        }
        router.get("/v1/jobs/:id/results") { _, ctx in
            let j = try job(ctx)
            let lines = try store.results(j.id).joined(separator: "\n")
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"],
                            body: .init(byteBuffer: ByteBuffer(string: lines.isEmpty ? "" : lines + "\n")))
        }
    }

    func health() -> Response {
        let load = service.engine.loadSnapshot
        return jsonResponse(object: ["status": "ok", "model": service.modelName, "workers": info.workers, "draft": info.draft,
                                     "running": load.running, "waiting": load.waiting, "uptime_s": Date().timeIntervalSince(started)])
    }

    func statsSnapshot() -> [String: Any] {
        let e = service.engine
        var s = e.collector.snapshot(load: e.loadSnapshot, workerRanks: Array(1...max(info.workers, 1)))
        s["model"] = service.modelName
        s["kv_cache_usage"] = e.kvCacheUsage
        return s
    }

    func job(_ ctx: BasicRequestContext) throws -> JobView {
        let id = ctx.parameters.get("id") ?? ""
        guard let j = try store.job(id) else { throw APIError(.notFound, "no job with id '\(id)'", code: "job_not_found") }
        return j
    }

    /// The request body as JSON of type T, with OpenAI-style 4xx errors for size, encoding and shape. An empty body
    /// is `ifEmpty` when one is given (a route whose fields are all optional), else invalid JSON.
    func decode<T: Decodable>(_ type: T.Type, _ req: Request, ifEmpty: T? = nil) async throws -> T {
        try decode(type, try await body(req), ifEmpty: ifEmpty)
    }

    /// The request body, or a 413 past the configured size.
    func body(_ req: Request) async throws -> Data {
        do { return Data(buffer: try await req.body.collect(upTo: config.maxBodyBytes)) } catch {
            throw APIError.bodyTooLarge(config.maxBodyBytes)
        }
    }

    func decode<T: Decodable>(_ type: T.Type, _ data: Data, ifEmpty: T? = nil) throws -> T {
        guard let text = String(data: data, encoding: .utf8) else { throw APIError.invalid("request body is not valid UTF-8") }
        if let ifEmpty, text.allSatisfy(\.isWhitespace) { return ifEmpty }
        do { return try JSONDecoder().decode(T.self, from: data) } catch let DecodingError.keyNotFound(key, c) {
            let path = Self.path(c.codingPath + [key])
            throw APIError.invalid("missing required field '\(path)'", param: path)
        } catch let DecodingError.typeMismatch(_, c) {
            let path = Self.path(c.codingPath)
            if path.isEmpty { throw APIError.invalid("request body must be a JSON object") }
            throw APIError.invalid("field '\(path)' has the wrong type: \(c.debugDescription)", param: path)
        } catch let DecodingError.valueNotFound(_, c) {
            let path = Self.path(c.codingPath)
            throw APIError.invalid("field '\(path)' must not be null", param: path)
        } catch let DecodingError.dataCorrupted(c) where !c.codingPath.isEmpty {
            let path = Self.path(c.codingPath)
            throw APIError.invalid("field '\(path)': \(c.debugDescription)", param: path)
        } catch {
            throw APIError.invalid("request body is not valid JSON")
        }
    }

    /// A coding path as a client writes it: `prompts[2].max_tokens`.
    static func path(_ keys: [any CodingKey]) -> String {
        keys.reduce(into: "") { s, k in
            if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
        }
    }

    /// Each prompt's token ids, and its text as echo returns it (as sent, or the ids decoded).
    func prompts(_ p: PromptInput) -> [(ids: [Int32], text: String)] {
        func text(_ s: String) -> (ids: [Int32], text: String) { (service.tokenize(s), s) }
        func ids(_ a: [Int]) -> (ids: [Int32], text: String) { (a.map(Int32.init), service.tokenizer.decode(a)) }
        switch p {
        case .text(let s): return [text(s)]
        case .texts(let a): return a.map(text)
        case .ids(let a): return [ids(a)]
        case .idLists(let a): return a.map(ids)
        }
    }

    /// POST /v1/rebalance: re-places experts from the recent load; `{"dry_run": true}` only reports the plan. An
    /// empty body is a real rebalance; a body that is not such an object is a 400 (it never rebalances by accident).
    func rebalance(_ req: Request) async throws -> Response {
        let r = try await decode(RebalanceRequest.self, req, ifEmpty: RebalanceRequest())
        let report: [String: Any]
        do { report = try await service.engine.rebalance(dryRun: r.dryRun ?? false) } catch let e as MoEEngine.EngineError {
            throw APIError.invalid(e.description, code: "no_expert_workers")
        } catch {
            throw APIError(.internalServerError, "rebalance failed: \(error)", type: "server_error")
        }
        return jsonResponse(object: report)
    }

    func completions(_ req: Request) async throws -> Response {
        let r = try await decode(CompletionRequest.self, req)
        let o = r.options
        try service.checkModel(o.model)
        let n = try o.choices()
        try o.checkSupported()
        let logprobs = try o.completionLogprobs(), echo = o.echo ?? false, promptLogprobs = try o.promptLogprobsCount()
        let prompts = prompts(r.prompt)
        guard !prompts.isEmpty else { throw APIError.invalid("the prompt list is empty", param: "prompt") }
        // Choice k is prompt k / n's sample k % n (vLLM's order); usage counts each prompt's tokens once. An echoed
        // prompt's log-probabilities are computed with it; max_tokens 0 then only scores the prompt.
        let prepared = try prompts.flatMap { prompt in
            var p = try service.prepare(prompt.ids, o.sampling, defaultMaxTokens: GenerationService.defaultMaxTokens,
                                        allowNoTokens: echo || promptLogprobs != nil)
            p.logprobs = logprobs
            p.promptLogprobs = [echo ? logprobs : nil, promptLogprobs].compactMap { $0 }.max()
            return GenerationService.choices(p, n: n)
        }
        let echoed = prepared.indices.map { echo ? prompts[$0 / n] : nil }
        let format = LogprobsFormat(tokenizer: service.tokenizer, asIds: o.returnTokensAsTokenIds ?? false)
        // Completion entries for generated tokens (the prompt's with its own first entry nil), each choice's text
        // offsets counted on from where its last chunk's ended.
        @Sendable func entries(_ lps: [PositionLogprobs]) -> [(token: Int32, logprobs: PositionLogprobs?)] { lps.map { ($0.chosen.token, $0) } }
        @Sendable func promptEntries(_ i: Int, _ lps: [PositionLogprobs?]) -> [(token: Int32, logprobs: PositionLogprobs?)] {
            zip(prepared[i].ids, lps).map { ($0, $1) }
        }
        let id = randomId("cmpl-"), created = Int(Date().timeIntervalSince1970), model = service.modelName
        if o.stream == true {
            // Every prompt's chunks as they come, each choice by its index (as vLLM streams a list of prompts); the
            // usage chunk, when asked for, once the last has finished, with the totals. An echoed prompt is each
            // choice's first chunk.
            let includeUsage = o.includeUsage, continuous = o.continuousUsage, count = prepared.count
            let totals = UsageTotals(choicesPerPrompt: n)
            final class Progress: @unchecked Sendable {
                var offsets: [Int], generated: [Int], echoed: Set<Int> = []
                init(_ n: Int) { offsets = Array(repeating: 0, count: n); generated = offsets }
            }
            let progress = Progress(count)
            @Sendable func chunk(_ i: Int, _ text: String, _ lp: CompletionLogprobs?, _ why: String?, _ stop: StopMatch? = nil) -> String {
                // vLLM's continuous_usage_stats: the choice's counts so far on every chunk.
                let usage = continuous ? Usage(prompt: prepared[i].ids.count, completion: progress.generated[i]) : nil
                return wireJSON(CompletionResponse(id: id, created: created, model: model,
                                                   choices: [CompletionChoice(index: i, text: text, logprobs: lp, finishReason: why, stopReason: stop)],
                                                   usage: usage))
            }
            @Sendable func echoChunk(_ i: Int, _ lps: [PositionLogprobs?]) -> [String] {
                guard let prompt = echoed[i], progress.echoed.insert(i).inserted else { return [] }
                let lp = logprobs == nil ? nil : format.completion(promptEntries(i, lps), offset: &progress.offsets[i])
                progress.offsets[i] = prompt.text.unicodeScalars.count
                return [chunk(i, prompt.text, lp, nil)]
            }
            return sse(Self.merged(try service.start(prepared))) { i, e in
                switch e {
                case .prefilled: return []
                case .prompt(let lps):
                    return echoChunk(i, lps)
                case .text(let t, let lps, let generated):
                    progress.generated[i] = generated
                    let lp = logprobs == nil ? nil : format.completion(entries(lps), offset: &progress.offsets[i])
                    return echoChunk(i, []) + [chunk(i, t, lp, nil)]
                case .done(let why, let pt, let ct, let stop, let cached):
                    progress.generated[i] = ct
                    var out = echoChunk(i, []) + [chunk(i, "", nil, why, stop)]
                    totals.add(choice: i, promptTokens: pt, completionTokens: ct, cachedTokens: cached)
                    if includeUsage && totals.finished == count {
                        out.append(wireJSON(CompletionResponse(id: id, created: created, model: model, choices: [], usage: totals.usage)))
                    }
                    return out
                }
            }
        }
        // Every prompt is submitted at once, so the engine takes them into the same step; if they do not all fit in
        // the queue, none is started (429).
        let (outs, usage) = await GenerationService.collect(try service.start(prepared), prepared, choicesPerPrompt: n)
        let choices = outs.enumerated().map { i, out in
            let prompt = echoed[i]
            var lp: CompletionLogprobs?
            if logprobs != nil {
                var offset = 0
                var all = prompt == nil ? CompletionLogprobs() : format.completion(promptEntries(i, out.prompt), offset: &offset)
                // Generated tokens' offsets count from the end of the echoed text as sent.
                offset = prompt?.text.unicodeScalars.count ?? 0
                all.append(format.completion(entries(out.logprobs), offset: &offset))
                lp = all
            }
            return CompletionChoice(index: i, text: (prompt?.text ?? "") + out.text, logprobs: lp, finishReason: out.finish,
                                    promptLogprobs: promptLogprobs.map { format.prompt(out.prompt, n: $0) }, stopReason: out.stopReason)
        }
        return jsonResponse(CompletionResponse(id: id, created: created, model: model, choices: choices, usage: usage))
    }

    /// A chat request made ready to run: its samples, and how each reply is read (reasoning, tool calls).
    struct ChatRun: Sendable {
        var samples: [PreparedRequest]
        var n: Int
        var tools: ToolRequest
        var reasoning: Bool
        var opened: Bool
        /// A gpt-oss reply in its harmony format, read by its channels.
        var harmony = false

        func streamedReply() -> StreamedReply { StreamedReply(tools, reasoning: reasoning, opened: opened, harmony: harmony) }

        /// A whole reply read as the stream reads it: reasoning, the answer's text, the calls it made.
        func read(_ text: String) -> (reasoning: String?, content: String?, calls: [ToolCallOut]) {
            if harmony {
                var reply = streamedReply()
                return StreamedReply.whole([reply.add(text), reply.finish()])
            }
            let split = ReasoningSplitter.split(text, enabled: reasoning, opened: opened)
            let reply = tools.reply(split.content)
            return (split.reasoning, reply.content,
                    reply.calls.map { ToolCallOut(id: tools.newCallId(), function: .init(name: $0.name, arguments: $0.arguments)) })
        }
    }

    /// Renders, tokenizes and constrains a chat request (the chat and responses routes).
    func prepareChat(_ r: ChatRequest, body: Data) throws -> ChatRun {
        let o = r.options
        try service.checkModel(o.model)
        let n = try o.choices()
        try o.checkSupported()
        if o.echo == true { throw APIError.invalid("echo is for /v1/completions; chat completions do not echo", param: "echo") }
        let (text, template, tools) = try chatPrompt(r, body: body)
        let reasoning = template.thinks && r.reasoningFormat != "none"
        // The template already holds BOS and role markers: no special tokens are added again.
        let ids = service.tokenizer.encode(text, addSpecialTokens: false).map(Int32.init)
        var p = try service.prepare(ids, o.sampling, defaultMaxTokens: nil, maxTokensOverride: r.maxCompletionTokens)
        // Mistral's [TOOL_CALLS] is a special token: the reply keeps special tokens for the calls to be found (vLLM's
        // mistral parser sets the same).
        if tools.format == .mistral && tools.choice != .none { p.skipSpecialTokens = false }
        // gpt-oss's channels and calls are marked by special tokens: the reply keeps them to be read (or, with
        // reasoning_format none, shown as llama.cpp shows them).
        if template.kind == .harmony { p.skipSpecialTokens = false }
        if let format = tools.outputFormat() {
            guard case .text = try o.sampling.outputFormat() else {
                throw APIError.invalid("tool_choice \(tools.choice == .required ? "required" : "naming a function") already constrains the reply; leave out response_format and guided_*",
                                       param: "tool_choice")
            }
            try service.constrain(&p, format, param: "tools")
        }
        p.logprobs = try o.chatLogprobs()
        p.promptLogprobs = try o.promptLogprobsCount()
        // A template that opens the reply with <think> has it start as reasoning. A constrained reply (a schema, a
        // call) is free text inside its reasoning block and the constrained value after it, as vLLM's structured
        // outputs under a reasoning parser; with thinking turned off in the prompt it is the value from the start.
        // Constrained in reasoning too (structuredOutputsInReasoning), the reply is the value from its first token.
        let afterReasoning = !service.structuredOutputsInReasoning
        let opened = reasoning && template.opensThinking(r.templateOptions) && r.templateOptions.addGenerationPrompt
            && (p.grammar == nil || afterReasoning)
        if reasoning, r.templateOptions.addGenerationPrompt, afterReasoning, let g = p.grammar {
            p.grammar = g.reasoning(opened ? .opened : template.thinkingOff(r.templateOptions) ? .none : .optional)
        }
        // A reply constrained to a call's arguments (required, a named function) is the value from its first token,
        // read as those choices read any reply; one constrained to a schema opens with no harmony header, so the
        // reader takes it as plain content.
        let harmony = template.kind == .harmony && r.reasoningFormat != "none" && tools.outputFormat() == nil
        return ChatRun(samples: GenerationService.choices(p, n: n), n: n, tools: tools, reasoning: reasoning, opened: opened, harmony: harmony)
    }

    func chat(_ req: Request) async throws -> Response {
        let body = try await body(req)
        let r = try decode(ChatRequest.self, body)
        let run = try prepareChat(r, body: body)
        let o = r.options, n = run.n, samples = run.samples
        let logprobs = samples[0].logprobs, promptLogprobs = samples[0].promptLogprobs
        let format = LogprobsFormat(tokenizer: service.tokenizer, asIds: o.returnTokensAsTokenIds ?? false)
        let id = randomId("chatcmpl-"), created = Int(Date().timeIntervalSince1970), model = service.modelName
        if o.stream == true {
            let includeUsage = o.includeUsage, continuous = o.continuousUsage
            // The render closure runs once per event, in order, on the one task writing the stream: each choice's
            // first chunk carries the role; the usage chunk follows the last choice's end.
            final class Started: @unchecked Sendable {
                var choices = Set<Int>(), replies: [Int: StreamedReply] = [:], generated: [Int: Int] = [:]
            }
            let started = Started(), totals = UsageTotals(choicesPerPrompt: n)
            @Sendable func chunk(_ i: Int, _ delta: ChatDelta, _ lp: ChatLogprobs?, _ why: String?, _ stop: StopMatch? = nil) -> String {
                var delta = delta
                if started.choices.insert(i).inserted { delta.role = "assistant" }
                // vLLM's continuous_usage_stats: the choice's counts so far on every chunk.
                let usage = continuous ? Usage(prompt: samples[i].ids.count, completion: started.generated[i] ?? 0) : nil
                return wireJSON(ChatResponse(id: id, object: "chat.completion.chunk", created: created, model: model,
                                             choices: [ChatChoice(index: i, delta: delta, logprobs: lp, finishReason: why, stopReason: stop)],
                                             usage: usage))
            }
            return sse(Self.merged(try service.start(samples))) { i, e in
                switch e {
                case .prefilled, .prompt: return []
                case .text(let t, let lps, let generated):
                    started.generated[i] = generated
                    let delta = started.replies[i, default: run.streamedReply()].add(t)
                    guard !delta.isEmpty || logprobs != nil else { return [] }
                    return [chunk(i, delta, logprobs.map { _ in format.chat(lps) }, nil)]
                case .done(let why, let pt, let ct, let stop, let cached):
                    started.generated[i] = ct
                    var reply = started.replies[i] ?? run.streamedReply()
                    let last = reply.finish()
                    var out: [String] = []
                    if !last.isEmpty { out.append(chunk(i, last, nil, nil)) }
                    out.append(chunk(i, ChatDelta(), nil, ToolRequest.finishReason(why, calls: reply.calls), stop))
                    totals.add(choice: i, promptTokens: pt, completionTokens: ct, cachedTokens: cached)
                    if includeUsage && totals.finished == n {
                        out.append(wireJSON(ChatResponse(id: id, object: "chat.completion.chunk", created: created, model: model,
                                                         choices: [], usage: totals.usage)))
                    }
                    return out
                }
            }
        }
        let (outs, usage) = await GenerationService.collect(try service.start(samples), samples, choicesPerPrompt: n)
        let choices = outs.enumerated().map { i, out in
            let reply = run.read(out.text)
            let calls = reply.calls
            return ChatChoice(index: i, message: ChatReply(content: reply.content, reasoningContent: reply.reasoning, toolCalls: calls),
                              logprobs: logprobs.map { _ in format.chat(out.logprobs) },
                              finishReason: ToolRequest.finishReason(out.finish, calls: calls.count), stopReason: out.stopReason)
        }
        return jsonResponse(ChatResponse(id: id, object: "chat.completion", created: created, model: model, choices: choices,
                                         usage: usage, promptLogprobs: promptLogprobs.map { format.prompt(outs.first?.prompt ?? [], n: $0) }))
    }

    /// A one-choice chat run told as another API's stream of named events (`event: <type>` and its JSON): `start`'s
    /// events, then `add`'s for each of the reply's chat deltas, then `finish`'s with the finish reason, stop and usage.
    func namedEvents(_ run: ChatRun, start: @escaping @Sendable () -> [(String, [String: Any])], add: @escaping @Sendable (ChatDelta) -> [(String, [String: Any])],
                     finish: @escaping @Sendable (String, StopMatch?, Usage) -> [(String, [String: Any])]) throws -> Response {
        final class Reading: @unchecked Sendable { var reply: StreamedReply; init(_ r: StreamedReply) { reply = r } }
        let reading = Reading(run.streamedReply())
        let events = Self.merged(try service.start(run.samples))
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
            func send(_ list: [(String, [String: Any])]) async throws {
                for (type, e) in list { try await writer.write(ByteBuffer(string: "event: \(type)\ndata: \(wireJSON(object: e))\n\n")) }
            }
            try await send(start())
            for await (_, e) in events {
                switch e {
                case .prefilled, .prompt: break
                case .text(let text, _, _): try await send(add(reading.reply.add(text)))
                case .done(let why, let pt, let ct, let stop, let cached):
                    try await send(add(reading.reply.finish()) + finish(why, stop, Usage(prompt: pt, completion: ct, cached: cached)))
                }
            }
            try await writer.finish(nil)
        })
    }

    /// POST /tokenize: a prompt's token ids as /v1/completions would read it (special tokens added unless
    /// `add_special_tokens` is false), or chat messages' as /v1/chat/completions would.
    func tokenize(_ req: Request) async throws -> Response {
        let body = try await body(req)
        let r = try decode(TokenizeRequest.self, body)
        try service.checkModel(r.model)
        let ids: [Int]
        switch (r.prompt, r.messages) {
        case (let p?, nil): ids = service.tokenizer.encode(p, addSpecialTokens: r.addSpecialTokens ?? true)
        case (nil, _?):
            // As the chat route renders them: with the request's tools and template options.
            ids = service.tokenizer.encode(try chatPrompt(try decode(ChatRequest.self, body), body: body).text,
                                           addSpecialTokens: r.addSpecialTokens ?? false)
        default: throw APIError.invalid("send either `prompt` (text) or `messages`", param: "prompt")
        }
        return jsonResponse(TokenizeResponse(count: ids.count, maxModelLen: service.contextLimit, tokens: ids))
    }

    /// A chat request's prompt as its template renders it (the request's own `chat_template`, vLLM's field, else the
    /// model's), with that template and the request's tools, which the reply is read against.
    func chatPrompt(_ r: ChatRequest, body: Data) throws -> (text: String, template: ChatTemplate, tools: ToolRequest) {
        guard !r.messages.isEmpty else { throw APIError.invalid("messages must not be empty", param: "messages") }
        guard let template = r.chatTemplate.map({ ChatTemplate(source: $0, tokenizer: service.tokenizer) }) ?? service.chatTemplate else {
            throw APIError.invalid("model `\(service.modelName)` has no chat template in tokenizer_config.json; use /v1/completions", param: "messages",
                                   code: "chat_template_missing")
        }
        let tools = try ToolRequest(r, body: body, format: template.toolFormat)
        do {
            return (try template.render(r.messages, tools: tools.shown(rendersTools: template.rendersTools), options: r.templateOptions),
                    template, tools)
        } catch let e as ChatTemplate.Unsupported {
            throw APIError.invalid(e.description, param: "messages", code: "chat_template_unsupported")
        }
    }

    /// Several generations' events as one stream of (index, event), each generation's in order. Ending the
    /// iteration (a client that went away) ends every generation's, which cancels them.
    static func merged(_ streams: [AsyncStream<GenerationEvent>]) -> AsyncStream<(Int, GenerationEvent)> {
        let (out, continuation) = AsyncStream<(Int, GenerationEvent)>.makeStream(bufferingPolicy: .unbounded)
        let pump = Task {
            await withTaskGroup(of: Void.self) { group in
                for (i, s) in streams.enumerated() {
                    group.addTask { for await e in s { continuation.yield((i, e)) } }
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in pump.cancel() }
        return out
    }

    /// Server-sent events: each event becomes zero or more `data:` lines, then `data: [DONE]`. A client that goes
    /// away makes a write fail, which ends the iteration and cancels the generation.
    func sse<E: Sendable>(_ events: AsyncStream<E>, _ render: @escaping @Sendable (E) -> [String]) -> Response {
        Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
            for await e in events {
                for chunk in render(e) { try await writer.write(ByteBuffer(string: "data: \(chunk)\n\n")) }
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
    }

    /// POST /v1/jobs: every prompt is checked now (shape, sampling fields, lengths), so a bad one is a 400 naming it
    /// rather than a failed result later; the job is stored as one flat JobItemRequest per prompt.
    func createJob(_ req: Request) async throws -> Response {
        let r = try await decode(JobRequest.self, req)
        try service.checkModel(r.model)
        if let u = r.unsupported {
            throw APIError.invalid("`\(u.field)` is not supported in jobs; leave it out or send \(u.accepted)", param: u.field,
                                   code: "unsupported_parameter")
        }
        guard !r.prompts.isEmpty else { throw APIError.invalid("'prompts' must be a non-empty list", param: "prompts") }
        guard r.prompts.count <= Self.maxJobPrompts else {
            throw APIError.invalid("at most \(Self.maxJobPrompts) prompts per job", param: "prompts")
        }
        let items = try r.prompts.enumerated().map { i, entry in
            guard let prompt = entry.prompt else {
                throw APIError.invalid("prompts[\(i)].prompt must be text or a list of token ids", param: "prompts")
            }
            let item = JobItemRequest(prompt: prompt, sampling: entry.sampling.over(r.sampling))
            _ = try service.prepare(service.ids(prompt), item.sampling, defaultMaxTokens: GenerationService.defaultMaxTokens)
            return item
        }
        let id = try store.create(items)
        runner.notify()
        guard let view = try store.job(id) else { throw APIError(.internalServerError, "job \(id) was not stored", type: "server_error") }
        return jsonResponse(view, status: .accepted)
    }
}
