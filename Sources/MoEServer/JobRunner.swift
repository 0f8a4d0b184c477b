import Foundation
import MoECore

/// Runs the pending items of stored jobs through the generation service, a bounded number at a time, and writes
/// each result to the store the moment it is done. Started at boot, it resumes whatever a previous run left.
public final class JobRunner: @unchecked Sendable {
    let store: JobStore
    let service: GenerationService
    let maxConcurrent: Int
    private let lock = NSLock()
    private var tasks: [String: Task<Void, Never>] = [:]   // "job/index" → its generation
    private var stopping = false
    private var wakeUp: AsyncStream<Void>.Continuation?

    public init(store: JobStore, service: GenerationService, maxConcurrent: Int) {
        self.store = store
        self.service = service
        self.maxConcurrent = maxConcurrent
    }

    /// Picks up new work now (after a job is created).
    public func notify() { lock.withLock { _ = wakeUp?.yield() } }

    /// Stops starting items; running ones finish or are cancelled by `cancelAll`.
    public func stop() {
        lock.withLock {
            stopping = true
            wakeUp?.finish()
        }
    }

    public var inFlight: Int { lock.withLock { tasks.count } }

    /// Cancels a job's running items (their items stay without a result).
    public func cancel(job: String) {
        lock.withLock { for (k, t) in tasks where k.hasPrefix(job + "/") { t.cancel() } }
    }

    public func cancelAll() { lock.withLock { for t in tasks.values { t.cancel() } } }

    public func run() async {
        let (signals, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        lock.withLock { wakeUp = continuation }
        var iterator = signals.makeAsyncIterator()
        while !lock.withLock({ stopping }) {
            let busy = lock.withLock { Set(tasks.keys) }
            let room = maxConcurrent - busy.count
            let items = room > 0 ? ((try? store.pending(limit: room, excluding: busy)) ?? []) : []
            for item in items {
                let key = "\(item.jobId)/\(item.index)"
                let t = Task { [self] in
                    await process(item)
                    lock.withLock { _ = tasks.removeValue(forKey: key) }
                    notify()
                }
                lock.withLock { tasks[key] = t }
            }
            if items.isEmpty {
                // Wait for a new job, a finished item, or a periodic re-check.
                let tick = Task { try? await Task.sleep(nanoseconds: 200_000_000); self.notify() }
                _ = await iterator.next()
                tick.cancel()
            }
        }
    }

    func process(_ item: JobItem) async {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(item.request.utf8)) as? [String: Any] else {
            try? store.finish(item, result: resultLine(item, obj: [:], error: "stored request is not JSON"), failed: true)
            return
        }
        do {
            let fields = try JSONDecoder().decode(SamplingFields.self, from: Data(item.request.utf8))
            let ids: [Int32]
            if let text = obj["prompt"] as? String { ids = try service.tokenize(text) }
            else if let list = obj["prompt"] as? [Int] { ids = list.map(Int32.init) }
            else { throw APIError.invalid("each prompt must be text or a list of token ids", param: "prompt") }
            let p = try service.prepare(ids, fields, defaultMaxTokens: 16)
            var out: (text: String, finish: String, usage: Usage)
            while true {
                do {
                    out = try await service.complete(p)
                    break
                } catch let e as APIError where e.status == .tooManyRequests {
                    try await Task.sleep(nanoseconds: 100_000_000)   // interactive requests filled the queue
                }
            }
            // Cancelled meanwhile (job deleted, or shutdown): leave the item without a result.
            if Task.isCancelled || out.finish == "cancelled" { return }
            var line = obj
            line["text"] = out.text
            line["finish_reason"] = out.finish
            line["usage"] = ["prompt_tokens": out.usage.promptTokens, "completion_tokens": out.usage.completionTokens,
                             "total_tokens": out.usage.totalTokens]
            try store.finish(item, result: resultLine(item, obj: line, error: nil), failed: false)
        } catch let e as APIError {
            try? store.finish(item, result: resultLine(item, obj: obj, error: e.message), failed: true)
        } catch {
            if Task.isCancelled { return }
            try? store.finish(item, result: resultLine(item, obj: obj, error: "\(error)"), failed: true)
        }
    }

    func resultLine(_ item: JobItem, obj: [String: Any], error: String?) -> String {
        var o: [String: Any] = ["index": item.index]
        for k in ["prompt", "text", "finish_reason", "usage"] { if let v = obj[k] { o[k] = v } }
        if let e = error { o["error"] = e }
        let data = (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
