import Foundation

/// What a `Split` pre-tokenizer searches for.
enum SplitMatcher: Sendable {
    case known(KnownPattern)
    case regex(ICURegex)
    case literal([UInt8])

    func matches(_ p: UnsafeBufferPointer<UInt8>, _ span: Span) -> [Span] {
        switch self {
        case .known(let k):
            var out = [Span]()
            k.scan(p, span.start, span.end, into: &out)
            return out
        case .regex(let re): return re.matches(p, span.start, span.end)
        case .literal(let needle): return LiteralMatcher.matches(needle, p, span.start, span.end)
        }
    }
}

/// One pre-tokenization step (Sequences are flattened at parse time, which
/// is equivalent because each step applies to every piece of the previous).
enum PreTokenizerStep: Sendable {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(SplitMatcher, SplitBehavior, invert: Bool)
    case metaspace(replacement: [UInt8], prepend: PrependScheme, split: Bool)
    case digits(individual: Bool)

    static func parse(_ node: JSONNode, into steps: inout [PreTokenizerStep]) throws {
        if node.isNull { return }
        let type = try node.typeTag()
        switch type {
        case "Sequence":
            for n in try node["pretokenizers"].requireArray() { try parse(n, into: &steps) }
        case "ByteLevel":
            steps.append(.byteLevel(addPrefixSpace: node["add_prefix_space"].boolOr(true),
                                    useRegex: node["use_regex"].boolOr(true)))
        case "Split":
            let behavior = try SplitBehavior(json: try node["behavior"].requireString())
            let pattern = node["pattern"]
            let matcher: SplitMatcher
            if let s = pattern["String"].string {
                matcher = .literal(Array(s.utf8))
            } else if let r = pattern["Regex"].string {
                if let k = KnownPattern(source: r) { matcher = .known(k) } else { matcher = .regex(try ICURegex(pattern: r)) }
            } else {
                throw TokenizerError.invalid("Split pre-tokenizer pattern at '\(pattern.path)'")
            }
            steps.append(.split(matcher, behavior, invert: node["invert"].boolOr(false)))
        case "Metaspace":
            let m = try MetaspaceOptions(node)
            var repBytes = [UInt8]()
            UTF8Util.append(m.replacement.value, to: &repBytes)
            steps.append(.metaspace(replacement: repBytes, prepend: m.prependScheme, split: m.split))
        case "Digits":
            steps.append(.digits(individual: node["individual_digits"].boolOr(false)))
        default:
            throw TokenizerError.unsupported("pre-tokenizer", type)
        }
    }
}

/// The pieces of one segment during pre-tokenization: spans into `buf`.
struct PreTokenized {
    var buf: [UInt8]
    var spans: [Span]
    /// Whether `spans[0]` starts at original offset 0 of the input text
    /// (Metaspace `prepend_scheme: first` prepends only there).
    var firstAtOrigin: Bool
}

/// The flattened pre-tokenizer pipeline.
struct PreTokenizerPipeline: Sendable {
    let steps: [PreTokenizerStep]
    /// When the last step is ByteLevel and the model can map bytes itself,
    /// the byte -> stand-in character rewrite is skipped and the model reads
    /// raw bytes (saves a buffer copy and a UTF-8 decode per byte).
    let lazyByteLevel: Bool

    var endsWithByteLevel: Bool {
        if case .byteLevel = steps.last { return true }
        return false
    }

    func run(_ segment: [UInt8], atOrigin: Bool) -> PreTokenized {
        var state = PreTokenized(buf: segment, spans: segment.isEmpty ? [] : [Span(start: 0, end: segment.count)],
                                 firstAtOrigin: atOrigin)
        for (i, step) in steps.enumerated() {
            if state.spans.isEmpty { break }
            let isLast = i == steps.count - 1
            apply(step, to: &state, skipByteMapping: isLast && lazyByteLevel)
        }
        return state
    }

