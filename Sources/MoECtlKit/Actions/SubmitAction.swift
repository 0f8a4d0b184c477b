/// `moectl submit`.
public struct SubmitAction: Sendable {
    public var path: String
    public var sampling: SamplingParameters
    public var wait: Bool
    public var json: Bool
    public var pollInterval: Double

    public init(path: String, sampling: SamplingParameters, wait: Bool = false, json: Bool = false,
                pollInterval: Double = 1) {
        self.path = path
        self.sampling = sampling
        self.wait = wait
        self.json = json
        self.pollInterval = pollInterval
    }

    public func run(client: APIClient, console: Console) async throws {
        // Read and check the whole file first: a bad line must not leave a half-submitted job behind.
        let prompts = try PromptFile.load(path: path)
        let submitted = try await client.submitJob(JobRequest(prompts: prompts, sampling: sampling))
        // Without --json stdout gets the id alone, at once, so `ID=$(moectl submit f.jsonl)` works and a
        // script reading the pipe has the id even while --wait is still polling.
        if !json { console.outLine(submitted.value.id) }
        guard wait else {
            if json { console.outRaw(submitted.raw) }
            return
        }
        let waiter = JobWaiter(client: client, console: console, interval: pollInterval)
        let final = try await waiter.wait(for: submitted)
        if json { console.outRaw(final.raw) }
        guard final.value.status == .completed else { throw MoECtlError.jobEnded(final.value) }
    }
}
