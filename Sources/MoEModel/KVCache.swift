import CKernels
import Foundation
import MoECore

/// How K/V entries are stored: f32; f16; int8 with one f32 scale per (token, head).
public enum KVDType: String, Sendable, CaseIterable {
    case f32, f16, int8

    var kernel: Int32 {
        switch self {
        case .f32: return Int32(KERN_KV_F32)
        case .f16: return Int32(KERN_KV_F16)
        case .int8: return Int32(KERN_KV_I8)
        }
    }

    /// Bytes one token's K (or V) row of one head takes, scale included.
    public func rowBytes(headDim: Int) -> Int {
        switch self {
        case .f32: return 4 * headDim
        case .f16: return 2 * headDim
        case .int8: return headDim + 4
        }
    }
}

/// Paged key/value storage: a pool of fixed-size blocks shared by all sequences; one block id addresses the same
/// slots in every layer. Per layer, V is [blocks, kvHeads, blockSize, headDim] and K [blocks, kvHeads, headDim,
/// blockSize] (transposed per block and head, so that a run of positions' scores are vectors; see attention.c):
/// one head's keys and values in a block are contiguous for the attention scan. Which blocks a sequence owns is
/// decided outside (a block table).
/// With `valuesAreKeys` (multi-head latent attention) there is no V pool: attention reads each key row as its value.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    public let blockSize: Int
    public let numBlocks: Int
    public let dtype: KVDType
    /// Keys that are also the values (multi-head latent attention's latent rows): no value pool is held.
    public let valuesAreKeys: Bool
    let k: [UnsafeMutableRawPointer]
    let v: [UnsafeMutableRawPointer]
    let kScale: [UnsafeMutablePointer<Float>]
    let vScale: [UnsafeMutablePointer<Float>]

    public init(layers: Int, kvHeads: Int, headDim: Int, blockSize: Int = 16, numBlocks: Int, dtype: KVDType = .f32,
                valuesAreKeys: Bool = false) {
        self.valuesAreKeys = valuesAreKeys
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.blockSize = blockSize
        self.numBlocks = numBlocks
        self.dtype = dtype
        let slots = max(numBlocks * kvHeads * blockSize, 1)
        let elem = dtype == .f32 ? 4 : (dtype == .f16 ? 2 : 1)
        // Touched once now, so the pool's memory is resident from the start and does not grow with traffic.
        func pool() -> UnsafeMutableRawPointer {
            let p = UnsafeMutableRawPointer.allocate(byteCount: slots * headDim * elem, alignment: 64)
            p.initializeMemory(as: UInt8.self, repeating: 0, count: slots * headDim * elem)
            return p
        }
        k = (0..<layers).map { _ in pool() }
        v = valuesAreKeys ? [] : (0..<layers).map { _ in pool() }
        let scaleSlots = dtype == .int8 ? slots : 1
        kScale = (0..<layers).map { _ in .allocate(capacity: scaleSlots) }
        vScale = valuesAreKeys ? [] : (0..<layers).map { _ in .allocate(capacity: scaleSlots) }
    }

    deinit {
        for p in k + v { p.deallocate() }
        for p in kScale + vScale { p.deallocate() }
    }

    /// A model's cache: latent attention's rows are its keys and its values.
    public convenience init(spec: ModelSpec, blockSize: Int = 16, numBlocks: Int, dtype: KVDType = .f32) {
        self.init(layers: spec.numLayers, kvHeads: spec.numKVHeads, headDim: spec.headDim, blockSize: blockSize,
                  numBlocks: numBlocks, dtype: dtype, valuesAreKeys: spec.mla != nil)
    }

    /// Bytes of one token's K and V over all layers: 2 × layers × kvHeads × headDim × bytes (+ int8 scales), once
    /// for latent attention's rows (keys that are the values).
    public static func bytesPerToken(_ spec: ModelSpec, dtype: KVDType) -> Int {
        (spec.mla == nil ? 2 : 1) * spec.numLayers * spec.numKVHeads * dtype.rowBytes(headDim: spec.headDim)
    }

    public var bytesPerToken: Int { (valuesAreKeys ? 1 : 2) * layers * kvHeads * dtype.rowBytes(headDim: headDim) }
    public var capacityTokens: Int { numBlocks * blockSize }
    public var byteCount: Int { capacityTokens * bytesPerToken }

    @inline(__always)
    func slot(block: Int32, head: Int, offset: Int) -> Int { (Int(block) * kvHeads + head) * blockSize + offset }

    /// Stores one token's keys and values [kvHeads · headDim] at `position` of the sequence with `blockTable` (the
    /// values unread when they are the keys).
    func store(layer: Int, blockTable: UnsafePointer<Int32>, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        for h in 0..<kvHeads { store(layer: layer, blockTable: blockTable, position: position, head: h, key: key, value: value) }
    }

    /// Head `h` of one position's keys and values (key, value: every KV head's, [kvHeads × headDim]).
    func store(layer: Int, blockTable: UnsafePointer<Int32>, position: Int, head h: Int, key: UnsafePointer<Float>,
               value: UnsafePointer<Float>) {
        let block = blockTable[position / blockSize], off = position % blockSize
        precondition(block >= 0 && Int(block) < numBlocks, "KV write to a block the sequence does not own (position \(position))")
        let s = slot(block: block, head: h, offset: off)
        kern_kv_store(dtype.kernel, key + h * headDim, k[layer], kScale[layer], s, Int32(headDim), Int32(blockSize))
        if !valuesAreKeys { kern_kv_store(dtype.kernel, value + h * headDim, v[layer], vScale[layer], s, Int32(headDim), 0) }
    }

    /// The `heads` query heads [heads × headDim, contiguous] that share `kvHead`, against positions [p0, p1) of a
    /// sequence; writes out [heads × headDim]. `scores` needs heads × (p1 − p0) floats.
    @inline(__always)
    func attend(layer: Int, q: UnsafePointer<Float>, heads: Int, blocks: UnsafePointer<Int32>, kvHead: Int, p0: Int, p1: Int,
                scale: Float, scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        kern_attend_group(dtype.kernel, q, headDim, Int32(heads), k[layer], valuesAreKeys ? nil : v[layer], kScale[layer],
                          valuesAreKeys ? nil : vScale[layer], blocks,
                          Int32(blockSize), Int32(kvHeads), Int32(headDim), Int32(kvHead), Int32(p0), Int32(p1), scale,
                          scores, out, headDim)
    }
}

/// A free list of KV blocks: the minimal allocator one-shot runs use. (The serving engine's block manager adds
/// prefix caching, sliding-window frees and preemption.)
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
