/// UTF-8 read a byte at a time inside a JSON string, so that a string holds whole characters only (RFC 3629, as
/// llama.cpp's and xgrammar's grammars match code points): 0 between characters; 9…11 expecting 1…3 continuation
/// bytes; 12…15 expecting the restricted second byte after E0, ED, F0 or F4 (no overlong form, surrogate or value
/// past U+10FFFF). A token may end inside a character; the next must go on with it.
enum UTF8Step {
    /// The state after byte b (b ≥ 0x20, not a quote or backslash when `state` is 0), or nil when b cannot come.
    static func next(_ state: UInt8, _ b: UInt8) -> UInt8? {
        switch state {
        case 0:
            switch b {
            case 0..<0x80: return 0
            case 0xC2...0xDF: return 9
            case 0xE0: return 12
            case 0xED: return 13
            case 0xE1...0xEF: return 10
            case 0xF0: return 14
            case 0xF1...0xF3: return 11
            case 0xF4: return 15
            default: return nil
            }
        case 9...11: return (0x80...0xBF).contains(b) ? state - 9 == 0 ? 0 : state - 1 : nil
        case 12: return (0xA0...0xBF).contains(b) ? 9 : nil
        case 13: return (0x80...0x9F).contains(b) ? 9 : nil
        case 14: return (0x90...0xBF).contains(b) ? 10 : nil
        case 15: return (0x80...0x8F).contains(b) ? 10 : nil
        default: return nil
        }
    }

    /// Whether bytes are whole characters of UTF-8.
    static func whole(_ bytes: [UInt8]) -> Bool {
        var s: UInt8 = 0
        for b in bytes { guard let n = next(s, b) else { return false }; s = n }
        return s == 0
    }
}

/// Where a JSON text stands after some of its bytes: the pushdown automaton behind `response_format`
/// `{"type": "json_object"}`. It accepts exactly the prefixes of one JSON object (RFC 8259), byte by byte, starting
/// at its '{', with whitespace between tokens and after it as llama.cpp's JSON grammar allows it (`takeSpace`: a
/// model must not be able to fill its answer with blank lines), nested at most `maxDepth` deep. Bytes ≥ 0x80 are
/// string content, whole UTF-8 characters only (`UTF8Step`). A plain value (no heap storage), so that
/// trying a token against a copy costs nothing beyond its bytes.
public struct JSONPrefix: Sendable, Equatable, Hashable {
    enum Mode: UInt8, Sendable {
        case start                 // before the top-level object: its '{'
        case keyOrClose            // after '{': whitespace, '"' or '}'
        case key                   // after ',' in an object: whitespace or '"'
        case colon                 // after a key: whitespace or ':'
        case value                 // after ':' or ',' in an array: a value
        case valueOrClose          // after '[': a value or ']'
        case afterValue            // whitespace, ',' or the container's close
        case string, escape, hex   // inside a string (a key when `inKey`)
        case minus, zero, integer, dot, fraction, exponent, exponentSign, exponentDigits, exponentFull
        case literal               // inside true / false / null
        case done                  // the top-level object has closed: nothing more
    }
    var mode = Mode.start
    /// Open containers as bits, innermost lowest: 1 for '[', 0 for '{'; `depth` of them.
    var containers: UInt64 = 0
    var depth: UInt8 = 0
    public static let maxDepth: UInt8 = 64
    var inKey = false
    var hexLeft: UInt8 = 0
    /// The rest of a literal being read, as an index into `literals`, and how far.
    var literal: UInt8 = 0
    var literalAt: UInt8 = 0
    var spaces: UInt8 = 0
    /// Inside a string: where the UTF-8 of its current character stands (UTF8Step).
    var utf8: UInt8 = 0
    public static let maxIndent: UInt8 = 20

    /// Whitespace between tokens as llama.cpp's JSON grammar allows it (`ws ::= | " " | "\n" [ \t]{0,20}`): none,
    /// one space, or a newline and up to 20 spaces or tabs of indentation. `run` counts the gap so far: 0 nothing, 1
    /// one space, 2 + n a newline and n indentation bytes. False when b may not come next.
    static func takeSpace(_ b: UInt8, _ run: inout UInt8) -> Bool {
        switch run {
        case 0:
            if b == 0x20 { run = 1; return true }
            if b == 0x0A { run = 2; return true }
            return false
        case 1: return false
        default:
            guard (b == 0x20 || b == 0x09) && run < 2 + maxIndent else { return false }
            run += 1
            return true
        }
    }

    static let literals: [[UInt8]] = [Array("true".utf8), Array("false".utf8), Array("null".utf8)]
    /// Number modes where a number may end.
    static let numberEnds: [Mode] = [.zero, .integer, .fraction, .exponentDigits, .exponentFull]

    public init() {}

