import Foundation

/// A regular expression compiled to a byte-level NFA (Thompson's construction) for vLLM's `guided_regex`: the text
/// must match the whole pattern. The subset: literals and escapes (`\.`, `\n`, `\t`, …), `.` (any byte but a newline),
/// classes `[a-z_]`, `[^"]` with `\d \w \s` (also inside classes; `\D \W \S` outside them), groups `( … )` and
/// `(?: … )`, alternation `|`, and `* + ?` and `{m}`, `{m,}`, `{m,n}` after any atom; a leading `^` and trailing `$`
/// are accepted (the whole text is matched anyway). `.`, a negated class and `\D \W \S` match one whole character
/// (a multi-byte one is one match, as Python's `re` counts it, and only valid UTF-8); a non-ASCII literal matches its
/// UTF-8 bytes as one atom; non-ASCII inside a class is refused.
public struct RegexNFA: Sendable, Equatable {
    /// A state consumes one byte of `bytes` and goes to `next`, or (when `bytes` is nil) moves without consuming to
    /// `next` and `alt` (−1: none). State `accept` ends a match.
    struct Node: Sendable, Equatable {
        var bytes: [Bool]?
        var next: Int
        var alt: Int
    }
    var nodes: [Node] = []
    let start: Int
    let accept: Int

    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public init(_ pattern: String) throws {
        var p = Parser(bytes: Array(pattern.utf8))
        if p.peek == UInt8(ascii: "^") { p.i += 1 }
        if p.bytes.last == UInt8(ascii: "$") && (p.bytes.count < 2 || p.bytes[p.bytes.count - 2] != UInt8(ascii: "\\")) {
            p.bytes.removeLast()
        }
        let ast = try p.alternation()
        guard p.i == p.bytes.count else { throw Invalid(description: "unexpected '\(Character(Unicode.Scalar(p.bytes[p.i])))' at \(p.i) in the pattern") }
        var b = Builder()
        let accept = b.add(Node(bytes: nil, next: -1, alt: -1))
        let start = try b.build(ast, then: accept)
        nodes = b.nodes
        self.start = start
        self.accept = accept
    }

    indirect enum Ast {
        case bytes([Bool])
        case sequence([Ast])
        case alternatives([Ast])
        case repeatAtom(Ast, min: Int, max: Int?)
    }

    struct Parser {
        var bytes: [UInt8]
        var i = 0
        var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

        mutating func alternation() throws -> Ast {
            var alts = [try sequence()]
            while peek == UInt8(ascii: "|") { i += 1; alts.append(try sequence()) }
            return alts.count == 1 ? alts[0] : .alternatives(alts)
        }

        mutating func sequence() throws -> Ast {
            var items: [Ast] = []
            while let c = peek, c != UInt8(ascii: "|"), c != UInt8(ascii: ")") {
                var atom = try self.atom()
                while let q = peek {
                    if q == UInt8(ascii: "*") { i += 1; atom = .repeatAtom(atom, min: 0, max: nil) }
                    else if q == UInt8(ascii: "+") { i += 1; atom = .repeatAtom(atom, min: 1, max: nil) }
                    else if q == UInt8(ascii: "?") { i += 1; atom = .repeatAtom(atom, min: 0, max: 1) }
                    else if q == UInt8(ascii: "{"), let (lo, hi) = try braces() { atom = .repeatAtom(atom, min: lo, max: hi) }
                    else { break }
                }
                items.append(atom)
            }
            return .sequence(items)
        }

        /// `{m}`, `{m,}`, `{m,n}` (nil and no change when the brace is a literal).
        mutating func braces() throws -> (Int, Int?)? {
            var j = i + 1
            func number() -> Int? {
                var n: Int?
                while j < bytes.count, bytes[j] >= 0x30, bytes[j] <= 0x39 { n = (n ?? 0) * 10 + Int(bytes[j] - 0x30); j += 1 }
                return n
            }
            guard let lo = number() else { return nil }
            var hi: Int? = lo
            if j < bytes.count, bytes[j] == UInt8(ascii: ",") { j += 1; hi = number() }
            guard j < bytes.count, bytes[j] == UInt8(ascii: "}") else { return nil }
            guard hi.map({ $0 >= lo }) ?? true, lo <= 1000, (hi ?? 0) <= 1000 else {
                throw Invalid(description: "a repeat count must be at most 1000 and {m,n} needs m <= n")
            }
            i = j + 1
            return (lo, hi)
        }

