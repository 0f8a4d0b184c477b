import Foundation

/// Reusable buffers for merging one word, owned by one encode call so the
/// hot loop does not allocate.
struct BPEScratch {
    var ranks = [UInt64]()
    var prev = [Int32]()
    var next = [Int32]()
    var heap = [UInt64]()
}

/// The BPE merge loop. Semantics (Rust `Word::merge_all` without dropout):
/// repeatedly apply the applicable merge with the lowest rank, the leftmost
/// one among equal ranks, until none applies.
enum BPEMerge {
    /// Words up to this many symbols use the quadratic scan, which beats the
    /// heap on the short words a regex pre-tokenizer produces. Both give
    /// identical results (see `BPEMergeTests`).
    static let heapThreshold = 48

    static func merge(_ syms: inout [Int32], _ merges: PairMap, _ scratch: inout BPEScratch) {
        if syms.count < 2 { return }
        if syms.count <= heapThreshold {
            mergeScan(&syms, merges, &scratch.ranks)
        } else {
            mergeHeap(&syms, merges, &scratch)
        }
    }

    /// O(n^2) variant: keep the packed (rank, newId) of each adjacent pair;
    /// the packed value orders by rank first, and ranks identify pairs
    /// uniquely, so the smallest value is the next merge.
    static func mergeScan(_ syms: inout [Int32], _ merges: PairMap, _ ranks: inout [UInt64]) {
        var n = syms.count
        ranks.removeAll(keepingCapacity: true)
        for k in 0..<(n - 1) { ranks.append(merges.get(syms[k], syms[k + 1]) ?? UInt64.max) }
        syms.withUnsafeMutableBufferPointer { s in
            ranks.withUnsafeMutableBufferPointer { r in
                while n > 1 {
                    var best = UInt64.max
                    var k = -1
                    for j in 0..<(n - 1) where r[j] < best {
                        best = r[j]
                        k = j
                    }
                    if k < 0 { break }
                    s[k] = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: best))
                    // Drop symbol k+1 and pair k+1's slot by shifting left.
                    var j = k + 1
                    while j < n - 1 { s[j] = s[j + 1]; j += 1 }
                    j = k
                    while j < n - 2 { r[j] = r[j + 1]; j += 1 }
                    n -= 1
                    if k > 0 { r[k - 1] = merges.get(s[k - 1], s[k]) ?? UInt64.max }
                    if k < n - 1 { r[k] = merges.get(s[k], s[k + 1]) ?? UInt64.max }
                }
            }
        }
        syms.removeLast(syms.count - n)
    }

    /// O(n log n) variant for long words (whole sentences when there is no
    /// pre-tokenizer, as in SentencePiece-style tokenizers): a min-heap of
    /// (rank, position) over a doubly linked list of symbols. Stale heap
    /// entries are detected by re-checking the pair's current rank; a symbol
    /// merged into its left neighbour is marked dead with `next = -1`.
    /// Works in the scratch buffers and compacts `syms` in place, so a
    /// warmed-up scratch makes the whole merge allocation-free.
    static func mergeHeap(_ syms: inout [Int32], _ merges: PairMap, _ scratch: inout BPEScratch) {
        let n = syms.count
        scratch.prev.removeAll(keepingCapacity: true)
        scratch.next.removeAll(keepingCapacity: true)
        for i in 0..<n {
            scratch.prev.append(Int32(i - 1))
            scratch.next.append(i + 1 < n ? Int32(i + 1) : -1)
        }
        // Move the heap storage out of the scratch (rather than copying it)
        // so pushes do not trigger a copy-on-write of a shared buffer.
        var heap = Heap(storage: [])
        swap(&heap.storage, &scratch.heap)
        heap.storage.removeAll(keepingCapacity: true)
        for i in 0..<(n - 1) {
            if let v = merges.get(syms[i], syms[i + 1]) { heap.push((v & 0xFFFF_FFFF_0000_0000) | UInt64(i)) }
        }
        while let top = heap.pop() {
            let pos = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            // Dead symbols and the last live one both have next == -1.
            let nx = Int(scratch.next[pos])
            guard nx >= 0 else { continue }
            guard let v = merges.get(syms[pos], syms[nx]), v >> 32 == rank else { continue }
            syms[pos] = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: v))
            let nn = scratch.next[nx]
            scratch.next[nx] = -1  // nx is merged away
            scratch.next[pos] = nn
            if nn >= 0 { scratch.prev[Int(nn)] = Int32(pos) }
            let pv = Int(scratch.prev[pos])
            if pv >= 0, let pvv = merges.get(syms[pv], syms[pos]) {
                heap.push((pvv & 0xFFFF_FFFF_0000_0000) | UInt64(pv))
            }
            if nn >= 0, let nv = merges.get(syms[pos], syms[Int(nn)]) {
                heap.push((nv & 0xFFFF_FFFF_0000_0000) | UInt64(pos))
            }
        }
        swap(&heap.storage, &scratch.heap)
        // Symbol 0 is never merged away and the list runs left to right, so
        // the write index never passes the read index.
        var w = 0
        var i = 0
        while i >= 0 {
            syms[w] = syms[i]
            w += 1
            i = Int(scratch.next[i])
        }
        syms.removeLast(n - w)
    }

    /// Minimal binary min-heap over UInt64 keys.
    struct Heap {
        var storage: [UInt64]

        mutating func push(_ v: UInt64) {
            storage.append(v)
            var i = storage.count - 1
            while i > 0 {
                let parent = (i - 1) >> 1
                if storage[parent] <= v { break }
                storage[i] = storage[parent]
                i = parent
            }
            storage[i] = v
        }

        mutating func pop() -> UInt64? {
            guard let last = storage.popLast() else { return nil }
            if storage.isEmpty { return last }
            let top = storage[0]
            let n = storage.count
            var i = 0
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                var c = l
                if l + 1 < n && storage[l + 1] < storage[l] { c = l + 1 }
                if storage[c] >= last { break }
                storage[i] = storage[c]
                i = c
            }
            storage[i] = last
            return top
        }
    }
}
