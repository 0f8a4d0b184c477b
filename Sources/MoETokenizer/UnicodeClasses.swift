import Foundation

/// Character classes needed by the pre-tokenizer patterns, as bit flags.
/// Semantics follow Oniguruma/Rust regex (what the Rust library uses):
/// `\p{L}` = general categories Lu/Ll/Lt/Lm/Lo, `\p{N}` = Nd/Nl/No,
/// `\s` = the Unicode White_Space property (includes U+000B and U+0085).
enum CharClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let space: UInt8 = 4

    /// Lookup table for the Basic Multilingual Plane, built once (thread-safe
    /// lazy global). Astral scalars (emoji, rare CJK) are classified on the fly.
    static let bmpTable: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 0x10000)
        for v in 0..<0x10000 { t[v] = compute(UInt32(v)) }
        return t
    }()

    static func compute(_ v: UInt32) -> UInt8 {
        guard let s = Unicode.Scalar(v) else { return 0 }
        var c: UInt8 = 0
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            c |= letter
        case .decimalNumber, .letterNumber, .otherNumber:
            c |= number
        default:
            break
        }
        if s.properties.isWhitespace { c |= space }
        return c
    }

    @inline(__always)
    static func of(_ v: UInt32, _ bmp: UnsafeBufferPointer<UInt8>) -> UInt8 {
        v < 0x10000 ? bmp[Int(v)] : compute(v)
    }

    /// Unicode White_Space (Rust `char::is_whitespace`, regex `\s`).
    static func isWhitespace(_ v: UInt32) -> Bool {
        v < 0x10000 ? (bmpTable[Int(v)] & space) != 0 : (compute(v) & space) != 0
    }

    /// Rust `char::is_numeric` (general category N*).
    static func isNumeric(_ v: UInt32) -> Bool {
        v < 0x10000 ? (bmpTable[Int(v)] & number) != 0 : (compute(v) & number) != 0
    }

    /// Rust regex `\w` (Unicode word character), used by `single_word`
    /// added tokens: Alphabetic, Mark, Decimal_Number, Connector_Punctuation,
    /// Join_Control.
    static func isWordChar(_ v: UInt32) -> Bool {
        guard let s = Unicode.Scalar(v) else { return false }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation:
            return true
        default:
            return false
        }
    }
}

/// UTF-8 helpers over byte buffers. All buffers the pipeline handles are
/// valid UTF-8 (they come from Swift Strings or from our own rewrites), so
/// decoding does not validate.
enum UTF8Util {
    /// Decodes the scalar starting at `i`; returns (value, byte length).
    @inline(__always)
    static func decode(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt32, Int) {
        let b0 = UInt32(p[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return (((b0 & 0x1F) << 6) | (UInt32(p[i + 1]) & 0x3F), 2) }
        if b0 < 0xF0 {
            return (((b0 & 0x0F) << 12) | ((UInt32(p[i + 1]) & 0x3F) << 6) | (UInt32(p[i + 2]) & 0x3F), 3)
        }
        let v = ((b0 & 0x07) << 18) | ((UInt32(p[i + 1]) & 0x3F) << 12)
            | ((UInt32(p[i + 2]) & 0x3F) << 6) | (UInt32(p[i + 3]) & 0x3F)
        return (v, 4)
    }

    /// Start index of the scalar that ends right before `end`.
    @inline(__always)
    static func previousStart(_ p: UnsafeBufferPointer<UInt8>, before end: Int) -> Int {
        var i = end - 1
        while i > 0 && (p[i] & 0xC0) == 0x80 { i -= 1 }
        return i
    }

    static func append(_ v: UInt32, to out: inout [UInt8]) {
        if v < 0x80 {
            out.append(UInt8(v))
        } else if v < 0x800 {
            out.append(UInt8(0xC0 | (v >> 6)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        } else if v < 0x10000 {
            out.append(UInt8(0xE0 | (v >> 12)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        } else {
            out.append(UInt8(0xF0 | (v >> 18)))
            out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }

    /// Rust `String::from_utf8_lossy`: each maximal invalid subpart becomes
    /// one U+FFFD. Implemented by hand (rather than trusting
    /// `String(decoding:as:)`) so the replacement count provably matches.
    static func lossyString(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        let n = bytes.count
        var i = 0
        let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 { out.append(b0); i += 1; continue }
            var width = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch b0 {
            case 0xC2...0xDF: width = 2
            case 0xE0: width = 3; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: width = 3
            case 0xED: width = 3; hi = 0x9F
            case 0xF0: width = 4; lo = 0x90
            case 0xF1...0xF3: width = 4
            case 0xF4: width = 4; hi = 0x8F
            default: width = 0
            }
            if width == 0 { out += replacement; i += 1; continue }
            // Count how many bytes form a valid prefix of a sequence.
            var valid = 1
            if i + 1 < n, bytes[i + 1] >= lo, bytes[i + 1] <= hi {
                valid = 2
                while valid < width, i + valid < n, bytes[i + valid] & 0xC0 == 0x80 { valid += 1 }
            }
            if valid == width {
                out.append(contentsOf: bytes[i..<(i + width)])
            } else {
                out += replacement
            }
            i += valid
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `bytes` is entirely valid UTF-8 (Rust `String::from_utf8`).
    static func isValid(_ bytes: [UInt8]) -> Bool {
        // The stdlib codec rejects overlongs, surrogates and out-of-range
        // values exactly like Rust's validator.
        var it = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&it) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
