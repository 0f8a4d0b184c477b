/// `POST /v1/completions` request body.
public struct CompletionRequest: Encodable, Sendable, Equatable {
    public var prompt: String
    public var model: String?
    public var sampling: SamplingParameters
    public var stream: Bool
    /// Asks for a final usage chunk, so the stats line reports the server's token count instead of a guess.
    public var includeUsage: Bool

    public init(prompt: String, model: String? = nil, sampling: SamplingParameters = .init(),
                stream: Bool = false, includeUsage: Bool = false) {
        self.prompt = prompt
        self.model = model
        self.sampling = sampling
        self.stream = stream
        self.includeUsage = includeUsage
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: WireKey.self)
        try container.encodeIfPresent(model, forKey: "model")
        try container.encode(prompt, forKey: "prompt")
        try sampling.encodeFields(into: &container)
        try container.encode(stream, forKey: "stream")
        if stream && includeUsage {
            try container.encode(["include_usage": true], forKey: "stream_options")
        }
    }
}

/// A completion response, and also one streamed chunk (same shape; `text` is then the new piece).
public struct CompletionResponse: Decodable, Sendable, Equatable {
    public var id: String?
    public var model: String?
    public var created: Double?
    public var choices: [CompletionChoice]
    public var usage: TokenUsage?

    enum CodingKeys: String, CodingKey {
        case id, model, created, choices, usage
    }
}

public struct CompletionChoice: Decodable, Sendable, Equatable {
    public var index: Int?
    public var text: String
    public var finishReason: String?

    enum CodingKeys: String, CodingKey {
        case index, text
        case finishReason = "finish_reason"
    }

    public init(index: Int? = 0, text: String, finishReason: String? = nil) {
        self.index = index
        self.text = text
        self.finishReason = finishReason
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        index = try container.decodeIfPresent(Int.self, forKey: .index)
        // A null text in a chunk carries no new piece; treating it as empty keeps the stream going.
        text = try container.decodeIfPresent(String.self, forKey: .text) ?? ""
        finishReason = try container.decodeIfPresent(String.self, forKey: .finishReason)
    }
}

public struct TokenUsage: Decodable, Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }

    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens
    }
}
