import Foundation

/// Normalizers rewrite one text segment (the text between added tokens) as a
/// whole, on UTF-8 bytes. Offsets are not tracked, so there is no alignment
/// bookkeeping; that is what keeps them this small.
enum Normalizer: Sendable {
    case sequence([Normalizer])
    case prepend([UInt8])
    case replace(ReplaceRule)
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)

    static func parse(_ node: JSONNode) throws -> Normalizer? {
        if node.isNull { return nil }
        let type = try node.typeTag()
        switch type {
        case "Sequence":
            return .sequence(try node["normalizers"].requireArray().compactMap { try parse($0) })
        case "Prepend":
            return .prepend(Array(try node["prepend"].requireString().utf8))
        case "Replace":
            return .replace(try ReplaceRule(node, role: "normalizer"))
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Strip":
            return .strip(left: node["strip_left"].boolOr(true), right: node["strip_right"].boolOr(true))
        default:
            throw TokenizerError.unsupported("normalizer", type)
        }
    }

    func apply(_ bytes: [UInt8]) -> [UInt8] {
        switch self {
        case .sequence(let steps):
            var b = bytes
            for s in steps { b = s.apply(b) }
            return b
        case .prepend(let p):
            // Rust only prepends to non-empty strings.
            return bytes.isEmpty ? bytes : p + bytes
        case .replace(let rule):
            return rule.apply(bytes)
        case .nfc:
            return Array(String(decoding: bytes, as: UTF8.self).precomposedStringWithCanonicalMapping.utf8)
        case .nfd:
            return Array(String(decoding: bytes, as: UTF8.self).decomposedStringWithCanonicalMapping.utf8)
        case .nfkc:
            return Array(String(decoding: bytes, as: UTF8.self).precomposedStringWithCompatibilityMapping.utf8)
        case .nfkd:
            return Array(String(decoding: bytes, as: UTF8.self).decomposedStringWithCompatibilityMapping.utf8)
        case .lowercase:
            // Per-scalar full lowercase mapping, context-free like Rust's
            // `char::to_lowercase` (no final-sigma rule).
            var out = [UInt8]()
            out.reserveCapacity(bytes.count)
            for s in String(decoding: bytes, as: UTF8.self).unicodeScalars {
                if s.value < 0x80 {
                    let b = UInt8(s.value)
                    out.append(b >= 0x41 && b <= 0x5A ? b + 0x20 : b)
                } else {
                    out.append(contentsOf: s.properties.lowercaseMapping.utf8)
                }
            }
            return out
        case .strip(let left, let right):
            let scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
            var lo = 0, hi = scalars.count
            if left { while lo < hi && CharClass.isWhitespace(scalars[lo].value) { lo += 1 } }
            if right { while hi > lo && CharClass.isWhitespace(scalars[hi - 1].value) { hi -= 1 } }
            var out = String.UnicodeScalarView()
            out.append(contentsOf: scalars[lo..<hi])
            return Array(String(out).utf8)
        }
    }
}
