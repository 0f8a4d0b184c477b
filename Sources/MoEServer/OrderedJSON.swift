import Foundation

/// A JSON value whose objects keep their keys in the order written, and which writes itself as Python's
/// `json.dumps(value, ensure_ascii=False)` does: the form chat templates give tool definitions and tool-call arguments
/// (transformers' `tojson` filter), so a prompt holds a tool's properties in the order its client declared them and
/// matches what transformers renders byte for byte. Codable's dictionaries lose the order, hence this small parser.
indirect enum OrderedJSON: Equatable, Sendable {
    case null
    case bool(Bool)
    /// An integer's digits as written (Python keeps integers of any size).
    case integer(String)
    case double(Double)
    case string(String)
    case array([OrderedJSON])
    case object([Member])

    struct Member: Equatable, Sendable {
        var key: String
        var value: OrderedJSON
    }

    struct Malformed: Error, CustomStringConvertible {
        let offset: Int
        let reason: String
        var description: String { "\(reason) at byte \(offset)" }
    }

    /// The one JSON value `text` holds (whitespace around it allowed).
    static func parse(_ text: String) throws -> OrderedJSON {
        var p = Parser(bytes: Array(text.utf8))
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.at == p.bytes.count else { throw Malformed(offset: p.at, reason: "text after the JSON value") }
        return v
    }

    subscript(key: String) -> OrderedJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// Python's json.dumps(…, ensure_ascii=False): ", " and ": " separators, floats as repr writes them.
    var python: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let digits): out += digits == "-0" ? "0" : digits
        case .double(let d): out += Self.pythonRepr(d)
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += ", " }
                v.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, m) in members.enumerated() {
                if i > 0 { out += ", " }
                Self.writeString(m.key, to: &out)
                out += ": "
                m.value.write(to: &out)
            }
            out += "}"
        }
    }

    /// Python's float repr: the shortest digits that read back to the same double, in positional form for
    /// exponents −4 … 15 (with ".0" when whole) and as d.ddde±XX otherwise — which is also what Swift's description
    /// writes, but for infinities and NaN (not JSON; parse never makes them).
    static func pythonRepr(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return d.description
    }

    /// A JSON string as Python writes it with ensure_ascii=False: only `"`, `\` and control characters escaped.
    static func writeString(_ s: String, to out: inout String) { write(s, quote: "\"", pythonRepr: false, to: &out) }

    /// A string as Python's repr() writes it: in single quotes (double when it holds a single quote and no double
    /// one), control characters as \xNN.
    static func writeRepr(_ s: String, to out: inout String) {
        write(s, quote: s.contains("'") && !s.contains("\"") ? "\"" : "'", pythonRepr: true, to: &out)
    }

    private static func write(_ s: String, quote: Unicode.Scalar, pythonRepr: Bool, to out: inout String) {
        out.unicodeScalars.append(quote)
        for u in s.unicodeScalars {
            switch u {
            case quote, "\\": out += "\\"; out.unicodeScalars.append(u)
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}" where !pythonRepr: out += "\\b"
            case "\u{0C}" where !pythonRepr: out += "\\f"
            default:
                if u.value < 0x20 || (pythonRepr && u.value == 0x7F) {
                    let hex = String(u.value, radix: 16)
                    out += pythonRepr ? "\\x" + String(repeating: "0", count: 2 - hex.count) + hex
                                      : "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out.unicodeScalars.append(quote)
    }

    /// Python's repr() of the value as json.loads gives it (None, True, a float's repr, strings quoted as repr
    /// quotes them): what Jinja's `| string` writes for it in a transformers chat template, but for a string itself.
    var pythonRepr: String {
        switch self {
        case .null: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .integer(let d): return d == "-0" ? "0" : d
        case .double(let d): return d.isNaN ? "nan" : d.isInfinite ? (d < 0 ? "-inf" : "inf") : d.description
        case .string(let s):
            var out = ""
            Self.writeRepr(s, to: &out)
            return out
        case .array(let a): return "[" + a.map(\.pythonRepr).joined(separator: ", ") + "]"
        case .object(let m): return "{" + m.map { OrderedJSON.string($0.key).pythonRepr + ": " + $0.value.pythonRepr }.joined(separator: ", ") + "}"
        }
    }

    private struct Parser {
        let bytes: [UInt8]
        var at = 0
        static let maxDepth = 512

        mutating func skipSpace() {
            while at < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[at]) { at += 1 }
        }

        func fail(_ reason: String) -> Malformed { Malformed(offset: at, reason: reason) }

        mutating func value(depth: Int) throws -> OrderedJSON {
            guard depth < Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth)") }
            skipSpace()
            guard at < bytes.count else { throw fail("a value was expected") }
            switch bytes[at] {
            case UInt8(ascii: "{"):
                var members: [Member] = []
                try items(closing: "}") { p in
                    guard p.at < p.bytes.count, p.bytes[p.at] == UInt8(ascii: "\"") else { throw p.fail("an object key was expected") }
                    let key = try p.string()
                    p.skipSpace()
                    try p.expect(":")
                    members.append(Member(key: key, value: try p.value(depth: depth + 1)))
                }
                return .object(members)
            case UInt8(ascii: "["):
                var elements: [OrderedJSON] = []
                try items(closing: "]") { p in elements.append(try p.value(depth: depth + 1)) }
                return .array(elements)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            default: return try number()
            }
        }

        /// A container's items, its opening bracket just read, up to its closing one: each read by `item` (from its
        /// first non-space byte), separated by commas.
        mutating func items(closing: Unicode.Scalar, _ item: (inout Parser) throws -> Void) throws {
            at += 1
            skipSpace()
            if at < bytes.count, bytes[at] == UInt8(closing.value) { at += 1; return }
            while true {
                skipSpace()
                try item(&self)
                skipSpace()
                guard at < bytes.count else { throw fail("unterminated \(closing == "}" ? "object" : "array")") }
                if bytes[at] == UInt8(closing.value) { at += 1; return }
                guard bytes[at] == UInt8(ascii: ",") else { throw fail("',' or '\(closing)' was expected") }
                at += 1
            }
        }

        mutating func expect(_ c: Unicode.Scalar) throws {
            guard at < bytes.count, bytes[at] == UInt8(c.value) else { throw fail("'\(c)' was expected") }
            at += 1
        }

        mutating func literal(_ word: String) throws {
            let w = Array(word.utf8)
            guard at + w.count <= bytes.count, Array(bytes[at..<at + w.count]) == w else { throw fail("unknown literal") }
            at += w.count
        }

        mutating func number() throws -> OrderedJSON {
            let start = at
            func digits() -> Int {
                let s = at
                while at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) { at += 1 }
                return at - s
            }
            if at < bytes.count, bytes[at] == UInt8(ascii: "-") { at += 1 }
            let intStart = at
            let n = digits()
            guard n > 0 else { throw Malformed(offset: start, reason: "a value was expected") }
            guard n == 1 || bytes[intStart] != UInt8(ascii: "0") else { throw Malformed(offset: start, reason: "a number with a leading zero") }
            var integral = true
            if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
                at += 1
                integral = false
                guard digits() > 0 else { throw fail("digits were expected after '.'") }
            }
            if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
                at += 1
                integral = false
                if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
                guard digits() > 0 else { throw fail("digits were expected in the exponent") }
            }
            let text = String(decoding: bytes[start..<at], as: UTF8.self)
            if integral { return .integer(text) }
            guard let d = Double(text), d.isFinite else { throw Malformed(offset: start, reason: "a number out of range") }
            return .double(d)
        }

        mutating func string() throws -> String {
            at += 1                                       // the opening quote
            var out: [UInt8] = []
            while true {
                guard at < bytes.count else { throw fail("unterminated string") }
                let b = bytes[at]
                at += 1
                switch b {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard at < bytes.count else { throw fail("unterminated string") }
                    let e = bytes[at]
                    at += 1
                    switch e {
                    case UInt8(ascii: "\""): out.append(0x22)
                    case UInt8(ascii: "\\"): out.append(0x5C)
                    case UInt8(ascii: "/"): out.append(0x2F)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var code = try hex4()
                        // A surrogate pair is one scalar; a lone surrogate becomes U+FFFD (a Swift string has none).
                        if (0xD800...0xDBFF).contains(code), at + 1 < bytes.count, bytes[at] == UInt8(ascii: "\\"),
                           bytes[at + 1] == UInt8(ascii: "u") {
                            let save = at
                            at += 2
                            let low = try hex4()
                            if (0xDC00...0xDFFF).contains(low) { code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00) } else { at = save }
                        }
                        out.append(contentsOf: Array(String(Unicode.Scalar(code).map(Character.init) ?? "\u{FFFD}").utf8))
                    default: throw fail("unknown escape")
                    }
                default:
                    guard b >= 0x20 else { throw fail("a control character in a string") }
                    out.append(b)
                }
            }
        }

        mutating func hex4() throws -> UInt32 {
            guard at + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[at..<at + 4], as: UTF8.self), radix: 16) else {
                throw fail("four hex digits were expected after \\u")
            }
            at += 4
            return v
        }
    }
}
