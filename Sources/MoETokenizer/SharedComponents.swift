import Foundation

/// Rust's `Replace` is one type serving as both normalizer and decoder: a
/// `String` or `Regex` pattern and the `content` every match becomes (no
/// template expansion). Parsed and applied here for both roles.
struct ReplaceRule: Sendable {
    enum Pattern: Sendable {
        case literal([UInt8])
        case regex(ICURegex)
    }

    let pattern: Pattern
    let content: [UInt8]

    func apply(_ bytes: [UInt8]) -> [UInt8] {
        switch pattern {
        case .literal(let needle): return LiteralMatcher.replaceAll(bytes, needle, with: content)
        case .regex(let re): return re.replaceAll(bytes, with: content)
        }
    }
}

extension ReplaceRule {
    /// `role` ("normalizer" or "decoder") names the component in errors.
    init(_ node: JSONNode, role: String) throws {
        let content = Array(try node["content"].requireString().utf8)
        let p = node["pattern"]
        if let s = p["String"].string {
            self.init(pattern: .literal(Array(s.utf8)), content: content)
        } else if let r = p["Regex"].string {
            self.init(pattern: .regex(try ICURegex(pattern: r)), content: content)
        } else {
            throw TokenizerError.invalid("Replace \(role) pattern at '\(p.path)'")
        }
    }
}

enum PrependScheme: Sendable { case always, first, never }

/// The fields of Rust's `Metaspace`, which is one type serving as both
/// pre-tokenizer and decoder (the decoder ignores `split`).
struct MetaspaceOptions {
    let replacement: Unicode.Scalar
    let prependScheme: PrependScheme
    let split: Bool

    init(_ node: JSONNode) throws {
        replacement = try node["replacement"].requireChar()
        var scheme = PrependScheme.always
        if let s = node["prepend_scheme"].string {
            switch s {
            case "always": scheme = .always
            case "first": scheme = .first
            case "never": scheme = .never
            default: throw TokenizerError.unsupported("Metaspace prepend_scheme", s)
            }
        }
        // Legacy files only carry add_prefix_space.
        if node["add_prefix_space"].bool == false { scheme = .never }
        prependScheme = scheme
        split = node["split"].boolOr(true)
    }
}
