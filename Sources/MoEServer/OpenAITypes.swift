import Foundation

/// `prompt` as OpenAI accepts it: text, a list of texts, token ids, or a list of token-id lists.
enum PromptInput: Decodable, Sendable {
    case text(String)
    case texts([String])
    case ids([Int])
    case idLists([[Int]])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s); return }
        if let a = try? c.decode([String].self) { self = .texts(a); return }
        if let a = try? c.decode([Int].self) { self = .ids(a); return }
        if let a = try? c.decode([[Int]].self) { self = .idLists(a); return }
        throw DecodingError.typeMismatch(PromptInput.self, .init(codingPath: decoder.codingPath,
            debugDescription: "prompt must be a string, a list of strings, a list of token ids or a list of token-id lists"))
    }
}

/// What a response's text must be.
enum OutputFormat: Sendable {
    case text, jsonObject
    case jsonSchema(JSONValue)
    case choice([String])
    case regex(String)
    /// A GBNF grammar's source.
    case grammar(String)
}

/// Any JSON value, as a request carries a schema.
indirect enum JSONValue: Codable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// As JSONSerialization would have read it (integers as Int, so `minItems: 2` reads as a count).
    var foundation: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let b): return b
        case .number(let n): return n.rounded() == n && abs(n) < 1e15 ? Int(n) as Any : n
        case .string(let s): return s
        case .array(let a): return a.map(\.foundation)
        case .object(let o): return o.mapValues(\.foundation)
        }
    }
}

/// `stop` as a string or a list of strings (stored, in job items, as a list).
struct StopInput: Codable, Sendable {
    var values: [String]
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { values = [] }
        else if let s = try? c.decode(String.self) { values = [s] }
        else { values = try c.decode([String].self) }
    }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(values)
    }
}

struct StreamOptions: Decodable, Sendable {
    var includeUsage: Bool?
    /// vLLM's: with include_usage, every chunk also carries the usage so far (its choice's tokens).
    var continuousUsageStats: Bool?
    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage", continuousUsageStats = "continuous_usage_stats" }
}

/// The sampling and length fields shared by completions, chat completions and jobs.
struct SamplingFields: Codable, Sendable {
    var maxTokens: Int?
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var minP: Double?
    var seed: Int?
    var stop: StopInput?
    var ignoreEOS: Bool?
    var presencePenalty: Double?
    var frequencyPenalty: Double?
    var repetitionPenalty: Double?
    var minTokens: Int?
    var stopTokenIds: [Int]?
    /// Token id (as a JSON object key, a string) → bias added to its logit, in [-100, 100].
    var logitBias: [String: Double]?
    /// vLLM's: the stop string or stop token's text kept at the end of the text; special tokens' text shown.
    var includeStopStrInOutput: Bool?
    var skipSpecialTokens: Bool?
    /// vLLM's: only these token ids can be generated.
    var allowedTokenIds: [Int]?
    /// vLLM's: words (each also with a leading space) whose tokens the output never completes.
    var badWords: [String]?
    /// vLLM's: keep only the prompt's last k tokens (-1: as many as the context holds).
    var truncatePromptTokens: Int?
    /// `response_format` json_object or json_schema (or vLLM's `guided_json`, a schema): the output is one JSON
    /// object, or one value of the schema.
    var responseFormat: ResponseFormat?
    var guidedJSON: JSONValue?
    /// vLLM's guided_choice: the text is exactly one of these; guided_regex: the whole text matches.
    var guidedChoice: [String]?
    var guidedRegex: String?
    /// llama.cpp's `grammar` and vLLM's `guided_grammar`: GBNF the whole text must match.
    var grammar: String?
    var guidedGrammar: String?
    /// vLLM's newer spelling of all of these: {"json": schema, "json_object": true, "regex", "choice", "grammar"}.
    var structuredOutputs: StructuredOutputs?

    struct StructuredOutputs: Codable, Sendable {
        var json: JSONValue?
        var jsonObject: Bool?
        var regex: String?
        var choice: [String]?
        var grammar: String?
        enum CodingKeys: String, CodingKey { case json, jsonObject = "json_object", regex, choice, grammar }
    }

