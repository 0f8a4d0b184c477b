import Foundation

/// A GBNF grammar (llama.cpp's `grammar` field; vLLM's `guided_grammar` takes the same notation): rules
/// `name ::= alternatives`, each a sequence of "literals" (escapes \n \r \t \\ \" \xHH \uHHHH \UHHHHHHHH), [character
/// classes] (ranges, ^ to negate), `.` (any character), rule names and ( groups ), with `*` `+` `?` `{m}` `{m,}`
/// `{m,n}` after any of them; `#` comments; a rule ends at the end of its line unless inside parentheses or after
/// `|`. The text must be a whole `root`. Matching is on Unicode code points, as llama.cpp matches, with a token's
/// bytes decoded as UTF-8 (a code point may span tokens).
///
/// Compiled as llama.cpp compiles it: each alternative a flat run of elements ending in `.end`, repetitions and
/// groups turned into helper rules; the state is the set of stacks of positions still to match (top last), each
/// expanded until a character class is on top, an empty stack meaning the text may end there. Left recursion, which
/// such stacks cannot follow, is refused when the grammar is read.
public struct GBNFGrammar: Sendable {
    enum Element: Sendable, Equatable {
        /// One code point from the ranges (or, negated, outside them).
        case chars([ClosedRange<UInt32>], negated: Bool)
        case rule(Int)
        case end
    }

    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// Every alternative's elements, one after another, each run closed by `.end`.
    let elements: [Element]
    /// Per rule, where each of its alternatives starts in `elements`.
    let alternatives: [[Int]]
    let root: Int
    /// Rule names by id (helper rules carry their parent's name with a suffix), for messages.
    let names: [String]

    public init(_ source: String) throws {
        var p = Parser(Array(source.unicodeScalars))
        try p.parseGrammar()
        guard let root = p.ids["root"] else { throw Invalid("the grammar has no `root` rule") }
        for (name, id) in p.ids where p.rules[id] == nil {
            throw Invalid("rule `\(name)` is used but never defined")
        }
        var elements: [Element] = [], alternatives: [[Int]] = []
        for id in 0..<p.names.count {
            var starts: [Int] = []
            for alt in p.rules[id] ?? [] {
                starts.append(elements.count)
                elements += alt
                elements.append(.end)
            }
            alternatives.append(starts)
        }
        self.elements = elements
        self.alternatives = alternatives
        self.root = root
        names = p.names
        if let r = leftRecursiveRule() { throw Invalid("rule `\(names[r])` is left-recursive (it can begin with itself), which GBNF cannot match") }
    }

    // MARK: Matching

    /// The stacks still alive (in one order, so equal sets are equal states) and the bytes of a code point not yet
    /// whole.
    public struct State: Sendable, Hashable {
        var stacks: [[Int32]]
        var partial: [UInt8] = []
        init(_ set: Set<[Int32]>) { stacks = set.sorted { $0.lexicographicallyPrecedes($1) } }
    }

    public var start: State {
        var out = Set<[Int32]>()
        for a in alternatives[root] { expand(elements[a] == .end ? [] : [Int32(a)], into: &out) }
        return State(out)
    }

    /// The grammar as a byte automaton determinised as it is used (each state's successors found once).
    public func automaton() -> LazyDFA<State> {
        LazyDFA(start: start, step: { s, b in
            var n = s
            return feed(&n, b) ? n : nil
        }, accepts: { isComplete($0) }, closed: { isClosed($0) })
    }

    /// The text so far is a whole `root`.
    public func isComplete(_ s: State) -> Bool { s.partial.isEmpty && s.stacks.contains { $0.isEmpty } }

    /// Nothing can follow: the text is whole and no stack wants more.
    public func isClosed(_ s: State) -> Bool { s.partial.isEmpty && s.stacks.allSatisfy { $0.isEmpty } }

