import Testing
@testable import MoEScheduler

/// The scheduler driven by fake step results: what a model would return is decided by the test.
@Suite struct SchedulerTests {
    func make(blocks: Int = 64, blockSize: Int = 4, budget: Int = 16, seqs: Int = 8, window: Int? = nil) -> Scheduler {
        Scheduler(config: SchedulerConfig(maxBatchedTokens: budget, maxSeqs: seqs, slidingWindow: window),
                  blocks: BlockManager(numBlocks: blocks, blockSize: blockSize))
    }

    /// Runs one step; every request that reaches its end emits `next` (and accepts its drafts when `accept`).
    func step(_ s: inout Scheduler, next: Int32 = 1, accept: Bool = false) -> StepPlan {
        let plan = s.schedule()
        for w in plan.work {
            if w.samples { s.update(w, accepted: accept ? w.spec.count : 0, emitted: (accept ? w.spec : []) + [next]) }
            else { s.update(w) }
        }
        return plan
    }

    @Test func longPromptsArePrefilledInChunksWithinTheBudget() {
        var s = make(budget: 8)
        s.add(id: 1, prompt: Array(repeating: 5, count: 20))
        let p1 = step(&s), p2 = step(&s), p3 = step(&s)
        #expect(p1.work.map(\.tokens.count) == [8] && !p1.work[0].samples)
        #expect(p2.work.map(\.tokens.count) == [8])
        #expect(p3.work.map(\.tokens.count) == [4] && p3.work[0].samples)
        #expect(s.request(1)!.tokens.count == 21)
        let p4 = step(&s)
        #expect(p4.work.map(\.tokens) == [[1]] && p4.work[0].start == 20)
    }

    @Test func runningRequestsComeFirstAndNewOnesFillTheRestInArrivalOrder() {
        var s = make(budget: 10)
        s.add(id: 1, prompt: [1, 2, 3])
        _ = step(&s)                                           // 1 prefilled, now decoding
        s.add(id: 2, prompt: Array(repeating: 4, count: 12))
        s.add(id: 3, prompt: [5])
        let p = step(&s)
        #expect(p.work.map(\.id) == [1, 2])                    // 1 decodes (1 token), 2 gets 9 of 12; 3 waits its turn
        #expect(p.work.map(\.tokens.count) == [1, 9])
        let q = step(&s)
        #expect(q.work.map(\.id) == [1, 2, 3])
    }

    @Test func draftTokensAreScheduledAfterTheNewestTokenAndRolledBack() {
        var s = make(budget: 16)
        s.add(id: 1, prompt: [1, 2, 3, 4, 5])
        _ = step(&s)
        s.setSpec(1, [7, 8, 9])
        let p = s.schedule()
        #expect(p.work[0].tokens == [1] && p.work[0].spec == [7, 8, 9] && p.work[0].start == 5)
        // One draft accepted, then the correction 6.
        s.update(p.work[0], accepted: 1, emitted: [7, 6])
        let r = s.request(1)!
        #expect(r.tokens == [1, 2, 3, 4, 5, 1, 7, 6] && r.computed == 7)
        #expect(s.blocks.table(1).count == 2)                  // blocks for the rejected drafts' positions released
    }

    @Test func whenBlocksRunOutTheNewestRunningRequestIsPreemptedAndResumesLater() {
        // 6 blocks of 4 tokens: two requests of 8 prompt tokens fit, then growth forces a preemption.
        var s = make(blocks: 6, budget: 32)
        s.add(id: 1, prompt: Array(repeating: 1, count: 8))
        s.add(id: 2, prompt: Array(repeating: 2, count: 8))
        var p = StepPlan()
        var steps = 0
        while p.preempted.isEmpty && steps < 20 { p = step(&s); steps += 1 }
        // Both grow one token per step; at 13 tokens 1 needs a 4th block, and 2 (the newest) makes room.
        #expect(p.preempted == [2] && s.request(1)!.tokens.count == 14)
        #expect(p.work.map(\.id) == [1])
        #expect(s.waiting == [2] && s.request(2)!.computed == 0)
        let kept = s.request(2)!.tokens.count
        #expect(kept == 13)                                    // keeps its output; recomputes it later
        s.remove(1)                                            // 1 finishes
        let q = step(&s)
        #expect(q.work.map(\.id) == [2] && q.work[0].tokens.count == kept && q.work[0].samples)
    }

    @Test func aRequestSharingThreeFullBlocksComputesOnlyTheRest() {
        var s = make(blocks: 32, blockSize: 4, budget: 64)
        let shared = Array(repeating: Int32(3), count: 12)
        s.add(id: 1, prompt: shared + [1, 2])
        _ = step(&s)
        s.remove(1)
        s.add(id: 2, prompt: shared + [9, 9, 9])
        let p = step(&s)
        #expect(p.work[0].start == 12 && p.work[0].tokens == [9, 9, 9])
        #expect(s.cachedPromptTokens == 12)
    }

    @Test func cancellationFreesEverythingAtOnce() {
        var s = make(blocks: 8)
        s.add(id: 1, prompt: Array(repeating: 1, count: 10))
        _ = step(&s)
        #expect(s.blocks.freeBlocks < 8)
        s.remove(1)
        #expect(s.blocks.freeBlocks == 8 && !s.hasWork)
    }

    @Test func slidingWindowKeepsMemoryPerSequenceBounded() {
        var s = make(blocks: 8, blockSize: 4, budget: 8, window: 8)
        s.add(id: 1, prompt: [1, 2, 3, 4])
        for _ in 0..<40 { _ = step(&s) }
        let live = s.blocks.table(1).filter { $0 >= 0 }.count
        #expect(s.request(1)!.tokens.count == 44)
        #expect(live <= 4)                                     // window 8 + the block being filled
    }

    @Test func sequenceLimitHoldsBackNewRequests() {
        var s = make(budget: 64, seqs: 2)
        for id in 1...3 { s.add(id: id, prompt: [Int32(id)]) }
        let p = step(&s)
        #expect(p.work.map(\.id) == [1, 2] && s.waiting == [3])
    }
}
