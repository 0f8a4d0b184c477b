import Foundation

/// Where a text stands against a compiled schema: the possible parses (several while an anyOf has not been decided),
/// each a stack of frames, innermost last. As in json_object, the text starts at its value and whitespace between
/// tokens is what `JSONPrefix.takeSpace` allows.
public struct JSONSchemaState: Sendable, Equatable {
    enum Frame: Sendable, Equatable {
        case value(Int)                                  // a value of this node, not yet begun
        /// Phases: 0 after '{', 1 before ':' (with the property whose value follows), 2 after a value, 3 after ','.
        case object(Int, seen: UInt64, phase: UInt8, pending: Int)
        case key(Int, seen: UInt64, typed: [UInt8])      // inside a key: its JSON bytes so far, opening quote included
        /// Inside a key that is none of the listed properties: its bytes so far while they begin one (nil once they
        /// cannot be one), and the string escape state (as `string`).
        case freeKey(Int, seen: UInt64, typed: [UInt8]?, escape: UInt8)
        case array(Int, count: Int, phase: UInt8)        // phases: 0 after '[', 2 after a value, 3 after ','
        case string(escape: UInt8)                       // 0 plain, 1 after '\', 2…5 hex digits left + 1
        case constrained(Int, state: Int32)              // inside a constrained string: its pattern's automaton state
        case integer(lo: Int, hi: Int, negative: Bool, value: Int, digits: Int)   // an integer so far, and its bounds
        case number(lex: UInt8)                          // JSONPrefix's number modes
        /// A bounded number so far: its digits as an integer (`digits` of them), and `fraction` digits after the
        /// point (−1 before any point).
        case decimal(NumberBounds, negative: Bool, mantissa: Int, digits: Int, fraction: Int)
        case literal(candidates: [[UInt8]], at: Int)
    }
    struct Parse: Sendable, Equatable {
        var frames: [Frame]
        var spaces: UInt8 = 0
        /// The text starts at its value: no whitespace before it (as json_object starts at its '{').
        var began = false
    }
    var parses: [Parse]

    public init(_ schema: JSONSchema) { parses = [Parse(frames: [.value(schema.root)])] }

    /// Some parse has read a whole value.
    public var isComplete: Bool { parses.contains { Self.complete($0) } }
    /// Every parse has read a whole value and can take nothing but whitespace.
    public var isClosed: Bool { parses.allSatisfy { $0.frames.isEmpty } }

    /// A whole value: nothing open, or only a top-level number or literal that could also go on (`12` of `123`).
    static func complete(_ p: Parse) -> Bool {
        guard p.frames.count <= 1 else { return false }
        switch p.frames.first {
        case nil: return true
        case .number(let lex)?:
            return JSONPrefix.numberEnds.map(\.rawValue).contains(lex)
        case .literal(let candidates, let at)?: return candidates.contains { $0.count == at }
        case .integer(let lo, let hi, let negative, let value, let digits)?:
            return digits >= 1 && (negative ? -value : value) >= lo && (negative ? -value : value) <= hi
        case .decimal(let b, let negative, let mantissa, let digits, let fraction)?:
            return endable(b, negative, mantissa, digits, fraction)
        default: return false
        }
    }

    /// The largest integer magnitude: 15 digits, which a double (and so every JSON parser) holds exactly.
    static let integerLimit = 999_999_999_999_999

    /// Most parses kept at once (an anyOf of near-identical alternatives), and most frames deep.
    static let maxParses = 64, maxFrames = 128
    /// Some parse is inside a free string (a string value, or a key other than the listed ones) where bytes other than
    /// quote, backslash and control bytes keep it going: a token of such bytes is allowed whatever the other parses
    /// make of it (in a key that may be a listed property or another, 3.6 → 0.38 ms a mask over 32k tokens).
    public var inFreeString: Bool {
        parses.contains {
            switch $0.frames.last {
            case .string(escape: 0)?, .freeKey(_, _, _, escape: 0)?: return true
            default: return false
            }
        }
    }

    public mutating func feed(_ b: UInt8, _ schema: JSONSchema) -> Bool {
        var next: [Parse] = []
        for p in parses { Self.feed(p, b, schema, into: &next, expansions: 0) }
        parses = Array(next.prefix(Self.maxParses))
        return !parses.isEmpty
    }

    public mutating func feed(_ bytes: some Sequence<UInt8>, _ schema: JSONSchema) -> Bool {
        for b in bytes where !feed(b, schema) { return false }
        return true
    }

