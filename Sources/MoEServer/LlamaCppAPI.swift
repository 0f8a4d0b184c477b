import Foundation
import Hummingbird
import MoEModel
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
    static func translate(_ body: Data, prompt ids: [Int]? = nil, stopTokens: [Int] = []) throws
        -> (completions: Data, stream: Bool, nPredict: Int?, limits: CompletionLimits, nProbs: Int) {
        let r = try APIRewrite.object(body)
        guard let prompt = ids ?? r["prompt"] ?? r["content"] else { throw APIError.invalid("missing required field 'prompt'", param: "prompt") }
        var c: [String: Any] = ["prompt": prompt]
        if !stopTokens.isEmpty { c["stop_token_ids"] = stopTokens }
        for (k, v) in defaults { c[k] = r[k] ?? v }
        for key in ["seed", "stop", "presence_penalty", "frequency_penalty", "ignore_eos", "grammar", "model"] {
            if let v = r[key] { c[key] = v }
        }
        if let v = r["repeat_penalty"] { c["repetition_penalty"] = v }
        // n_probs: each generated token's probability and the n most likely ones', from the raw logits (llama.cpp's
        // default); after the sampling chain (post_sampling_probs) they are not computed here.
        var nProbs = 0
        if let v = r["n_probs"], !(v is NSNull) {
            guard let n = v as? Int else { throw APIError.invalid("n_probs must be an integer", param: "n_probs") }
            nProbs = try GenerationService.logprobsCount(max(n, 0), param: "n_probs")
        }
        if r["post_sampling_probs"] as? Bool == true {
            throw APIError.invalid("post_sampling_probs is not supported: n_probs gives the probabilities of the raw logits, before the sampling chain",
                                   param: "post_sampling_probs", code: "unsupported_parameter")
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
        var limits = CompletionLimits()
        if let v = r["n_indent"], !(v is NSNull) {
            guard let n = v as? Int else { throw APIError.invalid("n_indent must be an integer", param: "n_indent") }
            limits.indent = n
        }
        if let v = r["t_max_predict_ms"], !(v is NSNull) {
            guard let ms = v as? Double else { throw APIError.invalid("t_max_predict_ms must be a number", param: "t_max_predict_ms") }
            limits.maxPredictMs = ms
        }
        return (try APIRewrite.body(c), r["stream"] as? Bool ?? false, nPredict, limits, nProbs)
    }

    /// One `completion_probabilities` entry, as llama.cpp writes it: the text the token sent (`text`), its bytes,
    /// its log-probability (a probability of 0 as the lowest float, as llama.cpp keeps it out of JSON's null), and the
    /// most likely tokens' with their own pieces. A text's incomplete last character is left out of `token` (its
    /// `bytes` keep it), and bytes that are not UTF-8 read as U+FFFD.
    static func probabilityEntry(_ lp: PositionLogprobs, text: [UInt8], pieces: [[UInt8]]) -> [String: Any] {
        func entry(_ id: Int32, _ bytes: [UInt8], _ logprob: Float) -> [String: Any] {
            ["id": Int(id), "token": String(decoding: bytes.prefix(LlamaCppTokenTexts.validUTF8Prefix(bytes)), as: UTF8.self),
             "bytes": bytes.map(Int.init), "logprob": logprob.isFinite ? Double(logprob) : -Double(Float.greatestFiniteMagnitude)]
        }
        var e = entry(lp.chosen.token, text, lp.chosen.logprob)
        e["top_logprobs"] = lp.top.map { entry($0.token, pieces[Int($0.token)], $0.logprob) }
        return e
    }

    /// llama.cpp's stop fields for a finished generation.
    static func stopFields(finish: String, stop: StopMatch?) -> [String: Any] {
        let type = finish == "length" ? "limit" : stop?.text != nil ? "word" : "eos"
        return ["stop_type": type, "stopping_word": stop?.text ?? "", "stopped_eos": type == "eos", "stopped_word": type == "word",
                "stopped_limit": type == "limit"]
    }

    /// `promptTokens` computed, `cached` read from the prefix cache.
    static func timings(promptTokens: Int, cached: Int = 0, promptSeconds: Double, predicted: Int, predictedSeconds: Double) -> [String: Any] {
        let pm = promptSeconds * 1000, dm = predictedSeconds * 1000
        return ["cache_n": cached, "prompt_n": promptTokens, "prompt_ms": pm, "prompt_per_token_ms": promptTokens > 0 ? pm / Double(promptTokens) : 0,
                "prompt_per_second": pm > 0 ? Double(promptTokens) / promptSeconds : 0,
                "predicted_n": predicted, "predicted_ms": dm, "predicted_per_token_ms": predicted > 0 ? dm / Double(predicted) : 0,
                "predicted_per_second": dm > 0 ? Double(predicted) / predictedSeconds : 0]
    }
}

