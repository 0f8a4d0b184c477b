import Foundation
import Testing
@testable import MoEModel

/// The json_object automaton: which byte strings are prefixes of one JSON object, and which are one whole.
@Suite struct JSONGrammarTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var text: String
        var prefix: Bool
        var complete: Bool
        var testDescription: String { text.debugDescription }
    }

    static let cases: [Case] = [
        Case(text: "{", prefix: true, complete: false),
        Case(text: "{}", prefix: true, complete: true),
        Case(text: "{}\n  ", prefix: true, complete: true),
        Case(text: "{} \n", prefix: false, complete: false),              // a space, or a newline and indentation
        Case(text: "{}x", prefix: false, complete: false),
        Case(text: " {}", prefix: false, complete: false),                 // starts at its '{'
        Case(text: "[1]", prefix: false, complete: false),                 // an object, not any value
        Case(text: "{\"a\": 1, \"b\": [true, false, null, -0.5e+3, \"x\\u00e9\\n\"], \"c\": {}}", prefix: true, complete: true),
        Case(text: "{\"a\":[{\"b\":[]}, 12E3]}", prefix: true, complete: true),
        Case(text: "{\"a\": tru", prefix: true, complete: false),
        Case(text: "{\"a\": trux", prefix: false, complete: false),
        Case(text: "{\"a\": tr ue}", prefix: false, complete: false),
        Case(text: "{\"a\": 01}", prefix: false, complete: false),         // no leading zeros
        Case(text: "{\"a\": 1.}", prefix: false, complete: false),
        Case(text: "{\"a\": -}", prefix: false, complete: false),
        Case(text: "{\"a\": 1e}", prefix: false, complete: false),
        Case(text: "{\"a\": 1 2}", prefix: false, complete: false),
        Case(text: "{\"a\" 1}", prefix: false, complete: false),
        Case(text: "{a: 1}", prefix: false, complete: false),              // keys are strings
        Case(text: "{\"a\": 1,}", prefix: false, complete: false),         // no trailing comma
        Case(text: "{\"a\": [1,]}", prefix: false, complete: false),
        Case(text: "{\"a\": [1}", prefix: false, complete: false),         // closes match opens
        Case(text: "{\"a\": \"\\q\"}", prefix: false, complete: false),    // bad escape
        Case(text: "{\"a\": \"\\u12G4\"}", prefix: false, complete: false),
        Case(text: "{\"a\": \"line\nbreak\"}", prefix: false, complete: false),   // control characters are escaped
        Case(text: "{\"é\": \"日本\"}", prefix: true, complete: true),     // UTF-8 inside strings
        Case(text: "{\"a\": 1}}", prefix: false, complete: false),
        // Whitespace between tokens as llama.cpp's JSON grammar has it: "", " ", or "\n" and up to 20 of [ \t].
        Case(text: "{\n" + String(repeating: " ", count: 20) + "}", prefix: true, complete: true),
        Case(text: "{\n\t\t\"a\": 1,\n\t\t\"b\": 2\n}", prefix: true, complete: true),
        Case(text: "{\n" + String(repeating: "\t", count: 21) + "}", prefix: false, complete: false),
        Case(text: "{\n\n}", prefix: false, complete: false),
        Case(text: "{  }", prefix: false, complete: false),
        Case(text: "{\t}", prefix: false, complete: false),
        Case(text: "{\"a\": 1e12, \"b\": -2.5E-7}", prefix: true, complete: true),
        Case(text: "{\"a\": 1e123}", prefix: false, complete: false),    // two exponent digits at most
        Case(text: "{\"a\":" + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "}", prefix: true, complete: true),
        Case(text: "{\"a\":" + String(repeating: "[", count: 64), prefix: false, complete: false),              // nested 64 deep at most
        Case(text: "{\"a\":[{\"b\":[1,{}]},[]],\"c\":{\"d\":[[]]}}", prefix: true, complete: true),
    ]

    @Test(arguments: cases)
    func acceptsExactlyThePrefixesOfOneObject(_ c: Case) {
        var s = JSONPrefix()
        let ok = s.feed(Array(c.text.utf8))
        #expect(ok == c.prefix)
        if ok { #expect(s.isComplete == c.complete) }
        // Every JSON text this accepts whole, Foundation's parser reads as an object.
        if c.complete { #expect((try? JSONSerialization.jsonObject(with: Data(c.text.utf8))) is [String: Any]) }
    }

    /// The mask leaves exactly the tokens whose bytes continue the prefix; EOS only once the object has closed;
    /// tokens without bytes (special tokens) never.
    /// Strings hold whole UTF-8 characters: a token may end inside one and the next must go on with it; a lone
    /// continuation byte, an overlong form, a surrogate or a value past U+10FFFF never comes (as llama.cpp's and
    /// xgrammar's grammars match code points). Both automata: json_object's and a schema's strings and free keys.
    @Test(arguments: [
        ([0xC3, 0xA9], true), ([0xF0, 0x9F, 0x99, 0x82], true), ([0xE4, 0xB8, 0xAD], true), ([0xEF, 0xBF, 0xBD], true),
        ([0x85], false), ([0xC3], false), ([0xC3, 0x41], false), ([0xC0, 0x80], false), ([0xE0, 0x80, 0x80], false),
        ([0xED, 0xA0, 0x80], false), ([0xF4, 0x90, 0x80, 0x80], false), ([0xF5, 0x80, 0x80, 0x80], false),
    ] as [([UInt8], Bool)])
    func stringsHoldWholeUTF8Characters(character: [UInt8], whole: Bool) {
        let text = Array(#"{"a": ""#.utf8) + character + Array(#""}"#.utf8)
        var p = JSONPrefix()
        #expect((p.feed(text) && p.isComplete) == whole)
        // A prefix that ends inside the character is a prefix whenever its bytes so far can begin one.
        var q = JSONPrefix()
        let begun = Array(#"{"a": ""#.utf8) + character.prefix(1)
        #expect(q.feed(begun) == (character[0] >= 0xC2 && character[0] <= 0xF4))
        let schema = try! JSONSchema(try! JSONSerialization.jsonObject(with: Data(#"{"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}"#.utf8)))
        var s = JSONSchemaState(schema)
        #expect((s.feed(text, schema) && s.isComplete) == whole)
        var k = JSONSchemaState(schema)
        let freeKey = Array(#"{""#.utf8) + character + Array(#"": "x"}"#.utf8)
        #expect((k.feed(freeKey, schema) && k.isComplete) == whole)
    }

    @Test func maskKeepsTheTokensThatContinueThePrefix() {
        let vocab: [[UInt8]] = ["{", "}", "\"", "a", "\":", " 1", "x", "", "}\n", "{\"", ",\""].map { Array($0.utf8) }
        let g = TokenGrammar(table: TokenTable(tokenBytes: vocab, eos: [7]), language: .jsonObject)
        func allowed(_ prefix: String) -> [Int] {
            var s = g.start
            let ok = g.feed(&s.text, Array(prefix.utf8))
            #expect(ok)
            var logits = [Float](repeating: 0, count: vocab.count + 1)
            logits.withUnsafeMutableBufferPointer { g.mask($0, after: s) }
            return logits.indices.filter { logits[$0] == 0 }
        }
        #expect(allowed("") == [0, 9])                  // "{" and "{\""
        #expect(allowed("{") == [1, 2, 4, 8])           // "}", "\"", "\":" (a key that starts with a colon), "}\n"
        #expect(allowed("{\"a") == [0, 1, 2, 3, 4, 5, 6, 9, 10])     // in a key: all but the newline's and EOS
        #expect(allowed("{\"a\": 1") == [1, 8, 10])    // close, or ",\"" (" 1" would put a space in the number)
        #expect(allowed("{}") == [7])                   // EOS alone
        #expect(g.advance(g.start, by: [0, 1, 7]).map(g.isComplete) == true)
        #expect(g.advance(g.start, by: [6]) == nil)
    }

    /// guided_choice: tokens that continue some choice; EOS where a choice is whole, alone where none goes on.
    @Test func choiceGrammarKeepsTheTextOneOfTheChoices() {
        let vocab: [[UInt8]] = ["pos", "itive", "neg", "ative", "p", "x", ""].map { Array($0.utf8) }
        let g = TokenGrammar(table: TokenTable(tokenBytes: vocab, eos: [6]), language: .choice(["positive", "negative", "pos"].map { Array($0.utf8) }))
        func allowed(_ tokens: [Int32]) -> [Int] {
            let s = g.advance(g.start, by: tokens)!
            var logits = [Float](repeating: 0, count: vocab.count)
            logits.withUnsafeMutableBufferPointer { g.mask($0, after: s) }
            return logits.indices.filter { logits[$0] == 0 }
        }
        #expect(allowed([]) == [0, 2, 4])        // "pos", "neg", "p"
        #expect(allowed([0]) == [1, 6])          // "itive", or EOS: "pos" is a choice
        #expect(allowed([0, 1]) == [6])          // "positive": EOS alone
        #expect(allowed([2]) == [3])             // "neg" must go on
        #expect(g.advance(g.start, by: [5]) == nil)
    }

    /// A thinking model's reply under a constraint (vLLM with a reasoning parser): the <think> block is free text,
    /// whitespace after </think> is skipped, and the language holds from the answer's first byte.
    @Test func reasoningBlockIsFreeAndTheLanguageHoldsAfterIt() {
        // 0 "<think>", 1 "<", 2 "think>", 3 "x", 4 "</think>", 5 "\n\n", 6 "{", 7 "}", 8 EOS, 9 "</think>\n\n{", 10 "</think>x"
        let vocab: [[UInt8]] = ["<think>", "<", "think>", "x", "</think>", "\n\n", "{", "}", "", "</think>\n\n{", "</think>x"].map { Array($0.utf8) }
        let plain = TokenGrammar(table: TokenTable(tokenBytes: vocab, eos: [8]), language: .jsonObject)
        func allowed(_ g: TokenGrammar, _ tokens: [Int32]) -> [Int] {
            guard let s = g.advance(g.start, by: tokens) else { return [-1] }
            var logits = [Float](repeating: 0, count: vocab.count)
            logits.withUnsafeMutableBufferPointer { g.mask($0, after: s) }
            return logits.indices.filter { logits[$0] == 0 }
        }
        let optional = plain.reasoning(.optional)
        #expect(allowed(optional, []) == [0, 1, 6])              // open the block, or answer at once
        #expect(allowed(optional, [1]) == [2])                   // "<" can only go on to "<think>" ('<' is no JSON)
        #expect(allowed(optional, [0]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])   // free, EOS too; "</think>x" could not answer
        #expect(allowed(optional, [1, 2, 3, 3]) == allowed(optional, [0]))
        #expect(allowed(optional, [0, 3, 4]) == [5, 6])          // after </think>: whitespace or the answer
        #expect(allowed(optional, [0, 3, 4, 5, 6]) == [7])       // then JSON as before
        #expect(allowed(optional, [0, 3, 9]) == [7])             // closed and answered in one token
        #expect(optional.advance(optional.start, by: [0, 3, 4, 5, 6, 7]).map(optional.isComplete) == true)
        #expect(optional.advance(optional.start, by: [0, 3]).map(optional.isComplete) == false)
        #expect(allowed(optional, [6]) == [7])                   // answered without thinking: JSON from the start
        #expect(allowed(plain.reasoning(.opened), []) == allowed(optional, [0]))   // the prompt opened the block
        #expect(allowed(plain, []) == [6])                       // no reasoning: constrained from the first token
    }

    /// Byte-fallback tokens in one run never mix ASCII (structure) and other bytes: a run that is not UTF-8 would
    /// decode to U+FFFD for every byte, a quote included.
    @Test func byteTokenRunsDoNotMixASCIIWithOtherBytes() {
        // 0 "{", 1 "\"", 2 <0x22> (a quote as a byte token), 3 <0xE6>, 4 "a"
        let table = TokenTable(tokenBytes: [[0x7B], [0x22], [0x22], [0xEF, 0xBF, 0xBD], [0x61]], byteClass: [0, 0, 1, 2, 0], eos: [])
        let g = TokenGrammar(table: table, language: .jsonObject)
        let inString = g.advance(g.start, by: [0, 1])!
        #expect(g.advance(inString, by: [3, 3, 4]) != nil)       // non-ASCII bytes in a string
        #expect(g.advance(inString, by: [3, 2]) == nil)          // then a quote byte: the run would lose it
        #expect(g.advance(inString, by: [3, 4, 2]) != nil)       // another token ends the run first
        #expect(g.advance(g.advance(g.start, by: [0])!, by: [2, 3]) == nil)
    }
}
