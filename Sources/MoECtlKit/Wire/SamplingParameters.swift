/// Sampling fields shared by `/v1/completions`, `/v1/jobs` and each job prompt.
/// A nil field is left out of the request so that the server's default (or the job-level value) applies.
public struct SamplingParameters: Sendable, Equatable {
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var topK: Int?
    public var seed: Int?
    public var stop: [String]?
    public var minP: Double?
    public var presencePenalty: Double?
    public var frequencyPenalty: Double?
    public var repetitionPenalty: Double?
    public var minTokens: Int?
    public var stopTokenIds: [Int]?
    public var constraint: OutputConstraint?

    public init(maxTokens: Int? = nil, temperature: Double? = nil, topP: Double? = nil,
                topK: Int? = nil, seed: Int? = nil, stop: [String]? = nil, presencePenalty: Double? = nil,
                frequencyPenalty: Double? = nil, repetitionPenalty: Double? = nil, minTokens: Int? = nil,
                stopTokenIds: [Int]? = nil, minP: Double? = nil, constraint: OutputConstraint? = nil) {
        self.constraint = constraint
        self.minP = minP
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
        self.stop = stop
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.repetitionPenalty = repetitionPenalty
        self.minTokens = minTokens
        self.stopTokenIds = stopTokenIds
    }

    /// Catches values that cannot be right before a request is sent, so that they are usage errors
    /// (exit 64) naming the flag or field, not a server round trip. The server stays the authority on limits
    /// it alone knows, such as the model's context length.
    /// Returns the first problem found, phrased with the wire field names.
    public func problem() -> String? {
        if let maxTokens, maxTokens < 1 { return "max_tokens must be at least 1 (got \(maxTokens))" }
        if let temperature, !(temperature >= 0 && temperature.isFinite) {
            return "temperature must be 0 or more (got \(temperature))"
        }
        if let topP, !(topP > 0 && topP <= 1) { return "top_p must be in (0, 1] (got \(topP))" }
        if let topK, topK < 0 { return "top_k must be 0 or more (got \(topK))" }
        if let minP, !(minP >= 0 && minP <= 1) { return "min_p must be in [0, 1] (got \(minP))" }
        for (name, v) in [("presence_penalty", presencePenalty), ("frequency_penalty", frequencyPenalty)] {
            if let v, !(v >= -2 && v <= 2) { return "\(name) must be between -2 and 2 (got \(v))" }
        }
        if let repetitionPenalty, !(repetitionPenalty > 0 && repetitionPenalty.isFinite) {
            return "repetition_penalty must be greater than 0 (got \(repetitionPenalty))"
        }
        if let minTokens, minTokens < 0 || minTokens > (maxTokens ?? .max) {
            return "min_tokens must be between 0 and max_tokens (got \(minTokens))"
        }
        if let bad = stopTokenIds?.first(where: { $0 < 0 }) { return "stop_token_ids must be token ids, 0 or more (got \(bad))" }
        return nil
    }

    func encodeFields(into container: inout KeyedEncodingContainer<WireKey>) throws {
        try container.encodeIfPresent(maxTokens, forKey: "max_tokens")
        try container.encodeIfPresent(temperature, forKey: "temperature")
        try container.encodeIfPresent(topP, forKey: "top_p")
        try container.encodeIfPresent(topK, forKey: "top_k")
        try container.encodeIfPresent(minP, forKey: "min_p")
        try container.encodeIfPresent(seed, forKey: "seed")
        try container.encodeIfPresent(stop, forKey: "stop")
        try container.encodeIfPresent(presencePenalty, forKey: "presence_penalty")
        try container.encodeIfPresent(frequencyPenalty, forKey: "frequency_penalty")
        try container.encodeIfPresent(repetitionPenalty, forKey: "repetition_penalty")
        try container.encodeIfPresent(minTokens, forKey: "min_tokens")
        try container.encodeIfPresent(stopTokenIds, forKey: "stop_token_ids")
        try constraint?.encode(into: &container)
    }
}