    /// Feeds one byte of UTF-8; false when no text of the grammar goes on so.
    public func feed(_ s: inout State, _ b: UInt8) -> Bool {
        if s.partial.isEmpty {
            if b < 0x80 { return accept(&s, UInt32(b)) }
            guard (0xC2...0xF4).contains(b) else { return false }
            s.partial = [b]
            return mayContinue(s)
        }
        guard b & 0xC0 == 0x80 else { return false }
        s.partial.append(b)
        let length = Self.utf8Length(s.partial[0])
        guard s.partial.count == length else { return mayContinue(s) }
        let c = Self.bits(s.partial)
        s.partial = []
        // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
        guard c >= (length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000), c <= 0x10FFFF, !(0xD800...0xDFFF).contains(c) else { return false }
        return accept(&s, c)
    }

    /// Bytes of the UTF-8 sequence a lead byte (0xC2…0xF4) begins.
    static func utf8Length(_ lead: UInt8) -> Int { lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4 }

    /// The code point bits the bytes of a sequence (whole or begun) carry.
    static func bits(_ bytes: [UInt8]) -> UInt32 {
        let length = utf8Length(bytes[0])
        var c = UInt32(bytes[0]) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for x in bytes.dropFirst() { c = c << 6 | UInt32(x & 0x3F) }
        return c
    }

    /// Whether some character a stack wants begins with the bytes of the unfinished one (so a token that ends inside
    /// a character never leads where no token can go on).
    func mayContinue(_ s: State) -> Bool {
        let length = Self.utf8Length(s.partial[0])
        let free = UInt32(6 * (length - s.partial.count))
        // The code points the sequence can still become: its bits so far with any rest, less the overlong forms
        // (below each length's first code point) and what lies past U+10FFFF; a begun overlong form becomes none.
        let lo = max(Self.bits(s.partial) << free, length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000)
        let hi = min(Self.bits(s.partial) << free | ((1 << free) - 1), 0x10FFFF)
        guard lo <= hi else { return false }
        return s.stacks.contains { stack in
            guard let top = stack.last, case .chars(let ranges, let negated) = elements[Int(top)] else { return false }
            if negated { return !ranges.contains { $0.lowerBound <= lo && $0.upperBound >= hi } }
            return ranges.contains { $0.lowerBound <= hi && $0.upperBound >= lo }
        }
    }

    func accept(_ s: inout State, _ c: UInt32) -> Bool {
        var out = Set<[Int32]>()
        for stack in s.stacks {
            guard let top = stack.last, case .chars(let ranges, let negated) = elements[Int(top)] else { continue }
            guard ranges.contains(where: { $0.contains(c) }) != negated else { continue }
            var next = stack
            next.removeLast()
            if elements[Int(top) + 1] != .end { next.append(top + 1) }
            expand(next, into: &out)
        }
        guard !out.isEmpty else { return false }
        s = State(out)
        return true
    }

    /// Replaces rule references on top of `stack` by their alternatives until each stack has a character class on
    /// top (or is empty: the text may end).
    func expand(_ stack: [Int32], into out: inout Set<[Int32]>) {
        guard let top = stack.last else { out.insert(stack); return }
        switch elements[Int(top)] {
        case .chars:
            out.insert(stack)
        case .end:
            preconditionFailure("a stack never holds an alternative's end: its successor is popped instead")
        case .rule(let r):
            var base = stack
            base.removeLast()
            if elements[Int(top) + 1] != .end { base.append(top + 1) }
            for a in alternatives[r] {
                var s = base
                if elements[a] != .end { s.append(Int32(a)) }
                expand(s, into: &out)
            }
        }
    }

    /// A rule that can reach itself without consuming a character, or nil.
    func leftRecursiveRule() -> Int? {
        // Nullable rules (that can match nothing), to a fixed point.
        var nullable = [Bool](repeating: false, count: alternatives.count)
        var changed = true
        while changed {
            changed = false
            for r in alternatives.indices where !nullable[r] {
                if alternatives[r].contains(where: { a in run(a).allSatisfy { if case .rule(let s) = $0 { return nullable[s] } else { return false } } }) {
                    nullable[r] = true
                    changed = true
                }
            }
        }
        // Rules each can begin with.
        let first: [[Int]] = alternatives.indices.map { r in
            alternatives[r].flatMap { a -> [Int] in
                var out: [Int] = []
                for e in run(a) {
                    guard case .rule(let s) = e else { break }
                    out.append(s)
                    if !nullable[s] { break }
                }
                return out
            }
        }
        var state = [UInt8](repeating: 0, count: alternatives.count)   // 0 new, 1 on the path, 2 done
        func cycle(_ r: Int) -> Int? {
            state[r] = 1
            for s in first[r] {
                if state[s] == 1 { return s }
                if state[s] == 0, let c = cycle(s) { return c }
            }
            state[r] = 2
            return nil
        }
        for r in alternatives.indices where state[r] == 0 {
            if let c = cycle(r) { return c }
        }
        return nil
    }