    /// The top-level object has closed.
    public var isComplete: Bool { mode == .done }

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }
    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// Takes one byte; false (and the state is then meaningless) when no JSON object has this prefix.
    public mutating func feed(_ b: UInt8) -> Bool {
        let inText = mode == .string || mode == .escape || mode == .hex
        if Self.isSpace(b) && !inText && mode != .start {
            // Whitespace ends a number or stands between tokens.
            if mode.rawValue >= Mode.minus.rawValue && mode.rawValue <= Mode.exponentFull.rawValue {
                guard Self.numberEnds.contains(mode) else { return false }
                mode = .afterValue
            }
            guard mode != .literal else { return false }
            return Self.takeSpace(b, &spaces)
        }
        if !inText { spaces = 0 }
        switch mode {
        case .start:
            guard b == UInt8(ascii: "{") else { return false }
            open(array: false)
            mode = .keyOrClose
        case .keyOrClose, .key:
            if b == UInt8(ascii: "\"") { mode = .string; inKey = true; return true }
            guard mode == .keyOrClose && b == UInt8(ascii: "}") else { return false }
            close()
        case .colon:
            guard b == UInt8(ascii: ":") else { return false }
            mode = .value
        case .value, .valueOrClose:
            if mode == .valueOrClose && b == UInt8(ascii: "]") { close(); return true }
            return startValue(b)
        case .afterValue:
            return afterValue(b)
        case .string:
            if utf8 != 0 {
                guard let n = UTF8Step.next(utf8, b) else { return false }
                utf8 = n
            } else if b == UInt8(ascii: "\"") {
                if inKey { inKey = false; mode = .colon } else { mode = .afterValue }
            } else if b == UInt8(ascii: "\\") {
                mode = .escape
            } else if b < 0x20 {
                return false
            } else {
                guard let n = UTF8Step.next(0, b) else { return false }
                utf8 = n
            }
        case .escape:
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                 UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"): mode = .string
            case UInt8(ascii: "u"): mode = .hex; hexLeft = 4
            default: return false
            }
        case .hex:
            let isHex = Self.isDigit(b) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "f")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "F"))
            guard isHex else { return false }
            hexLeft -= 1
            if hexLeft == 0 { mode = .string }
        case .minus:
            if b == UInt8(ascii: "0") { mode = .zero } else if Self.isDigit(b) { mode = .integer } else { return false }
        case .zero, .integer:
            if mode == .integer && Self.isDigit(b) { return true }
            if b == UInt8(ascii: ".") { mode = .dot; return true }
            if b == UInt8(ascii: "e") || b == UInt8(ascii: "E") { mode = .exponent; return true }
            return afterValue(b)
        case .dot:
            guard Self.isDigit(b) else { return false }
            mode = .fraction
        case .fraction:
            if Self.isDigit(b) { return true }
            if b == UInt8(ascii: "e") || b == UInt8(ascii: "E") { mode = .exponent; return true }
            return afterValue(b)
        case .exponent:
            if b == UInt8(ascii: "+") || b == UInt8(ascii: "-") { mode = .exponentSign; return true }
            guard Self.isDigit(b) else { return false }
            mode = .exponentDigits
        case .exponentSign:
            guard Self.isDigit(b) else { return false }
            mode = .exponentDigits
        case .exponentDigits:
            // At most two exponent digits: a double's range (1e308) is all a parser can hold anyway.
            if Self.isDigit(b) { mode = .exponentFull; return true }
            return afterValue(b)
        case .exponentFull:
            return afterValue(b)
        case .literal:
            let word = Self.literals[Int(literal)]
            guard b == word[Int(literalAt)] else { return false }
            literalAt += 1
            if Int(literalAt) == word.count { mode = .afterValue }
        case .done:
            return false
        }
        return true
    }

    /// Takes bytes; false as soon as one is refused.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> Bool {
        for b in bytes where !feed(b) { return false }
        return true
    }

    private mutating func startValue(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard depth < Self.maxDepth else { return false }
            let array = b == UInt8(ascii: "[")
            open(array: array)
            mode = array ? .valueOrClose : .keyOrClose
        case UInt8(ascii: "\""): mode = .string; inKey = false
        case UInt8(ascii: "-"): mode = .minus
        case UInt8(ascii: "0"): mode = .zero
        case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
            literal = b == UInt8(ascii: "t") ? 0 : (b == UInt8(ascii: "f") ? 1 : 2)
            literalAt = 1
            mode = .literal
        default:
            guard Self.isDigit(b) else { return false }
            mode = .integer
        }
        return true
    }

    /// After a complete value: a comma, or the innermost container's close (whitespace is taken before).
    private mutating func afterValue(_ b: UInt8) -> Bool {
        mode = .afterValue
        guard depth > 0 else { return false }
        let inArray = containers & 1 == 1
        if b == UInt8(ascii: ",") { mode = inArray ? .value : .key; return true }
        guard b == (inArray ? UInt8(ascii: "]") : UInt8(ascii: "}")) else { return false }
        close()
        return true
    }

    private mutating func open(array: Bool) {
        containers = containers << 1 | (array ? 1 : 0)
        depth += 1
    }

    private mutating func close() {
        containers >>= 1
        depth -= 1
        mode = depth == 0 ? .done : .afterValue
    }
}
