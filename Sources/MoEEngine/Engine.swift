import Foundation
import MoECore
import MoEModel
import MoEScheduler

/// The serving core: continuous batching over the paged KV cache with optional speculative decoding. Requests are
/// submitted from any thread and receive their tokens through a callback; `step()` runs one scheduler step (one
/// forward pass through the verifier group) on the thread that owns the model.
public final class Engine: @unchecked Sendable {
    /// MOE_AUTOK_TRACE=1: one line per step on stderr with the k auto chose and the rates and step costs behind it.
    static let traceAutoK = ProcessInfo.processInfo.environment["MOE_AUTOK_TRACE"] != nil
    public let transformer: Transformer
    public let cache: KVCache
    public let config: EngineConfig
    public let draft: DraftSource?
    var scheduler: Scheduler
    var adaptive: AdaptiveK?
    public private(set) var stats = EngineStats()
    /// Load-balance, traffic, speculation and latency statistics (readable from any thread).
    public let collector: StatsCollector
    /// Re-places experts from a load matrix (set by the cluster when there are expert workers); runs on the stepping
    /// thread between steps. Returns a report for the API.
    public var rebalancer: ((_ load: [[Double]], _ dryRun: Bool) throws -> [String: Any])?
    /// Rebalance automatically every this many steps (0: only when asked).
    public var rebalanceEverySteps = 0

    struct Live {
        let request: EngineRequest
        let sampler: Sampler
        let onEvent: @Sendable (EngineEvent) -> Void
        let submitted: Double
        var lastToken = 0.0
        var generated = 0
        var draftStarted = false
        var proposal: Proposal?
        /// Penalties and min_tokens, and the history they read (both nil when the request has none).
        let adjustment: LogitsAdjustment?
        var history: TokenHistory?
        /// Filled as prompt chunks are computed (when the request asks for them), sent before the first token.
        var promptLogprobs: [PositionLogprobs?]
        var promptLogprobsSent: Bool
        /// Where the output stands in the request's grammar (nil without one).
        var grammarState: TokenGrammar.State?

        init(request: EngineRequest, onEvent: @escaping @Sendable (EngineEvent) -> Void, submitted: Double) {
            self.request = request
            sampler = Sampler(request.params)
            self.onEvent = onEvent
            self.submitted = submitted
            adjustment = request.adjustment
            history = adjustment.map { TokenHistory(prompt: request.prompt, keepPrompt: $0.repetitionPenalty != 1, keepRecent: $0.recentNeeded) }
            promptLogprobs = request.promptLogprobs == nil ? [] : Array(repeating: nil, count: request.prompt.count)
            promptLogprobsSent = request.promptLogprobs == nil
            grammarState = request.grammar?.start
        }

        /// Runs `body` on logits row `row` as sampling reads it: masked by the grammar, then adjusted, for the output
        /// so far extended by `extra` (the drafts before that row, in verification). Drafts that left the grammar
        /// leave their row unmasked: such a row is never read, as the draft before it is rejected.
        func sampling<T>(_ row: UnsafeBufferPointer<Float>, after extra: ArraySlice<Int32> = [],
                         _ body: (UnsafeBufferPointer<Float>) -> T) -> T {
            if adjustment == nil && grammarState == nil { return body(row) }
            var out = Array(row)
            out.withUnsafeMutableBufferPointer { buf in
                if let g = request.grammar, let state = grammarState, let s = g.advance(state, by: extra) { g.mask(buf, after: s) }
                if let adjustment, let history { adjustment.apply(buf, history.appending(extra)) }
            }
            return out.withUnsafeBufferPointer(body)
        }
    }
    var live: [Int: Live] = [:]

    // Requests and cancellations arrive from other threads; the stepping thread takes them at the start of a step.
    private let inboxLock = NSCondition()
    private var inbox: [(Int, EngineRequest, @Sendable (EngineEvent) -> Void, Double)] = []
    private var tasks: [() -> Void] = []
    private var cancels: [Int] = []
    private var nextId = 1
    private var outstanding = 0
    private var running = false
    private var loopThread: Thread?

