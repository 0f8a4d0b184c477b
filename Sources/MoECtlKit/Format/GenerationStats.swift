import Foundation

/// The stats line `generate` prints to stderr after the text.
public struct GenerationStats: Sendable, Equatable {
    /// Nil when the server reported no usage and there was nothing to count.
    public var tokens: Int?
    /// False when the server sent no usage and the count is the number of streamed pieces.
    public var tokensExact: Bool
    public var seconds: Double
    public var firstTokenSeconds: Double?
    public var finishReason: String?

    public init(tokens: Int?, tokensExact: Bool = true, seconds: Double, firstTokenSeconds: Double? = nil,
                finishReason: String? = nil) {
        self.tokens = tokens
        self.tokensExact = tokensExact
        self.seconds = seconds
        self.firstTokenSeconds = firstTokenSeconds
        self.finishReason = finishReason
    }

    /// e.g. `64 tokens in 2.31 s (27.7 tok/s, first token 0.12 s, finish: length)`
    public var line: String {
        var details: [String] = []
        var head = "done in \(String(format: "%.2f", seconds)) s"
        if let tokens {
            let count = tokensExact ? "\(tokens)" : "~\(tokens)"
            head = "\(count) token\(tokens == 1 ? "" : "s") in \(String(format: "%.2f", seconds)) s"
            details.append(String(format: "%.1f tok/s", seconds > 0 ? Double(tokens) / seconds : 0))
        }
        if let firstTokenSeconds { details.append(String(format: "first token %.2f s", firstTokenSeconds)) }
        if let finishReason { details.append("finish: \(finishReason)") }
        return details.isEmpty ? head : "\(head) (\(details.joined(separator: ", ")))"
    }
}
