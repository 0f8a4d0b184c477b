import Foundation
import Testing
@testable import MoETokenizer

/// Decoder semantics, with expectations from the Rust unit tests
/// (decoders/*.rs) and from the Unicode "maximal subpart" rule that Rust's
/// `String::from_utf8_lossy` follows.
@Suite("Decoders")
struct DecoderTests {
    @Test("Metaspace decoder drops the first token's meta spaces unless scheme is never")
    func metaspaceDecoder() {
        let always = Decoder.metaspace(replacement: "▁", prependScheme: .always)
        #expect(always.decodeChain(["▁Hey", "▁friend!"]) == ["Hey", " friend!"])
        let never = Decoder.metaspace(replacement: "▁", prependScheme: .never)
        #expect(never.decodeChain(["▁Hey", "▁friend!"]) == [" Hey", " friend!"])
    }

    @Test("Strip removes up to N matching characters per token")
    func stripDecoder() {
        #expect(Decoder.strip(content: "H", start: 1, stop: 0).decodeChain(["Hey", " friend!", "HHH"])
                == ["ey", " friend!", "HH"])
        #expect(Decoder.strip(content: "y", start: 0, stop: 1).decodeChain(["Hey", " friend!"]) == ["He", " friend!"])
    }

    @Test("ByteFallback joins byte groups and replaces each byte of an invalid group")
    func byteFallbackDecoder() {
        let d = Decoder.byteFallback
        #expect(d.decodeChain(["Hey", "friend!"]) == ["Hey", "friend!"])
        #expect(d.decodeChain(["<0x61>"]) == ["a"])
        #expect(d.decodeChain(["<0xE5>", "<0x8f>", "<0xab>", "a"]) == ["叫", "a"])
        #expect(d.decodeChain(["<0xE5>", "<0x8f>", "a"]) == ["\u{FFFD}", "\u{FFFD}", "a"])
        #expect(d.decodeChain(["<0xE5>", "<0x8f>", "<0xab>", "<0xFF>"]) == Array(repeating: "\u{FFFD}", count: 4))
        #expect(Decoder.byteValue("<0x0A>") == 0x0A)
        #expect(Decoder.byteValue("<0xZZ>") == nil)
        #expect(Decoder.byteValue("<0x0A") == nil)
    }

    @Test("ByteLevel decoder maps stand-ins back and passes other tokens through")
    func byteLevelDecoder() {
        let d = Decoder.byteLevel
        #expect(d.decode(["Hello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?"])
                == "Hello my friend, how is your day going?")
        // "€" is not a stand-in, so its own UTF-8 is used.
        #expect(d.decode(["Ġ", "€", "Ċ"]) == " €\n")
        // Incomplete sequence at the end -> one U+FFFD.
        #expect(d.decode(["ä½"]) == "\u{FFFD}")
    }

    @Test("lossy UTF-8 decoding replaces each maximal invalid subpart once")
    func lossyDecoding() {
        #expect(UTF8Util.lossyString([0x61, 0xE4, 0xBD, 0x62]) == "a\u{FFFD}b")
        #expect(UTF8Util.lossyString([0xF0, 0x80, 0x80]) == "\u{FFFD}\u{FFFD}\u{FFFD}")
        #expect(UTF8Util.lossyString([0xED, 0xA0, 0x80]) == "\u{FFFD}\u{FFFD}\u{FFFD}")
        #expect(UTF8Util.lossyString([0xC0, 0xAF]) == "\u{FFFD}\u{FFFD}")
        #expect(UTF8Util.lossyString([0xF4, 0x8F, 0xBF]) == "\u{FFFD}")
        #expect(UTF8Util.lossyString(Array("héllo 😀".utf8)) == "héllo 😀")
    }

    @Test("the SentencePiece decoder sequence fuses before stripping one space")
    func sentencePieceSequence() {
        let d = Decoder.sequence([.replace(ReplaceRule(pattern: .literal(Array("▁".utf8)), content: Array(" ".utf8))),
                                  .byteFallback, .fuse,
                                  .strip(content: " ", start: 1, stop: 0)])
        #expect(d.decode(["▁Hello", "▁", "<0xE4>", "<0xBD>", "<0xA0>"]) == "Hello 你")
        #expect(d.decode(["<s>", "▁Hi"]) == "<s> Hi")
    }
}