    static func isSpace(_ b: UInt8) -> Bool { JSONPrefix.isSpace(b) }
    static func isDigit(_ b: UInt8) -> Bool { JSONPrefix.isDigit(b) }

    /// The properties (a bit each, in the schema's order) whose key may come next after those `seen`: any not seen
    /// yet; in an ordered object, those after the last seen up to the first required one among them (a required
    /// property cannot be passed over, nor an earlier one come back).
    static func nextKeys(_ seen: UInt64, count: Int, required: UInt64, ordered: Bool) -> UInt64 {
        let all: UInt64 = count == 64 ? ~0 : (1 << UInt64(count)) - 1
        guard ordered else { return all & ~seen }
        var next: UInt64 = 0
        var j = seen == 0 ? 0 : 64 - seen.leadingZeroBitCount
        while j < count {
            next |= 1 << UInt64(j)
            if required & (1 << UInt64(j)) != 0 { break }
            j += 1
        }
        return next
    }

    /// Feeds one byte to one parse; what survives (several parses when an anyOf opens) goes to `out`.
    static func feed(_ parse: Parse, _ b: UInt8, _ schema: JSONSchema, into out: inout [Parse], expansions: Int) {
        var p = parse
        guard p.frames.count < maxFrames, expansions < 32 else { return }
        guard let top = p.frames.last else {
            if JSONPrefix.takeSpace(b, &p.spaces) { out.append(p) }
            return
        }
        let structural: Bool
        switch top {
        case .value, .object, .array: structural = true
        default: structural = false
        }
        if structural && isSpace(b) {
            guard p.began, JSONPrefix.takeSpace(b, &p.spaces) else { return }
            out.append(p)
            return
        }
        switch top {
        case .string, .key, .constrained: break
        default: p.spaces = 0
        }
        p.began = true
        p.frames.removeLast()
        switch top {
        case .value(let n):
            switch schema.nodes[n] {
            case .anyOf(let alternatives):
                for a in alternatives {
                    var q = p
                    q.frames.append(.value(a))
                    feed(q, b, schema, into: &out, expansions: expansions + 1)
                }
                return
            case .object:
                guard b == UInt8(ascii: "{") else { return }
                p.frames.append(.object(n, seen: 0, phase: 0, pending: -1))
            case .array:
                guard b == UInt8(ascii: "[") else { return }
                p.frames.append(.array(n, count: 0, phase: 0))
            case .string:
                guard b == UInt8(ascii: "\"") else { return }
                p.frames.append(.string(escape: 0))
            case .constrainedString(let dfa):
                guard b == UInt8(ascii: "\"") else { return }
                p.frames.append(.constrained(n, state: dfa.start))
            case .integer(let lo, let hi):
                let negative = b == UInt8(ascii: "-")
                guard negative || isDigit(b) else { return }
                let value = negative ? 0 : Int(b - 0x30), digits = negative ? 0 : 1
                guard Self.viable(negative, value, digits, lo, hi) else { return }
                p.frames.append(.integer(lo: lo, hi: hi, negative: negative, value: value, digits: digits))
            case .boundedNumber(let bounds):
                let negative = b == UInt8(ascii: "-")
                guard negative || isDigit(b) else { return }
                let mantissa = negative ? 0 : Int(b - 0x30), digits = negative ? 0 : 1
                guard viableNumber(bounds, negative: negative, mantissa: mantissa, digits: digits, fraction: -1) else { return }
                p.frames.append(.decimal(bounds, negative: negative, mantissa: mantissa, digits: digits, fraction: -1))
            case .number:
                let lex: JSONPrefix.Mode
                if b == UInt8(ascii: "-") { lex = .minus } else if b == UInt8(ascii: "0") { lex = .zero }
                else if isDigit(b) { lex = .integer } else { return }
                p.frames.append(.number(lex: lex.rawValue))
            case .literals(let values):
                let c = values.filter { $0.first == b }
                guard !c.isEmpty else { return }
                p.frames.append(.literal(candidates: c, at: 1))
            }
            out.append(p)
        case .object(let n, let seen, let phase, let pending):
            guard case .object(let props, let required, let additional, let ordered) = schema.nodes[n] else { return }
            let unseen = Self.nextKeys(seen, count: props.count, required: required, ordered: ordered) != 0
            switch (phase, b) {
            case (0, UInt8(ascii: "}")), (2, UInt8(ascii: "}")):
                guard seen & required == required else { return }
                out.append(contentsOf: afterValue(p, schema))
                return
            case (0, UInt8(ascii: "\"")), (3, UInt8(ascii: "\"")):
                guard unseen || additional != nil else { return }
                // A listed property's key, or (with additionalProperties) any other: both parses go on.
                if additional != nil {
                    var q = p
                    q.frames.append(.freeKey(n, seen: seen, typed: props.isEmpty ? nil : [b], escape: 0))
                    out.append(q)
                }
                guard unseen else { return }
                p.frames.append(.key(n, seen: seen, typed: [b]))
            case (1, UInt8(ascii: ":")):
                p.frames.append(.object(n, seen: seen, phase: 2, pending: -1))
                p.frames.append(.value(pending))
            case (2, UInt8(ascii: ",")):
                guard unseen || additional != nil else { return }
                p.frames.append(.object(n, seen: seen, phase: 3, pending: -1))
            default: return
            }
            out.append(p)
        case .freeKey(let n, let seen, let typed, let escape):
            guard case .object(let props, _, let additional?, _) = schema.nodes[n] else { return }
            var t = typed
            switch escape {
            case 0, 9...15:
                if escape == 0 && b == UInt8(ascii: "\"") {
                    // A listed property's name is read as that property (its own parse), never as another key.
                    if let t, props.contains(where: { $0.key == t + [b] }) { return }
                    p.frames.append(.object(n, seen: seen, phase: 1, pending: additional))
                    out.append(p)
                    return
                }
                guard let next = stringEscape(after: escape, b) else { return }
                // An escaped key is taken as none of the listed names (they are matched as written, unescaped); the
                // bytes of a non-ASCII character are written as they are.
                t = next == 1 ? nil : t.map { $0 + [b] }
                if let k = t, !props.contains(where: { $0.key.starts(with: k) }) { t = nil }
                p.frames.append(.freeKey(n, seen: seen, typed: t, escape: next))
            default:
                guard let next = stringEscape(after: escape, b) else { return }
                p.frames.append(.freeKey(n, seen: seen, typed: nil, escape: next))
            }
            out.append(p)
        case .key(let n, let seen, let typed):
            guard case .object(let props, let required, _, let ordered) = schema.nodes[n] else { return }
            let t = typed + [b]
            var matched: Int?
            var any = false
            let next = Self.nextKeys(seen, count: props.count, required: required, ordered: ordered)
            for (i, prop) in props.enumerated() where next & (1 << UInt64(i)) != 0 && prop.key.starts(with: t) {
                any = true
                if prop.key.count == t.count { matched = i }
            }
            guard any else { return }
            if let i = matched {
                p.frames.append(.object(n, seen: seen | (1 << UInt64(i)), phase: 1, pending: props[i].node))
            } else {
                p.frames.append(.key(n, seen: seen, typed: t))
            }
            out.append(p)
        case .array(let n, let count, let phase):
            guard case .array(let items, let min, let max) = schema.nodes[n] else { return }
            if (phase == 0 || phase == 2) && b == UInt8(ascii: "]") {
                guard count >= min else { return }
                out.append(contentsOf: afterValue(p, schema))
                return
            }
            if phase == 2 {
                guard b == UInt8(ascii: ","), max.map({ count < $0 }) ?? true else { return }
                p.frames.append(.array(n, count: count, phase: 3))
                out.append(p)
                return
            }
            guard max.map({ count < $0 }) ?? true else { return }
            p.frames.append(.array(n, count: count + 1, phase: 2))
            p.frames.append(.value(items))
            feed(p, b, schema, into: &out, expansions: expansions + 1)
        case .string(let escape):
            if escape == 0 && b == UInt8(ascii: "\"") { out.append(contentsOf: afterValue(p, schema)); return }
            guard let next = stringEscape(after: escape, b) else { return }
            p.frames.append(.string(escape: next))
            out.append(p)
        case .constrained(let n, let state):
            guard case .constrainedString(let dfa) = schema.nodes[n] else { return }
            if b == UInt8(ascii: "\"") {
                if dfa.accepts(state) { out.append(contentsOf: afterValue(p, schema)) }
                return
            }
            // The content is matched as written: no escapes, and no bytes JSON would need escaped.
            guard b != UInt8(ascii: "\\"), b >= 0x20 else { return }
            let next = dfa.next(state, b)
            guard next >= 0 else { return }
            p.frames.append(.constrained(n, state: next))
            out.append(p)
        case .integer(let lo, let hi, let negative, let value, let digits):
            if isDigit(b) {
                // No digit after a leading zero; 15 at most.
                guard !(digits >= 1 && value == 0), digits < 15 else { return }
                let v = value * 10 + Int(b - 0x30)
                guard Self.viable(negative, v, digits + 1, lo, hi) else { return }
                p.frames.append(.integer(lo: lo, hi: hi, negative: negative, value: v, digits: digits + 1))
                out.append(p)
                return
            }
            // Anything else ends the integer, which must then lie within the bounds.
            let v = negative ? -value : value
            guard digits >= 1, v >= lo, v <= hi else { return }
            for q in afterValue(p, schema) { feed(q, b, schema, into: &out, expansions: expansions + 1) }
        case .decimal(let bounds, let negative, let mantissa, let digits, let fraction):
            var next: (mantissa: Int, digits: Int, fraction: Int)?
            if isDigit(b) {
                // No digit after a leading zero of the integer part; 17 digits at most.
                guard !(fraction < 0 && digits >= 1 && mantissa == 0), digits < maxNumberDigits else { return }
                next = (mantissa * 10 + Int(b - 0x30), digits + 1, fraction < 0 ? -1 : fraction + 1)
            } else if b == UInt8(ascii: "."), fraction < 0, digits >= 1 {
                next = (mantissa, digits, 0)
            }
            if let n = next {
                guard viableNumber(bounds, negative: negative, mantissa: n.mantissa, digits: n.digits, fraction: n.fraction) else { return }
                p.frames.append(.decimal(bounds, negative: negative, mantissa: n.mantissa, digits: n.digits, fraction: n.fraction))
                out.append(p)
                return
            }
            // Anything else ends the number, which must then lie within the bounds.
            guard endable(bounds, negative, mantissa, digits, fraction) else { return }
            for q in afterValue(p, schema) { feed(q, b, schema, into: &out, expansions: expansions + 1) }
        case .number(let lex):
            // JSONPrefix's number lexer reads the bytes that continue a number; any other byte ends it.
            var m = JSONPrefix()
            m.mode = JSONPrefix.Mode(rawValue: lex)!
            let terminable = JSONPrefix.numberEnds.contains(m.mode)
            let continues = isDigit(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") || b == UInt8(ascii: ".")
                || b == UInt8(ascii: "e") || b == UInt8(ascii: "E")
            if continues {
                guard m.feed(b), m.mode.rawValue >= JSONPrefix.Mode.minus.rawValue,
                      m.mode.rawValue <= JSONPrefix.Mode.exponentFull.rawValue else { return }
                p.frames.append(.number(lex: m.mode.rawValue))
                out.append(p)
                return
            }
            guard terminable else { return }
            // The number ended: this byte belongs to what holds it.
            for q in afterValue(p, schema) { feed(q, b, schema, into: &out, expansions: expansions + 1) }
        case .literal(let candidates, let at):
            let c = candidates.filter { $0.count > at && $0[at] == b }
            if !c.isEmpty {
                if c.count == 1 && c[0].count == at + 1 {
                    out.append(contentsOf: afterValue(p, schema))
                } else {
                    p.frames.append(.literal(candidates: c, at: at + 1))
                    out.append(p)
                }
                return
            }
            // A shorter candidate may have ended here (enum [1, 12] after "1"): the byte belongs to what holds it.
            guard candidates.contains(where: { $0.count == at }) else { return }
            for q in afterValue(p, schema) { feed(q, b, schema, into: &out, expansions: expansions + 1) }
        }
    }

    /// Inside a JSON string (not at its closing quote): the escape state after byte b (0 plain, 1 after '\\', 2…5 hex
    /// digits left + 1, 9…15 inside a UTF-8 character as UTF8Step), or nil when b cannot stand there.
    static func stringEscape(after escape: UInt8, _ b: UInt8) -> UInt8? {
        switch escape {
        case 0: return b == UInt8(ascii: "\\") ? 1 : b < 0x20 ? nil : UTF8Step.next(0, b)
        case 9...15: return UTF8Step.next(escape, b)
        case 1: return b == UInt8(ascii: "u") ? 5 : Array("\"\\/bfnrt".utf8).contains(b) ? 0 : nil
        default:
            let hex = isDigit(b) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "f")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "F"))
            return hex ? (escape == 2 ? 0 : escape - 1) : nil
        }
    }

    /// After a value closed (its frame already removed): the container's next phase, or the end of the text.
    static func afterValue(_ parse: Parse, _ schema: JSONSchema) -> [Parse] {
        var p = parse
        guard let top = p.frames.popLast() else { return [p] }
        switch top {
        case .object(let n, let seen, _, _): p.frames.append(.object(n, seen: seen, phase: 2, pending: -1))
        case .array(let n, let count, _): p.frames.append(.array(n, count: count, phase: 2))
        default: return []
        }
        return [p]
    }
}
