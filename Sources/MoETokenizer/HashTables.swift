import Foundation

/// Open-addressing map from a packed token-id pair to a packed
/// (rank, merged id). BPE merging does one lookup per adjacent pair, so this
/// sits on the hot path; Swift's Dictionary (SipHash, resilient generic
/// code) is several times slower for this key shape.
struct PairMap: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacity: Int) {
        var cap = 16
        while cap < capacity * 2 { cap <<= 1 }
        keys = [UInt64](repeating: PairMap.empty, count: cap)
        values = [UInt64](repeating: 0, count: cap)
        mask = cap - 1
    }

    @inline(__always)
    static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        (UInt64(UInt32(bitPattern: a)) << 32) | UInt64(UInt32(bitPattern: b))
    }

    @inline(__always)
    private func slot(_ k: UInt64) -> Int {
        Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Later insertions of the same pair overwrite earlier ones, matching
    /// the Rust HashMap built from the merges list.
    mutating func insert(_ a: Int32, _ b: Int32, rank: UInt32, newId: Int32) {
        let k = PairMap.key(a, b)
        var i = slot(k)
        while keys[i] != PairMap.empty && keys[i] != k { i = (i + 1) & mask }
        keys[i] = k
        values[i] = (UInt64(rank) << 32) | UInt64(UInt32(bitPattern: newId))
    }

    /// Packed (rank << 32 | newId), or nil.
    @inline(__always)
    func get(_ a: Int32, _ b: Int32) -> UInt64? {
        let k = PairMap.key(a, b)
        return keys.withUnsafeBufferPointer { kp in
            var i = slot(k)
            while true {
                let cur = kp[i]
                if cur == k { return values[i] }
                if cur == PairMap.empty { return nil }
                i = (i + 1) & mask
            }
        }
    }
}

/// Open-addressing table keyed by byte strings, storing two Int32 per
/// entry. Used immutably for "vocab token bytes -> id" and mutably as the
/// per-call word cache ("word bytes -> range of ids").
struct ByteKeyTable: Sendable {
    private var slots: [Int32]          // entry index + 1, 0 = empty
    private var hashes: [UInt64] = []
    private var keyStarts: [Int32] = []
    private var keyLens: [Int32] = []
    private var valueA: [Int32] = []
    private var valueB: [Int32] = []
    private var arena: [UInt8] = []
    private var mask: Int
    private(set) var count = 0
    let maxEntries: Int

    init(expectedEntries: Int, maxEntries: Int = Int.max) {
        var cap = 64
        while cap < expectedEntries * 2 { cap <<= 1 }
        slots = [Int32](repeating: 0, count: cap)
        mask = cap - 1
        self.maxEntries = maxEntries
    }

    @inline(__always)
    static func hash(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        var i = start
        while i < end {
            h = (h ^ UInt64(p[i])) &* 0x0000_0100_0000_01B3
            i += 1
        }
        return h ^ (h >> 29)
    }

    @inline(__always)
    private func equal(_ e: Int, _ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        let len = end - start
        guard Int(keyLens[e]) == len else { return false }
        let ks = Int(keyStarts[e])
        return arena.withUnsafeBufferPointer { a in
            var i = 0
            while i < len {
                if a[ks + i] != p[start + i] { return false }
                i += 1
            }
            return true
        }
    }

    func get(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, hash h: UInt64) -> (Int32, Int32)? {
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = Int(slots[i])
            if s == 0 { return nil }
            let e = s - 1
            if hashes[e] == h && equal(e, p, start, end) { return (valueA[e], valueB[e]) }
            i = (i + 1) & mask
        }
    }

    /// Inserts if absent and the table is not full. Returns false when full.
    @discardableResult
    mutating func insert(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, hash h: UInt64,
                         _ a: Int32, _ b: Int32) -> Bool {
        guard count < maxEntries else { return false }
        if (count + 1) * 2 > slots.count { grow() }
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] != 0 {
            let e = Int(slots[i]) - 1
            if hashes[e] == h && equal(e, p, start, end) { return true }
            i = (i + 1) & mask
        }
        slots[i] = Int32(count + 1)
        hashes.append(h)
        keyStarts.append(Int32(arena.count))
        keyLens.append(Int32(end - start))
        arena.append(contentsOf: UnsafeBufferPointer(rebasing: p[start..<end]))
        valueA.append(a)
        valueB.append(b)
        count += 1
        return true
    }

    mutating func insert(_ bytes: [UInt8], _ a: Int32, _ b: Int32) {
        bytes.withUnsafeBufferPointer { p in
            _ = insert(p, 0, bytes.count, hash: ByteKeyTable.hash(p, 0, bytes.count), a, b)
        }
    }

    private mutating func grow() {
        let cap = slots.count * 2
        slots = [Int32](repeating: 0, count: cap)
        mask = cap - 1
        for e in 0..<count {
            var i = Int(truncatingIfNeeded: hashes[e]) & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = Int32(e + 1)
        }
    }
}
