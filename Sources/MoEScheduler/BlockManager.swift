/// Paged KV-cache block bookkeeping, independent of MPI and of the model: which blocks each sequence owns, which
/// full blocks hold a known token prefix (prefix caching), and which free blocks can be reused.
///
/// A full block of verified tokens gets a hash chained with its prefix's hash, so equal hashes mean equal token
/// prefixes. Such blocks stay in the cache after their sequences end (refcount 0) until a new allocation needs the
/// space: plain free blocks are used first, then the least recently used cached ones are evicted.
public struct BlockManager: Sendable {
    public let numBlocks: Int
    public let blockSize: Int

    struct Block {
        var refs = 0
        var hash: UInt64?          // set while the block holds a cached full prefix block
        var lastUse = 0            // for LRU eviction among free cached blocks
    }
    var blocks: [Block]
    /// Blocks with refs 0 and no hash.
    var plainFree: [Int32]
    /// Free blocks (refs 0) that hold a cached prefix block, by hash; and blocks in use that hold one.
    var cached: [UInt64: Int32] = [:]
    var liveIndex: [UInt64: Int32] = [:]
    /// Free cached blocks in the order they were freed (oldest first); entries whose block was reused since are
    /// skipped when met. Eviction takes from the front: least recently used.
    var lru: [(use: Int, block: Int32)] = []
    var lruHead = 0
    var clock = 0
    /// Per sequence: its block table (−1 for blocks freed outside a sliding window) and how many of its leading
    /// full blocks are registered in the cache.
    var tables: [Int: [Int32]] = [:]
    var registered: [Int: Int] = [:]
    var chain: [Int: UInt64] = [:]

    public init(numBlocks: Int, blockSize: Int = 16) {
        self.numBlocks = numBlocks
        self.blockSize = blockSize
        blocks = Array(repeating: Block(), count: numBlocks)
        plainFree = (0..<Int32(numBlocks)).reversed()
    }

    /// Blocks a new allocation can take (plain free + evictable cached).
    public var freeBlocks: Int { plainFree.count + cached.count }
    /// Free blocks that still hold a cached prefix.
    public var cachedBlocks: Int { cached.count }
    public func table(_ seq: Int) -> [Int32] { tables[seq] ?? [] }
    public func blocksNeeded(tokens: Int) -> Int { (tokens + blockSize - 1) / blockSize }

    /// Chained hash of one block's tokens after a prefix whose hash is `prefix`.
    public static func hash(prefix: UInt64, tokens: ArraySlice<Int32>) -> UInt64 {
        var h = prefix ^ 0x9E3779B97F4A7C15
        for t in tokens {
            h = (h ^ UInt64(UInt32(bitPattern: t))) &* 0x100000001b3
            h ^= h >> 32
        }
        return h &* 0xbf58476d1ce4e5b9
    }

    /// How many leading tokens of `tokens` are in cached full blocks (a multiple of the block size).
    public func cachedPrefix(_ tokens: [Int32]) -> Int {
        var h: UInt64 = 0, n = 0
        while n + blockSize <= tokens.count {
            h = Self.hash(prefix: h, tokens: tokens[n..<(n + blockSize)])
            guard cached[h] != nil || liveIndex[h] != nil else { break }
            n += blockSize
        }
        return n
    }

    /// Starts a sequence on the cached blocks of its longest cached prefix (none unless `reuse`); returns the number of
    /// tokens covered.
    public mutating func start(_ seq: Int, tokens: [Int32], reuse: Bool = true) -> Int {
        precondition(tables[seq] == nil, "sequence \(seq) already has blocks")
        var table: [Int32] = [], h: UInt64 = 0, n = 0
        while reuse && n + blockSize <= tokens.count {
            let nh = Self.hash(prefix: h, tokens: tokens[n..<(n + blockSize)])
            guard let b = cached.removeValue(forKey: nh) ?? liveIndex[nh] else { break }
            clock += 1
            blocks[Int(b)].refs += 1
            blocks[Int(b)].lastUse = clock
            liveIndex[nh] = b
            table.append(b)
            h = nh
            n += blockSize
        }
        tables[seq] = table
        registered[seq] = table.count
        chain[seq] = h
        return n
    }

