import Foundation
import Testing
@testable import MoETokenizer

/// The hand-written pre-tokenizer scanners must be indistinguishable from a
/// backtracking regex engine running the same pattern.
@Suite("Pattern scanners")
struct PatternScannerTests {
    static func scan(_ k: KnownPattern, _ s: String) -> [String] {
        let b = Array(s.utf8)
        var spans = [Span]()
        b.withUnsafeBufferPointer { k.scan($0, 0, b.count, into: &spans) }
        return spans.map { String(decoding: b[$0.start..<$0.end], as: UTF8.self) }
    }

    static func icu(_ re: ICURegex, _ s: String) -> [String] {
        let b = Array(s.utf8)
        let spans = b.withUnsafeBufferPointer { re.matches($0, 0, b.count) }
        return spans.map { String(decoding: b[$0.start..<$0.end], as: UTF8.self) }
    }

    @Test("scanners equal NSRegularExpression on seeded random strings",
          arguments: [KnownPattern.gpt2, .llama3, .qwen2])
    func scannersEqualRegexEngine(pattern: KnownPattern) throws {
        let re = try ICURegex(pattern: pattern.source)
        var rng = SplitMix64(seed: 0xC0FFEE)
        var mismatches = 0
        for i in 0..<1500 {
            let s = RandomText.make(&rng, maxPieces: i < 1000 ? 12 : 60)
            let ours = Self.scan(pattern, s)
            let theirs = Self.icu(re, s)
            if ours != theirs {
                mismatches += 1
                if mismatches <= 5 {
                    Issue.record("\(pattern) differs on \(s.debugDescription): \(ours) vs \(theirs)")
                }
            }
            // The known patterns tile their input.
            #expect(ours.joined() == s)
        }
        #expect(mismatches == 0)
    }

    @Test("GPT-2 pattern splits like the Rust ByteLevel unit tests")
    func gpt2SplitsLikeRustTests() {
        #expect(Self.scan(.gpt2, "Hello my friend, how is your day going?")
                == ["Hello", " my", " friend", ",", " how", " is", " your", " day", " going", "?"])
        #expect(Self.scan(.gpt2, "Hello there       dear") == ["Hello", " there", "      ", " dear"])
        #expect(Self.scan(.gpt2, "Hello there\nHello there") == ["Hello", " there", "\n", "Hello", " there"])
        #expect(Self.scan(.gpt2, "i⭢j") == ["i", "⭢", "j"])
    }

    @Test("Llama-3 and Qwen2 patterns differ only in digit grouping")
    func llamaAndQwenDigitGrouping() {
        #expect(Self.scan(.llama3, "12345 x") == ["123", "45", " x"])
        #expect(Self.scan(.qwen2, "12345 x") == ["1", "2", "3", "4", "5", " x"])
        #expect(Self.scan(.llama3, "I'M here\r\n\n  ok") == ["I", "'M", " here", "\r\n\n", " ", " ok"])
    }

    @Test("known patterns are recognised from their tokenizer.json source")
    func knownPatternsAreRecognised() {
        #expect(KnownPattern(source: KnownPattern.gpt2Source) == .gpt2)
        #expect(KnownPattern(source: KnownPattern.llama3Source) == .llama3)
        #expect(KnownPattern(source: KnownPattern.qwen2Source) == .qwen2)
        #expect(KnownPattern(source: #"\s+"#) == nil)
    }

    @Test("regex translation gives \\s the Unicode White_Space meaning")
    func regexTranslationUsesWhiteSpaceProperty() throws {
        #expect(ICURegex.translate(#"a\sb\S[^\s\p{L}]\\s"#) == #"a\p{White_Space}b\P{White_Space}[^\p{White_Space}\p{L}]\\s"#)
        let re = try ICURegex(pattern: #"\s+"#)
        #expect(Self.icu(re, "a\u{0B}\u{85}b") == ["\u{0B}\u{85}"])
    }
}
