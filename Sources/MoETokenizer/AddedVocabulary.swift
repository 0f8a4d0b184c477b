import Foundation

/// One entry of tokenizer.json `added_tokens`. Its `id` field is validated
/// but not kept: Rust ignores it (it re-adds the token and only warns on a
/// mismatch); see `AddedVocabulary`. Equality covers the same fields as
/// Rust's derived `PartialEq` (content and flags, no id).
struct AddedToken: Sendable, Equatable {
    let content: String
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
    let normalized: Bool
    let special: Bool

    init(_ node: JSONNode) throws {
        guard let id = node["id"].int, id >= 0 else { throw TokenizerError.invalid("added token id at '\(node.path)'") }
        content = try node["content"].requireString()
        singleWord = node["single_word"].boolOr(false)
        lstrip = node["lstrip"].boolOr(false)
        rstrip = node["rstrip"].boolOr(false)
        special = node["special"].boolOr(false)
        normalized = node["normalized"].boolOr(!special)
    }
}

/// Rust's `AddedVocabulary` construction from tokenizer.json: tokens are
/// re-added in file order; a token whose content is already known (added
/// earlier or in the model vocab) takes that id, otherwise the next free id
/// after the model vocab. Identical duplicates are ignored; a later token
/// with the same id replaces the earlier one's flags. Linear in the number
/// of tokens (Rust rescans every stored token and id per token).
struct AddedVocabulary: Sendable {
    var idByContent: [String: Int32] = [:]
    var tokenById: [Int32: AddedToken] = [:]
    var specialContents: Set<String> = []
    /// Rust 0.23 decodes a normalized added token as its *normalized* form
    /// (`normalized_cache`) when the normalizer changes it.
    var normalizedForm: [Int32: String] = [:]
    /// Registration order used to build the matchers: specials first.
    var specials: [AddedToken] = []
    var others: [AddedToken] = []

    init(_ tokens: [AddedToken], model: BPEModel, normalizer: Normalizer?) {
        let vocabCount = model.vocab.count
        for t in tokens where t.special && !t.content.isEmpty && !specialContents.contains(t.content) {
            specials.append(t)
            specialContents.insert(t.content)
        }
        // Largest id in `idByContent` so far. Ids of known contents never
        // change, so a running maximum equals Rust's max over the map.
        var maxAddedId: Int32? = nil
        for t in tokens {
            if t.content.isEmpty { continue }
            // Rust skips a token equal to any stored one. A stored token
            // always sits at the id of its content, so one lookup suffices.
            if let known = idByContent[t.content], tokenById[known] == t { continue }
            let id: Int32
            if let known = idByContent[t.content] ?? model.vocab[t.content] {
                id = known
            } else if let maxId = maxAddedId {
                id = (Int(maxId) >= vocabCount || vocabCount == 0) ? maxId + 1 : Int32(vocabCount)
            } else {
                id = Int32(vocabCount)
            }
            idByContent[t.content] = id
            maxAddedId = max(maxAddedId ?? id, id)
            tokenById[id] = t
            if t.normalized, let normalizer {
                let normed = String(decoding: normalizer.apply(Array(t.content.utf8)), as: UTF8.self)
                if normed != t.content { normalizedForm[id] = normed }
            }
            if !specialContents.contains(t.content) { others.append(t) }
        }
    }

    var registrationOrder: [AddedToken] { specials + others }
}

/// A piece of input after added-token extraction.
enum AddedSplit {
    case text(Span)
    case token(Int32)
}

/// Finds added tokens in text like the Rust `AddedVocabulary`: an
/// Aho-Corasick automaton with LeftmostLongest semantics, i.e. the match
/// starting leftmost wins and, among those, the longest. A byte trie walked
/// from each candidate start gives the same answer; a first-byte filter
/// keeps the scan cheap when (as usual) added tokens start with rare bytes.
struct AddedTokenMatcher: Sendable {
    private struct Node: Sendable {
        var children: [UInt8: Int32] = [:]
        var token: Int32 = -1  // index into `ids`
    }
    private var nodes: [Node] = [Node()]
    private var firstByte = [Bool](repeating: false, count: 256)
    private var ids: [Int32] = []
    /// Flags are looked up by id, so the last definition of an id wins.
    private let flags: [Int32: AddedToken]

