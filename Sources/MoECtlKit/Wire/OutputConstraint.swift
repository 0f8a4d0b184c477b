import Foundation

/// What the generated text must be, as the server's structured outputs take it: one JSON object
/// (`response_format` json_object), one value of a JSON schema (json_schema), a whole match of a regular expression
/// (`guided_regex`), exactly one of some strings (`guided_choice`) or a text of a GBNF grammar (`grammar`, as
/// llama.cpp's server takes it).
public enum OutputConstraint: Sendable, Equatable {
    case jsonObject
    /// The schema as JSON text (checked to be a JSON object when read).
    case jsonSchema(String)
    case regex(String)
    case choice([String])
    /// GBNF source.
    case grammar(String)

    /// A GBNF file's contents.
    public static func grammar(fromFile path: String) throws -> OutputConstraint {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConstraintError("cannot read the grammar file \(path)")
        }
        return .grammar(text)
    }

    /// A schema file's contents, checked to be a JSON object.
    public static func schema(fromFile path: String) throws -> OutputConstraint {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConstraintError("cannot read the schema file \(path)") }
        guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any], let text = String(data: data, encoding: .utf8) else {
            throw ConstraintError("the schema file \(path) is not a JSON object")
        }
        return .jsonSchema(text)
    }

    public struct ConstraintError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    func encode(into container: inout KeyedEncodingContainer<WireKey>) throws {
        switch self {
        case .jsonObject: try container.encode(["type": "json_object"], forKey: "response_format")
        case .jsonSchema(let text):
            let schema = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
            try container.encode(Format(type: "json_schema", jsonSchema: .init(name: "schema", schema: schema)), forKey: "response_format")
        case .regex(let pattern): try container.encode(pattern, forKey: "guided_regex")
        case .choice(let options): try container.encode(options, forKey: "guided_choice")
        case .grammar(let source): try container.encode(source, forKey: "grammar")
        }
    }

    struct Format: Encodable {
        struct Schema: Encodable { var name: String; var schema: JSONValue }
        var type: String
        var jsonSchema: Schema
        enum CodingKeys: String, CodingKey { case type, jsonSchema = "json_schema" }
    }
}

/// Any JSON value: a schema carried through unchanged, or a body read back (the tests' protocol stand-in).
public indirect enum JSONValue: Codable, Sendable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            if n.rounded() == n && abs(n) < 1e15 { try c.encode(Int(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
