import Foundation

/// Thin typed access over `JSONSerialization` output. The config files are
/// parsed once at load, so convenience matters more than speed here; the
/// point of this wrapper is that every missing/mistyped field becomes a
/// `TokenizerError` that names the file and field instead of a crash.
struct JSONNode {
    let value: Any?
    /// Dotted path used in error messages, e.g. "model.merges".
    let path: String
    let file: String

    static func parse(_ data: Data, file: String) throws -> JSONNode {
        do {
            let obj = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            return JSONNode(value: obj, path: "", file: file)
        } catch {
            throw TokenizerError("malformed JSON in \(file): \(error.localizedDescription)")
        }
    }

    var isNull: Bool { value == nil || value is NSNull }

    subscript(key: String) -> JSONNode {
        let dict = value as? [String: Any]
        return JSONNode(value: dict?[key], path: path.isEmpty ? key : "\(path).\(key)", file: file)
    }

    var object: [String: Any]? { value as? [String: Any] }
    var array: [Any]? { value as? [Any] }
    var string: String? { value as? String }

    /// JSONSerialization returns every JSON number and boolean as an
    /// NSNumber (Darwin and Linux), and `as? Bool` on an NSNumber succeeds
    /// exactly for true/false and the numbers 0 and 1. So this accepts real
    /// booleans and 0/1; any other value, e.g. 2 or 0.5, is not a boolean
    /// (nil), so `boolOr` falls back to the default.
    var bool: Bool? { value as? Bool }

    var int: Int? {
        if let i = value as? Int { return i }
        if let n = value as? NSNumber { return n.intValue }
        return nil
    }

    var arrayNodes: [JSONNode]? {
        guard let arr = array else { return nil }
        return arr.enumerated().map { JSONNode(value: $0.element, path: "\(path)[\($0.offset)]", file: file) }
    }

    func requireString() throws -> String {
        guard let s = string else { throw TokenizerError.invalid("field '\(path)' (expected a string)", file: file) }
        return s
    }

    func requireArray() throws -> [JSONNode] {
        guard let a = arrayNodes else { throw TokenizerError.invalid("field '\(path)' (expected an array)", file: file) }
        return a
    }

    func boolOr(_ fallback: Bool) -> Bool { bool ?? fallback }

    /// The `"type"` tag of a pipeline component, for dispatch and errors.
    func typeTag() throws -> String {
        guard let t = self["type"].string else {
            throw TokenizerError.invalid("component at '\(path)' (missing \"type\")", file: file)
        }
        return t
    }

    /// A single Unicode scalar field such as Metaspace `replacement`.
    func requireChar() throws -> Unicode.Scalar {
        let s = try requireString()
        guard s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else {
            throw TokenizerError.invalid("field '\(path)' (expected a single character)", file: file)
        }
        return c
    }
}
