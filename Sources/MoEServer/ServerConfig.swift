/// HTTP-side settings (the `api` section of the cluster config).
public struct ServerConfig: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Bearer token every route but /health requires, when set.
    public var token: String?
    /// Largest request body accepted, in bytes; a larger one gets 413.
    public var maxBodyBytes = 4 << 20
    /// Job items run at once.
    public var jobConcurrency = 16
    /// On SIGTERM/SIGINT, how long running requests may take to finish.
    public var shutdownTimeoutSeconds = 30.0
    public var jobsDB = "moe-jobs.sqlite"
    /// Days a stored /v1/responses response is kept (0: for ever).
    public var responseRetentionDays = 30
    public init() {}
}

/// Facts /health reports about the cluster behind the API.
public struct ClusterInfo: Sendable {
    public var workers: Int
    public var draft: Bool
    public init(workers: Int, draft: Bool) {
        self.workers = workers
        self.draft = draft
    }
}
