/// Limits of one step.
public struct SchedulerConfig: Sendable, Equatable {
    /// Tokens (prompt chunks + decode + draft positions) computed in one forward pass.
    public var maxBatchedTokens: Int
    /// Sequences running at once.
    public var maxSeqs: Int
    /// The model's attention window, if every layer has one: blocks wholly before it are freed as sequences grow.
    public var slidingWindow: Int?

    public init(maxBatchedTokens: Int = 2048, maxSeqs: Int = 64, slidingWindow: Int? = nil) {
        self.maxBatchedTokens = maxBatchedTokens
        self.maxSeqs = maxSeqs
        self.slidingWindow = slidingWindow
    }
}

/// One request as the scheduler sees it: tokens, not phases. `tokens` are the prompt and every verified output;
/// the first `computed` have their K/V in the cache. Each step grants it some of the rest (a prompt chunk, or its
/// newest token) plus, when it reaches the end, the draft tokens to verify.
public struct SchedRequest: Sendable {
    public let id: Int
    public var tokens: [Int32]
    public var computed = 0
    /// Draft tokens to verify after the newest token in the next step (set before `schedule`).
    public var spec: [Int32] = []
    public var started = false
    /// Whether its prompt may start from blocks in the prefix cache (not when every prompt position must be computed,
    /// e.g. for its log-probabilities).
    public var reusePrefix = true
    /// Prompt tokens taken from the prefix cache when it first started (nil before; a preempted request that starts
    /// again keeps its first count, as vLLM reports it).
    public var cachedPromptTokens: Int?
}

/// A request's share of one step: feed `tokens` (then `spec`) at positions from `start`, reading and writing K/V
/// through `table`. When `samples`, the last real token is the newest: the step yields its next token(s).
public struct ScheduledWork: Sendable, Equatable {
    public let id: Int
    public let start: Int
    public let tokens: [Int32]
    public let spec: [Int32]
    public let samples: Bool
    public let table: [Int32]
}

public struct StepPlan: Sendable, Equatable {
    public var work: [ScheduledWork] = []
    /// Requests preempted this step: their blocks are gone and they will recompute from scratch.
    public var preempted: [Int] = []
    public var tokens: Int { work.reduce(0) { $0 + $1.tokens.count + $1.spec.count } }
}

/// Continuous batching in the style of vLLM v1, independent of the model and of MPI. Each step grants tokens to
/// running requests first (oldest first), then admits waiting ones in arrival order with chunked prefill, within
/// the token budget and the sequence limit. When the KV pool runs out it preempts the newest running request
/// (freeing its blocks; it recomputes later) instead of failing. Arrival order is never overtaken, so nothing starves.
public struct Scheduler: Sendable {
    public let config: SchedulerConfig
    public private(set) var blocks: BlockManager
    public private(set) var requests: [Int: SchedRequest] = [:]
    public private(set) var waiting: [Int] = []
    public private(set) var running: [Int] = []
    /// Prompt tokens found in the prefix cache instead of being computed, since start.
    public private(set) var cachedPromptTokens = 0

    public init(config: SchedulerConfig, blocks: BlockManager) {
        self.config = config
        self.blocks = blocks
    }

    public var hasWork: Bool { !waiting.isEmpty || !running.isEmpty }

    public mutating func add(id: Int, prompt: [Int32], reusePrefix: Bool = true) {
        precondition(requests[id] == nil && !prompt.isEmpty)
        requests[id] = SchedRequest(id: id, tokens: prompt)
        requests[id]!.reusePrefix = reusePrefix
        waiting.append(id)
    }

    public mutating func setSpec(_ id: Int, _ spec: [Int32]) { requests[id]?.spec = spec }

    public func request(_ id: Int) -> SchedRequest? { requests[id] }

    public mutating func schedule() -> StepPlan {
        var plan = StepPlan()
        var budget = config.maxBatchedTokens
        var scheduled = Set<Int>()

        var i = 0
        while i < running.count {
            let id = running[i]
            guard budget > 0, let r = requests[id] else { i += 1; continue }
            let remaining = r.tokens.count - r.computed
            let n = min(remaining, budget)
            let spec = n == remaining ? Array(r.spec.prefix(max(0, budget - n))) : []
            var ok = blocks.allocate(for: id, tokens: r.computed + n + spec.count) != nil
            while !ok {
                // Out of blocks: the newest running request makes room (possibly this one).
                guard let victim = running.last(where: { !scheduled.contains($0) }) else { break }
                preempt(victim, into: &plan)
                if victim == id { break }
                ok = blocks.allocate(for: id, tokens: r.computed + n + spec.count) != nil
            }
            guard ok, running.contains(id) else { continue }   // preempted: `running` shrank, keep i
            plan.work.append(ScheduledWork(id: id, start: r.computed, tokens: Array(r.tokens[r.computed..<(r.computed + n)]),
                                           spec: spec, samples: n == remaining, table: blocks.table(id)))
            scheduled.insert(id)
            budget -= n + spec.count
            i += 1
        }

        // Admit waiting requests in arrival order; stop at the first that does not fit (no overtaking).
        while budget > 0 && running.count < config.maxSeqs, let id = waiting.first, var r = requests[id] {
            if !r.started {
                let hit = blocks.start(id, tokens: r.tokens, reuse: r.reusePrefix)
                // The last token must be computed to get logits; its K/V is rewritten with identical values.
                r.computed = min(hit, r.tokens.count - 1)
                cachedPromptTokens += r.computed
                if r.cachedPromptTokens == nil { r.cachedPromptTokens = r.computed }
                r.started = true
            }
            let n = min(r.tokens.count - r.computed, budget)
            guard blocks.allocate(for: id, tokens: r.computed + n) != nil else { requests[id] = r; break }
            requests[id] = r
            waiting.removeFirst()
            running.append(id)
            plan.work.append(ScheduledWork(id: id, start: r.computed, tokens: Array(r.tokens[r.computed..<(r.computed + n)]),
                                           spec: [], samples: r.computed + n == r.tokens.count, table: blocks.table(id)))
            budget -= n
        }
        return plan
    }

    /// Frees a running request's blocks and sends it back to the front of the queue to recompute later.
    mutating func preempt(_ id: Int, into plan: inout StepPlan) {
        blocks.free(id)
        running.removeAll { $0 == id }
        requests[id]?.computed = 0
        requests[id]?.started = false
        requests[id]?.spec = []
        waiting.insert(id, at: 0)
        plan.preempted.append(id)
    }

    /// After the forward pass: the work's real tokens and `accepted` of its draft tokens now have K/V in the cache,
    /// and `emitted` (accepted drafts + the next token) extend the request. Rejected drafts' blocks are released.
    public mutating func update(_ w: ScheduledWork, accepted: Int = 0, emitted: [Int32] = []) {
        guard var r = requests[w.id] else { return }
        r.computed = w.start + w.tokens.count + (w.samples ? accepted : 0)
        r.tokens += emitted
        r.spec = []
        requests[w.id] = r
        blocks.truncate(w.id, tokens: max(r.tokens.count, r.computed))
        blocks.commit(w.id, tokens: r.tokens, verified: r.computed)
        if let window = config.slidingWindow { blocks.freeBefore(w.id, position: r.computed - window + 1) }
    }

    /// Finished or cancelled: everything is freed at once.
    public mutating func remove(_ id: Int) {
        blocks.free(id)
        requests[id] = nil
        running.removeAll { $0 == id }
        waiting.removeAll { $0 == id }
    }
}