    enum CodingKeys: String, CodingKey {
        case maxTokens = "max_tokens", temperature, topP = "top_p", topK = "top_k", minP = "min_p", seed, stop, ignoreEOS = "ignore_eos"
        case presencePenalty = "presence_penalty", frequencyPenalty = "frequency_penalty"
        case repetitionPenalty = "repetition_penalty", minTokens = "min_tokens", stopTokenIds = "stop_token_ids"
        case logitBias = "logit_bias", includeStopStrInOutput = "include_stop_str_in_output"
        case skipSpecialTokens = "skip_special_tokens", responseFormat = "response_format", guidedJSON = "guided_json"
        case guidedChoice = "guided_choice", guidedRegex = "guided_regex", grammar, guidedGrammar = "guided_grammar"
        case structuredOutputs = "structured_outputs", allowedTokenIds = "allowed_token_ids", badWords = "bad_words"
        case truncatePromptTokens = "truncate_prompt_tokens"
    }

    struct ResponseFormat: Codable, Sendable {
        struct Schema: Codable, Sendable {
            var name: String?
            var schema: JSONValue?
        }
        var type: String
        var jsonSchema: Schema?
        enum CodingKeys: String, CodingKey { case type, jsonSchema = "json_schema" }
    }

    /// What the text must be; a 400 for a json_schema format without its schema.
    func outputFormat() throws -> OutputFormat {
        if let so = structuredOutputs {
            var f = self
            f.structuredOutputs = nil
            f.guidedJSON = so.json ?? f.guidedJSON
            f.guidedRegex = so.regex ?? f.guidedRegex
            f.guidedChoice = so.choice ?? f.guidedChoice
            f.guidedGrammar = so.grammar ?? f.guidedGrammar
            if so.jsonObject == true { f.responseFormat = ResponseFormat(type: "json_object") }
            return try f.outputFormat()
        }
        if let g = grammar ?? guidedGrammar { return .grammar(g) }
        if let choices = guidedChoice {
            guard !choices.isEmpty, choices.allSatisfy({ !$0.isEmpty }) else {
                throw APIError.invalid("guided_choice must be a non-empty list of non-empty strings", param: "guided_choice")
            }
            return .choice(choices)
        }
        if let r = guidedRegex { return .regex(r) }
        if let schema = guidedJSON { return .jsonSchema(schema) }
        switch responseFormat?.type {
        case "json_object": return .jsonObject
        case "json_schema":
            guard let schema = responseFormat?.jsonSchema?.schema else {
                throw APIError.invalid("response_format json_schema needs json_schema.schema", param: "response_format")
            }
            return .jsonSchema(schema)
        default: return .text
        }
    }

    /// These fields, each one not set here taken from `defaults` (a job prompt's own fields over the job's).
    func over(_ defaults: SamplingFields) -> SamplingFields {
        var f = self
        func take<T>(_ k: WritableKeyPath<SamplingFields, T?>) { if f[keyPath: k] == nil { f[keyPath: k] = defaults[keyPath: k] } }
        take(\.maxTokens); take(\.temperature); take(\.topP); take(\.topK); take(\.minP); take(\.seed); take(\.stop); take(\.ignoreEOS)
        take(\.presencePenalty); take(\.frequencyPenalty); take(\.repetitionPenalty); take(\.minTokens)
        take(\.stopTokenIds); take(\.logitBias); take(\.includeStopStrInOutput); take(\.skipSpecialTokens)
        take(\.responseFormat); take(\.guidedJSON); take(\.guidedChoice); take(\.guidedRegex); take(\.grammar); take(\.guidedGrammar)
        take(\.structuredOutputs)
        return f
    }
}

/// The fields /v1/completions and /v1/chat/completions share, read from the same JSON object as the rest of the
/// request.
struct GenerationOptions: Decodable, Sendable {
    var model: String?
    var sampling: SamplingFields
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Int?
    /// Completions: `logprobs` as a count of alternatives (0–20); chat: `logprobs` as a flag, with `top_logprobs`.
    var logprobsCount: Int?
    var logprobsFlag: Bool?
    var topLogprobs: Int?
    /// Completions: the prompt's text (and, with `logprobs`, its tokens' log-probabilities) before the completion.
    var echo: Bool?
    /// vLLM's: tokens in log-probabilities as "token_id:N" instead of their text.
    var returnTokensAsTokenIds: Bool?
    /// vLLM's: each prompt token's log-probability and rank with this many most likely alternatives.
    var promptLogprobs: Int?
    /// The first OpenAI/vLLM option in the request that would change the output and that this server does not
    /// implement, with the value it accepts: answered with a 400 naming it instead of output that ignores it.
    var unsupported: (field: String, accepted: String)?

