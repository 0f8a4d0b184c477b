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

/// `stop` as a string or a list of strings.
struct StopInput: Decodable, Sendable {
    var values: [String]
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { values = [] }
        else if let s = try? c.decode(String.self) { values = [s] }
        else { values = try c.decode([String].self) }
    }
}

struct StreamOptions: Decodable, Sendable {
    var includeUsage: Bool?
    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
}

/// The sampling and length fields shared by completions, chat completions and jobs.
struct SamplingFields: Decodable, Sendable {
    var maxTokens: Int?
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var seed: Int?
    var stop: StopInput?
    var ignoreEOS: Bool?

    enum CodingKeys: String, CodingKey {
        case maxTokens = "max_tokens", temperature, topP = "top_p", topK = "top_k", seed, stop, ignoreEOS = "ignore_eos"
    }
}

struct CompletionRequest: Decodable, Sendable {
    var model: String?
    var prompt: PromptInput
    var sampling: SamplingFields
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Int?

    enum CodingKeys: String, CodingKey { case model, prompt, stream, streamOptions = "stream_options", n }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        prompt = try c.decode(PromptInput.self, forKey: .prompt)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        streamOptions = try c.decodeIfPresent(StreamOptions.self, forKey: .streamOptions)
        n = try c.decodeIfPresent(Int.self, forKey: .n)
        sampling = try SamplingFields(from: decoder)
    }
}

struct ChatMessage: Codable, Sendable {
    var role: String
    var content: String
}

struct ChatRequest: Decodable, Sendable {
    var model: String?
    var messages: [ChatMessage]
    var sampling: SamplingFields
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Int?
    var maxCompletionTokens: Int?

    enum CodingKeys: String, CodingKey {
        case model, messages, stream, streamOptions = "stream_options", n, maxCompletionTokens = "max_completion_tokens"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        messages = try c.decode([ChatMessage].self, forKey: .messages)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        streamOptions = try c.decodeIfPresent(StreamOptions.self, forKey: .streamOptions)
        n = try c.decodeIfPresent(Int.self, forKey: .n)
        maxCompletionTokens = try c.decodeIfPresent(Int.self, forKey: .maxCompletionTokens)
        sampling = try SamplingFields(from: decoder)
    }
}

struct Usage: Codable, Sendable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int
    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }
}

struct CompletionChoice: Encodable, Sendable {
    var index: Int
    var text: String
    var logprobs: String? = nil
    var finishReason: String?
    enum CodingKeys: String, CodingKey { case index, text, logprobs, finishReason = "finish_reason" }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        try c.encodeNil(forKey: .logprobs)
        try c.encode(finishReason, forKey: .finishReason)
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

struct ChatChoice: Encodable, Sendable {
    var index: Int
    var message: ChatMessage?
    var delta: ChatDelta?
    var finishReason: String?
    enum CodingKeys: String, CodingKey { case index, message, delta, finishReason = "finish_reason" }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encodeIfPresent(message, forKey: .message)
        try c.encodeIfPresent(delta, forKey: .delta)
        try c.encode(finishReason, forKey: .finishReason)
    }
}

struct ChatDelta: Encodable, Sendable {
    var role: String?
    var content: String?
}

struct ChatResponse: Encodable, Sendable {
    var id: String
    var object: String
    var created: Int
    var model: String
    var choices: [ChatChoice]
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
