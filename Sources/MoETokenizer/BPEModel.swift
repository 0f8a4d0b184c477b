import Foundation

/// The `BPE` model of tokenizer.json: vocab, ranked merges and the options
/// that decide what happens to characters missing from the vocab.
struct BPEModel: Sendable {
    let vocab: [String: Int32]
    /// One past the largest vocab id (ids may have holes).
    let idLimit: Int
    let merges: PairMap
    let unkId: Int32?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?

    /// Fast initial-symbol lookups (-1 = not in vocab).
    let asciiIds: [Int32]
    let scalarIds: [UInt32: Int32]
    /// `<0xXX>` token ids for byte fallback (-1 = absent).
    let byteFallbackIds: [Int32]
    /// Id of each byte's ByteLevel stand-in character (-1 = absent).
    let byteLevelIds: [Int32]

    /// Whether the model can consume raw bytes in place of ByteLevel
    /// stand-in characters: every stand-in must be a vocab token and no
    /// prefix/suffix may decorate single characters.
    var canMapBytesLazily: Bool {
        continuingSubwordPrefix == nil && endOfWordSuffix == nil && !byteLevelIds.contains(-1)
    }

    static func parse(_ node: JSONNode) throws -> BPEModel {
        if let type = node["type"].string, type != "BPE" {
            throw TokenizerError.unsupported("model", type)
        }
        if node["type"].isNull && node["merges"].isNull {
            throw TokenizerError.invalid("model (no \"type\" and no BPE merges)")
        }
        if let dropout = node["dropout"].value as? NSNumber, dropout.doubleValue > 0 {
            throw TokenizerError("unsupported BPE option 'dropout' (\(dropout)) in tokenizer.json")
        }
        guard let rawVocab = node["vocab"].object else {
            throw TokenizerError.invalid("field 'model.vocab' (expected an object)")
        }
        var vocab = [String: Int32](minimumCapacity: rawVocab.count)
        var maxId = -1
        for (k, v) in rawVocab {
            guard let id = (v as? NSNumber)?.intValue ?? (v as? Int), id >= 0, id < Int(Int32.max) else {
                throw TokenizerError.invalid("vocab entry '\(k)'")
            }
            vocab[k] = Int32(id)
            maxId = max(maxId, id)
        }

        let prefix = node["continuing_subword_prefix"].string
        let suffix = node["end_of_word_suffix"].string
        // Iterate the raw array: wrapping 100k+ merges in JSONNode values
        // (with their error paths) would dominate load time.
        let mergeList: [Any]
        if node["merges"].isNull {
            mergeList = []
        } else {
            guard let list = node["merges"].array else {
                throw TokenizerError.invalid("field 'model.merges' (expected an array)")
            }
            mergeList = list
        }
        var merges = PairMap(capacity: mergeList.count)
        let prefixLen = prefix?.utf8.count ?? 0
        for (rank, m) in mergeList.enumerated() {
            let a: String, b: String
            if let s = m as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError.invalid("merge #\(rank + 1) '\(s)'") }
                a = String(parts[0]); b = String(parts[1])
            } else if let arr = m as? [Any], arr.count == 2, let x = arr[0] as? String, let y = arr[1] as? String {
                a = x; b = y
            } else {
                throw TokenizerError.invalid("merge #\(rank + 1)")
            }
            guard let ia = vocab[a], let ib = vocab[b] else {
                throw TokenizerError("merge #\(rank + 1) uses a token missing from the vocab in tokenizer.json")
            }
            let merged: String
            if prefixLen == 0 {
                merged = a + b
            } else {
                // Rust slices the prefix off `b` by byte length (and panics
                // when it cannot); mirror the slice, reject what it rejects.
                let bBytes = Array(b.utf8)
                guard bBytes.count >= prefixLen,
                      bBytes.count == prefixLen || (bBytes[prefixLen] & 0xC0) != 0x80 else {
                    throw TokenizerError("merge #\(rank + 1) '\(b)' is shorter than continuing_subword_prefix in tokenizer.json")
                }
                merged = a + String(decoding: bBytes[prefixLen...], as: UTF8.self)
            }
            guard let inew = vocab[merged] else {
                throw TokenizerError("merge #\(rank + 1) produces '\(merged)', missing from the vocab in tokenizer.json")
            }
            merges.insert(ia, ib, rank: UInt32(rank), newId: inew)
        }

        var unkId: Int32? = nil
        if let unk = node["unk_token"].string {
            // Rust only fails when an unknown character actually needs it;
            // resolving lazily as nil here reproduces "drop the character".
            unkId = vocab[unk]
        }

        var ascii = [Int32](repeating: -1, count: 128)
        var scalars = [UInt32: Int32]()
        for (k, v) in vocab {
            let us = k.unicodeScalars
            if us.count == 1, let s = us.first {
                if s.value < 128 { ascii[Int(s.value)] = v } else { scalars[s.value] = v }
            }
        }
        var fallback = [Int32](repeating: -1, count: 256)
        var byteLevel = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            fallback[b] = vocab[String(format: "<0x%02X>", b)] ?? -1
            let c = ByteLevelTables.byteToChar[b]
            byteLevel[b] = c < 128 ? ascii[Int(c)] : (scalars[c] ?? -1)
        }

        return BPEModel(vocab: vocab, idLimit: maxId + 1, merges: merges, unkId: unkId,
                        fuseUnk: node["fuse_unk"].boolOr(false), byteFallback: node["byte_fallback"].boolOr(false),
                        ignoreMerges: node["ignore_merges"].boolOr(false),
                        continuingSubwordPrefix: prefix, endOfWordSuffix: suffix,
                        asciiIds: ascii, scalarIds: scalars, byteFallbackIds: fallback, byteLevelIds: byteLevel)
    }

    /// Table of whole-word vocab entries for `ignore_merges`, keyed in the
    /// byte domain the model will see (raw bytes when mapping lazily).
    func wholeWordTable(lazyBytes: Bool) -> ByteKeyTable {
        var t = ByteKeyTable(expectedEntries: vocab.count)
        for (k, v) in vocab {
            if lazyBytes {
                if let raw = ByteLevelTables.decode(k) { t.insert(raw, v, 0) }
            } else {
                t.insert(Array(k.utf8), v, 0)
            }
        }
        return t
    }

    /// Initial symbols of a word (Rust `BPE::merge_word` before merging).
    func initialSymbols(_ p: UnsafeBufferPointer<UInt8>, _ span: Span, lazyBytes: Bool, into syms: inout [Int32]) {
        syms.removeAll(keepingCapacity: true)
        if lazyBytes {
            for i in span.start..<span.end { syms.append(byteLevelIds[Int(p[i])]) }
            return
        }
        var pendingUnk = false  // fused/unfused unk waiting to be emitted
        var i = span.start
        while i < span.end {
            let (c, len) = UTF8Util.decode(p, i)
            let isFirst = i == span.start
            let isLast = i + len == span.end
            var id: Int32 = -1
            var pieceBytes: [UInt8]? = nil  // only built on slow paths
            if continuingSubwordPrefix == nil && endOfWordSuffix == nil {
                id = c < 128 ? asciiIds[Int(c)] : (scalarIds[c] ?? -1)
            } else {
                var s = String(decoding: UnsafeBufferPointer(rebasing: p[i..<(i + len)]), as: UTF8.self)
                if !isFirst, let pre = continuingSubwordPrefix { s = pre + s }
                if isLast, let suf = endOfWordSuffix { s += suf }
                id = vocab[s] ?? -1
                pieceBytes = Array(s.utf8)
            }
            defer { i += len }
            if id >= 0 {
                if pendingUnk, let u = unkId { syms.append(u); pendingUnk = false }
                syms.append(id)
                continue
            }
            if byteFallback {
                let bytes = pieceBytes ?? Array(p[i..<(i + len)])
                if bytes.allSatisfy({ byteFallbackIds[Int($0)] >= 0 }) {
                    // Rust adds the byte tokens without flushing a pending
                    // unk first; reproduce that ordering.
                    for b in bytes { syms.append(byteFallbackIds[Int(b)]) }
                    continue
                }
            }
            if let u = unkId {
                if pendingUnk && !fuseUnk { syms.append(u) }
                pendingUnk = true
            }
        }
        if pendingUnk, let u = unkId { syms.append(u) }
    }
}
