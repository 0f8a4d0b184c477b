import Foundation

/// Fallback for `Split`/`Replace` regexes that are not one of the hand-coded
/// `KnownPattern`s. Uses ICU through NSRegularExpression, after translating
/// the few escapes whose meaning differs from Oniguruma (the engine the Rust
/// library uses): ICU's `\s` is `[\t\n\f\r\p{Z}]`, missing U+000B and U+0085,
/// whereas Oniguruma's is the full White_Space property.
final class ICURegex: @unchecked Sendable {
    // NSRegularExpression is immutable and documented thread-safe for
    // matching; the box only exists because it is not marked Sendable.
    let regex: NSRegularExpression

    init(pattern: String) throws {
        do {
            regex = try NSRegularExpression(pattern: ICURegex.translate(pattern), options: [])
        } catch {
            throw TokenizerError("unsupported or invalid regex '\(pattern)' in tokenizer.json")
        }
    }

    /// Rewrites `\s`/`\S` to the White_Space property; leaves everything
    /// else (including escaped backslashes) untouched.
    static func translate(_ pattern: String) -> String {
        var out = ""
        var it = pattern.unicodeScalars.makeIterator()
        while let c = it.next() {
            guard c == "\\" else { out.unicodeScalars.append(c); continue }
            guard let n = it.next() else { out.unicodeScalars.append(c); break }
            switch n {
            case "s": out += #"\p{White_Space}"#
            case "S": out += #"\P{White_Space}"#
            default:
                out.unicodeScalars.append(c)
                out.unicodeScalars.append(n)
            }
        }
        return out
    }

    /// Byte ranges of all matches (non-overlapping, left to right) in
    /// `bytes[start..<end]`, in buffer coordinates.
    func matches(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> [Span] {
        let str = String(decoding: UnsafeBufferPointer(rebasing: p[start..<end]), as: UTF8.self)
        // UTF-16 offset -> UTF-8 byte offset table, since ICU reports UTF-16.
        var map = [Int]()
        map.reserveCapacity(end - start + 1)
        var byte = start
        for s in str.unicodeScalars {
            let u8 = UTF8.width(s)
            map.append(byte)
            if UTF16.width(s) == 2 { map.append(byte) }
            byte += u8
        }
        map.append(byte)
        let ns = str as NSString
        var out = [Span]()
        for m in regex.matches(in: str, options: [], range: NSRange(location: 0, length: ns.length)) {
            let r = m.range
            out.append(Span(start: map[r.location], end: map[r.location + r.length]))
        }
        return out
    }

    /// Replaces every match with `content` (no template expansion, like Rust).
    func replaceAll(_ bytes: [UInt8], with content: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBufferPointer { p in
            var out = [UInt8]()
            out.reserveCapacity(bytes.count)
            var last = 0
            for m in matches(p, 0, bytes.count) {
                out.append(contentsOf: p[last..<m.start])
                out.append(contentsOf: content)
                last = m.end
            }
            out.append(contentsOf: p[last..<bytes.count])
            return out
        }
    }
}

/// Literal substring search on bytes (Split/Replace with a `String` pattern).
enum LiteralMatcher {
    static func matches(_ needle: [UInt8], _ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> [Span] {
        var out = [Span]()
        let n = needle.count
        guard n > 0, end - start >= n else { return out }
        let first = needle[0]
        var i = start
        while i + n <= end {
            if p[i] == first {
                var k = 1
                while k < n && p[i + k] == needle[k] { k += 1 }
                if k == n {
                    out.append(Span(start: i, end: i + n))
                    i += n
                    continue
                }
            }
            i += 1
        }
        return out
    }

    static func replaceAll(_ bytes: [UInt8], _ needle: [UInt8], with content: [UInt8]) -> [UInt8] {
        guard !needle.isEmpty else { return bytes }
        return bytes.withUnsafeBufferPointer { p in
            let ms = matches(needle, p, 0, bytes.count)
            if ms.isEmpty { return bytes }
            var out = [UInt8]()
            out.reserveCapacity(bytes.count + ms.count * max(0, content.count - needle.count))
            var last = 0
            for m in ms {
                out.append(contentsOf: p[last..<m.start])
                out.append(contentsOf: content)
                last = m.end
            }
            out.append(contentsOf: p[last..<bytes.count])
            return out
        }
    }
}
