import Foundation

/// llama.cpp's server's own completion API (`POST /completion`, also `/completions`), for its clients and UIs:
/// `prompt` (text or token ids), `n_predict` (−1 or absent: until EOS or the context's end), llama.cpp's sampling
/// names and defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05 when not given), `repeat_penalty`,
/// `stop`, `grammar`, `json_schema`, `logit_bias` as llama.cpp writes it, `ignore_eos`, `seed`, `stream`. The answer
/// is llama.cpp's: `content`, `stop`, `stop_type` (eos, word, limit), `stopping_word`, token counts and `timings`.
enum LlamaCppAPI {
    /// llama.cpp's sampling defaults for its own API.
    static let defaults: [String: Double] = ["temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05]

    /// The body as /v1/completions fields.
    static func translate(_ body: Data) throws -> (completions: Data, stream: Bool, nPredict: Int?) {
        guard let r = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw APIError.invalid("request body must be a JSON object")
        }
        guard let prompt = r["prompt"] ?? r["content"] else { throw APIError.invalid("missing required field 'prompt'", param: "prompt") }
        var c: [String: Any] = ["prompt": prompt]
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
        guard JSONSerialization.isValidJSONObject(c) else { throw APIError.invalid("request body holds values JSON cannot carry") }
        return (try JSONSerialization.data(withJSONObject: c, options: [.sortedKeys]), r["stream"] as? Bool ?? false, nPredict)
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
