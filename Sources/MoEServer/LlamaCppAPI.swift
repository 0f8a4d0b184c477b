import Foundation
import Hummingbird
import NIOCore

/// llama.cpp's server's own completion API (`POST /completion`, also `/completions`), for its clients and UIs:
/// `prompt` (text or token ids), `n_predict` (−1 or absent: until EOS or the context's end), llama.cpp's sampling
/// names and defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05 when not given), `repeat_penalty`,
/// `stop`, `grammar`, `json_schema`, `logit_bias` as llama.cpp writes it, `ignore_eos`, `seed`, `stream`. The answer
/// is llama.cpp's: `content`, `stop`, `stop_type` (eos, word, limit), `stopping_word`, token counts and `timings`.
enum LlamaCppAPI {
    /// llama.cpp's sampling defaults for its own API.
    static let defaults: [String: Double] = ["temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05]

    /// The body as /v1/completions fields; `prompt` (token ids) stands for the body's own (/infill builds it), and
    /// generation also ends at `stopTokens`.
    static func translate(_ body: Data, prompt ids: [Int]? = nil, stopTokens: [Int] = []) throws -> (completions: Data, stream: Bool, nPredict: Int?) {
        let r = try APIRewrite.object(body)
        guard let prompt = ids ?? r["prompt"] ?? r["content"] else { throw APIError.invalid("missing required field 'prompt'", param: "prompt") }
        var c: [String: Any] = ["prompt": prompt]
        if !stopTokens.isEmpty { c["stop_token_ids"] = stopTokens }
        for (k, v) in defaults { c[k] = r[k] ?? v }
        for key in ["seed", "stop", "presence_penalty", "frequency_penalty", "ignore_eos", "grammar", "model"] {
            if let v = r[key] { c[key] = v }
        }
        if let v = r["repeat_penalty"] { c["repetition_penalty"] = v }
        if let v = r["n_probs"] as? Int, v > 0 {
            throw APIError.invalid("n_probs is not supported on /completion; use /v1/completions with logprobs", param: "n_probs",
                                   code: "unsupported_parameter")
        }
        if let s = r["json_schema"], !(s is NSNull) {
            c["response_format"] = ["type": "json_schema", "json_schema": ["name": "schema", "schema": s]]
        }
        // llama.cpp's logit_bias: [[id, bias], …] (bias false: never) or {"id": bias}.
        if let b = r["logit_bias"], !(b is NSNull) {
            var out: [String: Double] = [:]
            if let pairs = b as? [[Any]] {
                for p in pairs {
                    guard p.count == 2, let id = p[0] as? Int else { throw APIError.invalid("logit_bias entries are [token id, bias]", param: "logit_bias") }
                    out[String(id)] = (p[1] as? Bool) == false ? -100 : (p[1] as? Double ?? 0)
                }
            } else if let map = b as? [String: Any] {
                for (k, v) in map { out[k] = (v as? Bool) == false ? -100 : (v as? Double ?? 0) }
            } else {
                throw APIError.invalid("logit_bias must be a list of [token id, bias] pairs or an object", param: "logit_bias")
            }
            c["logit_bias"] = out
        }
        // n_predict −1 or absent: the rest of the context (the route fits a larger one to it, as llama.cpp stops there).
        var nPredict: Int?
        if let n = r["n_predict"] as? Int, n >= 0 { nPredict = n }
        return (try APIRewrite.body(c), r["stream"] as? Bool ?? false, nPredict)
    }

    /// llama.cpp's stop fields for a finished generation.
    static func stopFields(finish: String, stop: StopMatch?) -> [String: Any] {
        let type = finish == "length" ? "limit" : stop?.text != nil ? "word" : "eos"
        return ["stop_type": type, "stopping_word": stop?.text ?? "", "stopped_eos": type == "eos", "stopped_word": type == "word",
                "stopped_limit": type == "limit"]
    }

    static func timings(promptTokens: Int, promptSeconds: Double, predicted: Int, predictedSeconds: Double) -> [String: Any] {
        let pm = promptSeconds * 1000, dm = predictedSeconds * 1000
        return ["prompt_n": promptTokens, "prompt_ms": pm, "prompt_per_token_ms": promptTokens > 0 ? pm / Double(promptTokens) : 0,
                "prompt_per_second": pm > 0 ? Double(promptTokens) / promptSeconds : 0,
                "predicted_n": predicted, "predicted_ms": dm, "predicted_per_token_ms": predicted > 0 ? dm / Double(predicted) : 0,
                "predicted_per_second": dm > 0 ? Double(predicted) / predictedSeconds : 0]
    }
}

extension Routes {
    /// POST /completion: llama.cpp's own completion API (LlamaCppAPI), whole or streamed as its `data:` chunks;
    /// `prompt` and `stopTokens` as LlamaCppAPI.translate takes them.
    func llamaCompletion(_ body: Data, prompt ids: [Int]? = nil, stopTokens: [Int] = []) async throws -> Response {
        let t = try LlamaCppAPI.translate(body, prompt: ids, stopTokens: stopTokens)
        let r = try decode(CompletionRequest.self, t.completions)
        try service.checkModel(r.options.model)
        try r.options.checkSupported()
        let prompts = prompts(r.prompt)
        guard prompts.count == 1 else { throw APIError.invalid("one prompt per request (text or token ids)", param: "prompt") }
        let ids = prompts[0].ids
        let p = try service.prepare(ids, r.options.sampling, defaultMaxTokens: nil,
                                    maxTokensOverride: t.nPredict.map { min($0, max(service.contextLimit - ids.count, 0)) },
                                    allowNoTokens: t.nPredict == 0)
        let f = r.options.sampling, model = service.modelName, promptText = prompts[0].text
        // What the answer reports as it goes: when the first text came (prompt time), the text so far, the settings.
        final class Progress: @unchecked Sendable { var first: Date?; var text = ""; var settings: [String: Any] = [:] }
        let progress = Progress(), started = Date(), stream = t.stream
        progress.settings = ["n_ctx": service.contextLimit, "n_predict": t.nPredict ?? -1, "model": model,
                             "temperature": f.temperature ?? 1, "top_k": f.topK ?? 0, "top_p": f.topP ?? 1, "min_p": f.minP ?? 0,
                             "repeat_penalty": f.repetitionPenalty ?? 1, "presence_penalty": f.presencePenalty ?? 0,
                             "frequency_penalty": f.frequencyPenalty ?? 0, "ignore_eos": f.ignoreEOS ?? false,
                             "seed": f.seed ?? -1, "grammar": f.grammar ?? "", "stream": stream]
        // One event read the same way whole or streamed: the stream's chunk for it (a text piece, or the end with its
        // counts and timings; the whole answer is the end's with all the text).
        @Sendable func chunk(_ e: GenerationEvent) -> [String: Any]? {
            switch e {
            case .prompt: return nil
            case .text(let text, _, _):
                if progress.first == nil { progress.first = Date() }
                progress.text += text
                return text.isEmpty ? nil : ["content": text, "stop": false, "id_slot": 0, "index": 0, "tokens": []]
            case .done(let why, let pt, let ct, let stop):
                let end = Date(), first = progress.first ?? end
                var o: [String: Any] = ["content": stream ? "" : progress.text, "stop": true, "id_slot": 0, "index": 0, "model": model,
                                        "tokens_predicted": ct, "tokens_evaluated": pt, "tokens_cached": 0, "truncated": false,
                                        "generation_settings": progress.settings, "prompt": promptText, "tokens": [],
                                        "timings": LlamaCppAPI.timings(promptTokens: pt, promptSeconds: first.timeIntervalSince(started),
                                                                       predicted: ct, predictedSeconds: end.timeIntervalSince(first))]
                o.merge(LlamaCppAPI.stopFields(finish: why, stop: stop)) { $1 }
                return o
            }
        }
        let events = try service.start(p)
        if stream {
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
                for await e in events {
                    if let c = chunk(e) { try await writer.write(ByteBuffer(string: "data: \(wireJSON(object: c))\n\n")) }
                }
                try await writer.finish(nil)
            })
        }
        var out: [String: Any] = [:]
        for await e in events { if let c = chunk(e), c["stop"] as? Bool == true { out = c } }
        return jsonResponse(object: out)
    }

    /// GET /props: llama.cpp's server properties, for its clients and UIs.
    func props() -> Response {
        jsonResponse(object: ["model_path": service.modelName, "total_slots": service.engine.config.maxSeqs,
                              "chat_template": service.chatTemplate?.source ?? "", "modalities": ["vision": false, "audio": false],
                              "default_generation_settings": ["n_ctx": service.contextLimit, "params": LlamaCppAPI.defaults]])
    }
}
