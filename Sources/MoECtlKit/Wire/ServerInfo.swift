/// `GET /health`. Only `status` is required: the rest is display-only, and a server that adds or drops
/// a field should still answer a health check.
public struct HealthStatus: Decodable, Sendable, Equatable {
    public var status: String
    public var model: String?
    public var workers: Int?
    public var draft: Bool?
    public var running: Int?
    public var waiting: Int?
    public var uptimeSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case status, model, workers, draft, running, waiting
        case uptimeSeconds = "uptime_s"
    }
}

/// `GET /v1/models`.
public struct ModelList: Decodable, Sendable, Equatable {
    public var data: [ModelInfo]
}

public struct ModelInfo: Decodable, Sendable, Equatable {
    public var id: String
    public var ownedBy: String?
    public var created: Double?
    public var maxModelLen: Int?

    enum CodingKeys: String, CodingKey {
        case id, created
        case ownedBy = "owned_by"
        case maxModelLen = "max_model_len"
    }
}