    /// Grows the sequence's table to cover `tokens` positions. Returns the new block ids, or nil (and changes
    /// nothing) when the pool cannot supply them.
    public mutating func allocate(for seq: Int, tokens: Int) -> [Int32]? {
        var table = tables[seq] ?? []
        let need = blocksNeeded(tokens: tokens) - table.count
        if need <= 0 { return [] }
        guard need <= plainFree.count + cached.count else { return nil }
        var fresh: [Int32] = []
        for _ in 0..<need {
            let b: Int32
            if let p = plainFree.popLast() {
                b = p
            } else {
                b = evictLeastRecentlyUsed()
            }
            blocks[Int(b)].refs = 1
            fresh.append(b)
        }
        table += fresh
        tables[seq] = table
        if registered[seq] == nil { registered[seq] = 0; chain[seq] = 0 }
        return fresh
    }

    /// Registers the sequence's full blocks among its first `verified` tokens in the prefix cache (draft tokens that
    /// may still be rejected are never passed here).
    public mutating func commit(_ seq: Int, tokens: [Int32], verified: Int) {
        guard var table = tables[seq], var done = registered[seq], var h = chain[seq] else { return }
        while (done + 1) * blockSize <= min(verified, tokens.count) && done < table.count {
            let b = table[done]
            if b < 0 { break }
            h = Self.hash(prefix: h, tokens: tokens[(done * blockSize)..<((done + 1) * blockSize)])
            if let existing = liveIndex[h], existing != b {
                // Another sequence computed the same block first: share it and give ours back.
                blocks[Int(existing)].refs += 1
                release(b)
                table[done] = existing
            } else {
                blocks[Int(b)].hash = h
                liveIndex[h] = b
            }
            done += 1
        }
        tables[seq] = table
        registered[seq] = done
        chain[seq] = h
    }

    /// Keeps only the blocks needed for `tokens` positions (after rejected draft tokens are rolled back).
    public mutating func truncate(_ seq: Int, tokens: Int) {
        guard var table = tables[seq] else { return }
        let keep = max(blocksNeeded(tokens: tokens), registered[seq] ?? 0)
        while table.count > keep { release(table.removeLast()) }
        tables[seq] = table
    }

    /// Frees the blocks wholly before `firstNeeded` (a sliding window's oldest visible position); their table
    /// entries become −1 and are never read again.
    public mutating func freeBefore(_ seq: Int, position firstNeeded: Int) {
        guard var table = tables[seq] else { return }
        let whole = firstNeeded / blockSize
        for i in 0..<min(whole, table.count) where table[i] >= 0 {
            release(table[i])
            table[i] = -1
        }
        tables[seq] = table
    }

    /// Frees everything the sequence holds (finished, cancelled or preempted); cached blocks stay reusable.
    public mutating func free(_ seq: Int) {
        for b in tables[seq] ?? [] where b >= 0 { release(b) }
        tables[seq] = nil
        registered[seq] = nil
        chain[seq] = nil
    }

    mutating func evictLeastRecentlyUsed() -> Int32 {
        while true {
            let (use, b) = lru[lruHead]
            lruHead += 1
            if lruHead > 1024 && lruHead * 2 > lru.count { lru.removeFirst(lruHead); lruHead = 0 }
            let blk = blocks[Int(b)]
            // Stale entry: the block was taken again (or evicted) after this entry was queued.
            guard blk.refs == 0, let h = blk.hash, blk.lastUse == use, cached[h] == b else { continue }
            cached[h] = nil
            blocks[Int(b)].hash = nil
            return b
        }
    }

    mutating func release(_ b: Int32) {
        let i = Int(b)
        blocks[i].refs -= 1
        precondition(blocks[i].refs >= 0, "block \(b) released twice")
        guard blocks[i].refs == 0 else { return }
        clock += 1
        blocks[i].lastUse = clock
        if let h = blocks[i].hash {
            liveIndex[h] = nil
            cached[h] = b
            lru.append((clock, b))
        } else {
            plainFree.append(b)
        }
    }
}
