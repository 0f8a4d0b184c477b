import Foundation
import Testing
@testable import MoETokenizer

/// Added-token extraction (lstrip/rstrip/single_word/normalized), using the
/// scenarios of the Rust `added_vocabulary.rs` unit tests, observed through
/// a character-level tokenizer built in memory.
@Suite("Added tokens")
struct AddedTokenTests {
    /// Char-level BPE (no merges, no pre-tokenizer) over printable ASCII and
    /// a few extra characters, with the given added tokens and normalizer.
    /// Chars get ids 0..<charCount; the added tokens are new to the vocab,
    /// so (like Rust) they get ids charCount, charCount+1, ... in file order.
    static let chars = (0x20...0x7E).map { String(UnicodeScalar(UInt8($0))) } + ["\t", "\u{2000}", "◌", "\u{330}"]

    static func charTokenizer(added: [[String: Any]], normalizer: Any = NSNull()) throws -> Tokenizer {
        var vocab = [String: Int]()
        for (i, c) in chars.enumerated() { vocab[c] = i }
        let json: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(),
            "added_tokens": added, "normalizer": normalizer, "pre_tokenizer": NSNull(),
            "post_processor": NSNull(), "decoder": NSNull(),
            "model": ["type": "BPE", "vocab": vocab, "merges": [] as [Any]],
        ]
        return try Tokenizer(tokenizerJSON: JSONSerialization.data(withJSONObject: json))
    }

    /// Added token number `k` (its id will be chars.count + k).
    static func token(_ k: Int, _ content: String, special: Bool = false, lstrip: Bool = false, rstrip: Bool = false,
                      singleWord: Bool = false, normalized: Bool? = nil) -> [String: Any] {
        ["id": chars.count + k, "content": content, "special": special, "lstrip": lstrip, "rstrip": rstrip,
         "single_word": singleWord, "normalized": normalized ?? !special]
    }

    /// Renders ids as text with added token k shown as [k].
    static func render(_ tok: Tokenizer, _ ids: [Int]) -> String {
        ids.map { $0 >= chars.count ? "[\($0 - chars.count)]" : tok.token(for: $0)! }.joined()
    }

    @Test("extracts normal and special tokens")
    func extractsTokens() throws {
        let tok = try Self.charTokenizer(added: [Self.token(0, "my"), Self.token(1, "name"),
                                                 Self.token(2, "[CLS]", special: true), Self.token(3, "[SEP]", special: true)])
        #expect(Self.render(tok, tok.encode("[CLS] My name is Anthony [SEP]")) == "[2] My [1] is Anthony [3]")
    }

    @Test("lstrip, rstrip, single_word and normalized options")
    func optionsUseCases() throws {
        let tok = try Self.charTokenizer(
            added: [Self.token(0, "my", lstrip: true, rstrip: true), Self.token(1, "name"),
                    Self.token(2, "ony", singleWord: true),
                    Self.token(3, "[CLS]", special: true), Self.token(4, "[SEP]", special: true)],
            normalizer: ["type": "Lowercase"])
        // " my " is swallowed by lstrip/rstrip; "ony" inside "anthony" is not a single word.
        #expect(Self.render(tok, tok.encode("[CLS] My name is Anthony [SEP]")) == "[3][0][1] is anthony [4]")
    }

    @Test("single_word requires non-word neighbours")
    func singleWord() throws {
        let tok = try Self.charTokenizer(added: [Self.token(0, "<mask>", singleWord: true)],
                                         normalizer: ["type": "Lowercase"])
        #expect(Self.render(tok, tok.encode("<mask> My name <mask> A<mask> <mask>ony <mask>"))
                == "[0] my name [0] a<mask> <mask>ony [0]")
        // Punctuation is not a word character, a combining mark is.
        #expect(Self.render(tok, tok.encode("<mask>, <mask>- ◌\u{330}<mask>")) == "[0], [0]- ◌\u{330}<mask>")
    }

    @Test("lstrip and rstrip take Unicode whitespace and never overlap")
    func lstripUnicodeSpace() throws {
        let tok = try Self.charTokenizer(added: [Self.token(0, "<mask>", lstrip: true, rstrip: true, singleWord: true)],
                                         normalizer: ["type": "Lowercase"])
        #expect(Self.render(tok, tok.encode("Hi <mask> there\t<mask>\t<mask>\u{2000}")) == "hi[0]there[0][0]")
    }

    @Test("longest match wins at the leftmost position")
    func leftmostLongest() throws {
        let tok = try Self.charTokenizer(added: [Self.token(0, "ab", special: true), Self.token(1, "abc", special: true),
                                                 Self.token(2, "bcd", special: true)])
        #expect(Self.render(tok, tok.encode("xabcd")) == "x[1]d")
        #expect(Self.render(tok, tok.encode("xbcd ab")) == "x[2] [0]")
        #expect(tok.decode(tok.encode("xabcd"), skipSpecialTokens: true) == "x d")
        #expect(tok.decode(tok.encode("xabcd")) == "x abc d")
    }

    @Test("re-added, duplicate and vocab-known added tokens get Rust's ids")
    func duplicateAndKnownTokens() throws {
        // Expected values from tokenizers 0.23.3 on the same file.
        let tok = try Fixtures.modified("tokenizer-cases/bytelevel.tokenizer.json") {
            func entry(_ content: String, _ id: Int, special: Bool, lstrip: Bool = false) -> [String: Any] {
                ["id": id, "content": content, "single_word": false, "lstrip": lstrip, "rstrip": false,
                 "normalized": !special, "special": special]
            }
            $0["added_tokens"] = ($0["added_tokens"] as! [Any]) + [
                entry("<x0>", 900, special: true), entry("<x0>", 901, special: true),  // same but for the id: ignored
                entry("<x1>", 902, special: true), entry("<x1>", 903, special: true, lstrip: true),  // flags replaced
                entry("the", 904, special: false),  // already in the vocab: keeps its id
                entry("<x2>", 905, special: false), entry("<x0>", 906, special: true),
            ]
        }
        #expect(tok.vocabSize == 515)
        #expect(["<x0>", "<x1>", "the", "<x2>"].map { tok.id(for: $0) } == [512, 513, 504, 514])
        #expect((512...514).map { tok.token(for: $0) } == ["<x0>", "<x1>", "<x2>"])
        let ids = tok.encode("a <x1> b<x0>c <x2>the", addSpecialTokens: false)
        #expect(ids == [67, 513, 302, 512, 69, 223, 514, 504])
        #expect(tok.decode(ids, skipSpecialTokens: true) == "a bc <x2>the")
    }
}
