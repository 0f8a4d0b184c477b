import Foundation
@testable import MoETokenizer

/// Seeded random Unicode strings mixing scripts, whitespace, emoji and
/// combining marks — the inputs where tokenizers usually diverge.
enum RandomText {
    static let pools: [[String]] = [
        ["a", "b", "e", "s", "t", "r", "v", "m", "l", "d", "Z", "Q", "S", "T", "R", "E", "L", "D", "M", "V"],
        [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\r", "\u{0B}", "\u{0C}", "\u{85}", "\u{A0}", "\u{2028}", "\u{3000}", "\u{2009}"],
        ["'", "'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'d", "'x", "'ſ", "ſ", "''"],
        ["0", "1", "7", "42", "2024", "123456", "٣", "٤٥", "१२", "Ⅻ", "½", "²"],
        [".", ",", "!", "?", "(", ")", "{", "}", "[", "]", "-", "_", "/", "\\", "\"", "$", "%", "&", "*", "<", ">", "=", "#", "…", "—", "“", "”"],
        ["é", "ä", "ñ", "ç", "Å", "ß", "ø", "œ", "Ω", "π", "ж", "Я", "ש", "ع", "ก"],
        ["你", "好", "世界", "日本語", "テキスト", "ひらがな", "안녕", "한국어", "。", "，", "！"],
        ["😀", "🚀", "👍🏽", "🇺🇸", "👨\u{200D}👩\u{200D}👧", "🏳️\u{200D}🌈", "✨", "\u{FE0F}", "\u{200D}", "🤖"],
        ["e\u{301}", "a\u{308}", "\u{301}", "\u{308}\u{30C}", "Z\u{347}\u{351}\u{308}\u{34C}", "\u{20DD}", "o\u{332}"],
        ["▁", "<s>", "</s>", "<unk>", "<s", "s>", "<0x41>", "Ġ", "Ċ"],
    ]

    static func make(_ rng: inout SplitMix64, maxPieces: Int = 24) -> String {
        let n = Int(rng.next() % UInt64(maxPieces)) + 1
        var s = ""
        for _ in 0..<n {
            let pool = pools[Int(rng.next() % UInt64(pools.count))]
            s += pool[Int(rng.next() % UInt64(pool.count))]
        }
        return s
    }

    /// At least `targetBytes` of such text that both fixture tokenizers
    /// round-trip exactly: "▁" and "<" (hence any special-token literal)
    /// are replaced.
    static func long(_ rng: inout SplitMix64, targetBytes: Int) -> String {
        var s = ""
        while s.utf8.count < targetBytes { s += make(&rng, maxPieces: 60) }
        var out = String.UnicodeScalarView()
        for c in s.unicodeScalars { out.append(c == "\u{2581}" ? "_" : c == "<" ? "(" : c) }
        return String(out)
    }
}

/// Small deterministic PRNG (SplitMix64) so random inputs are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
