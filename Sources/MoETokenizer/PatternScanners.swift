import Foundation

/// A half-open byte range into a working buffer.
struct Span: Equatable, Sendable {
    var start: Int
    var end: Int
}

/// Hand-written matchers for the three split regexes used by the supported
/// model families. They reproduce the leftmost-first, backtracking semantics
/// of Oniguruma exactly (proven against NSRegularExpression by a randomized
/// test) while running on UTF-8 bytes, which is several times faster than a
/// general regex engine and allocation-free.
///
/// Every position of any input matches one of the alternatives of these
/// patterns, so the matches tile the input with no gaps.
enum KnownPattern: Sendable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// Same as llama3 but `\p{N}` (single digits).
    case qwen2

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Recognises a `Split` regex as one of the known patterns.
    init?(source: String) {
        switch source {
        case Self.gpt2Source: self = .gpt2
        case Self.llama3Source: self = .llama3
        case Self.qwen2Source: self = .qwen2
        default: return nil
        }
    }

    var source: String {
        switch self {
        case .gpt2: return Self.gpt2Source
        case .llama3: return Self.llama3Source
        case .qwen2: return Self.qwen2Source
        }
    }

    /// Appends the matches of the pattern over `p[start..<end]` to `out`.
    func scan(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, into out: inout [Span]) {
        CharClass.bmpTable.withUnsafeBufferPointer { bmp in
            var i = start
            while i < end {
                let m: Int
                switch self {
                case .gpt2: m = Self.gpt2Match(p, i, end, bmp)
                case .llama3: m = Self.llamaMatch(p, i, end, bmp, maxDigits: 3)
                case .qwen2: m = Self.llamaMatch(p, i, end, bmp, maxDigits: 1)
                }
                out.append(Span(start: i, end: m))
                i = m
            }
        }
    }

    // MARK: - shared pieces

    /// End of the run of scalars (starting at `i`) whose class intersects `mask`.
    @inline(__always)
    private static func run(_ p: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int,
                            _ bmp: UnsafeBufferPointer<UInt8>, _ mask: UInt8) -> Int {
        var j = i
        while j < end {
            let b = p[j]
            if b < 0x80 {
                if bmp[Int(b)] & mask == 0 { break }
                j += 1
            } else {
                let (c, l) = UTF8Util.decode(p, j)
                if CharClass.of(c, bmp) & mask == 0 { break }
                j += l
            }
        }
        return j
    }

    /// End of the run of "other" scalars: not letter, number or whitespace.
    @inline(__always)
    private static func runOther(_ p: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int,
                                 _ bmp: UnsafeBufferPointer<UInt8>) -> Int {
        var j = i
        while j < end {
            let (c, l) = UTF8Util.decode(p, j)
            if CharClass.of(c, bmp) != 0 { break }
            j += l
        }
        return j
    }

    /// Whitespace tail shared by both families: `\s+(?!\S)|\s+` starting at
    /// a whitespace scalar `i`. `run` is the end of the whitespace run and
    /// `lastStart` the start of its last scalar.
    @inline(__always)
    private static func whitespaceTail(_ i: Int, _ runEnd: Int, _ lastStart: Int, _ end: Int) -> Int {
        if runEnd == end { return runEnd }          // \s+ then end of input: (?!\S) holds
        if lastStart > i { return lastStart }        // backtrack one scalar so (?!\S) holds
        return runEnd                                // single whitespace before non-space: \s+
    }

    // MARK: - GPT-2

    private static func gpt2Match(_ p: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int,
                                  _ bmp: UnsafeBufferPointer<UInt8>) -> Int {
        let b = p[i]
        if b == 0x27, i + 1 < end {  // contractions, case-sensitive
            let c1 = p[i + 1]
            if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { return i + 2 }  // s t m d
            if i + 2 < end {
                let c2 = p[i + 2]
                if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) {
                    return i + 3  // re ve ll
                }
            }
        }
        let (c, len) = UTF8Util.decode(p, i)
        let cls = CharClass.of(c, bmp)
        if c == 0x20, i + 1 < end {  // optional leading space
            let (c2, l2) = UTF8Util.decode(p, i + 1)
            let cls2 = CharClass.of(c2, bmp)
            if cls2 & CharClass.letter != 0 { return run(p, i + 1 + l2, end, bmp, CharClass.letter) }
            if cls2 & CharClass.number != 0 { return run(p, i + 1 + l2, end, bmp, CharClass.number) }
            if cls2 == 0 { return runOther(p, i + 1 + l2, end, bmp) }
        }
        if cls & CharClass.letter != 0 { return run(p, i + len, end, bmp, CharClass.letter) }
        if cls & CharClass.number != 0 { return run(p, i + len, end, bmp, CharClass.number) }
        if cls == 0 { return runOther(p, i + len, end, bmp) }
        // Whitespace.
        var j = i + len
        var lastStart = i
        while j < end {
            let (c2, l2) = UTF8Util.decode(p, j)
            if CharClass.of(c2, bmp) & CharClass.space == 0 { break }
            lastStart = j
            j += l2
        }
        return whitespaceTail(i, j, lastStart, end)
    }

    // MARK: - Llama-3 / Qwen2

    /// Case-insensitive contraction at `i` (which holds an apostrophe);
    /// returns its end or nil. `ſ` (U+017F) case-folds to `s`, as in
    /// Oniguruma and ICU.
    @inline(__always)
    private static func contraction(_ p: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int) -> Int? {
        guard i + 1 < end else { return nil }
        let c1 = p[i + 1] | 0x20  // ASCII lowercase (harmless for non-letters we reject below)
        if p[i + 1] < 0x80 {
            if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { return i + 2 }
            if i + 2 < end, p[i + 2] < 0x80 {
                let c2 = p[i + 2] | 0x20
                if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) {
                    return i + 3
                }
            }
        } else if p[i + 1] == 0xC5, i + 2 < end, p[i + 2] == 0xBF {
            return i + 3  // 'ſ
        }
        return nil
    }

    private static func llamaMatch(_ p: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int,
                                   _ bmp: UnsafeBufferPointer<UInt8>, maxDigits: Int) -> Int {
        if p[i] == 0x27, let m = contraction(p, i, end) { return m }
        let (c, len) = UTF8Util.decode(p, i)
        let cls = CharClass.of(c, bmp)
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if cls & CharClass.letter != 0 { return run(p, i + len, end, bmp, CharClass.letter) }
        if cls & CharClass.number == 0, c != 0x0D, c != 0x0A, i + len < end {
            let (c2, l2) = UTF8Util.decode(p, i + len)
            if CharClass.of(c2, bmp) & CharClass.letter != 0 {
                return run(p, i + len + l2, end, bmp, CharClass.letter)
            }
        }
        // \p{N}{1,maxDigits}
        if cls & CharClass.number != 0 {
            var j = i + len
            var count = 1
            while count < maxDigits, j < end {
                let (c2, l2) = UTF8Util.decode(p, j)
                if CharClass.of(c2, bmp) & CharClass.number == 0 { break }
                j += l2
                count += 1
            }
            return j
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        var otherStart = -1
        if cls == 0 {
            otherStart = i + len
        } else if c == 0x20, i + 1 < end {
            let (c2, l2) = UTF8Util.decode(p, i + 1)
            if CharClass.of(c2, bmp) == 0 { otherStart = i + 1 + l2 }
        }
        if otherStart >= 0 {
            var j = runOther(p, otherStart, end, bmp)
            while j < end, p[j] == 0x0D || p[j] == 0x0A { j += 1 }
            return j
        }
        // Whitespace: \s*[\r\n]+ first, then \s+(?!\S), then \s+.
        var j = i
        var lastStart = i
        var afterLastNewline = -1
        while j < end {
            let (c2, l2) = UTF8Util.decode(p, j)
            if CharClass.of(c2, bmp) & CharClass.space == 0 { break }
            if c2 == 0x0D || c2 == 0x0A { afterLastNewline = j + 1 }
            lastStart = j
            j += l2
        }
        if afterLastNewline >= 0 { return afterLastNewline }
        return whitespaceTail(i, j, lastStart, end)
    }
}