    public init(transformer: Transformer, config: EngineConfig, draft: DraftSource? = nil) {
        self.transformer = transformer
        self.config = config
        let spec = transformer.spec
        // From memory, but never more than max_num_seqs full contexts need.
        let perBlock = KVCache.bytesPerToken(spec, dtype: config.kvDType) * config.blockSize
        let useful = config.maxSeqs * ((spec.maxPositions + config.blockSize - 1) / config.blockSize) + 1
        let blocks = config.kvBlocks ?? max(4, min(config.kvMemoryBytes / perBlock, useful))
        cache = KVCache(spec: spec, blockSize: config.blockSize, numBlocks: blocks, dtype: config.kvDType)
        // Blocks before a sliding window can be freed only if every layer has one.
        let window = spec.slidingWindows.allSatisfy { $0 != nil } ? spec.slidingWindows.compactMap { $0 }.max() : nil
        scheduler = Scheduler(config: SchedulerConfig(maxBatchedTokens: config.maxBatchedTokens, maxSeqs: config.maxSeqs,
                                                      slidingWindow: window),
                              blocks: BlockManager(numBlocks: blocks, blockSize: config.blockSize))
        collector = StatsCollector(spec: spec, windowSteps: config.statsWindow)
        if let t = transformer.experts as? ExpertTrafficSource { collector.seed(t.traffic) }
        self.draft = config.speculation == .off ? nil : draft
        if case .auto(let maxK) = config.speculation, let draft {
            adaptive = AdaptiveK.forModel(transformer, maxK: maxK, expertFormat: config.expertFormat)
            adaptive!.draftBytes = draft.bytesPerStep
            adaptive!.draftParams = draft.paramsPerStep
        }
    }

    /// The most tokens one request may hold: the model's context, and the whole pool (minus a block of slack).
    public var contextLimit: Int { min(transformer.spec.maxPositions, (cache.numBlocks - 1) * cache.blockSize) }

    /// The KV-cache estimate 2 × layers × kv_heads × head_dim × tokens × bytes, and what the pool holds.
    public var cacheSummary: String {
        let s = transformer.spec, d = cache.dtype
        let width = s.mla.map { "\(s.headDim) (kv_lora_rank \($0.kvLoraRank) + qk_rope_head_dim \($0.ropeDim))" } ?? "\(s.headDim) head dim"
        let row = d == .int8 ? "(\(width) × 1 byte + a 4-byte scale)" : "\(width) × \(d == .f32 ? 4 : 2) bytes"
        let heads = s.mla == nil ? "2 × \(s.numLayers) layers × \(s.numKVHeads) kv heads" : "\(s.numLayers) layers × 1 latent row (key and value)"
        let per = KVCache.bytesPerToken(s, dtype: d)
        return "KV cache (\(d.rawValue)): \(heads) × \(row) = \(per) bytes per token; pool of \(cache.numBlocks) blocks × \(cache.blockSize) tokens = \(cache.capacityTokens) tokens (\(String(format: "%.1f", Double(cache.byteCount) / Double(1 << 20))) MiB)"
    }

    // MARK: - Requests (any thread)

    /// Queues a request; its events arrive on the stepping thread. Throws if it can never fit.
    @discardableResult
    public func submit(_ r: EngineRequest, onEvent: @escaping @Sendable (EngineEvent) -> Void) throws -> Int {
        try submit([(r, onEvent)])[0]
    }

    /// Submits requests together: the next step takes all of them in (a completion with several prompts is batched
    /// whatever the timing). Throws, submitting none, if any is refused.
    public func submit(_ rs: [(EngineRequest, @Sendable (EngineEvent) -> Void)]) throws -> [Int] {
        for (r, _) in rs {
            guard !r.prompt.isEmpty else { throw EngineError.emptyPrompt }
            if let bad = r.prompt.first(where: { $0 < 0 || Int($0) >= transformer.spec.vocabSize }) {
                throw EngineError.tokenOutOfVocabulary(bad, vocab: transformer.spec.vocabSize)
            }
            let need = r.prompt.count + max(r.maxTokens, 1)
            guard need <= contextLimit else { throw EngineError.promptTooLong(tokens: need, limit: contextLimit) }
        }
        inboxLock.lock()
        defer { inboxLock.unlock() }
        let now = monotonicSeconds()
        let ids = rs.map { r, onEvent -> Int in
            let id = nextId
            nextId += 1
            outstanding += 1
            inbox.append((id, r, onEvent, now))
            return id
        }
        inboxLock.signal()
        return ids
    }

