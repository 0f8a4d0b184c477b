import Testing
@testable import MoEScheduler

@Suite struct BlockManagerTests {
    func toks(_ n: Int, from: Int32 = 100) -> [Int32] { (0..<n).map { from + Int32($0) } }

    @Test func allocatesWholeBlocksAndReturnsNothingWhenFull() {
        var m = BlockManager(numBlocks: 4, blockSize: 4)
        #expect(m.allocate(for: 1, tokens: 5)?.count == 2)
        #expect(m.allocate(for: 1, tokens: 8)?.count == 0)      // still two blocks
        #expect(m.allocate(for: 2, tokens: 9) == nil)           // needs 3, only 2 free: nothing changes
        #expect(m.table(2).isEmpty && m.freeBlocks == 2)
        #expect(m.allocate(for: 2, tokens: 8)?.count == 2)
        #expect(m.freeBlocks == 0)
        m.free(1)
        #expect(m.freeBlocks == 2)
    }

    @Test func fullVerifiedBlocksAreReusedByALaterRequestWithTheSamePrefix() {
        var m = BlockManager(numBlocks: 8, blockSize: 4)
        let prompt = toks(14)
        _ = m.start(1, tokens: prompt)
        _ = m.allocate(for: 1, tokens: 14)
        m.commit(1, tokens: prompt, verified: 14)                 // 3 full blocks registered
        let owned = m.table(1)
        m.free(1)
        #expect(m.cachedBlocks == 3)
        // Shares the first 12 tokens, then differs.
        let other = Array(prompt.prefix(12)) + [7, 7, 7]
        #expect(m.cachedPrefix(other) == 12)
        #expect(m.start(2, tokens: other) == 12)
        #expect(Array(m.table(2)) == Array(owned.prefix(3)))
        // A prefix that differs in the first block shares nothing.
        #expect(m.cachedPrefix([1] + Array(prompt.dropFirst())) == 0)
    }

    @Test func draftTokensBeyondTheVerifiedCountAreNeverCached() {
        var m = BlockManager(numBlocks: 8, blockSize: 4)
        let t = toks(8)
        _ = m.start(1, tokens: t)
        _ = m.allocate(for: 1, tokens: 8)
        m.commit(1, tokens: t, verified: 6)                       // block 2 holds 2 unverified tokens
        m.free(1)
        #expect(m.cachedBlocks == 1)
    }

    @Test func leastRecentlyUsedCachedBlocksAreEvictedFirst() {
        var m = BlockManager(numBlocks: 2, blockSize: 2)
        _ = m.start(1, tokens: [1, 2]); _ = m.allocate(for: 1, tokens: 2); m.commit(1, tokens: [1, 2], verified: 2); m.free(1)
        _ = m.start(2, tokens: [3, 4]); _ = m.allocate(for: 2, tokens: 2); m.commit(2, tokens: [3, 4], verified: 2); m.free(2)
        #expect(m.cachedBlocks == 2)
        _ = m.allocate(for: 3, tokens: 2)                          // evicts [1, 2], the older
        #expect(m.cachedPrefix([1, 2]) == 0 && m.cachedPrefix([3, 4]) == 2)
    }

    @Test func slidingWindowFreesBlocksWhollyBeforeIt() {
        var m = BlockManager(numBlocks: 8, blockSize: 4)
        _ = m.allocate(for: 1, tokens: 16)
        m.freeBefore(1, position: 9)                              // positions 0…7 are outside: blocks 0 and 1
        #expect(m.table(1).prefix(2).allSatisfy { $0 == -1 } && m.table(1)[2] >= 0)
        #expect(m.freeBlocks == 6)
    }

    @Test func truncateReleasesRejectedDraftBlocks() {
        var m = BlockManager(numBlocks: 8, blockSize: 4)
        _ = m.allocate(for: 1, tokens: 13)
        m.truncate(1, tokens: 6)
        #expect(m.table(1).count == 2 && m.freeBlocks == 6)
    }

    @Test func twoSequencesComputingTheSameBlockEndUpSharingIt() {
        var m = BlockManager(numBlocks: 8, blockSize: 4)
        let t = toks(4)
        _ = m.start(1, tokens: t); _ = m.allocate(for: 1, tokens: 4)
        _ = m.start(2, tokens: t + [9]); _ = m.allocate(for: 2, tokens: 5)
        m.commit(1, tokens: t, verified: 4)
        m.commit(2, tokens: t + [9], verified: 5)
        #expect(m.table(1)[0] == m.table(2)[0])
        #expect(m.freeBlocks == 8 - 2)
    }
}
