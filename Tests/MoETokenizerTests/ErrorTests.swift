import Foundation
import Testing
@testable import MoETokenizer

/// Acceptance 5: unsupported components and malformed input are reported as
/// errors naming the problem, never ignored and never a crash.
@Suite("Load errors")
struct ErrorTests {
    static func loadError(_ edit: (inout [String: Any]) -> Void) -> String? {
        do {
            _ = try Fixtures.modified("tokenizer-cases/sentencepiece.tokenizer.json", edit)
            return nil
        } catch {
            return (error as? TokenizerError)?.description ?? "non-TokenizerError: \(error)"
        }
    }

    @Test("unsupported normalizer is named, also inside a Sequence")
    func unsupportedNormalizerIsNamed() {
        #expect(Self.loadError { $0["normalizer"] = ["type": "BertNormalizer"] }
                == "unsupported normalizer type 'BertNormalizer' in tokenizer.json")
        let nested = Self.loadError {
            $0["normalizer"] = ["type": "Sequence", "normalizers": [["type": "NFC"], ["type": "Precompiled"]]]
        }
        #expect(nested == "unsupported normalizer type 'Precompiled' in tokenizer.json")
    }

    @Test("unsupported pre-tokenizer, model, decoder and post-processor are named")
    func unsupportedComponentsAreNamed() {
        #expect(Self.loadError { $0["pre_tokenizer"] = ["type": "Whitespace"] }
                == "unsupported pre-tokenizer type 'Whitespace' in tokenizer.json")
        #expect(Self.loadError { $0["decoder"] = ["type": "WordPiece", "prefix": "##", "cleanup": true] }
                == "unsupported decoder type 'WordPiece' in tokenizer.json")
        #expect(Self.loadError { $0["post_processor"] = ["type": "Nonsense"] }
                == "unsupported post-processor type 'Nonsense' in tokenizer.json")
        #expect(Self.loadError { $0["model"] = ["type": "Unigram", "vocab": [] as [Any]] }
                == "unsupported model type 'Unigram' in tokenizer.json")
        #expect(Self.loadError {
            $0["pre_tokenizer"] = ["type": "Split", "pattern": ["String": " "], "behavior": "Sideways", "invert": false]
        } == "unsupported split behavior type 'Sideways' in tokenizer.json")
    }

    @Test("options that would change results are rejected")
    func resultChangingOptionsAreRejected() {
        #expect(Self.loadError { $0["truncation"] = ["max_length": 8] }?.contains("truncation") == true)
        #expect(Self.loadError {
            var m = $0["model"] as! [String: Any]
            m["dropout"] = 0.1
            $0["model"] = m
        }?.contains("dropout") == true)
    }

    @Test("malformed JSON is an error, not a crash")
    func malformedJSONIsAnError() {
        for bad in ["", "{", "{\"model\": ", "[]", "42", "{\"model\": {\"type\": \"BPE\", \"vocab\": 3}}"] {
            #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSON: Data(bad.utf8)) }
        }
        let good = try! Fixtures.data("tokenizer-cases/bytelevel.tokenizer.json")
        #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSON: good, tokenizerConfigJSON: Data("{".utf8)) }
        do {
            _ = try Tokenizer(tokenizerJSON: good, generationConfigJSON: Data("nope".utf8))
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("generation_config.json"))
        }
    }

    @Test("a merge referencing an unknown token is an error")
    func badMergeIsAnError() {
        let msg = Self.loadError {
            var m = $0["model"] as! [String: Any]
            m["merges"] = [["▁", "no-such-token"]]
            $0["model"] = m
        }
        #expect(msg?.contains("merge #1") == true)
    }

    @Test("a directory without tokenizer.json is an error naming the path")
    func missingDirectoryIsAnError() {
        do {
            _ = try Tokenizer(directory: URL(fileURLWithPath: "/nonexistent-dir"))
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("/nonexistent-dir/tokenizer.json"))
        }
    }
}
