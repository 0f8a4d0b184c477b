/// A job's status. Kept open (not an enum) so that a status a newer server adds is shown as-is
/// rather than failing the whole response.
public struct JobStatus: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let queued = JobStatus(rawValue: "queued")
    public static let running = JobStatus(rawValue: "running")
    public static let completed = JobStatus(rawValue: "completed")
    public static let cancelled = JobStatus(rawValue: "cancelled")
    public static let failed = JobStatus(rawValue: "failed")

    /// Only these end a `--wait`; an unknown status is assumed to be still in progress.
    public var isTerminal: Bool { self == .completed || self == .cancelled || self == .failed }
    public var description: String { rawValue }
}

/// The job object returned by every `/v1/jobs` endpoint.
public struct Job: Decodable, Sendable, Equatable {
    public var id: String
    public var status: JobStatus
    public var total: Int
    public var completed: Int
    public var failed: Int
    public var created: Double?
    public var finishedAt: Double?

    enum CodingKeys: String, CodingKey {
        case id, status, total, completed, failed, created
        case finishedAt = "finished_at"
    }

    public init(id: String, status: JobStatus, total: Int, completed: Int = 0, failed: Int = 0,
                created: Double? = nil, finishedAt: Double? = nil) {
        self.id = id
        self.status = status
        self.total = total
        self.completed = completed
        self.failed = failed
        self.created = created
        self.finishedAt = finishedAt
    }

    /// Items that will not run again, successfully or not: what the progress bar fills.
    /// Saturating, because the counts come from the server and an overflow would trap.
    public var finished: Int {
        let (sum, overflow) = completed.addingReportingOverflow(failed)
        return overflow ? Int.max : sum
    }
}

public struct JobList: Decodable, Sendable, Equatable {
    public var data: [Job]
}

/// One prompt of a batch job; `overrides` win over the job-level sampling fields on the server.
public struct PromptItem: Encodable, Sendable, Equatable {
    public var prompt: String
    public var overrides: SamplingParameters

    public init(prompt: String, overrides: SamplingParameters = .init()) {
        self.prompt = prompt
        self.overrides = overrides
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: WireKey.self)
        try container.encode(prompt, forKey: "prompt")
        try overrides.encodeFields(into: &container)
    }
}

/// `POST /v1/jobs` request body.
public struct JobRequest: Encodable, Sendable, Equatable {
    public var prompts: [PromptItem]
    public var sampling: SamplingParameters

    public init(prompts: [PromptItem], sampling: SamplingParameters = .init()) {
        self.prompts = prompts
        self.sampling = sampling
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: WireKey.self)
        try container.encode(prompts, forKey: "prompts")
        try sampling.encodeFields(into: &container)
    }
}

/// The part of a results line that moectl relies on; the line itself is passed through untouched.
public struct JobResultLine: Decodable, Sendable, Equatable {
    public var index: Int
}
