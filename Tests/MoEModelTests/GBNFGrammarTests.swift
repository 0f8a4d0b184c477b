import Foundation
import Testing
@testable import MoEModel

/// GBNF (llama.cpp's grammar notation) read and matched on the UTF-8 bytes of texts.
struct GBNFGrammarTests {
    /// Feeds `text`'s bytes: nil if some byte is refused, else whether the text is a whole `root`.
    static func run(_ g: GBNFGrammar, _ text: String) -> Bool? {
        var s = g.start
        for b in Array(text.utf8) where !g.feed(&s, b) { return nil }
        return g.isComplete(s)
    }

    static let json = #"""
    # JSON, in the style of llama.cpp's grammars/json.gbnf
    root   ::= object
    value  ::= object | array | string | number | ("true" | "false" | "null") ws
    object ::=
      "{" ws (
        string ":" ws value
        ("," ws string ":" ws value)*
      )? "}" ws
    array  ::= "[" ws ( value ("," ws value)* )? "]" ws
    string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
    number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
    ws ::= | " " | "\n" [ \t]{0,20}
    """#

    /// (grammar, text, expected): true whole, false a proper prefix, nil refused.
    static let cases: [(String, String, Bool?)] = [
        (#"root ::= "yes" | "no""#, "yes", true),
        (#"root ::= "yes" | "no""#, "ye", false),
        (#"root ::= "yes" | "no""#, "yex", nil),
        (#"root ::= "yes" | "no""#, "", false),
        (#"root ::= [a-z]+ "@" [a-z]{2,3}"#, "ab@cd", true),
        (#"root ::= [a-z]+ "@" [a-z]{2,3}"#, "ab@cde", true),
        (#"root ::= [a-z]+ "@" [a-z]{2,3}"#, "ab@cdef", nil),
        (#"root ::= [a-z]+ "@" [a-z]{2,3}"#, "@x", nil),
        (#"root ::= [a-z]+ "@" [a-z]{2,3}"#, "ab@c", false),
        (#"root ::= "\"" [^"]* "\"""#, #""a b""#, true),
        (#"root ::= "\"" [^"]* "\"""#, #""a"b"#, nil),
        (#"root ::= "x"{3}"#, "xxx", true),
        (#"root ::= "x"{3}"#, "xxxx", nil),
        (#"root ::= "x"{2,} "y""#, "xxxxy", true),
        (#"root ::= "x"{2,} "y""#, "xy", nil),
        (#"root ::= ("a" | "b")* "c"?"#, "", true),
        (#"root ::= ("a" | "b")* "c"?"#, "abbac", true),
        (#"root ::= ("a" | "b")* "c"?"#, "abca", nil),
        // A group spans lines; a comment ends at the line's end; rules in any order.
        ("root ::= (\n  greeting # hello\n  | \"bye\"\n)\ngreeting ::= \"hi\" \" \"? name\nname ::= [A-Z] [a-z]*", "hi Ann", true),
        ("root ::= (\n  greeting # hello\n  | \"bye\"\n)\ngreeting ::= \"hi\" \" \"? name\nname ::= [A-Z] [a-z]*", "hiann", nil),
        // Code points, not bytes: a class of Cyrillic letters, `.` taking a four-byte emoji, escapes.
        (#"root ::= [а-я]+"#, "привет", true),
        (#"root ::= [а-я]+"#, "приvет", nil),
        (#"root ::= . "!""#, "😀!", true),
        (#"root ::= . "!""#, "ab!", nil),
        (#"root ::= "\x41\u00e9\n" [\t]"#, "Aé\n\t", true),
        // Recursion (balanced parentheses).
        (#"root ::= "(" root ")" | """#, "(())", true),
        (#"root ::= "(" root ")" | """#, "(()", false),
        (#"root ::= "(" root ")" | """#, "())", nil),
        (json, #"{"a": [1, 2.5, "x\n\u00e9", true, null], "b": {}}"#, true),
        (json, #"{"a": [1, 2.5"#, false),
        (json, #"{"a": 01}"#, nil),
        (json, #"{'a': 1}"#, nil),
    ]

    @Test func grammarsAcceptTheirTextsAndNothingElse() throws {
        for (source, text, expected) in Self.cases {
            let g = try GBNFGrammar(source)
            #expect(Self.run(g, text) == expected, "\(source.debugDescription) on \(text.debugDescription)")
        }
    }

    @Test func badGrammarsNameTheProblem() {
        let bad: [(String, String)] = [
            (#"start ::= "a""#, "no `root` rule"),
            (#"root ::= item"#, "rule `item` is used but never defined"),
            (#"root ::= root "a" | "a""#, "rule `root` is left-recursive"),
            ("root ::= x \"a\"\nx ::= \"\" | x \"b\"", "left-recursive"),
            (#"root ::= "abc"#, "unterminated literal"),
            (#"root ::= [a-"#, "unterminated character class"),
            (#"root ::= "a"{3,1}"#, "maximum below its minimum"),
            (#"root ::= * "a""#, "`*` follows nothing"),
            (#"root ::= "a" ! "b""#, "unexpected `!`"),
            ("root ::= \"a\"\nroot ::= \"b\"", "defined twice"),
            (#"root = "a""#, "expected ::="),
            (#"root ::= "\x4""#, "\\x needs 2 hex digits"),
        ]
        for (source, words) in bad {
            #expect(throws: GBNFGrammar.Invalid.self, "\(source)") { try GBNFGrammar(source) }
            do { _ = try GBNFGrammar(source) } catch {
                #expect("\(error)".contains(words), "\(source.debugDescription): \(error)")
            }
        }
    }

    /// Through the token mask: tokens whose bytes continue a text of the grammar; EOS once the text is whole.
    @Test func maskKeepsTokensThatContinueTheGrammar() throws {
        // 0 "a", 1 "b", 2 "c", 3 "ab", 4 "x", 5 EOS, 6 "é" (two bytes), 7 first byte of "é", 8 its second byte
        let vocab: [[UInt8]] = [[0x61], [0x62], [0x63], [0x61, 0x62], [0x78], [], [0xC3, 0xA9], [0xC3], [0xA9]]
        let g = TokenGrammar(table: TokenTable(tokenBytes: vocab, eos: [5]), language: .gbnf(try GBNFGrammar(#"root ::= "a" ("b" | "c") | "é"+"#).automaton()))
        func allowed(_ tokens: [Int32]) -> [Int] {
            let s = g.advance(g.start, by: tokens)!
            var logits = [Float](repeating: 0, count: vocab.count)
            logits.withUnsafeMutableBufferPointer { g.mask($0, after: s) }
            return logits.indices.filter { logits[$0] == 0 }
        }
        #expect(allowed([]) == [0, 3, 6, 7])
        #expect(allowed([0]) == [1, 2])
        #expect(allowed([3]) == [5])                 // "ab" is whole and nothing may follow: EOS alone
        #expect(allowed([7]) == [8])                 // half a character: only its other half
        #expect(allowed([7, 8]) == [5, 6, 7])        // "é": whole, or more of them
        #expect(g.advance(g.start, by: [4]) == nil)
    }

    /// A token may end inside a character only where some character the grammar wants can begin with its bytes: not
    /// where the only code points those bytes could still become are overlong forms (0xF0 and 0xE0 0x80 begin none
    /// below U+10000 and U+0800), nor with a lone continuation byte.
    @Test(arguments: [
        (#"root ::= "{""#, [0xF0], false),
        (#"root ::= [^a]"#, [0xF0], true),
        (#"root ::= [^a]"#, [0xF0, 0x9F], true),
        (#"root ::= [\u0100-\u07FF]"#, [0xE0], false),
        (#"root ::= [^a]"#, [0xE0, 0x80], false),
        (#"root ::= [^a]"#, [0xE0, 0xA0], true),
        (#"root ::= [^a]"#, [0x85], false),
        (#"root ::= [\u0080-\u00FF]"#, [0xC2], true),
        (#"root ::= "é""#, [0xC3], true),
        (#"root ::= "é""#, [0xC4], false),
    ] as [(String, [UInt8], Bool)])
    func aCharactersFirstBytesAreTakenOnlyWhereItCanBeWanted(grammar: String, bytes: [UInt8], taken: Bool) throws {
        let g = try GBNFGrammar(grammar)
        var s = g.start
        #expect(bytes.allSatisfy { g.feed(&s, $0) } == taken)
    }
}