        mutating func atom() throws -> Ast {
            let c = bytes[i]
            i += 1
            switch c {
            case UInt8(ascii: "("):
                if peek == UInt8(ascii: "?") {
                    guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: ":") else {
                        throw Invalid(description: "only (?: … ) groups are supported (lookarounds and named groups are not)")
                    }
                    i += 2
                }
                let inner = try alternation()
                guard peek == UInt8(ascii: ")") else { throw Invalid(description: "a group is not closed") }
                i += 1
                return inner
            case UInt8(ascii: "["): return Self.character(try bracket())
            case UInt8(ascii: "."): return Self.character((0..<256).map { $0 != 0x0A })
            case UInt8(ascii: "\\"): return Self.character(try escape(inClass: false))
            case UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"):
                throw Invalid(description: "nothing to repeat before '\(Character(Unicode.Scalar(c)))' at \(i - 1)")
            default:
                // A non-ASCII character is one atom of its UTF-8 bytes (a repeat after it repeats all of them).
                var atom = [Ast.bytes(Self.only(c))]
                while c >= 0xC0, let b = peek, b & 0xC0 == 0x80 {
                    atom.append(.bytes(Self.only(b)))
                    i += 1
                }
                return atom.count == 1 ? atom[0] : .sequence(atom)
            }
        }

        /// One character of a set given as bytes: its ASCII members; and, when the set takes every byte from 0x80 up
        /// (`.`, a negated class, `\D \W \S`: the characters it does not name), one whole UTF-8 character of two to
        /// four bytes, no overlong form, surrogate or value past U+10FFFF.
        static func character(_ set: [Bool]) -> Ast {
            let ascii = Ast.bytes((0..<256).map { $0 < 0x80 && set[$0] })
            guard (0x80..<256).allSatisfy({ set[$0] }) else { return .bytes(set) }
            func range(_ r: ClosedRange<Int>) -> Ast { .bytes((0..<256).map { r.contains($0) }) }
            let c = range(0x80...0xBF)
            return .alternatives([ascii,
                .sequence([range(0xC2...0xDF), c]),
                .sequence([range(0xE0...0xE0), range(0xA0...0xBF), c]),
                .sequence([.bytes((0..<256).map { (0xE1...0xEC).contains($0) || (0xEE...0xEF).contains($0) }), c, c]),
                .sequence([range(0xED...0xED), range(0x80...0x9F), c]),
                .sequence([range(0xF0...0xF0), range(0x90...0xBF), c, c]),
                .sequence([range(0xF1...0xF3), c, c, c]),
                .sequence([range(0xF4...0xF4), range(0x80...0x8F), c, c])])
        }