    enum CodingKeys: String, CodingKey {
        case model, stream, streamOptions = "stream_options", n, logprobs, topLogprobs = "top_logprobs", echo
        case returnTokensAsTokenIds = "return_tokens_as_token_ids", promptLogprobs = "prompt_logprobs"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        streamOptions = try c.decodeIfPresent(StreamOptions.self, forKey: .streamOptions)
        n = try c.decodeIfPresent(Int.self, forKey: .n)
        if let v = try? c.decodeIfPresent(Int.self, forKey: .logprobs) { logprobsCount = v }
        else { logprobsFlag = try c.decodeIfPresent(Bool.self, forKey: .logprobs) }
        topLogprobs = try c.decodeIfPresent(Int.self, forKey: .topLogprobs)
        echo = try c.decodeIfPresent(Bool.self, forKey: .echo)
        returnTokensAsTokenIds = try c.decodeIfPresent(Bool.self, forKey: .returnTokensAsTokenIds)
        promptLogprobs = try c.decodeIfPresent(Int.self, forKey: .promptLogprobs)
        sampling = try SamplingFields(from: decoder)
        unsupported = Self.firstUnsupported(try decoder.container(keyedBy: AnyKey.self))
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Defaults pass (null, 0, 1, false, {}, []), as clients such as LangChain send them on every request.
    static func firstUnsupported(_ c: KeyedDecodingContainer<AnyKey>) -> (field: String, accepted: String)? {
        func number(_ k: String) -> Double? { (try? c.decodeIfPresent(Double.self, forKey: AnyKey(stringValue: k))) ?? nil }
        if let v = number("best_of"), v != 1 { return ("best_of", "1") }
        if let s = (try? c.decodeIfPresent(String.self, forKey: AnyKey(stringValue: "suffix"))) ?? nil, !s.isEmpty {
            return ("suffix", "an empty string")
        }
        if let t = responseFormatType(c), !["text", "json_object", "json_schema"].contains(t) {
            return ("response_format", #"{"type": "text"}, {"type": "json_object"} or {"type": "json_schema", …}"#)
        }
        // Last, so that the chat route, which takes tools, can clear it alone.
        if count("tools", in: c) > 0 { return ("tools", "none here (tools are for /v1/chat/completions)") }
        return nil
    }

    /// Items of a list field, or keys of an object field (0 when absent or null).
    static func count(_ k: String, in c: KeyedDecodingContainer<AnyKey>) -> Int {
        let key = AnyKey(stringValue: k)
        if let n = (try? c.nestedUnkeyedContainer(forKey: key))?.count { return n }
        return (try? c.nestedContainer(keyedBy: AnyKey.self, forKey: key))?.allKeys.count ?? 0
    }

    static func responseFormatType(_ c: KeyedDecodingContainer<AnyKey>) -> String? {
        guard let f = try? c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey(stringValue: "response_format")) else { return nil }
        return (try? f.decodeIfPresent(String.self, forKey: AnyKey(stringValue: "type"))) ?? nil
    }

    /// A 400 for the first unsupported option, if any.
    func checkSupported() throws {
        if let u = unsupported {
            throw APIError.invalid("`\(u.field)` is not supported by this server; leave it out or send \(u.accepted)", param: u.field,
                                   code: "unsupported_parameter")
        }
    }

    var includeUsage: Bool { streamOptions?.includeUsage ?? false }
    var continuousUsage: Bool { includeUsage && streamOptions?.continuousUsageStats == true }

    /// A completion's `logprobs`: alternatives per token (0–20), or nil when not asked for.
    func completionLogprobs() throws -> Int? {
        if logprobsFlag == true {
            throw APIError.invalid("logprobs of a completion is a number of alternatives per token (0–\(GenerationService.maxLogprobs)), not true",
                                   param: "logprobs")
        }
        return try logprobsCount.map { try GenerationService.logprobsCount($0, param: "logprobs") }
    }

    /// A chat completion's `logprobs` (true or false) and `top_logprobs` (0–20, only with logprobs): alternatives per
    /// token, or nil when not asked for.
    func chatLogprobs() throws -> Int? {
        if logprobsCount != nil {
            throw APIError.invalid("logprobs of a chat completion is true or false (with top_logprobs for alternatives)", param: "logprobs")
        }
        guard logprobsFlag == true else {
            if let t = topLogprobs, t > 0 { throw APIError.invalid("top_logprobs needs logprobs: true", param: "top_logprobs") }
            return nil
        }
        return try GenerationService.logprobsCount(topLogprobs ?? 0, param: "top_logprobs")
    }

    /// vLLM's `prompt_logprobs` (0–20 alternatives), or nil when not asked for; not in streams (as vLLM refuses it).
    func promptLogprobsCount() throws -> Int? {
        guard let n = promptLogprobs else { return nil }
        if stream == true {
            throw APIError.invalid("prompt_logprobs are not returned in streams; send stream: false", param: "prompt_logprobs")
        }
        return try GenerationService.logprobsCount(n, param: "prompt_logprobs")
    }

