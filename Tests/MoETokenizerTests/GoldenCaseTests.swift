import Foundation
import Testing
@testable import MoETokenizer

/// Acceptance 1: all 40 golden cases of both tokenizer kinds match the Rust
/// library exactly (ids, tokens, and the four decodings).
@Suite("Golden tokenizer cases")
struct GoldenCaseTests {
    @Test("encode with special tokens matches golden ids and tokens", arguments: ["bytelevel", "sentencepiece"])
    func encodeWithSpecialTokensMatchesGolden(kind: String) throws {
        let tok = Fixtures.tokenizer(kind: kind)
        let cases = try Fixtures.goldenCases(kind: kind)
        #expect(cases.count == 40)
        for c in cases {
            let r = tok.encodeWithTokens(c.text, addSpecialTokens: true)
            #expect(r.ids == c.ids, "\(kind) case \(c.index) \(c.name)")
            #expect(r.tokens == c.tokens, "\(kind) case \(c.index) \(c.name)")
        }
    }

    @Test("encode without special tokens matches golden ids and tokens", arguments: ["bytelevel", "sentencepiece"])
    func encodeWithoutSpecialTokensMatchesGolden(kind: String) throws {
        let tok = Fixtures.tokenizer(kind: kind)
        for c in try Fixtures.goldenCases(kind: kind) {
            let r = tok.encodeWithTokens(c.text, addSpecialTokens: false)
            #expect(r.ids == c.idsNoSpecial, "\(kind) case \(c.index) \(c.name)")
            #expect(r.tokens == c.tokensNoSpecial, "\(kind) case \(c.index) \(c.name)")
            #expect(tok.encode(c.text, addSpecialTokens: false) == c.idsNoSpecial)
        }
    }

    @Test("decode matches all four golden decodings", arguments: ["bytelevel", "sentencepiece"])
    func decodeMatchesGolden(kind: String) throws {
        let tok = Fixtures.tokenizer(kind: kind)
        for c in try Fixtures.goldenCases(kind: kind) {
            #expect(tok.decode(c.ids) == c.decoded, "\(kind) case \(c.index) \(c.name)")
            #expect(tok.decode(c.ids, skipSpecialTokens: true) == c.decodedSkipSpecial, "\(kind) case \(c.index) \(c.name)")
            #expect(tok.decode(c.idsNoSpecial) == c.decodedNoSpecial, "\(kind) case \(c.index) \(c.name)")
            #expect(tok.decode(c.idsNoSpecial, skipSpecialTokens: true) == c.decodedNoSpecialSkipSpecial,
                    "\(kind) case \(c.index) \(c.name)")
        }
    }

    @Test("token and id lookups are inverse on the golden tokens", arguments: ["bytelevel", "sentencepiece"])
    func tokenLookupsAreInverse(kind: String) throws {
        let tok = Fixtures.tokenizer(kind: kind)
        for c in try Fixtures.goldenCases(kind: kind) {
            for (id, t) in zip(c.ids, c.tokens) {
                #expect(tok.token(for: id) == t)
                #expect(tok.id(for: t) == id)
            }
        }
        #expect(tok.vocabSize == 512)
        #expect(tok.specialTokenIds == [0, 1, 2])
        #expect(tok.token(for: -1) == nil)
        #expect(tok.token(for: 512) == nil)
        #expect(tok.id(for: "definitely-not-a-token") == nil)
    }
}