    var isEmpty: Bool { ids.isEmpty }

    /// `patterns[i]` is the byte string to look for (the normalized content
    /// for normalized tokens) and `tokenIds[i]` the id it produces.
    init(patterns: [[UInt8]], tokenIds: [Int32], flags: [Int32: AddedToken]) {
        self.flags = flags
        for (id, pat) in zip(tokenIds, patterns) where !pat.isEmpty {
            var n = 0
            for b in pat {
                if let c = nodes[n].children[b] {
                    n = Int(c)
                } else {
                    nodes.append(Node())
                    nodes[n].children[b] = Int32(nodes.count - 1)
                    n = nodes.count - 1
                }
            }
            // Keep the first registration of a duplicate pattern.
            if nodes[n].token < 0 {
                nodes[n].token = Int32(ids.count)
                ids.append(id)
            }
            firstByte[Int(pat[0])] = true
        }
    }

    /// Longest pattern starting at `i`: (token index, end).
    private func longest(at i: Int, _ p: UnsafeBufferPointer<UInt8>, _ end: Int) -> (Int, Int)? {
        var n = 0
        var best: (Int, Int)? = nil
        var j = i
        while j < end, let c = nodes[n].children[p[j]] {
            n = Int(c)
            j += 1
            if nodes[n].token >= 0 { best = (Int(nodes[n].token), j) }
        }
        return best
    }

    /// Splits `p[start..<end]` (Rust `find_matches`), honouring
    /// single_word / lstrip / rstrip.
    func split(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> [AddedSplit] {
        if ids.isEmpty || start == end { return start == end ? [] : [.text(Span(start: start, end: end))] }
        var out = [AddedSplit]()
        var startOffset = start
        var i = start
        while i < end {
            guard firstByte[Int(p[i])], let (ti, mEnd) = longest(at: i, p, end) else { i += 1; continue }
            let id = ids[ti]
            guard let tok = flags[id] else { i = mEnd; continue }
            var mStart = i
            var mStop = mEnd
            i = mEnd  // the automaton resumes after the raw match either way
            if tok.singleWord {
                let startSpace = mStart == start || !Self.endsWithWord(p, start, mStart)
                let stopSpace = mStop == end || !Self.startsWithWord(p, mStop, end)
                if !startSpace || !stopSpace { continue }
            }
            if tok.lstrip {
                mStart = max(Self.whitespaceRunStart(p, start, mStart), startOffset)
            }
            if tok.rstrip {
                mStop = Self.whitespaceRunEnd(p, mStop, end)
            }
            if startOffset < mStart { out.append(.text(Span(start: startOffset, end: mStart))) }
            out.append(.token(id))
            startOffset = mStop
        }
        if startOffset < end { out.append(.text(Span(start: startOffset, end: end))) }
        return out
    }

    private static func endsWithWord(_ p: UnsafeBufferPointer<UInt8>, _ lo: Int, _ i: Int) -> Bool {
        guard i > lo else { return false }
        let s = UTF8Util.previousStart(p, before: i)
        return CharClass.isWordChar(UTF8Util.decode(p, max(s, lo)).0)
    }

    private static func startsWithWord(_ p: UnsafeBufferPointer<UInt8>, _ i: Int, _ hi: Int) -> Bool {
        guard i < hi else { return false }
        return CharClass.isWordChar(UTF8Util.decode(p, i).0)
    }

    /// Start of the whitespace run ending at `i` (regex `\s*$` on the prefix).
    private static func whitespaceRunStart(_ p: UnsafeBufferPointer<UInt8>, _ lo: Int, _ i: Int) -> Int {
        var j = i
        while j > lo {
            let s = UTF8Util.previousStart(p, before: j)
            if !CharClass.isWhitespace(UTF8Util.decode(p, s).0) { break }
            j = s
        }
        return j
    }

    /// End of the whitespace run starting at `i` (regex `^\s*` on the suffix).
    private static func whitespaceRunEnd(_ p: UnsafeBufferPointer<UInt8>, _ i: Int, _ hi: Int) -> Int {
        var j = i
        while j < hi {
            let (c, l) = UTF8Util.decode(p, j)
            if !CharClass.isWhitespace(c) { break }
            j += l
        }
        return j
    }
}
