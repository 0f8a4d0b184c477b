import Foundation
import Testing
@testable import MoETokenizer

/// Pre-tokenizer behaviour, with expectations taken from the Rust
/// library's own unit tests (pre_tokenizers/*.rs).
@Suite("Pre-tokenizers")
struct PreTokenizerTests {
    static func run(_ steps: [PreTokenizerStep], _ s: String, atOrigin: Bool = true) -> [String] {
        let r = PreTokenizerPipeline(steps: steps, lazyByteLevel: false).run(Array(s.utf8), atOrigin: atOrigin)
        return r.spans.map { String(decoding: r.buf[$0.start..<$0.end], as: UTF8.self) }
    }

    static func parse(_ json: String) throws -> [PreTokenizerStep] {
        var steps = [PreTokenizerStep]()
        try PreTokenizerStep.parse(try JSONNode.parse(Data(json.utf8), file: "test"), into: &steps)
        return steps
    }

    @Test("ByteLevel maps bytes and splits with the GPT-2 regex")
    func byteLevelMapsAndSplits() {
        let bl = PreTokenizerStep.byteLevel(addPrefixSpace: false, useRegex: true)
        #expect(Self.run([bl], "Hello my friend, how is your day going?")
                == ["Hello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?"])
        #expect(Self.run([bl], "i⭢j") == ["i", "âŃ¢", "j"])
        let prefixed = PreTokenizerStep.byteLevel(addPrefixSpace: true, useRegex: true)
        for s in [" Hello my friend, how is your day going?", "Hello my friend, how is your day going?"] {
            #expect(Self.run([prefixed], s)
                    == ["ĠHello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?"])
        }
        #expect(Self.run([.byteLevel(addPrefixSpace: true, useRegex: false)], "Hello my friend, how is your day going?")
                == ["ĠHelloĠmyĠfriend,ĠhowĠisĠyourĠdayĠgoing?"])
    }

    @Test("Metaspace replaces spaces, prepends and splits before each meta space")
    func metaspaceAlways() {
        let ms = PreTokenizerStep.metaspace(replacement: Array("▁".utf8), prepend: .always, split: true)
        #expect(Self.run([ms], "Hey friend!") == ["▁Hey", "▁friend!"])
        #expect(Self.run([ms], "Hey   friend!") == ["▁Hey", "▁", "▁", "▁friend!"])
        let never = PreTokenizerStep.metaspace(replacement: Array("▁".utf8), prepend: .never, split: true)
        #expect(Self.run([never], "Hey friend!") == ["Hey", "▁friend!"])
    }

    @Test("Metaspace prepend_scheme first prepends only at the start of the text")
    func metaspaceFirst() throws {
        let steps = try Self.parse("""
        {"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": "(<s>)"}, "behavior": "Isolated", "invert": false},
          {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}]}
        """)
        #expect(Self.run(steps, "Hey my friend <s>how▁are you") == ["▁Hey▁my▁friend▁", "<s>", "how▁are▁you"])
        #expect(Self.run(steps, " Hey <s>how") == ["▁Hey▁", "<s>", "how"])
        #expect(Self.run(steps, " Hey <s>how <s>are <s> you")
                == ["▁Hey▁", "<s>", "how▁", "<s>", "are▁", "<s>", "▁you"])
        // A segment that does not start the text gets no prefix.
        #expect(Self.run(steps, "Hey", atOrigin: false) == ["Hey"])
    }

    @Test("Digits groups or isolates numeric characters")
    func digits() {
        #expect(Self.run([.digits(individual: false)], "Hey 123 friend!") == ["Hey ", "123", " friend!"])
        #expect(Self.run([.digits(individual: true)], "Hey 123 friend!") == ["Hey ", "1", "2", "3", " friend!"])
    }

    @Test("Split honours every delimiter behavior with an inverted regex",
          arguments: [
            ("Removed", ["How", "are", "you", "doing", "?"]),
            ("Isolated", ["How", " ", "are", " ", "you", " ", "doing", "?"]),
            ("MergedWithPrevious", ["How ", "are ", "you ", "doing", "?"]),
            ("MergedWithNext", ["How", " are", " you", " doing", "?"]),
            ("Contiguous", ["How", " ", "are", " ", "you", " ", "doing?"]),
          ])
    func splitBehaviors(behavior: String, expected: [String]) throws {
        let steps = try Self.parse("""
        {"type": "Split", "pattern": {"Regex": "\\\\w+|[^\\\\w\\\\s]+"}, "behavior": "\(behavior)", "invert": true}
        """)
        #expect(Self.run(steps, "How are you doing?") == expected)
    }

    @Test("Split with a string pattern equals the equivalent regex")
    func splitStringPattern() throws {
        let s = try Self.parse(#"{"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": false}"#)
        let r = try Self.parse(#"{"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}"#)
        #expect(Self.run(s, "Hey, man!") == ["Hey,", "man!"])
        #expect(Self.run(r, "Hey, man!") == ["Hey,", "man!"])
        let inv = try Self.parse(#"{"type": "Split", "pattern": {"String": "Hello"}, "behavior": "Removed", "invert": true}"#)
        #expect(Self.run(inv, "Hello Hello Hello") == ["Hello", "Hello", "Hello"])
    }

    @Test("Llama-3 style Split + ByteLevel(use_regex=false) uses the hand scanner")
    func llama3Sequence() throws {
        let steps = try Self.parse("""
        {"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": \(String(data: try JSONSerialization.data(withJSONObject: KnownPattern.llama3Source, options: .fragmentsAllowed), encoding: .utf8)!)},
           "behavior": "Isolated", "invert": false},
          {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
        """)
        guard case .split(.known(.llama3), .isolated, false) = steps[0] else {
            Issue.record("pattern not recognised: \(steps)")
            return
        }
        #expect(Self.run(steps, "Hello world 2024!") == ["Hello", "Ġworld", "Ġ", "202", "4", "!"])
    }
}