    /// The elements of the alternative starting at `a`, without its `.end`.
    func run(_ a: Int) -> ArraySlice<Element> {
        var e = a
        while elements[e] != .end { e += 1 }
        return elements[a..<e]
    }

    // MARK: Parsing

    struct Parser {
        let src: [Unicode.Scalar]
        var i = 0
        var ids: [String: Int] = [:]
        var names: [String] = []
        var rules: [Int: [[Element]]] = [:]

        init(_ src: [Unicode.Scalar]) { self.src = src }

        var here: Unicode.Scalar? { i < src.count ? src[i] : nil }

        func fail(_ what: String) -> Invalid {
            let line = src[..<min(i, src.count)].filter { $0 == "\n" }.count + 1
            return Invalid("\(what) at line \(line)")
        }

        mutating func id(_ name: String) -> Int {
            if let x = ids[name] { return x }
            names.append(name)
            ids[name] = names.count - 1
            return names.count - 1
        }

        mutating func helper(_ parent: String) -> Int {
            names.append("\(parent)_\(names.count)")
            return names.count - 1
        }

        /// Skips blanks and comments, and newlines when `newlines`.
        mutating func space(newlines: Bool) {
            while let c = here {
                if c == " " || c == "\t" || (newlines && (c == "\n" || c == "\r")) {
                    i += 1
                } else if c == "#" {
                    while let d = here, d != "\n" { i += 1 }
                } else {
                    return
                }
            }
        }

        static func isNameChar(_ c: Unicode.Scalar) -> Bool {
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "-" || c == "_"
        }

        mutating func name() throws -> String {
            let s = i
            while let c = here, Self.isNameChar(c) { i += 1 }
            guard i > s else { throw fail("expected a rule name") }
            return String(String.UnicodeScalarView(src[s..<i]))
        }

        mutating func parseGrammar() throws {
            space(newlines: true)
            while here != nil {
                let n = try name()
                let r = id(n)
                guard rules[r] == nil else { throw fail("rule `\(n)` is defined twice") }
                space(newlines: false)
                guard i + 2 < src.count, src[i] == ":", src[i + 1] == ":", src[i + 2] == "=" else { throw fail("expected ::= after `\(n)`") }
                i += 3
                space(newlines: true)
                rules[r] = try alternatives(n, nested: false)
                guard here == nil || here == "\n" || here == "\r" else { throw fail("unexpected `\(here!)`") }
                space(newlines: true)
            }
        }

        mutating func alternatives(_ rule: String, nested: Bool) throws -> [[Element]] {
            var alts = [try sequence(rule, nested: nested)]
            while here == "|" {
                i += 1
                space(newlines: true)
                alts.append(try sequence(rule, nested: nested))
            }
            return alts
        }

