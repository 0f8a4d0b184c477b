import Foundation
import Testing
@testable import MoETokenizer

/// Acceptance 3: streaming detokenisation reproduces `decode` exactly and
/// never releases a piece that a later token could still change.
@Suite("StreamDecoder")
struct StreamDecoderTests {
    /// Pushes ids one by one; checks the invariants on every piece and
    /// returns the pieces (finish() last).
    static func stream(_ tok: Tokenizer, _ ids: [Int], skip: Bool) -> [String] {
        var sd = tok.streamDecoder(skipSpecialTokens: skip)
        var pieces = [String]()
        for id in ids { pieces.append(sd.push(id)) }
        pieces.append(sd.finish())
        return pieces
    }

    /// Every released piece must agree with the full decode at the same
    /// place, which in particular means no U+FFFD appears unless the full
    /// decode has one there.
    static func checkPieces(_ pieces: [String], full: String, _ label: String) {
        #expect(pieces.joined() == full, "\(label)")
        var offset = 0
        let fullBytes = Array(full.utf8)
        for piece in pieces {
            let b = Array(piece.utf8)
            let slice = offset + b.count <= fullBytes.count ? Array(fullBytes[offset..<(offset + b.count)]) : []
            #expect(slice == b, "\(label): piece \(piece.debugDescription) differs from the full decode")
            offset += b.count
        }
    }

    @Test("pieces concatenate to decode for every golden case", arguments: ["bytelevel", "sentencepiece"])
    func piecesConcatenateToDecode(kind: String) throws {
        let tok = Fixtures.tokenizer(kind: kind)
        for c in try Fixtures.goldenCases(kind: kind) {
            for ids in [c.ids, c.idsNoSpecial] {
                for skip in [false, true] {
                    let pieces = Self.stream(tok, ids, skip: skip)
                    Self.checkPieces(pieces, full: tok.decode(ids, skipSpecialTokens: skip),
                                     "\(kind) case \(c.index) \(c.name) skip=\(skip)")
                }
            }
        }
    }

    @Test("multi-byte characters are released whole and promptly")
    func multiByteCharactersAreReleasedWhole() throws {
        let tok = Fixtures.sentencePiece
        // 你 is three byte-fallback tokens; nothing may be released before
        // the group is closed by a non-byte token.
        let ids = tok.encode("a你b", addSpecialTokens: false)
        var sd = tok.streamDecoder()
        var pieces = [String]()
        for id in ids { pieces.append(sd.push(id)) }
        #expect(!pieces.contains { $0.contains("\u{FFFD}") })
        #expect(pieces.joined() + sd.finish() == "a你b")

        let bl = Fixtures.byteLevel
        var sd2 = bl.streamDecoder()
        var out = [String]()
        for id in bl.encode("😀!", addSpecialTokens: false) { out.append(sd2.push(id)) }
        #expect(out.filter { !$0.isEmpty } == ["😀", "!"])
        #expect(sd2.finish() == "")
    }

    static let multiByteTexts = [
        "你好，世界！", "a你b", "日本語のテキスト", "안녕하세요 세계", "😀", "x😀y🚀z", "👨\u{200D}👩\u{200D}👧 family",
        "🇺🇸🏳️\u{200D}🌈", "Ångström façade", "e\u{301}\u{308} ◌\u{330}", "€100 → ∞", "½ ² Ⅻ ١٢٣",
        "mixed 中文 and English 😀 with <s> inside", "</s>末尾", "Straße 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈",
    ]

