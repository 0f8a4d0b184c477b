import Foundation
import MoECore

/// Paged key/value storage: a pool of fixed-size blocks shared by all sequences; one block id addresses the same
/// slots in every layer. Per layer, K and V are [blocks, kvHeads, blockSize, headDim] so that one head's keys in a
/// block are contiguous for the attention scan. Which blocks a sequence owns is decided outside (a block table).
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    public let blockSize: Int
    public let numBlocks: Int
    let k: [FloatBuffer]
    let v: [FloatBuffer]

    public init(layers: Int, kvHeads: Int, headDim: Int, blockSize: Int = 16, numBlocks: Int) {
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.blockSize = blockSize
        self.numBlocks = numBlocks
        let per = numBlocks * kvHeads * blockSize * headDim
        k = (0..<layers).map { _ in FloatBuffer(count: per, zeroed: false) }
        v = (0..<layers).map { _ in FloatBuffer(count: per, zeroed: false) }
    }

    public convenience init(spec: ModelSpec, blockSize: Int = 16, numBlocks: Int) {
        self.init(layers: spec.numLayers, kvHeads: spec.numKVHeads, headDim: spec.headDim, blockSize: blockSize, numBlocks: numBlocks)
    }

    /// Bytes of one token's K and V over all layers: 2 × layers × kvHeads × headDim × 4.
    public var bytesPerToken: Int { 2 * layers * kvHeads * headDim * MemoryLayout<Float>.stride }
    public var capacityTokens: Int { numBlocks * blockSize }

    /// Offset of (block, kvHead, slot) within one layer's pool.
    @inline(__always)
    func offset(block: Int32, head: Int, slot: Int) -> Int {
        ((Int(block) * kvHeads + head) * blockSize + slot) * headDim
    }

    /// Stores one token's keys and values [kvHeads · headDim] at `position` of the sequence with `blockTable`.
    func store(layer: Int, blockTable: UnsafePointer<Int32>, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        let block = blockTable[position / blockSize], slot = position % blockSize
        for h in 0..<kvHeads {
            let o = offset(block: block, head: h, slot: slot)
            (k[layer].pointer + o).update(from: key + h * headDim, count: headDim)
            (v[layer].pointer + o).update(from: value + h * headDim, count: headDim)
        }
    }
}

/// A free list of KV blocks: the minimal allocator one-shot runs use. (The serving engine manages blocks itself.)
public struct BlockAllocator: Sendable {
    private var free: [Int32]
    public init(numBlocks: Int) { free = (0..<Int32(numBlocks)).reversed() }
    public var freeCount: Int { free.count }

    /// Grows `table` so that it covers `tokens` positions; false (and no change) when the pool is short.
    public mutating func ensure(_ table: inout [Int32], tokens: Int, blockSize: Int) -> Bool {
        let need = (tokens + blockSize - 1) / blockSize - table.count
        if need <= 0 { return true }
        if need > free.count { return false }
        for _ in 0..<need { table.append(free.removeLast()) }
        return true
    }

    public mutating func release(_ table: inout [Int32]) {
        free.append(contentsOf: table.filter { $0 >= 0 })
        table.removeAll()
    }
}