    private func apply(_ step: PreTokenizerStep, to s: inout PreTokenized, skipByteMapping: Bool) {
        switch step {
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace && s.spans.contains(where: { s.buf[$0.start] != 0x20 }) {
                rebuild(&s) { bytes, out in
                    if bytes.first != 0x20 { out.append(0x20) }
                    out.append(contentsOf: bytes)
                }
            }
            if useRegex { splitAll(&s, .known(.gpt2), .isolated, invert: false) }
            if !skipByteMapping {
                rebuild(&s) { bytes, out in
                    for b in bytes { out.append(contentsOf: ByteLevelTables.byteToUTF8[Int(b)]) }
                }
            }
        case .split(let matcher, let behavior, let invert):
            splitAll(&s, matcher, behavior, invert: invert)
        case .metaspace(let rep, let prepend, let split):
            let origin = s.firstAtOrigin
            var index = 0
            rebuild(&s) { bytes, out in
                // Checked after the space -> replacement rewrite, as in Rust.
                let startsWithRep = bytes.first == 0x20 || bytes.starts(with: rep)
                let doPrepend: Bool
                switch prepend {
                case .always: doPrepend = !startsWithRep
                case .first: doPrepend = !startsWithRep && index == 0 && origin
                case .never: doPrepend = false
                }
                index += 1
                if doPrepend { out.append(contentsOf: rep) }
                for b in bytes {
                    if b == 0x20 { out.append(contentsOf: rep) } else { out.append(b) }
                }
            }
            // Splitting on a single character: the literal matcher reports one
            // match per occurrence, like Rust's char pattern.
            if split { splitAll(&s, .literal(rep), .mergedWithNext, invert: false) }
        case .digits(let individual):
            splitDigits(&s, individual: individual)
        }
    }

    /// Rewrites every span's bytes through `transform`, producing a fresh
    /// buffer whose spans are laid end to end.
    private func rebuild(_ s: inout PreTokenized, _ transform: (ArraySlice<UInt8>, inout [UInt8]) -> Void) {
        var out = [UInt8]()
        out.reserveCapacity(s.buf.count + s.spans.count * 3)
        var spans = [Span]()
        spans.reserveCapacity(s.spans.count)
        for sp in s.spans {
            let start = out.count
            transform(s.buf[sp.start..<sp.end], &out)
            if out.count > start { spans.append(Span(start: start, end: out.count)) }
        }
        s.buf = out
        s.spans = spans
    }

    private func splitAll(_ s: inout PreTokenized, _ matcher: SplitMatcher, _ behavior: SplitBehavior,
                          invert: Bool) {
        var out = [Span]()
        out.reserveCapacity(s.spans.count * 4)
        var firstAtOrigin = s.firstAtOrigin
        s.buf.withUnsafeBufferPointer { p in
            for (i, sp) in s.spans.enumerated() {
                let before = out.count
                // Fast path: the known patterns tile their input, so Isolated
                // pieces are exactly the matches.
                if case .known(let k) = matcher, behavior == .isolated, !invert {
                    k.scan(p, sp.start, sp.end, into: &out)
                    if i == 0 { firstAtOrigin = firstAtOrigin && out.count > before }
                    continue
                }
                let ms = matcher.matches(p, sp)
                let atStart = behavior.split(sp, matches: ms, invert: invert, into: &out)
                if i == 0 { firstAtOrigin = firstAtOrigin && out.count > before && atStart }
            }
        }
        if out.isEmpty { firstAtOrigin = false }
        s.spans = out
        s.firstAtOrigin = firstAtOrigin
    }

    private func splitDigits(_ s: inout PreTokenized, individual: Bool) {
        var out = [Span]()
        var firstAtOrigin = s.firstAtOrigin
        s.buf.withUnsafeBufferPointer { p in
            for (i, sp) in s.spans.enumerated() {
                var ms = [Span]()
                var j = sp.start
                while j < sp.end {
                    let (c, l) = UTF8Util.decode(p, j)
                    if CharClass.isNumeric(c) { ms.append(Span(start: j, end: j + l)) }
                    j += l
                }
                let before = out.count
                let atStart = (individual ? SplitBehavior.isolated : .contiguous).split(sp, matches: ms, invert: false, into: &out)
                if i == 0 { firstAtOrigin = firstAtOrigin && out.count > before && atStart }
            }
        }
        s.spans = out
        s.firstAtOrigin = firstAtOrigin
    }
}
