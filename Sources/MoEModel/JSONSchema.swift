import Foundation

/// A JSON Schema compiled for constrained decoding (`response_format` json_schema): the subset structured outputs
/// use (OpenAI's strict mode, Pydantic models). Objects list their `properties`; keys come in the schema's order when
/// it is known (`propertyOrder`: as xgrammar, llguidance and OpenAI's strict mode write them, an optional one may be
/// left out, a required one not), else in any order; each at most once, the `required` ones before the object
/// closes; other keys only as `additionalProperties` allows (left
/// out: none when properties are listed, as strict mode and xgrammar read it, any without them). `true` and `{}` are
/// any value. Arrays take `items` with `minItems`/`maxItems`; strings (free, or with one of `format`,
/// `pattern`, `minLength`/`maxLength`), numbers and integers (with `minimum`/`maximum`, exclusive or not), booleans and
/// null; `enum` and `const` of plain values; `anyOf` (and a list of types) of any of these; `$ref` into `$defs` (or
/// `definitions`), recursion included. Annotations (`title`, `description`, `default`, `examples`, `$schema`) are
/// ignored; any other keyword would constrain the output in a way this does not check, so it is refused, by name.
public struct JSONSchema: Sendable {
    public enum Node: Sendable {
        /// `additional`: the node of other keys' values (`additionalProperties` true or a schema), nil for none;
        /// `ordered`: the properties, in the schema's order, come in that order.
        case object(properties: [(key: [UInt8], node: Int)], required: UInt64, additional: Int?, ordered: Bool)
        case array(items: Int, min: Int, max: Int?)
        case string
        /// A string whose content (between its quotes, without escapes) matches a pattern: `pattern`, `format`, or
        /// `minLength`/`maxLength` (counted in characters).
        case constrainedString(RegexDFA)
        /// An integer within [lo, hi] (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`; without them, the
        /// integers of at most 15 digits, which a double, and so every JSON parser, holds exactly).
        case integer(lo: Int, hi: Int)
        case number
        /// A number within bounds, written without an exponent, 17 digits at most (so the text is the value).
        case boundedNumber(NumberBounds)
        /// Each value as JSON bytes: `enum`, `const`, booleans, null.
        case literals([[UInt8]])
        case anyOf([Int])
    }

    public let nodes: [Node]
    public let root: Int

    public struct Unsupported: Error, CustomStringConvertible, Equatable {
        public var path: String
        public var reason: String
        public var description: String { "json_schema at \(path.isEmpty ? "the root" : path): \(reason)" }
    }

    static let annotations: Set<String> = ["title", "description", "default", "examples", "$schema", "$id", "$comment",
                                           "deprecated", "readOnly", "writeOnly", "strict"]

    /// Compiles a schema given as Foundation JSON (what JSONSerialization returns, whose objects do not keep their
    /// keys' order); `propertyOrder` gives an object's property names in the order its document wrote them (from the
    /// names; nil where unknown, which leaves that object's keys in any order).
    public init(_ schema: Any, propertyOrder: (Set<String>) -> [String]? = { _ in nil }) throws {
        (root, nodes) = try withoutActuallyEscaping(propertyOrder) { order in
            var b = Builder(document: schema, propertyOrder: order)
            let root = try b.compile(schema, path: "")
            return (root, b.nodes.map { $0! })
        }
    }

    struct Builder {
        let document: Any
        let propertyOrder: (Set<String>) -> [String]?
        var nodes: [Node?] = []
        var refs: [String: Int] = [:]

        /// The node of any JSON value (`true`, `{}`, an object's free keys): one of string, number, true, false,
        /// null, an object of any keys and values, an array of any values.
        var anyValue: Int?

        mutating func any() -> Int {
            if let a = anyValue { return a }
            let a = reserve(), object = reserve(), array = reserve()
            anyValue = a
            let string = reserve(), number = reserve(), literals = reserve()
            nodes[string] = .string
            nodes[number] = .number
            nodes[literals] = .literals([Array("true".utf8), Array("false".utf8), Array("null".utf8)])
            nodes[object] = .object(properties: [], required: 0, additional: a, ordered: false)
            nodes[array] = .array(items: a, min: 0, max: nil)
            nodes[a] = .anyOf([string, number, literals, object, array])
            return a
        }

        mutating func compile(_ s: Any, path: String) throws -> Int {
            // true, {} and a schema of annotations alone (Pydantic's Any field: {"title": …}) take any value.
            if (s as? Bool) == true || (s as? [String: Any]).map({ $0.keys.allSatisfy(JSONSchema.annotations.contains) }) == true {
                return any()
            }
            guard let obj = s as? [String: Any] else {
                throw Unsupported(path: path, reason: "a schema must be an object, true or {} (false is not supported)")
            }
            if let ref = obj["$ref"] as? String {
                if let known = refs[ref] { return known }
                let prefixes = ["#/$defs/", "#/definitions/"]
                guard let p = prefixes.first(where: { ref.hasPrefix($0) }),
                      let defs = (document as? [String: Any])?[p == "#/$defs/" ? "$defs" : "definitions"] as? [String: Any],
                      let target = defs[String(ref.dropFirst(p.count))] else {
                    throw Unsupported(path: path, reason: "$ref \(ref) does not name an entry of $defs or definitions")
                }
                let i = reserve()
                refs[ref] = i
                nodes[i] = .anyOf([try compile(target, path: ref)])
                return i
            }
            let known: Set<String> = ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
                                      "pattern", "format", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
                                      "exclusiveMaximum",
                                      "enum", "const", "anyOf", "oneOf", "$defs", "definitions"]
            if let other = obj.keys.sorted().first(where: { !known.contains($0) && !JSONSchema.annotations.contains($0) }) {
                throw Unsupported(path: path, reason: "the keyword \(other) is not supported")
            }
            let i = reserve()
            nodes[i] = try node(obj, path: path)
            return i
        }

