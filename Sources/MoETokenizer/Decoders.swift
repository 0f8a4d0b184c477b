import Foundation

/// Decoders turn the token strings of an id sequence back into text. Each
/// step maps a token list to a token list (Rust `decode_chain`); the final
/// list is concatenated.
enum Decoder: Sendable {
    case byteLevel
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme)
    case replace(ReplaceRule)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case sequence([Decoder])

    static func parse(_ node: JSONNode) throws -> Decoder? {
        if node.isNull { return nil }
        let type = try node.typeTag()
        switch type {
        case "ByteLevel": return .byteLevel
        case "Metaspace":
            let m = try MetaspaceOptions(node)
            return .metaspace(replacement: m.replacement, prependScheme: m.prependScheme)
        case "Replace":
            return .replace(try ReplaceRule(node, role: "decoder"))
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            return .strip(content: try node["content"].requireChar(),
                          start: node["start"].int ?? 0, stop: node["stop"].int ?? 0)
        case "Sequence":
            return .sequence(try node["decoders"].requireArray().compactMap { try parse($0) })
        default:
            throw TokenizerError.unsupported("decoder", type)
        }
    }

    /// Whether a trailing `<0xXX>` token can still change meaning when more
    /// tokens arrive (streaming must hold it back).
    var groupsByteTokens: Bool {
        switch self {
        case .byteFallback: return true
        case .sequence(let d): return d.contains { $0.groupsByteTokens }
        default: return false
        }
    }

    func decode(_ tokens: [String]) -> String {
        decodeChain(tokens).joined()
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let steps):
            var t = tokens
            for s in steps { t = s.decodeChain(t) }
            return t
        case .byteLevel:
            var bytes = [UInt8]()
            for t in tokens {
                if let raw = ByteLevelTables.decode(t) { bytes += raw } else { bytes += Array(t.utf8) }
            }
            return [UTF8Util.lossyString(bytes)]
        case .metaspace(let rep, let scheme):
            return tokens.enumerated().map { i, t in
                var out = String.UnicodeScalarView()
                for s in t.unicodeScalars {
                    if s == rep {
                        if i == 0 && scheme != .never { continue }
                        out.append(" ")
                    } else {
                        out.append(s)
                    }
                }
                return String(out)
            }
        case .replace(let rule):
            return tokens.map { String(decoding: rule.apply(Array($0.utf8)), as: UTF8.self) }
        case .byteFallback:
            return Self.byteFallback(tokens)
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { Self.strip($0, content, start, stop) }
        }
    }

    /// `<0xXX>` -> byte, parsed like Rust's `u8::from_str_radix(&t[3..5], 16)`
    /// (which also accepts a leading '+').
    static func byteValue(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 0x30...0x39: return b - 0x30
            case 0x41...0x46: return b - 0x41 + 10
            case 0x61...0x66: return b - 0x61 + 10
            default: return nil
            }
        }
        if u[3] == 0x2B { return hex(u[4]) }
        guard let hi = hex(u[3]), let lo = hex(u[4]) else { return nil }
        return hi << 4 | lo
    }

    /// Consecutive byte tokens are joined; if the group is not valid UTF-8,
    /// each byte becomes one U+FFFD (not "maximal subparts").
    private static func byteFallback(_ tokens: [String]) -> [String] {
        var out = [String]()
        out.reserveCapacity(tokens.count)
        var pending = [UInt8]()
        func flush() {
            guard !pending.isEmpty else { return }
            if UTF8Util.isValid(pending) {
                out.append(String(decoding: pending, as: UTF8.self))
            } else {
                out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
            }
            pending.removeAll()
        }
        for t in tokens {
            if let b = byteValue(t) {
                pending.append(b)
            } else {
                flush()
                out.append(t)
            }
        }
        flush()
        return out
    }

    /// Removes up to `start` leading and `stop` trailing `content` chars.
    /// Where Rust panics (cuts overlapping), the result is clamped to "".
    private static func strip(_ t: String, _ content: Unicode.Scalar, _ start: Int, _ stop: Int) -> String {
        let chars = Array(t.unicodeScalars)
        var startCut = 0
        for i in 0..<min(start, chars.count) {
            if chars[i] == content { startCut = i + 1 } else { break }
        }
        var stopCut = chars.count
        for i in 0..<min(stop, chars.count) {
            let index = chars.count - i - 1
            if chars[index] == content { stopCut = index } else { break }
        }
        if stopCut <= startCut { return "" }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: chars[startCut..<stopCut])
        return String(out)
    }
}
