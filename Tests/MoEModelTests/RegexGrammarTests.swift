import Foundation
import Testing
@testable import MoEModel

/// guided_regex's automaton: whole-text matches and their prefixes, checked against Foundation's regex engine.
@Suite struct RegexGrammarTests {
    func run(_ pattern: String, _ text: String) throws -> (prefix: Bool, match: Bool) {
        let nfa = try RegexNFA(pattern)
        var states = nfa.initial
        for b in Array(text.utf8) {
            states = nfa.step(states, b)
            if states.isEmpty { return (false, false) }
        }
        return (true, nfa.accepts(states))
    }

    static let patterns = [#"\d{3}-\d{4}"#, "(yes|no|maybe)", #"[A-Z][a-z]+( [A-Z][a-z]+)*"#, #"-?\d+(\.\d+)?"#, "a{2,4}b?",
                           #"[^,\n]+,[^,\n]+"#, #"(?:ab|cd)+\.?"#, #"\w+@\w+\.(com|org)"#, "x*y*", "^colou?r$"]
    static let texts = ["555-1234", "55-1234", "yes", "ye", "maybee", "Ada Lovelace", "ada", "Ada lovelace", "-3.25", "3.", "12",
                        "aa", "aaaab", "aaaaa", "a", "one,two", "one,two,three", ",x", "abcdab.", "abab..", "me@host.org", "me@host.net",
                        "", "xxyy", "yx", "color", "colour", "colouur"]

    /// Non-ASCII text: `.`, a negated class and `\D \W \S` take a whole character (as NSRegularExpression counts
    /// them), so `.{2}` is two characters of any length in bytes; and nothing takes a byte that is not UTF-8.
    @Test func characterClassesTakeWholeCharacters() throws {
        let patterns = ["..", ".{2}", "[^,]+,[^,]+", #"\D+"#, #"\W\w"#, "a.b", #"\S{3}"#, "é+"]
        let texts = ["é", "éé", "日本", "a😀b", "ab", "日,本", "é,", "😀😀", "é🙂x", "ééé", "中文字", " x", "xé"]
        for pattern in patterns {
            let re = try NSRegularExpression(pattern: "^(?:" + pattern + ")$")
            for text in texts {
                let expected = re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
                #expect(try run(pattern, text).match == expected, "\(pattern) on \(text)")
            }
        }
        for bytes: [UInt8] in [[0x85], [0xC3, 0x41], [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80]] {
            let nfa = try RegexNFA(".+")
            var states = nfa.initial
            for b in bytes { states = nfa.step(states, b) }
            #expect(states.isEmpty || !nfa.accepts(states), "\(bytes)")
        }
    }

    /// Every (pattern, text): a whole match exactly when NSRegularExpression matches the whole text; and a text
    /// that matches is a prefix at every length.
    @Test(arguments: patterns)
    func wholeMatchesAgreeWithFoundation(_ pattern: String) throws {
        let re = try NSRegularExpression(pattern: "^(?:" + pattern.trimmingCharacters(in: CharacterSet(charactersIn: "^$")) + ")$")
        for text in Self.texts {
            let expected = re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
            let got = try run(pattern, text)
            #expect(got.match == expected, "\(pattern) on \(text.debugDescription)")
            if expected {
                for n in 0...text.utf8.count { #expect(try run(pattern, String(decoding: Array(text.utf8.prefix(n)), as: UTF8.self)).prefix) }
            }
        }
    }

    @Test func unsupportedSyntaxIsNamed() {
        func reason(_ p: String) -> String { do { _ = try RegexNFA(p); return "" } catch { return "\(error)" } }
        #expect(reason("(?=a)b").contains("only (?: … ) groups"))
        #expect(reason("*a").contains("nothing to repeat"))
        #expect(reason("(ab").contains("not closed"))
        #expect(reason("[é]").contains("non-ASCII characters inside a class"))
        #expect(reason(#"\bword"#).contains("the escape \\b is not supported"))
        #expect(reason("a{5,2}").contains("m <= n"))
    }
}
