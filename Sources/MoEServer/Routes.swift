import Foundation
import Hummingbird
import MoEEngine
import MoEModel
import NIOCore

/// Requires `Authorization: Bearer <token>` on every route but /health when a token is configured.
struct BearerAuth<Context: RequestContext>: RouterMiddleware {
    let token: String
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" { return try await next(request, context) }
        guard request.headers[.authorization] == "Bearer \(token)" else {
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
    let runner: JobRunner
    let config: ServerConfig
    let info: ClusterInfo
    let started = Date()

    func register(_ router: Router<BasicRequestContext>) {
        if let t = config.token { router.add(middleware: BearerAuth(token: t)) }
        router.get("/health") { _, _ in health() }
        router.get("/v1/stats") { _, _ in
            let data = try JSONSerialization.data(withJSONObject: statsSnapshot(), options: [.sortedKeys])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: PrometheusText.render(statsSnapshot()))))
        }
        router.post("/v1/rebalance") { req, _ in
            let buffer = try await req.body.collect(upTo: config.maxBodyBytes)
            let obj = (try? JSONSerialization.jsonObject(with: Data(buffer: buffer))) as? [String: Any] ?? [:]
            let dry = obj["dry_run"] as? Bool ?? false
            let report: [String: Any]
            do { report = try await service.engine.rebalance(dryRun: dry) } catch let e as MoEEngine.EngineError {
                throw APIError.invalid(e.description, code: "no_expert_workers")
            } catch {
                throw APIError(.internalServerError, "rebalance failed: \(error)", type: "server_error")
            }
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/v1/models") { _, _ in
            jsonResponse(ListResponse(data: [ModelCard(id: service.modelName, created: service.created, maxModelLen: service.contextLimit)]))
        }
        router.post("/v1/completions") { req, ctx in try await completions(req, ctx) }
        router.post("/v1/chat/completions") { req, ctx in try await chat(req, ctx) }
        router.post("/v1/jobs") { req, ctx in try await createJob(req, ctx) }
        router.get("/v1/jobs") { _, _ in jsonResponse(ListResponse(data: try store.jobs())) }
        router.get("/v1/jobs/:id") { _, ctx in jsonResponse(try job(ctx)) }
        router.delete("/v1/jobs/:id") { _, ctx in
            let j = try job(ctx)
            _ = try store.cancel(j.id)
            runner.cancel(job: j.id)
            return jsonResponse(try store.job(j.id)!)
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
        let obj: [String: Any] = ["status": "ok", "model": service.modelName, "workers": info.workers, "draft": info.draft,
                                  "running": load.running, "waiting": load.waiting, "uptime_s": Date().timeIntervalSince(started)]
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func statsSnapshot() -> [String: Any] {
        let e = service.engine
        var s = e.collector.snapshot(load: e.loadSnapshot, workerRanks: Array(1...max(info.workers, 1)))
        s["model"] = service.modelName
        return s
    }

    func job(_ ctx: BasicRequestContext) throws -> JobView {
        let id = ctx.parameters.get("id") ?? ""
        guard let j = try store.job(id) else { throw APIError(.notFound, "no job with id '\(id)'", code: "job_not_found") }
        return j
    }

    /// The request body as JSON of type T, with OpenAI-style 4xx errors for size, encoding and shape.
    func decode<T: Decodable>(_ type: T.Type, _ req: Request) async throws -> T {
        let buffer: ByteBuffer
        do { buffer = try await req.body.collect(upTo: config.maxBodyBytes) } catch {
            throw APIError(.contentTooLarge, "request body larger than \(config.maxBodyBytes) bytes")
        }
        let data = Data(buffer: buffer)
        guard String(data: data, encoding: .utf8) != nil else { throw APIError.invalid("request body is not valid UTF-8") }
        do { return try JSONDecoder().decode(T.self, from: data) } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.invalid("missing required field '\(key.stringValue)'", param: key.stringValue)
        } catch let DecodingError.typeMismatch(_, c) {
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            throw APIError.invalid("field '\(path)' has the wrong type: \(c.debugDescription)", param: path)
        } catch let DecodingError.valueNotFound(_, c) {
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            throw APIError.invalid("field '\(path)' must not be null", param: path)
        } catch {
            throw APIError.invalid("request body is not valid JSON")
        }
    }

    func promptIds(_ p: PromptInput) throws -> [[Int32]] {
        switch p {
        case .text(let s): return [try service.tokenize(s)]
        case .texts(let a): return try a.map { try service.tokenize($0) }
        case .ids(let a): return [a.map(Int32.init)]
        case .idLists(let a): return a.map { $0.map(Int32.init) }
        }
    }

    static func requestId(_ prefix: String) -> String { prefix + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24) }

    func completions(_ req: Request, _ ctx: BasicRequestContext) async throws -> Response {
        let r = try await decode(CompletionRequest.self, req)
        try service.checkModel(r.model)
        guard (r.n ?? 1) == 1 else { throw APIError.invalid("n must be 1", param: "n") }
        let prompts = try promptIds(r.prompt)
        guard !prompts.isEmpty else { throw APIError.invalid("the prompt list is empty", param: "prompt") }
        let prepared = try prompts.map { try service.prepare($0, r.sampling, defaultMaxTokens: 16) }
        let id = Self.requestId("cmpl-"), created = Int(Date().timeIntervalSince1970)
        if r.stream == true {
            guard prepared.count == 1 else { throw APIError.invalid("stream supports one prompt at a time", param: "prompt") }
            let events = try service.start(prepared[0])
            let includeUsage = r.streamOptions?.includeUsage ?? false
            return sse(events) { e in
                switch e {
                case .text(let t):
                    return [CompletionResponse(id: id, created: created, model: service.modelName,
                                               choices: [CompletionChoice(index: 0, text: t, finishReason: nil)])].map(encode)
                case .done(let why, let pt, let ct):
                    var out = [encode(CompletionResponse(id: id, created: created, model: service.modelName,
                                                         choices: [CompletionChoice(index: 0, text: "", finishReason: why)]))]
                    if includeUsage {
                        out.append(encode(CompletionResponse(id: id, created: created, model: service.modelName, choices: [],
                                                             usage: Usage(promptTokens: pt, completionTokens: ct, totalTokens: pt + ct))))
                    }
                    return out
                }
            }
        }
        var choices: [CompletionChoice] = []
        var usage = Usage(promptTokens: 0, completionTokens: 0, totalTokens: 0)
        for (i, p) in prepared.enumerated() {
            let out = try await service.complete(p)
            choices.append(CompletionChoice(index: i, text: out.text, finishReason: out.finish))
            usage.promptTokens += out.usage.promptTokens
            usage.completionTokens += out.usage.completionTokens
        }
        usage.totalTokens = usage.promptTokens + usage.completionTokens
        return jsonResponse(CompletionResponse(id: id, created: created, model: service.modelName, choices: choices, usage: usage))
    }

    func chat(_ req: Request, _ ctx: BasicRequestContext) async throws -> Response {
        let r = try await decode(ChatRequest.self, req)
        try service.checkModel(r.model)
        guard (r.n ?? 1) == 1 else { throw APIError.invalid("n must be 1", param: "n") }
        guard !r.messages.isEmpty else { throw APIError.invalid("messages must not be empty", param: "messages") }
        guard let template = service.chatTemplate else {
            throw APIError.invalid("model `\(service.modelName)` has no chat template in tokenizer_config.json; use /v1/completions", param: "messages",
                                   code: "chat_template_missing")
        }
        let text: String
        do { text = try template.render(r.messages) } catch let e as ChatTemplate.Unsupported {
            throw APIError.invalid(e.description, param: "messages", code: "chat_template_unsupported")
        }
        // The template already holds BOS and role markers: no special tokens are added again.
        guard let tok = service.tokenizer else { throw APIError.invalid("model has no tokenizer") }
        let ids = tok.encode(text, addSpecialTokens: false).map(Int32.init)
        let p = try service.prepare(ids, r.sampling, defaultMaxTokens: nil, maxTokensOverride: r.maxCompletionTokens)
        let id = Self.requestId("chatcmpl-"), created = Int(Date().timeIntervalSince1970)
        if r.stream == true {
            let events = try service.start(p)
            let includeUsage = r.streamOptions?.includeUsage ?? false
            final class First: @unchecked Sendable { var yes = true }
            let first = First()
            return sse(events) { e in
                switch e {
                case .text(let t):
                    let delta = ChatDelta(role: first.yes ? "assistant" : nil, content: t)
                    first.yes = false
                    return [encode(ChatResponse(id: id, object: "chat.completion.chunk", created: created, model: service.modelName,
                                                choices: [ChatChoice(index: 0, delta: delta, finishReason: nil)]))]
                case .done(let why, let pt, let ct):
                    var out = [encode(ChatResponse(id: id, object: "chat.completion.chunk", created: created, model: service.modelName,
                                                   choices: [ChatChoice(index: 0, delta: ChatDelta(), finishReason: why)]))]
                    if includeUsage {
                        out.append(encode(ChatResponse(id: id, object: "chat.completion.chunk", created: created, model: service.modelName,
                                                       choices: [], usage: Usage(promptTokens: pt, completionTokens: ct, totalTokens: pt + ct))))
                    }
                    return out
                }
            }
        }
        let out = try await service.complete(p)
        return jsonResponse(ChatResponse(id: id, object: "chat.completion", created: created, model: service.modelName,
                                         choices: [ChatChoice(index: 0, message: ChatMessage(role: "assistant", content: out.text), finishReason: out.finish)],
                                         usage: out.usage))
    }

    /// Server-sent events: each generation event becomes zero or more `data:` lines, then `data: [DONE]`. A client
    /// that goes away makes a write fail, which ends the iteration and cancels the generation.
    func sse(_ events: AsyncStream<GenerationEvent>, _ render: @escaping @Sendable (GenerationEvent) -> [String]) -> Response {
        Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
            for await e in events {
                for chunk in render(e) { try await writer.write(ByteBuffer(string: "data: \(chunk)\n\n")) }
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
    }

    func createJob(_ req: Request, _ ctx: BasicRequestContext) async throws -> Response {
        let buffer: ByteBuffer
        do { buffer = try await req.body.collect(upTo: config.maxBodyBytes) } catch {
            throw APIError(.contentTooLarge, "request body larger than \(config.maxBodyBytes) bytes")
        }
        let data = Data(buffer: buffer)
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw APIError.invalid("request body is not a JSON object")
        }
        try service.checkModel(obj["model"] as? String)
        guard let prompts = obj["prompts"] as? [Any], !prompts.isEmpty else {
            throw APIError.invalid("'prompts' must be a non-empty list", param: "prompts")
        }
        guard prompts.count <= 100_000 else { throw APIError.invalid("at most 100000 prompts per job", param: "prompts") }
        let shared = ["max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "ignore_eos"]
        var requests: [String] = []
        for (i, p) in prompts.enumerated() {
            var item: [String: Any] = [:]
            for k in shared { if let v = obj[k], !(v is NSNull) { item[k] = v } }
            if let s = p as? String { item["prompt"] = s }
            else if let o = p as? [String: Any] {
                for (k, v) in o { item[k] = v }
            } else {
                throw APIError.invalid("prompts[\(i)] must be a string or an object with 'prompt'", param: "prompts")
            }
            guard item["prompt"] is String || item["prompt"] is [Int] else {
                throw APIError.invalid("prompts[\(i)].prompt must be text or a list of token ids", param: "prompts")
            }
            // Validate now so a bad item is a 400, not a failed result later.
            let itemData = try JSONSerialization.data(withJSONObject: item, options: [.sortedKeys])
            let fields: SamplingFields
            do { fields = try JSONDecoder().decode(SamplingFields.self, from: itemData) } catch {
                throw APIError.invalid("prompts[\(i)] has a field of the wrong type", param: "prompts")
            }
            let ids = try (item["prompt"] as? String).map { try service.tokenize($0) } ?? (item["prompt"] as! [Int]).map(Int32.init)
            _ = try service.prepare(ids, fields, defaultMaxTokens: 16)
            requests.append(String(decoding: itemData, as: UTF8.self))
        }
        let id = try store.create(requests: requests)
        runner.notify()
        return jsonResponse(try store.job(id)!, status: .accepted)
    }
}

func encode<T: Encodable>(_ v: T) -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: (try? e.encode(v)) ?? Data(), as: UTF8.self)
}
