import Foundation
import Testing
@testable import MoETokenizer

/// The short-word scan and the long-word heap must merge identically.
@Suite("BPE merging")
struct BPEMergeTests {
    @Test("scan and heap merge strategies agree on random words")
    func scanAndHeapAgree() throws {
        let tok = try Tokenizer(directory: Fixtures.url("demo-mixtral"))
        let model = tok.model
        var rng = SplitMix64(seed: 99)
        var scratch = BPEScratch()
        for _ in 0..<2000 {
            let s = RandomText.make(&rng, maxPieces: 40)
            let bytes = Array(s.utf8)
            var a = [Int32](), b = [Int32]()
            bytes.withUnsafeBufferPointer { p in
                model.initialSymbols(p, Span(start: 0, end: bytes.count), lazyBytes: true, into: &a)
            }
            b = a
            if a.count >= 2 {
                BPEMerge.mergeScan(&a, model.merges, &scratch.ranks)
                BPEMerge.mergeHeap(&b, model.merges, &scratch)
            }
            #expect(a == b, "\(s.debugDescription)")
        }
    }

    @Test("lazy byte mapping equals the explicit ByteLevel transform")
    func lazyByteMappingMatchesEager() throws {
        let lazy = Fixtures.byteLevel
        #expect(lazy.preTokenizer.lazyByteLevel)
        // Same tokenizer, but a trailing no-op pre-tokenizer forces the eager path.
        let eager = try Fixtures.modified("tokenizer-cases/bytelevel.tokenizer.json") {
            $0["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
                ["type": "Split", "pattern": ["String": "\u{1}never\u{2}"], "behavior": "Isolated", "invert": false],
            ]]
        }
        #expect(!eager.preTokenizer.lazyByteLevel)
        var rng = SplitMix64(seed: 3)
        for _ in 0..<300 {
            let s = RandomText.make(&rng)
            #expect(lazy.encode(s) == eager.encode(s), "\(s.debugDescription)")
        }
    }

    @Test("the word cache does not change results")
    func wordCacheIsTransparent() {
        var rng = SplitMix64(seed: 0x5EED_CAFE)
        let text = RandomText.long(&rng, targetBytes: 30_000)
        for tok in [Fixtures.byteLevel, Fixtures.sentencePiece] {
            let cached = tok.encodeNoSpecial(text, useCache: true)
            let uncached = tok.encodeNoSpecial(text, useCache: false)
            #expect(cached == uncached)
            #expect(tok.decode(cached.map(Int.init)) == text)
        }
    }
}