/// The text each generated token sends, as llama.cpp's server decides it token by token (what its
/// `completion_probabilities` entries carry): a token that leaves the text's last character incomplete sends nothing
/// and has no entry (the token that completes it sends both); while the unsent text ends in the beginning of a stop
/// word, a token sends nothing (its entry's text is empty); a whole stop word found is cut from the text, and the
/// rest before it is sent. Its incompleteness test is llama.cpp's: only a lead byte among the last four bytes whose
/// character would run past the end counts.
struct LlamaCppTokenTexts {
    let stops: [[UInt8]]
    private(set) var text: [UInt8] = []
    private var sent = 0

    init(stops: [String]) { self.stops = stops.map { Array($0.utf8) }.filter { !$0.isEmpty } }

    /// Adds a token's piece (`endOfGeneration`: an EOS or stop token, after which no partial stop word holds text
    /// back); the text it sends, or nil when it has no entry.
    mutating func add(_ piece: [UInt8], endOfGeneration: Bool) -> [UInt8]? {
        text += piece
        guard Self.validUTF8Prefix(text) == text.count else { return nil }
        var pos = min(sent, text.count)
        let pending = Array(text[pos...])
        if let at = firstStop(in: pending, lastPiece: piece.count) {
            text.removeSubrange((pos + at)...)
            pos = min(sent, text.count)
        } else if !endOfGeneration, stops.contains(where: { Self.partialStop(pending, $0) != nil }) {
            return []
        }
        let out = Array(text[pos...])
        sent += out.count
        return out
    }

    /// Where the first whole stop word begins, searched from a word and a piece's length before the end (llama.cpp's
    /// window).
    private func firstStop(in s: [UInt8], lastPiece: Int) -> Int? {
        stops.compactMap { word -> Int? in
            let from = max(0, s.count - (word.count + lastPiece))
            guard s.count >= word.count, from <= s.count - word.count else { return nil }
            return (from...(s.count - word.count)).first { Array(s[$0..<($0 + word.count)]) == word }
        }.min()
    }

    /// Where the longest beginning of `word` that ends `s` starts (llama.cpp's string_find_partial_stop).
    static func partialStop(_ s: [UInt8], _ word: [UInt8]) -> Int? {
        guard !s.isEmpty, !word.isEmpty else { return nil }
        for len in stride(from: min(s.count, word.count), to: 0, by: -1) where s.suffix(len).elementsEqual(word.prefix(len)) {
            return s.count - len
        }
        return nil
    }

    /// The bytes before an incomplete last character, by llama.cpp's test (validate_utf8).
    static func validUTF8Prefix(_ b: [UInt8]) -> Int {
        for i in 1...max(1, min(4, b.count)) where i <= b.count {
            let c = b[b.count - i]
            if (c & 0xE0 == 0xC0 && i < 2) || (c & 0xF0 == 0xE0 && i < 3) || (c & 0xF8 == 0xF0 && i < 4) { return b.count - i }
        }
        return b.count
    }
}