    /// Cancels a request: its blocks are freed at the next step and it receives `.finished(.cancelled)`.
    public func cancel(_ id: Int) {
        inboxLock.lock()
        cancels.append(id)
        inboxLock.signal()
        inboxLock.unlock()
    }

    /// Requests submitted and not yet finished (queued or running).
    public var outstandingRequests: Int {
        inboxLock.lock()
        defer { inboxLock.unlock() }
        return outstanding
    }

    /// Running and waiting requests as of the last step (for health and stats; read from any thread).
    public var loadSnapshot: (running: Int, waiting: Int) {
        inboxLock.lock()
        defer { inboxLock.unlock() }
        return snapshot
    }
    private var snapshot = (running: 0, waiting: 0)

    /// Share of the KV pool's blocks held by sequences (blocks kept only for prefix reuse count as free, as vLLM's
    /// kv_cache_usage_perc counts them), as of the last step.
    public var kvCacheUsage: Double {
        inboxLock.lock()
        defer { inboxLock.unlock() }
        return kvUsage
    }
    private var kvUsage = 0.0

    public var isIdle: Bool {
        inboxLock.lock()
        defer { inboxLock.unlock() }
        return inbox.isEmpty && cancels.isEmpty && tasks.isEmpty && !scheduler.hasWork
    }

    // MARK: - Stepping (one thread)