        mutating func sequence(_ rule: String, nested: Bool) throws -> [Element] {
            var seq: [Element] = []
            var lastStart = 0
            while let c = here {
                switch c {
                case "\"":
                    i += 1
                    lastStart = seq.count
                    while here != "\"" {
                        guard here != nil else { throw fail("unterminated literal") }
                        let x = try char()
                        seq.append(.chars([x...x], negated: false))
                    }
                    i += 1
                case "[":
                    i += 1
                    lastStart = seq.count
                    var negated = false
                    if here == "^" { negated = true; i += 1 }
                    var ranges: [ClosedRange<UInt32>] = []
                    while here != "]" {
                        guard here != nil else { throw fail("unterminated character class") }
                        let lo = try char()
                        if here == "-", i + 1 < src.count, src[i + 1] != "]" {
                            i += 1
                            let hi = try char()
                            guard lo <= hi else { throw fail("range out of order in a character class") }
                            ranges.append(lo...hi)
                        } else {
                            ranges.append(lo...lo)
                        }
                    }
                    i += 1
                    seq.append(.chars(ranges, negated: negated))
                case ".":
                    i += 1
                    lastStart = seq.count
                    seq.append(.chars([0...0x10FFFF], negated: false))
                case "(":
                    i += 1
                    space(newlines: true)
                    let g = helper(rule)
                    rules[g] = try alternatives(rule, nested: true)
                    guard here == ")" else { throw fail("expected )") }
                    i += 1
                    lastStart = seq.count
                    seq.append(.rule(g))
                case "*", "+", "?", "{":
                    guard lastStart < seq.count else { throw fail("`\(c)` follows nothing") }
                    var lo = 0, hi: Int? = nil
                    i += 1
                    switch c {
                    case "*": break
                    case "+": lo = 1
                    case "?": hi = 1
                    default:
                        space(newlines: false)
                        lo = try number()
                        space(newlines: false)
                        hi = lo
                        if here == "," {
                            i += 1
                            space(newlines: false)
                            hi = here == "}" ? nil : try number()
                            space(newlines: false)
                        }
                        guard here == "}" else { throw fail("expected } closing a repetition") }
                        i += 1
                        if let h = hi, h < lo { throw fail("repetition {\(lo),\(h)} has its maximum below its minimum") }
                    }
                    let item = Array(seq[lastStart...])
                    seq.removeSubrange(lastStart...)
                    seq += repeated(item, lo, hi, rule)
                    lastStart = seq.count   // a repetition is not repeated again
                default:
                    if Self.isNameChar(c) {
                        lastStart = seq.count
                        seq.append(.rule(id(try name())))
                    } else if c == "|" || c == ")" || c == "\n" || c == "\r" {
                        return seq
                    } else {
                        throw fail("unexpected `\(c)`")
                    }
                }
                space(newlines: nested)
            }
            return seq
        }

        /// `item` lo times, then up to hi − lo more (unbounded without hi), through helper rules.
        mutating func repeated(_ item: [Element], _ lo: Int, _ hi: Int?, _ rule: String) -> [Element] {
            var out: [Element] = Array(repeating: item, count: lo).flatMap { $0 }
            if let hi {
                guard hi > lo else { return out }
                // R_k ::= item R_{k−1} | ε, R_1 ::= item | ε.
                var inner: Int?
                for _ in lo..<hi {
                    let r = helper(rule)
                    rules[r] = [item + (inner.map { [Element.rule($0)] } ?? []), []]
                    inner = r
                }
                out.append(.rule(inner!))
            } else {
                let r = helper(rule)
                rules[r] = [item + [.rule(r)], []]
                out.append(.rule(r))
            }
            return out
        }

        mutating func number() throws -> Int {
            let s = i
            while let c = here, ("0"..."9").contains(c) { i += 1 }
            guard i > s, let n = Int(String(String.UnicodeScalarView(src[s..<i]))), n <= 10_000 else {
                throw fail("expected a repetition count (0…10000)")
            }
            return n
        }

        /// One character of a literal or class, escapes read.
        mutating func char() throws -> UInt32 {
            let c = src[i]
            i += 1
            guard c == "\\" else { return c.value }
            guard let e = here else { throw fail("unfinished escape") }
            i += 1
            switch e {
            case "n": return 0x0A
            case "r": return 0x0D
            case "t": return 0x09
            case "x", "u", "U":
                let digits = e == "x" ? 2 : e == "u" ? 4 : 8
                guard i + digits <= src.count, let v = UInt32(String(String.UnicodeScalarView(src[i..<(i + digits)])), radix: 16) else {
                    throw fail("\\\(e) needs \(digits) hex digits")
                }
                i += digits
                return v
            default: return e.value    // \\ \" \] \[ \- and the like: the character itself
            }
        }
    }
}
