/// Speculative decoding counters, with vLLM's definitions: a *draft* is one verification round of a sequence with
/// k > 0 drafted tokens; acceptance rate = accepted / drafted tokens; mean acceptance length = 1 + accepted / drafts.
public struct SpecStats: Sendable, Equatable {
    public var drafts = 0
    public var draftTokens = 0
    public var acceptedTokens = 0
    /// acceptedPerPosition[i]: drafts whose token i was accepted.
    public var acceptedPerPosition: [Int] = []
    /// The k used in the most recent step (auto changes it over time).
    public var k = 0

    public init() {}

    public var acceptanceRate: Double { draftTokens > 0 ? Double(acceptedTokens) / Double(draftTokens) : 0 }
    public var meanAcceptanceLength: Double { drafts > 0 ? 1 + Double(acceptedTokens) / Double(drafts) : 1 }

    public mutating func record(k: Int, accepted: Int) {
        guard k > 0 else { return }
        drafts += 1
        draftTokens += k
        acceptedTokens += accepted
        if acceptedPerPosition.count < k { acceptedPerPosition += Array(repeating: 0, count: k - acceptedPerPosition.count) }
        for i in 0..<accepted { acceptedPerPosition[i] += 1 }
    }

    public var json: [String: Any] {
        ["drafts": drafts, "draft_tokens": draftTokens, "accepted_tokens": acceptedTokens,
         "acceptance_rate": acceptanceRate, "mean_acceptance_length": meanAcceptanceLength,
         "accepted_per_position": acceptedPerPosition, "k": k]
    }
}