    @Test("streaming one id at a time equals decode(all ids) for multi-byte text", arguments: ["bytelevel", "sentencepiece"])
    func multiByteTextStreamsLikeDecode(kind: String) {
        let tok = Fixtures.tokenizer(kind: kind)
        var splitCharacters = 0
        for text in Self.multiByteTexts {
            for addSpecial in [false, true] {
                let ids = tok.encode(text, addSpecialTokens: addSpecial)
                // Count characters spread over several byte tokens
                // (byte-fallback `<0xXX>` runs in the SentencePiece fixture).
                var run = 0
                for id in ids + [-1] {
                    if id >= 0, tok.isByteToken[id] { run += 1 } else { if run >= 2 { splitCharacters += 1 }; run = 0 }
                }
                for skip in [false, true] {
                    let full = tok.decode(ids, skipSpecialTokens: skip)
                    let pieces = Self.stream(tok, ids, skip: skip)
                    Self.checkPieces(pieces, full: full, "\(kind) \(text.debugDescription) skip=\(skip)")
                    // These texts have no invalid UTF-8: no piece may show a
                    // replacement character for a half-received character.
                    #expect(!pieces.contains { $0.contains("\u{FFFD}") }, "\(kind) \(text.debugDescription)")
                    // Without special-token literals the decode is the text
                    // itself (byte-level is lossless and adds no BOS; the
                    // SentencePiece BOS only shows when it is not skipped).
                    if !text.contains("<"), kind == "bytelevel" || skip || !addSpecial {
                        #expect(full == text, "\(kind) \(text.debugDescription)")
                    }
                }
            }
        }
        if kind == "sentencepiece" { #expect(splitCharacters > 10) }
    }

    @Test("the stream keeps a bounded window, not every id", arguments: ["bytelevel", "sentencepiece"])
    func windowStaysBounded(kind: String) {
        let tok = Fixtures.tokenizer(kind: kind)
        let text = String(repeating: "Hello wörld, 你好 😀 </s> ", count: 300)
        let ids = tok.encode(text, addSpecialTokens: true)
        #expect(ids.count > 2000)
        for skip in [false, true] {
            var sd = tok.streamDecoder(skipSpecialTokens: skip)
            var out = ""
            var largest = 0
            for id in ids {
                out += sd.push(id)
                largest = max(largest, sd.retainedIdCount)
            }
            out += sd.finish()
            #expect(out == tok.decode(ids, skipSpecialTokens: skip))
            #expect(largest <= 16, "\(kind) skip=\(skip): window grew to \(largest) ids")
            #expect(sd.retainedIdCount == 0)
        }
    }

    @Test("random id sequences stream exactly like decode", arguments: ["bytelevel", "sentencepiece"])
    func randomIdSequencesStreamExactly(kind: String) {
        // Random ids produce invalid byte sequences, lone specials, etc.:
        // the invariant must still hold (Rust's own DecodeStream would error).
        let tok = Fixtures.tokenizer(kind: kind)
        var rng = SplitMix64(seed: 42)
        for round in 0..<200 {
            let n = Int(rng.next() % 30) + 1
            let ids = (0..<n).map { _ -> Int in
                // Bias towards byte tokens (3...258) and specials.
                switch rng.next() % 4 {
                case 0: return Int(rng.next() % 3)
                case 1: return 3 + Int(rng.next() % 256)
                default: return Int(rng.next() % 512)
                }
            }
            for skip in [false, true] {
                let pieces = Self.stream(tok, ids, skip: skip)
                Self.checkPieces(pieces, full: tok.decode(ids, skipSpecialTokens: skip), "\(kind) round \(round)")
            }
        }
    }

    @Test("random ids stream exactly with a Metaspace decoder")
    func metaspaceDecoderStreamsExactly() throws {
        // Newer Llama/Mistral conversions: Metaspace pre-tokenizer and
        // decoder (which drops the first token's leading meta space).
        let tok = try Fixtures.modified("tokenizer-cases/sentencepiece.tokenizer.json") {
            $0["normalizer"] = NSNull()
            $0["pre_tokenizer"] = ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false]
            $0["decoder"] = ["type": "Sequence", "decoders": [
                ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false],
                ["type": "ByteFallback"], ["type": "Fuse"]]]
        }
        var rng = SplitMix64(seed: 4242)
        for round in 0..<200 {
            let ids = (0..<(Int(rng.next() % 20) + 1)).map { _ in Int(rng.next() % 512) }
            for skip in [false, true] {
                Self.checkPieces(Self.stream(tok, ids, skip: skip), full: tok.decode(ids, skipSpecialTokens: skip),
                                 "metaspace round \(round)")
            }
        }
        for c in try Fixtures.goldenCases(kind: "sentencepiece") {
            let ids = tok.encode(c.text)
            Self.checkPieces(Self.stream(tok, ids, skip: true), full: tok.decode(ids, skipSpecialTokens: true), c.name)
        }
    }

    @Test("a stream decoder is reusable after finish")
    func reusableAfterFinish() {
        let tok = Fixtures.byteLevel
        var sd = tok.streamDecoder()
        for id in tok.encode("first", addSpecialTokens: false) { _ = sd.push(id) }
        _ = sd.finish()
        var text = ""
        for id in tok.encode("second", addSpecialTokens: false) { text += sd.push(id) }
        text += sd.finish()
        #expect(text == "second")
    }
}
