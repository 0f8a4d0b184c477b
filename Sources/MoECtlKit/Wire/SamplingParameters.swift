/// Sampling fields shared by `/v1/completions`, `/v1/jobs` and each job prompt.
/// A nil field is left out of the request so that the server's default (or the job-level value) applies.
public struct SamplingParameters: Sendable, Equatable {
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var topK: Int?
    public var seed: Int?
    public var stop: [String]?

    public init(maxTokens: Int? = nil, temperature: Double? = nil, topP: Double? = nil,
                topK: Int? = nil, seed: Int? = nil, stop: [String]? = nil) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
        self.stop = stop
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
        return nil
    }

    func encodeFields(into container: inout KeyedEncodingContainer<WireKey>) throws {
        try container.encodeIfPresent(maxTokens, forKey: "max_tokens")
        try container.encodeIfPresent(temperature, forKey: "temperature")
        try container.encodeIfPresent(topP, forKey: "top_p")
        try container.encodeIfPresent(topK, forKey: "top_k")
        try container.encodeIfPresent(seed, forKey: "seed")
        try container.encodeIfPresent(stop, forKey: "stop")
    }
}
