import Foundation

/// Runs the pending items of stored jobs through the generation service, a bounded number at a time, and writes
/// each result to the store the moment it is done. Started at boot, it resumes whatever a previous run left.
public final class JobRunner: @unchecked Sendable {
    let store: JobStore
    let service: GenerationService
    let maxConcurrent: Int
    private let lock = NSLock()
    private var tasks: [String: Task<Void, Never>] = [:]   // "job/index" → its generation
    private var stopping = false
    /// Wake-ups for `run`: a job was created, an item finished, or `stop`. At most one is kept while `run` is busy,
    /// so none is lost and a burst of them costs one look at the store.
    private let signals: AsyncStream<Void>
    private let wakeUp: AsyncStream<Void>.Continuation

    public init(store: JobStore, service: GenerationService, maxConcurrent: Int) {
        self.store = store
        self.service = service
        self.maxConcurrent = maxConcurrent
        (signals, wakeUp) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Picks up new work now (after a job is created).
    public func notify() { wakeUp.yield() }

    /// Stops starting items; running ones finish or are cancelled by `cancelAll`.
    public func stop() {
        lock.withLock { stopping = true }
        wakeUp.finish()
    }

    /// Cancels a job's running items (their items stay without a result).
    public func cancel(job: String) {
        lock.withLock { for (k, t) in tasks where k.hasPrefix(job + "/") { t.cancel() } }
    }

    public func cancelAll() { lock.withLock { for t in tasks.values { t.cancel() } } }

    /// Starts pending items while there is room, then sleeps until signalled: an idle runner does not poll the store.
    /// Call once.
    public func run() async {
        var signal = signals.makeAsyncIterator()
        while !lock.withLock({ stopping }) {
            let busy = lock.withLock { Set(tasks.keys) }
            let room = maxConcurrent - busy.count
            var items: [JobItem] = []
            var storeFailed = false
            if room > 0 {
                do { items = try store.pending(limit: room, excluding: busy) } catch { storeFailed = true }
            }
            for item in items {
                let key = "\(item.jobId)/\(item.index)"
                // Registered before the task can finish and remove itself.
                lock.withLock {
                    tasks[key] = Task { [self] in
                        await process(item)
                        lock.withLock { _ = tasks.removeValue(forKey: key) }
                        notify()
                    }
                }
            }
            if items.isEmpty {
                // Nothing to start (none pending, or no room): wait for a signal. A store that could not be read is
                // tried again after a second.
                let retry = storeFailed ? Task { try? await Task.sleep(nanoseconds: 1_000_000_000); self.notify() } : nil
                _ = await signal.next()
                retry?.cancel()
            }
        }
    }

    /// Runs one item and stores its results line: the text, or the reason it failed. A cancelled item (its job
    /// deleted, or shutdown) is left without a result.
    func process(_ item: JobItem) async {
        let request: JobItemRequest
        do { request = try JSONDecoder().decode(JobItemRequest.self, from: Data(item.request.utf8)) } catch {
            try? store.finish(item, result: wireJSON(JobResultLine(index: item.index, error: "stored request is not a job item: \(error)")),
                              failed: true)
            return
        }
        func fail(_ message: String) {
            try? store.finish(item, result: wireJSON(JobResultLine(index: item.index, prompt: request.prompt, error: message)), failed: true)
        }
        do {
            let p = try service.prepare(service.ids(request.prompt), request.sampling, defaultMaxTokens: GenerationService.defaultMaxTokens)
            var out: Completed
            while true {
                do {
                    out = try await service.complete(p)
                    break
                } catch let e as APIError where e.status == .tooManyRequests {
                    try await Task.sleep(nanoseconds: 100_000_000)   // interactive requests filled the queue
                }
            }
            if Task.isCancelled || out.finish == "cancelled" { return }
            let line = JobResultLine(index: item.index, prompt: request.prompt, text: out.text, finishReason: out.finish, usage: out.usage)
            try store.finish(item, result: wireJSON(line), failed: false)
        } catch let e as APIError {
            fail(e.message)
        } catch {
            if Task.isCancelled { return }
            fail("\(error)")
        }
    }
}
