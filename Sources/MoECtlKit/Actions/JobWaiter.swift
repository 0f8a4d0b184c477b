/// Polls a job until it reaches a final status, drawing progress on stderr.
public struct JobWaiter: Sendable {
    public var client: APIClient
    public var console: Console
    public var interval: Double
    /// Upper bound on a Retry-After pause, so a misbehaving header cannot park the client for hours.
    static let maxBackoff = 60

    public init(client: APIClient, console: Console, interval: Double) {
        self.client = client
        self.console = console
        self.interval = interval
    }

    public func wait(for submitted: Fetched<Job>) async throws -> Fetched<Job> {
        var display = ProgressDisplay(isTerminal: console.stderrIsTerminal)
        var current = submitted
        show(current.value, on: &display)
        defer { if let end = display.finish() { console.err(end) } }
        while !current.value.status.isTerminal {
            try await Task.sleep(for: .seconds(interval))
            do {
                current = try await client.job(id: current.value.id)
            } catch let MoECtlError.http(failure) where failure.status == 429 {
                // A busy server is no reason to give up on a job that is still running.
                let pause = min(Int(failure.retryAfter ?? "") ?? 1, Self.maxBackoff)
                try await Task.sleep(for: .seconds(max(pause, 1)))
                continue
            }
            show(current.value, on: &display)
        }
        return current
    }

    private func show(_ job: Job, on display: inout ProgressDisplay) {
        if let text = display.update(JobFormatting.progressLine(job)) { console.err(text) }
    }
}