        mutating func reserve() -> Int {
            nodes.append(nil)
            return nodes.count - 1
        }

        mutating func node(_ obj: [String: Any], path: String) throws -> Node {
            if let values = obj["enum"] as? [Any] { return .literals(try values.map { try literal($0, path: path + "/enum") }) }
            if let value = obj["const"] { return .literals([try literal(value, path: path + "/const")]) }
            if let alternatives = (obj["anyOf"] ?? obj["oneOf"]) as? [Any] {
                guard !alternatives.isEmpty else { throw Unsupported(path: path, reason: "anyOf is empty") }
                // oneOf is taken as anyOf: of structured outputs' alternatives (null or a value, distinct objects) at
                // most one can match a text anyway.
                return .anyOf(try alternatives.enumerated().map { try compile($1, path: path + "/anyOf/\($0)") })
            }
            if let types = obj["type"] as? [String] {
                var one = obj
                return .anyOf(try types.map { t in
                    one["type"] = t
                    let i = reserve()
                    nodes[i] = try node(one, path: path)
                    return i
                })
            }
            guard let type = obj["type"] as? String else {
                throw Unsupported(path: path, reason: "a schema needs a type, enum, const, anyOf or $ref")
            }
            switch type {
            case "object":
                // Other keys: none when properties are listed and additionalProperties is false or left out (as
                // OpenAI's strict mode and xgrammar read it); any with no properties listed; else additionalProperties'
                // schema (true: any value).
                let props = obj["properties"] as? [String: Any] ?? [:]
                var additional: Int?
                switch obj["additionalProperties"] {
                case nil: additional = obj["properties"] == nil ? any() : nil
                case let b as Bool: additional = b ? any() : nil
                case let extra?: additional = try compile(extra, path: path + "/additionalProperties")
                }
                guard props.count <= 64 else { throw Unsupported(path: path, reason: "more than 64 properties") }
                // The document's order, where it is known; else any order (the names sorted only to be stable).
                let order = propertyOrder(Set(props.keys)).flatMap { $0.count == props.count && Set($0) == Set(props.keys) ? $0 : nil }
                let names = order ?? props.keys.sorted()
                var required: UInt64 = 0
                for r in obj["required"] as? [String] ?? [] {
                    guard let k = names.firstIndex(of: r) else {
                        throw Unsupported(path: path, reason: "required property \(r) is not among the properties")
                    }
                    required |= 1 << UInt64(k)
                }
                return .object(properties: try names.map { name in
                    (Array(try JSONSerialization.data(withJSONObject: name, options: [.fragmentsAllowed, .withoutEscapingSlashes])),
                     try compile(props[name]!, path: path + "/properties/\(name)"))
                }, required: required, additional: additional, ordered: order != nil)
            case "array":
                guard let items = obj["items"] else { throw Unsupported(path: path, reason: "an array needs items") }
                let min = obj["minItems"] as? Int ?? 0, max = obj["maxItems"] as? Int
                return .array(items: try compile(items, path: path + "/items"), min: min, max: max)
            case "string": return try string(obj, path: path)
            case "number": return try number(obj, path: path)
            case "integer": return try integer(obj, path: path)
            case "boolean": return .literals([Array("true".utf8), Array("false".utf8)])
            case "null": return .literals([Array("null".utf8)])
            default: throw Unsupported(path: path, reason: "type \(type) is not a JSON type")
            }
        }

        /// Regular expressions of the string formats Pydantic and OpenAI schemas use (their syntax; a date's day is not
        /// checked against its month).
        static let formats: [String: String] = [
            "date": #"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"#,
            "time": #"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?"#,
            "date-time": #"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"#,
            "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            "email": #"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,8}"#,
            "ipv4": #"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"#,
        ]

        /// A string node: free, or constrained by one of pattern, format, or a length range.
        func string(_ obj: [String: Any], path: String) throws -> Node {
            let pattern = obj["pattern"] as? String, format = obj["format"] as? String
            let minLength = obj["minLength"] as? Int, maxLength = obj["maxLength"] as? Int
            let lengths = minLength != nil || maxLength != nil
            guard [pattern != nil, format != nil, lengths].filter({ $0 }).count <= 1 else {
                throw Unsupported(path: path, reason: "pattern, format and minLength/maxLength cannot be combined")
            }
            let regex: String
            if let pattern {
                regex = pattern
            } else if let format {
                guard let r = Self.formats[format] else {
                    throw Unsupported(path: path, reason: "the format \(format) is not supported (supported: \(Self.formats.keys.sorted().joined(separator: ", ")))")
                }
                regex = r
            } else if lengths {
                let lo = minLength ?? 0
                guard lo >= 0, maxLength.map({ $0 >= lo && $0 <= 1000 }) ?? true, lo <= 1000 else {
                    throw Unsupported(path: path, reason: "minLength and maxLength must satisfy 0 <= minLength <= maxLength <= 1000")
                }
                // Characters (whole, as JSON Schema counts them), none a quote, a backslash or a control byte.
                regex = "[^\"\\\\\u{00}-\u{1F}]" + "{\(lo),\(maxLength.map(String.init) ?? "")}"
            } else {
                return .string
            }
            do { return .constrainedString(RegexDFA(try RegexNFA(regex))) } catch let e as RegexNFA.Invalid {
                throw Unsupported(path: path, reason: "pattern: \(e.description)")
            }
        }

        func literal(_ v: Any, path: String) throws -> [UInt8] {
            if v is [Any] || v is [String: Any] { throw Unsupported(path: path, reason: "enum and const values must be plain values") }
            return Array(try JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .withoutEscapingSlashes]))
        }
    }
}

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