/// llama.cpp's limits for code completion, on the text as it is generated (its server's `n_indent` and
/// `t_max_predict_ms`, checked after each token in its order): once a line has begun, a later line that has text but
/// less than `n_indent` columns of indentation (spaces or tabs) ends the generation, cut just before that text; once
/// a newline has come, a token with a newline after `t_max_predict_ms` of generation ends it. Offsets are UTF-8
/// bytes, as llama.cpp's.
struct CompletionLimits {
    var indent = 0
    var maxPredictMs = 0.0
    private(set) var text: [UInt8] = []
    private(set) var hasNewLine = false
    private var lastNewLine = 0

    init(indent: Int = 0, maxPredictMs: Double = 0) {
        self.indent = indent
        self.maxPredictMs = maxPredictMs
    }

    /// Adds one token's text, `elapsedMs` after generation began; true when the generation ends with it.
    mutating func add(_ piece: String, elapsedMs: Double) -> Bool {
        text += Array(piece.utf8)
        var stop = false
        if hasNewLine && indent > 0 {
            if lastNewLine > 0 {
                var pos = lastNewLine, columns = 0
                while pos < text.count && (text[pos] == 0x20 || text[pos] == 0x09) { columns += 1; pos += 1 }
                if pos < text.count && columns < indent {
                    stop = true
                    text.removeSubrange(pos...)
                }
            }
            if let nl = text[lastNewLine...].firstIndex(of: 0x0A) { lastNewLine = nl + 1 }
        }
        if piece.utf8.contains(0x0A) {
            hasNewLine = true
            if maxPredictMs > 0 && elapsedMs > maxPredictMs { stop = true }
        }
        return stop
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
        var p = try service.prepare(ids, r.options.sampling, defaultMaxTokens: nil,
                                    maxTokensOverride: t.nPredict.map { min($0, max(service.contextLimit - ids.count, 0)) },
                                    allowNoTokens: t.nPredict == 0)
        if t.nProbs > 0 { p.logprobs = t.nProbs }
        let f = r.options.sampling, model = service.modelName, promptText = prompts[0].text
        // What the answer reports as it goes: when the first text came (prompt time), the text so far (under the
        // code-completion limits), the settings, and whether it has ended.
        final class Progress: @unchecked Sendable {
            var first: Date?
            var limits = CompletionLimits()
            var settings: [String: Any] = [:]
            var ended = false
            var cached = 0
            /// n_probs: each token's text as llama.cpp sends it, and the entries so far.
            var texts = LlamaCppTokenTexts(stops: [])
            var probabilities: [[String: Any]] = []
        }
        let progress = Progress(), started = Date(), stream = t.stream
        progress.limits = t.limits
        progress.texts = LlamaCppTokenTexts(stops: p.stops)
        let pieces = t.nProbs > 0 ? service.tokenTable.tokenBytes : [], ends = service.eos.union(p.stopTokenIds)
        /// The entries of these tokens (those that complete a character).
        @Sendable func entries(_ lps: [PositionLogprobs]) -> [[String: Any]] {
            lps.compactMap { lp in
                let id = lp.chosen.token
                return progress.texts.add(pieces[Int(id)], endOfGeneration: ends.contains(id))
                    .map { LlamaCppAPI.probabilityEntry(lp, text: $0, pieces: pieces) }
            }
        }
        progress.settings = ["n_ctx": service.contextLimit, "n_predict": t.nPredict ?? -1, "model": model,
                             "temperature": f.temperature ?? 1, "top_k": f.topK ?? 0, "top_p": f.topP ?? 1, "min_p": f.minP ?? 0,
                             "repeat_penalty": f.repetitionPenalty ?? 1, "presence_penalty": f.presencePenalty ?? 0,
                             "frequency_penalty": f.frequencyPenalty ?? 0, "ignore_eos": f.ignoreEOS ?? false,
                             "seed": f.seed ?? -1, "grammar": f.grammar ?? "", "stream": stream,
                             "n_indent": t.limits.indent, "t_max_predict_ms": t.limits.maxPredictMs]
        // The end: counts, timings and why (the whole answer is it with all the text).
        @Sendable func end(_ why: String, _ stop: StopMatch?, promptTokens pt: Int, generated ct: Int) -> [String: Any] {
            progress.ended = true
            let end = Date(), first = progress.first ?? end
            // As llama.cpp counts them: tokens_cached is what the sequence's cache holds at the end (the last token's
            // K/V never written), the prompt's timings count the tokens computed and cache_n those read instead.
            var o: [String: Any] = ["content": stream ? "" : String(decoding: progress.limits.text, as: UTF8.self), "stop": true,
                                    "id_slot": 0, "index": 0, "model": model, "tokens_predicted": ct, "tokens_evaluated": pt,
                                    "tokens_cached": max(pt + ct - 1, 0), "truncated": false, "has_new_line": progress.limits.hasNewLine,
                                    "generation_settings": progress.settings, "prompt": promptText, "tokens": [],
                                    "timings": LlamaCppAPI.timings(promptTokens: pt - progress.cached, cached: progress.cached,
                                                                   promptSeconds: first.timeIntervalSince(started),
                                                                   predicted: ct, predictedSeconds: end.timeIntervalSince(first))]
            o.merge(LlamaCppAPI.stopFields(finish: why, stop: stop)) { $1 }
            if t.nProbs > 0 && !stream {
                // As llama.cpp: a stop word's tokens (as many as it has alone) are left out.
                var kept = progress.probabilities
                if case .text(let word)? = stop { kept.removeLast(min(kept.count, service.tokenizer.encode(word, addSpecialTokens: false).count)) }
                o["completion_probabilities"] = kept
            }
            return o
        }
        // One event read the same way whole or streamed: the stream's chunks for it (a text piece, sent before the
        // limits look at it as llama.cpp sends it; the end).
        @Sendable func chunks(_ e: GenerationEvent) -> [[String: Any]] {
            switch e {
            case .prefilled(let cached):
                progress.cached = cached
                return []
            case .prompt: return []
            case .text(let text, let lps, let generated):
                if progress.first == nil { progress.first = Date() }
                let probabilities = t.nProbs > 0 ? entries(lps) : []
                progress.probabilities += probabilities
                var piece: [[String: Any]] = text.isEmpty && probabilities.isEmpty ? [] : [["content": text, "stop": false, "id_slot": 0, "index": 0, "tokens": [],
                                                                                           "tokens_predicted": generated, "tokens_evaluated": ids.count]]
                if !probabilities.isEmpty { piece[0]["completion_probabilities"] = probabilities }
                guard progress.limits.add(text, elapsedMs: Date().timeIntervalSince(progress.first!) * 1000) else { return piece }
                return piece + [end("length", nil, promptTokens: ids.count, generated: generated)]
            case .done(let why, let pt, let ct, let stop, _):
                return [end(why, stop, promptTokens: pt, generated: ct)]
            }
        }
        // Leaving the loop early (a limit ended it) drops the stream, which cancels the generation.
        let events = try service.start(p)
        if stream {
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
                for await e in events {
                    for c in chunks(e) { try await writer.write(ByteBuffer(string: "data: \(wireJSON(object: c))\n\n")) }
                    if progress.ended { break }
                }
                try await writer.finish(nil)
            })
        }
        var out: [String: Any] = [:]
        for await e in events {
            if let c = chunks(e).last, c["stop"] as? Bool == true { out = c }
            if progress.ended { break }
        }
        return jsonResponse(object: out)
    }

    /// GET /props: llama.cpp's server properties, for its clients and UIs.
    func props() -> Response {
        jsonResponse(object: ["model_path": service.modelName, "total_slots": service.engine.config.maxSeqs,
                              "chat_template": service.chatTemplate?.source ?? "", "modalities": ["vision": false, "audio": false],
                              "default_generation_settings": ["n_ctx": service.contextLimit, "params": LlamaCppAPI.defaults]])
    }
}