    /// Choices per prompt (`n`, default 1): a 400 outside 1...maxChoices.
    func choices() throws -> Int {
        let n = self.n ?? 1
        guard (1...Self.maxChoices).contains(n) else {
            throw APIError.invalid("n must be between 1 and \(Self.maxChoices) (got \(n))", param: "n")
        }
        return n
    }

    static let maxChoices = 64
}

struct CompletionRequest: Decodable, Sendable {
    var prompt: PromptInput
    var options: GenerationOptions

    enum CodingKeys: String, CodingKey { case prompt }

    init(from decoder: any Decoder) throws {
        prompt = try decoder.container(keyedBy: CodingKeys.self).decode(PromptInput.self, forKey: .prompt)
        options = try GenerationOptions(from: decoder)
    }
}

/// POST /tokenize (vLLM's): a prompt (llama.cpp's `content`), or chat messages rendered with the model's template (with
/// the fields of a chat request that change the prompt: tools, tool_choice, chat_template_kwargs).
struct TokenizeRequest: Decodable, Sendable {
    var model: String?
    var prompt: String?
    var messages: [ChatMessage]?
    var addSpecialTokens: Bool?
    enum CodingKeys: String, CodingKey { case model, prompt, content, messages, addSpecialTokens = "add_special_tokens" }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        prompt = try c.decodeIfPresent(String.self, forKey: .prompt) ?? c.decodeIfPresent(String.self, forKey: .content)
        messages = try c.decodeIfPresent([ChatMessage].self, forKey: .messages)
        addSpecialTokens = try c.decodeIfPresent(Bool.self, forKey: .addSpecialTokens)
    }
}

struct TokenizeResponse: Encodable, Sendable {
    var count: Int
    var maxModelLen: Int
    var tokens: [Int]
    enum CodingKeys: String, CodingKey { case count, maxModelLen = "max_model_len", tokens }
}

/// POST /detokenize (vLLM's).
struct DetokenizeRequest: Decodable, Sendable {
    var model: String?
    var tokens: [Int]
}

/// POST /v1/rebalance.
struct RebalanceRequest: Decodable, Sendable {
    var dryRun: Bool?
    enum CodingKeys: String, CodingKey { case dryRun = "dry_run" }
}

/// Token counts, as OpenAI's usage object: `prompt_tokens_details.cached_tokens` is how many prompt tokens came from
/// the prefix cache instead of being computed.
struct Usage: Encodable, Sendable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int
    var cachedTokens = 0
    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
        case details = "prompt_tokens_details"
    }

    init(prompt: Int, completion: Int, cached: Int = 0) {
        (promptTokens, completionTokens, totalTokens, cachedTokens) = (prompt, completion, prompt + completion, cached)
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(completionTokens, forKey: .completionTokens)
        try c.encode(totalTokens, forKey: .totalTokens)
        try c.encode(["cached_tokens": cachedTokens], forKey: .details)
    }
}

/// A completion choice; `logprobs` is null unless the request asked for them.
struct CompletionChoice: Encodable, Sendable {
    var index: Int
    var text: String
    var logprobs: CompletionLogprobs? = nil
    var finishReason: String?
    /// Present when the request asked for prompt_logprobs.
    var promptLogprobs: [PromptLogprobs?]? = nil
    /// vLLM's: the stop string or stop token id that ended the choice (null for EOS or length); sent with its end.
    var stopReason: StopMatch? = nil
    enum CodingKeys: String, CodingKey {
        case index, text, logprobs, finishReason = "finish_reason", promptLogprobs = "prompt_logprobs", stopReason = "stop_reason"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        try c.encode(logprobs, forKey: .logprobs)
        try c.encode(finishReason, forKey: .finishReason)
        if finishReason != nil { try c.encode(stopReason, forKey: .stopReason) }
        try c.encodeIfPresent(promptLogprobs, forKey: .promptLogprobs)
    }
}

struct CompletionResponse: Encodable, Sendable {
    var id: String
    var object = "text_completion"
    var created: Int
    var model: String
    var choices: [CompletionChoice]
    var usage: Usage?
}

struct ModelCard: Encodable, Sendable {
    var id: String
    var object = "model"
    var created: Int
    var ownedBy = "moe-serve"
    var maxModelLen: Int
    enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by", maxModelLen = "max_model_len" }
}

struct ListResponse<T: Encodable & Sendable>: Encodable, Sendable {
    var object = "list"
    var data: [T]
}
