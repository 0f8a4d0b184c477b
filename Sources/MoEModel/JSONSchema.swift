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