    /// Runs `body` on the stepping thread between two steps (e.g. re-placing experts), and waits for it.
    public func perform<T: Sendable>(_ body: @escaping () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
            nonisolated(unsafe) let b = body
            inboxLock.lock()
            tasks.append { c.resume(with: Result { try b() }) }
            inboxLock.signal()
            inboxLock.unlock()
        }
    }

    func takeInbox() {
        inboxLock.lock()
        let new = inbox, gone = cancels, work = tasks
        inbox = []
        cancels = []
        tasks = []
        inboxLock.unlock()
        for t in work { t() }
        for (id, r, cb, t) in new {
            live[id] = Live(request: r, onEvent: cb, submitted: t)
            scheduler.add(id: id, prompt: r.prompt, reusePrefix: r.promptLogprobs == nil)
            stats.promptTokens += r.prompt.count
        }
        for id in gone where live[id] != nil { finish(id, .cancelled) }
    }

    func finish(_ id: Int, _ reason: StopReason) {
        guard let l = live.removeValue(forKey: id) else { return }
        scheduler.remove(id)
        if l.draftStarted { draft?.finish(id) }
        adaptive?.forget(id)
        stats.finished += 1
        inboxLock.lock()
        outstanding -= 1
        inboxLock.unlock()
        l.onEvent(.finished(reason))
    }

    /// One step: take new requests and cancellations, draft, schedule, run the forward pass, sample or verify,
    /// deliver tokens. Returns false when there was nothing to do.
    @discardableResult
    public func step() -> Bool {
        takeInbox()
        guard scheduler.hasWork else {
            inboxLock.lock()
            snapshot = (0, 0)
            inboxLock.unlock()
            return false
        }
        let tStart = monotonicSeconds()

        // Drafts for requests that are decoding (their only uncomputed token is the newest).
        let decoding = scheduler.running.filter { id in
            guard let r = scheduler.request(id), live[id] != nil else { return false }
            return r.computed == r.tokens.count - 1
        }
        var k = 0
        var draftStartSeconds = 0.0      // the draft's one-off prompt prefills: not a cost of this step's k
        var catchUpSeconds = 0.0         // the draft reading text decoded while speculation was off: priced apart
        let drafting = decoding.filter { live[$0]!.draftStarted }
        if let draft, !drafting.isEmpty {
            switch config.speculation {
            case .off: k = 0
            case .fixed(let n): k = n
            case .auto: k = adaptive!.choose(drafting)
                if Engine.traceAutoK {
                    FileHandle.standardError.write(Data(adaptive!.trace(drafting, chose: k).utf8))
                }
            }
            let limit = transformer.spec.maxPositions
            let reqs = drafting.map { id -> (seq: Int, position: Int, hash: UInt64, k: Int) in
                let r = scheduler.request(id)!, l = live[id]!
                let room = min(l.request.maxTokens - l.generated - 1, limit - r.tokens.count - 1)
                return (id, r.tokens.count, ContextHash.of(r.tokens), max(0, min(k, room)))
            }
            let proposals = draft.propose(reqs)
            let catchUp = draft.lastCatchUp
            draftStartSeconds += catchUp.promptSeconds
            catchUpSeconds = catchUp.seconds - catchUp.promptSeconds
            adaptive?.recordCatchUp(catchUp)
            if k > 0 && draft.costPerToken > 0 { adaptive?.recordDraft(batch: drafting.count, seconds: draft.costPerToken) }
            for id in drafting {
                live[id]!.proposal = proposals[id]
                scheduler.setSpec(id, proposals[id]?.tokens ?? [])
            }
            stats.spec.k = k
        }

        let plan = scheduler.schedule()
        for id in plan.preempted where live[id] != nil {
            stats.preemptions += 1
            if live[id]!.draftStarted { draft?.finish(id) }
            live[id]!.draftStarted = false
            live[id]!.proposal = nil
        }
        guard !plan.work.isEmpty else { return true }
        let inputs = plan.work.map { w in
            SequenceInput(tokens: w.tokens + w.spec, start: w.start, blockTable: w.table,
                          logits: wantsPromptLogprobs(w) || !w.spec.isEmpty ? .all : (w.samples ? .last : .none))
        }
        let tForward = monotonicSeconds()
        let out = transformer.forward(inputs, cache: cache)
        let tDone = monotonicSeconds()
        stats.steps += 1
        stats.computedTokens += plan.tokens
        adaptive?.recordStep(positions: plan.tokens, seconds: tDone - tForward)
        if !decoding.isEmpty {
            let moe = out.expertCounts.filter { !$0.isEmpty }
            stats.decodeSteps += 1
            stats.distinctExpertsPerLayer += Double(moe.reduce(0) { $0 + $1.filter { $0 > 0 }.count }) / Double(max(moe.count, 1))
        }

        var emittedThisStep = 0
        // Tokens and finishes reach their consumers only after this step is in the statistics, so a client that has
        // its answer and then reads /v1/stats sees the step that produced it.
        var deliveries: [() -> Void] = []
        for (j, w) in plan.work.enumerated() {
            if wantsPromptLogprobs(w) { recordPromptLogprobs(w, rows: out.rows[j], out: out) }
            guard w.samples, var l = live[w.id] else { scheduler.update(w); continue }
            if l.request.maxTokens == 0 {
                // Only the prompt was asked for (a completion that echoes it, to score it): nothing is sampled.
                scheduler.update(w)
                let prompt = l.promptLogprobsSent ? nil : l.promptLogprobs, onEvent = l.onEvent
                let cached = scheduler.request(w.id)?.cachedPromptTokens ?? 0
                live[w.id]!.promptLogprobsSent = true
                deliveries.append { [unowned self] in
                    onEvent(.prefilled(cachedPromptTokens: cached))
                    if let prompt { onEvent(.promptLogprobs(prompt)) }
                    self.finish(w.id, .length)
                }
                continue
            }
            let rows = out.rows[j]
            let position = w.start + w.tokens.count     // where the next token goes
            // Row of emitted token i: the drafts' rows and the bonus row follow the real token's; else the last.
            let firstRow = w.spec.isEmpty ? rows.upperBound - 1 : rows.lowerBound + w.tokens.count - 1
            var verdict = Verification(accepted: 0, next: 0)
            if !w.spec.isEmpty, let p = l.proposal {
                verdict = verify(p, k: w.spec.count, firstRow: firstRow, out: out, live: l, position: position)
                stats.spec.record(k: w.spec.count, accepted: verdict.accepted)
                adaptive?.recordOutcome(seq: w.id, k: w.spec.count, accepted: verdict.accepted)
            } else {
                verdict.next = Int32(l.sampling(out.row(firstRow)) { l.sampler.next($0, position: position) })
            }
            let emitted = Array(w.spec.prefix(verdict.accepted)) + [verdict.next]
            emittedThisStep += emitted.count
            // Deliver up to the first stop.
            var stop: StopReason?
            var delivered: [Int32] = []
            for t in emitted {
                delivered.append(t)
                l.generated += 1
                l.history?.append(t)
                if let g = l.request.grammar, let s = l.grammarState { l.grammarState = g.advance(s, by: [t]) }
                if l.request.stops(at: t) { stop = .eos; break }
                if l.generated >= l.request.maxTokens || position + delivered.count >= transformer.spec.maxPositions { stop = .length; break }
            }
            let logprobs = delivered.indices.map { i in
                l.request.logprobs.map { positionLogprobs(out.row(firstRow + i), chosen: delivered[i], top: $0) }
            }
            let prompt = l.promptLogprobsSent ? nil : l.promptLogprobs
            let first = l.generated == delivered.count
            let cached = scheduler.request(w.id)?.cachedPromptTokens ?? 0
            l.promptLogprobsSent = true
            let before = scheduler.request(w.id)!.tokens
            scheduler.update(w, accepted: verdict.accepted, emitted: delivered)
            stats.generatedTokens += delivered.count
            let now = monotonicSeconds()
            for j in delivered.indices {
                if l.generated - delivered.count + j == 0 { collector.recordFirstToken(now - l.submitted) }
                else { collector.recordInterToken(j == 0 ? now - l.lastToken : 0) }
            }
            l.lastToken = now
            l.proposal = nil
            live[w.id] = l
            let onEvent = l.onEvent
            deliveries.append {
                if first { onEvent(.prefilled(cachedPromptTokens: cached)) }
                if let prompt { onEvent(.promptLogprobs(prompt)) }
                for (t, lp) in zip(delivered, logprobs) { onEvent(.token(t, lp)) }
            }
            if let stop {
                deliveries.append { [unowned self] in self.finish(w.id, stop) }
            } else if let draft {
                if !l.draftStarted {
                    let t0 = monotonicSeconds()
                    draft.start(w.id, prompt: before, params: l.request.params)
                    draftStartSeconds += monotonicSeconds() - t0
                    draft.outcome(w.id, accepted: [], next: delivered.last!)
                    live[w.id]!.draftStarted = true
                } else {
                    draft.outcome(w.id, accepted: Array(w.spec.prefix(verdict.accepted)), next: verdict.next)
                }
            }
        }
        if rebalanceEverySteps > 0 && stats.steps % rebalanceEverySteps == 0, let r = rebalancer {
            _ = try? r(collector.windowLoad, false)
        }
        collector.record(StepSample(expertCounts: out.expertCounts, verification: plan.work.contains { !$0.spec.isEmpty },
                                    traffic: (transformer.experts as? ExpertTrafficSource)?.traffic,
                                    seconds: monotonicSeconds() - tStart, emitted: emittedThisStep, dropped: out.dropped,
                                    spec: stats.spec))
        for d in deliveries { d() }
        stats.cachedPromptTokens = scheduler.cachedPromptTokens
        let usage = 1 - Double(scheduler.blocks.freeBlocks) / Double(max(scheduler.blocks.numBlocks, 1))
        inboxLock.lock()
        snapshot = (scheduler.running.count, scheduler.waiting.count)
        kvUsage = usage
        inboxLock.unlock()
        // The cost of k is only comparable between steps that are pure decoding of the same batch.
        let pureDecode = plan.work.count == drafting.count && Set(plan.work.map(\.id)) == Set(drafting)
        if !drafting.isEmpty && pureDecode {
            let seconds = monotonicSeconds() - tStart
            adaptive?.recordRate(batch: drafting.count, k: k, seconds: seconds - draftStartSeconds - catchUpSeconds)
            if Engine.traceAutoK {
                FileHandle.standardError.write(Data(String(format: "step: k %d seconds %.4f (draft %.4f, target %.4f) prompt prefill %.4f catch-up %.4f emitted %d model %.4f\n", k, seconds, k > 0 ? (draft?.lastWaitSeconds ?? 0) : 0.0, tDone - tForward, draftStartSeconds, catchUpSeconds, emittedThisStep, adaptive?.modelSeconds(batch: drafting.count, k: k) ?? 0).utf8))
            }
        }
        return true
    }

    /// Speculative verification of the first k tokens of a proposal (those the step computed) against the
    /// target's k+1 logit rows from `firstRow`, row i read as sampling reads it after drafts 0..<i.
    func verify(_ p: Proposal, k: Int, firstRow: Int, out: ForwardOutput, live l: Live, position L: Int) -> Verification {
        let sampler = l.sampler, drafts = Array(p.tokens.prefix(k)), rows = 0...k
        if sampler.params.isGreedy {
            return greedyVerify(draft: drafts, targetArgmax: rows.map { i in
                l.sampling(out.row(firstRow + i), after: drafts.prefix(i)) { Int32(argmax($0)) }
            })
        }
        let target = rows.map { i in
            l.sampling(out.row(firstRow + i), after: drafts.prefix(i)) { samplingDistribution($0, sampler.params) }
        }
        var rng = sampler.rng(position: L, stream: 1)
        let draws = (0..<(k + 1)).map { _ in rng.nextUnit() }
        return speculativeVerify(draft: drafts, q: Array((p.q ?? []).prefix(k)), p: target) { draws[$0] }
    }

    /// Whether this work's rows are wanted for its prompt's log-probabilities: a chunk with prompt tokens still to
    /// predict, of a request that asked for them and has not had them.
    func wantsPromptLogprobs(_ w: ScheduledWork) -> Bool {
        guard let l = live[w.id], !l.promptLogprobsSent else { return false }
        return w.start < l.request.prompt.count - 1
    }

    /// Row r of a prompt chunk predicts the prompt token after position start + r.
    func recordPromptLogprobs(_ w: ScheduledWork, rows: Range<Int>, out: ForwardOutput) {
        guard let n = live[w.id]?.request.promptLogprobs, let prompt = live[w.id]?.request.prompt else { return }
        for r in 0..<w.tokens.count where w.start + r + 1 < prompt.count {
            let next = w.start + r + 1
            live[w.id]!.promptLogprobs[next] = positionLogprobs(out.row(rows.lowerBound + r), chosen: prompt[next], top: n)
        }
    }

    /// Re-places experts from the statistics window's load (between steps). Throws if there is nothing to rebalance.
    public func rebalance(dryRun: Bool) async throws -> [String: Any] {
        guard rebalancer != nil else { throw EngineError.nothingToRebalance }
        // The report crosses threads as JSON bytes (a dictionary of Any is not Sendable).
        let data = try await perform { [self] in try JSONSerialization.data(withJSONObject: rebalancer!(collector.windowLoad, dryRun)) }
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// Steps until every request has finished (one-shot use: `run`, benchmarks, tests).
    public func runUntilIdle() {
        while step() {}
    }

    /// Runs steps on a dedicated thread until `stop()`, sleeping while there is nothing to do.
    public func startLoop() {
        inboxLock.lock()
        running = true
        inboxLock.unlock()
        let t = Thread { [self] in
            while true {
                inboxLock.lock()
                while running && inbox.isEmpty && cancels.isEmpty && tasks.isEmpty && !scheduler.hasWork { inboxLock.wait() }
                let go = running
                inboxLock.unlock()
                if !go { return }
                step()
            }
        }
        t.stackSize = 8 << 20
        loopThread = t
        t.start()
    }

    public func stopLoop() {
        inboxLock.lock()
        running = false
        inboxLock.signal()
        inboxLock.unlock()
    }
}