        static func only(_ c: UInt8) -> [Bool] { (0..<256).map { $0 == Int(c) } }
        static func set(_ f: (UInt8) -> Bool) -> [Bool] { (0..<256).map { f(UInt8($0)) } }
        static let digit = set { $0 >= 0x30 && $0 <= 0x39 }
        static let word = set { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }
        static let space = set { $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0D) }

        mutating func escape(inClass: Bool) throws -> [Bool] {
            guard let c = peek else { throw Invalid(description: "the pattern ends with a backslash") }
            i += 1
            switch c {
            case UInt8(ascii: "d"): return Self.digit
            case UInt8(ascii: "w"): return Self.word
            case UInt8(ascii: "s"): return Self.space
            case UInt8(ascii: "D"), UInt8(ascii: "W"), UInt8(ascii: "S"):
                guard !inClass else { throw Invalid(description: "\\D, \\W and \\S are not supported inside a class") }
                let s = c == UInt8(ascii: "D") ? Self.digit : c == UInt8(ascii: "W") ? Self.word : Self.space
                return s.map { !$0 }
            case UInt8(ascii: "n"): return Self.only(0x0A)
            case UInt8(ascii: "t"): return Self.only(0x09)
            case UInt8(ascii: "r"): return Self.only(0x0D)
            default:
                guard c < 0x80, !(c >= 0x30 && c <= 0x39) && !((c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)) else {
                    throw Invalid(description: "the escape \\\(Character(Unicode.Scalar(c))) is not supported")
                }
                return Self.only(c)
            }
        }

        mutating func bracket() throws -> [Bool] {
            var negate = false
            if peek == UInt8(ascii: "^") { negate = true; i += 1 }
            var set = [Bool](repeating: false, count: 256)
            var first = true
            while let c = peek, c != UInt8(ascii: "]") || first {
                first = false
                i += 1
                var lo: UInt8 = c
                if c == UInt8(ascii: "\\") {
                    let s = try escape(inClass: true)
                    if s.filter({ $0 }).count != 1 {
                        for b in 0..<256 where s[b] { set[b] = true }
                        continue
                    }
                    lo = UInt8(s.firstIndex(of: true)!)
                }
                guard lo < 0x80 else { throw Invalid(description: "non-ASCII characters inside a class are not supported") }
                var hi = lo
                if peek == UInt8(ascii: "-"), i + 1 < bytes.count, bytes[i + 1] != UInt8(ascii: "]") {
                    i += 1
                    let h = bytes[i]
                    i += 1
                    guard h < 0x80, h != UInt8(ascii: "\\"), h >= lo else { throw Invalid(description: "a class range must be ASCII, low to high") }
                    hi = h
                }
                for b in lo...hi { set[Int(b)] = true }
            }
            guard peek == UInt8(ascii: "]") else { throw Invalid(description: "a class is not closed") }
            i += 1
            // A negated class also takes the characters it does not name (non-ASCII ones whole: `character`), not newline.
            return negate ? (0..<256).map { !set[$0] && $0 != 0x0A } : set
        }
    }

    struct Builder {
        var nodes: [Node] = []
        mutating func add(_ n: Node) -> Int { nodes.append(n); return nodes.count - 1 }

        /// The entry state of `ast`, whose matches continue at `then`.
        mutating func build(_ ast: Ast, then: Int) throws -> Int {
            guard nodes.count < 200_000 else { throw Invalid(description: "the pattern is too large once its repeats are expanded") }
            switch ast {
            case .bytes(let set): return add(Node(bytes: set, next: then, alt: -1))
            case .sequence(let items):
                var next = then
                for item in items.reversed() { next = try build(item, then: next) }
                return next
            case .alternatives(let alts):
                let entries = try alts.map { try build($0, then: then) }
                var entry = entries.last!
                for e in entries.dropLast().reversed() { entry = add(Node(bytes: nil, next: e, alt: entry)) }
                return entry
            case .repeatAtom(let a, let lo, let hi):
                var next = then
                if let hi {
                    // Optional copies from the top: each may stop (go to `then`) or take one more.
                    for _ in 0..<(hi - lo) {
                        let body = try build(a, then: next)
                        next = add(Node(bytes: nil, next: body, alt: then))
                    }
                } else {
                    // A loop: split into one more, or out.
                    let split = add(Node(bytes: nil, next: -1, alt: then))
                    let body = try build(a, then: split)
                    nodes[split].next = body
                    next = split
                }
                for _ in 0..<lo { next = try build(a, then: next) }
                return next
            }
        }
    }

    /// The states reachable from `states` without consuming (sorted, without duplicates).
    func closure(_ states: [Int]) -> [Int] {
        var seen = [Bool](repeating: false, count: nodes.count), stack = states, out: [Int] = []
        while let s = stack.popLast() {
            guard s >= 0, !seen[s] else { continue }
            seen[s] = true
            out.append(s)
            if nodes[s].bytes == nil { stack.append(nodes[s].next); stack.append(nodes[s].alt) }
        }
        return out.sorted()
    }

    public var initial: [Int] { closure([start]) }

    /// The states after one byte (empty: no match has this prefix).
    public func step(_ states: [Int], _ b: UInt8) -> [Int] {
        closure(states.compactMap { s in nodes[s].bytes.flatMap { $0[Int(b)] ? nodes[s].next : nil } })
    }

    public func accepts(_ states: [Int]) -> Bool { states.contains(accept) }
    /// Nothing can follow: the only live state is the end of a match.
    public func closed(_ states: [Int]) -> Bool { states.allSatisfy { nodes[$0].bytes == nil } }
}

/// The NFA determinised as it is used (LazyDFA): a pattern like `[a-z ]{1,200}` has hundreds of NFA states, and the
/// token mask feeds tens of thousands of tokens a step.
public typealias RegexDFA = LazyDFA<[Int]>

extension LazyDFA where Node == [Int] {
    public convenience init(_ nfa: RegexNFA) {
        self.init(start: nfa.initial, step: { let n = nfa.step($0, $1); return n.isEmpty ? nil : n },
                  accepts: { nfa.accepts($0) }, closed: { nfa.closed($0) })
    }
}
