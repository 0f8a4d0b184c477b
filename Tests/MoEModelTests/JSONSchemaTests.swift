import Foundation
import Testing
@testable import MoEModel

/// The json_schema automaton: which texts are prefixes of a value the schema accepts, which are whole ones, and
/// which schemas are refused.
@Suite struct JSONSchemaTests {
    static func schema(_ json: String) -> JSONSchema {
        try! JSONSchema(try! JSONSerialization.jsonObject(with: Data(json.utf8)))
    }

    /// What a Pydantic model with a nested model, an optional field, an enum and a list gives.
    static let person = schema("""
        {"type": "object", "title": "Person",
         "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                        "email": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
                        "role": {"enum": ["admin", "user"]},
                        "address": {"$ref": "#/$defs/Address"},
                        "scores": {"type": "array", "items": {"type": "number"}, "maxItems": 3}},
         "required": ["name", "age"], "additionalProperties": false,
         "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "integer"]}},
                               "required": ["city"]}}}
        """)

    /// A text, whether it is a prefix of an accepted value, and whether a whole one (as for json_object).
    typealias Case = JSONGrammarTests.Case

    static let personCases: [Case] = [
        Case(text: "{", prefix: true, complete: false),
        Case(text: " {", prefix: false, complete: false),                                           // starts at its value
        Case(text: "{\"name\": \"Ada\", \"age\": 36}", prefix: true, complete: true),
        Case(text: "{\"age\":36,\"name\":\"Ada\"}", prefix: true, complete: true),                  // any order
        Case(text: "{\"name\": \"Ada\"}", prefix: false, complete: false),                          // age is required
        Case(text: "{\"name\": \"Ada\", \"name\": \"Bo\"}", prefix: false, complete: false),        // each key once
        Case(text: "{\"nick\"", prefix: false, complete: false),                                    // no other keys
        Case(text: "{\"na", prefix: true, complete: false),
        Case(text: "{\"age\": 36.5}", prefix: false, complete: false),                              // an integer
        Case(text: "{\"age\": -7, \"name\": \"x\", \"email\": null, \"role\": \"user\"}", prefix: true, complete: true),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"email\": \"a@b\"}", prefix: true, complete: true),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"email\": 3}", prefix: false, complete: false),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"role\": \"root\"}", prefix: false, complete: false),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"role\": \"adm", prefix: true, complete: false),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"address\": {\"city\": \"Oslo\", \"zip\": 150}}", prefix: true, complete: true),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"address\": {\"zip\": \"0150\"}}", prefix: false, complete: false),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"scores\": [1, 2.5e3, -0.25]}", prefix: true, complete: true),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"scores\": [1, 2, 3, 4]}", prefix: false, complete: false),   // maxItems
        Case(text: "{\"age\": 1, \"name\": \"x\", \"scores\": []}", prefix: true, complete: true),
        Case(text: "{\"age\": 1, \"name\": \"x\", \"scores\": [1,]}", prefix: false, complete: false),
        Case(text: "{\"age\": 1 , \"name\" : \"x\\n\\u00e9\" }", prefix: true, complete: true),
        Case(text: "{\"age\": 1, \"name\": \"x\"}\n", prefix: true, complete: true),
        Case(text: "{\"age\": 1, \"name\": \"x\"}  ", prefix: false, complete: false),            // one space, or newline + indent
        Case(text: "{\"age\": 123456789012345, \"name\": \"x\"}", prefix: true, complete: true),
        Case(text: "{\"age\": 1234567890123456", prefix: false, complete: false),             // integers keep to 15 digits
        Case(text: "{\"age\": 1, \"name\": \"x\"} x", prefix: false, complete: false),
    ]

    @Test(arguments: personCases)
    func personSchemaAcceptsExactlyItsValues(_ c: Case) {
        var s = JSONSchemaState(Self.person)
        let ok = s.feed(Array(c.text.utf8), Self.person)
        #expect(ok == c.prefix)
        if ok { #expect(s.isComplete == c.complete) }
    }

    /// With the schema's order known, keys come in it (as xgrammar, llguidance and OpenAI's strict mode generate
    /// them): an optional property may be left out, a required one not, and none comes back after a later one.
    @Test(arguments: [
        (#"{"z": 1, "m": true, "a": 2}"#, true), (#"{"z": 1, "a": 2}"#, true), (#"{"z":1,"a":2}"#, true),
        (#"{"a": 2, "z": 1}"#, false), (#"{"m": true, "z": 1, "a": 2}"#, false), (#"{"z": 1, "a": 2, "m": true}"#, false),
        (#"{"m": true, "a": 2}"#, false), (#"{"z": 1}"#, false),
    ])
    func keysComeInTheSchemasOrderWhenItIsKnown(text: String, whole: Bool) {
        let json = #"{"type": "object", "properties": {"z": {"type": "integer"}, "m": {"type": "boolean"}, "a": {"type": "integer"}}, "required": ["z", "a"]}"#
        let order: [Set<String>: [String]] = [["z", "m", "a"]: ["z", "m", "a"]]
        let schema = try! JSONSchema(try! JSONSerialization.jsonObject(with: Data(json.utf8))) { order[$0] }
        var s = JSONSchemaState(schema)
        #expect((s.feed(Array(text.utf8), schema) && s.isComplete) == whole, "\(text)")
        // Without the order, any order of the same keys is whole.
        let unordered = Self.schema(json)
        var u = JSONSchemaState(unordered)
        #expect((u.feed(Array(text.utf8), unordered) && u.isComplete) == (whole || [#"{"a": 2, "z": 1}"#, #"{"m": true, "z": 1, "a": 2}"#, #"{"z": 1, "a": 2, "m": true}"#].contains(text)))
    }

    /// minLength and maxLength count characters, as JSON Schema does; a string never holds a raw control byte.
    @Test func stringLengthsCountCharacters() {
        let schema = Self.schema(#"{"type": "string", "minLength": 2, "maxLength": 3}"#)
        for (text, whole) in [(#""éé""#, true), (#""日本語""#, true), (#""日本語x""#, false), (#""é""#, false), (#""ab""#, true),
                              ("\"a\tb\"", false), (#""😀😀""#, true)] {
            var s = JSONSchemaState(schema)
            #expect((s.feed(Array(text.utf8), schema) && s.isComplete) == whole, "\(text)")
        }
    }

    @Test(arguments: [
        // (seen, required, ordered) → the properties (of 4) whose key may come next.
        (0b0000 as UInt64, 0b0000 as UInt64, false, 0b1111 as UInt64), (0b0101, 0, false, 0b1010),
        (0b0000, 0b0100, true, 0b0111), (0b0001, 0b0100, true, 0b0110), (0b0100, 0b0100, true, 0b1000),
        (0b1000, 0b0000, true, 0b0000), (0b0000, 0b0001, true, 0b0001),
    ])
    func theKeysThatMayComeNext(seen: UInt64, required: UInt64, ordered: Bool, next: UInt64) {
        #expect(JSONSchemaState.nextKeys(seen, count: 4, required: required, ordered: ordered) == next)
    }

    /// Top-level scalars: a number or a literal is whole where it could also go on.
    @Test func scalarsAndLiteralsEndWhereTheyMay() {
        func feed(_ s: inout JSONSchemaState, _ text: String, _ schema: JSONSchema) -> Bool { s.feed(Array(text.utf8), schema) }
        let n = Self.schema(#"{"enum": [1, 12, "a"]}"#)
        var s = JSONSchemaState(n)
        let one = feed(&s, "1", n), oneWhole = s.isComplete
        let twelve = feed(&s, "2", n), twelveWhole = s.isComplete
        let more = feed(&s, "3", n)
        #expect(one && oneWhole && twelve && twelveWhole && !more)
        let b = Self.schema(#"{"type": "array", "items": {"type": "boolean"}, "minItems": 2}"#)
        var t = JSONSchemaState(b)
        let open = feed(&t, "[true", b), early = feed(&t, "]", b)
        #expect(open && !early)
        var u = JSONSchemaState(b)
        let pair = feed(&u, "[true, false]", b)
        #expect(pair && u.isComplete && u.isClosed)
        let recursive = Self.schema(##"{"$ref": "#/$defs/T", "$defs": {"T": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/T"}}}}}}"##)
        var r = JSONSchemaState(recursive)
        let tree = feed(&r, #"{"kids": [{"kids": []}, {}]}"#, recursive)
        #expect(tree && r.isComplete)
    }

    /// Strings with a format, a pattern or a length range: their content (unescaped) must match, whole.
    @Test func constrainedStringsMatchTheirFormatPatternOrLength() {
        let s = Self.schema(#"""
            {"type": "object", "properties": {
                "when": {"type": "string", "format": "date-time"}, "day": {"type": "string", "format": "date"},
                "id": {"type": "string", "format": "uuid"}, "mail": {"type": "string", "format": "email"},
                "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}, "nick": {"type": "string", "minLength": 2, "maxLength": 4}}}
            """#)
        func whole(_ text: String) -> Bool {
            var st = JSONSchemaState(s)
            return st.feed(Array(text.utf8), s) && st.isComplete
        }
        #expect(whole(#"{"when": "2024-02-29T13:05:59.25Z", "day": "1999-12-31", "id": "123e4567-e89b-12d3-a456-426614174000"}"#))
        #expect(whole(#"{"when": "2024-02-29T13:05:59+05:30", "mail": "a.b@c-d.org", "code": "AB-123", "nick": "xy"}"#))
        #expect(whole(#"{"nick": "abcd"}"#) && whole("{}"))
        for bad in [#"{"when": "2024-13-01T00:00:00Z"}"#, #"{"when": "2024-01-01 00:00:00Z"}"#, #"{"day": "99-01-01"}"#,
                    #"{"id": "123e4567-e89b-12d3-a456"}"#, #"{"mail": "nobody"}"#, #"{"code": "ab-123"}"#, #"{"code": "AB-1234"}"#,
                    #"{"nick": "a"}"#, #"{"nick": "abcde"}"#, #"{"nick": "a"b"}"#] {
            #expect(!whole(bad), "\(bad)")
        }
    }

    /// Integer bounds, exhaustively: every integer from −1100 to 1100 is a whole value exactly when it lies within
    /// them, and each of its prefixes is taken; leading zeros never are.
    @Test(arguments: [(0, 100), (-130, 257), (10, 20), (-5, -3), (7, 7), (-1000, -999), (95, 1005), (0, 0), (-20, 0)])
    func boundedIntegersAreExactlyThoseWithinTheBounds(lo: Int, hi: Int) {
        let s = Self.schema(#"{"type": "integer", "minimum": \#(lo), "maximum": \#(hi)}"#)
        for n in -1100...1100 {
            let text = String(n)
            var st = JSONSchemaState(s)
            var prefixes = true
            for b in text.utf8 where prefixes { prefixes = st.feed(b, s) }
            let inRange = n >= lo && n <= hi
            #expect((prefixes && st.isComplete) == inRange, "\(n) in [\(lo), \(hi)]")
            if inRange { #expect(prefixes, "\(n): a prefix was refused") }
        }
        var z = JSONSchemaState(s)
        #expect(!z.feed(Array("007".utf8), s) || !(lo...hi).contains(7))
        let exclusive = Self.schema(#"{"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 4}}}"#)
        for (text, ok) in [(#"{"n": 2}"#, true), (#"{"n": 3}"#, true), (#"{"n": 1}"#, false), (#"{"n": 4}"#, false), (#"{"n": 30}"#, false)] {
            var e = JSONSchemaState(exclusive)
            let fed = e.feed(Array(text.utf8), exclusive)
            #expect((fed && e.isComplete) == ok, "\(text)")
        }
    }

    /// Number bounds: every decimal of up to two fraction digits from −20 to 20 (and the same written with a
    /// trailing zero) is a whole value exactly when it lies within them, with each of its prefixes taken; every
    /// prefix of three bytes the automaton takes can still be finished (taking the first byte it allows each time).
    @Test(arguments: [#""minimum": 0, "maximum": 1"#, #""minimum": 0.5, "maximum": 2.25"#, #""minimum": -1.5, "maximum": -0.25"#,
                      #""exclusiveMinimum": 0, "exclusiveMaximum": 1"#, #""exclusiveMinimum": -3, "maximum": 3"#,
                      #""minimum": 0.1, "maximum": 0.1"#, #""minimum": 2.5"#, #""maximum": -0.75"#, #""exclusiveMinimum": 0.07"#,
                      #""minimum": 10.5, "exclusiveMaximum": 12"#])
    func boundedNumbersAreExactlyThoseWithinTheBounds(_ bounds: String) throws {
        let s = Self.schema(#"{"type": "number", \#(bounds)}"#)
        let b = try JSONSerialization.jsonObject(with: Data("{\(bounds)}".utf8)) as! [String: Double]
        func within(_ x: Double) -> Bool {
            (b["minimum"].map { x >= $0 } ?? true) && (b["maximum"].map { x <= $0 } ?? true)
                && (b["exclusiveMinimum"].map { x > $0 } ?? true) && (b["exclusiveMaximum"].map { x < $0 } ?? true)
        }
        func take(_ text: String) -> (prefixes: Bool, whole: Bool) {
            var st = JSONSchemaState(s)
            for c in text.utf8 where !st.feed(c, s) { return (false, false) }
            return (true, st.isComplete)
        }
        for k in -2000...2000 {
            let x = Double(k) / 100
            var text = String(format: "%.2f", x)
            while text.hasSuffix("0") && text.contains(".") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
            if text == "-0" { text = "0" }
            for t in [text, text.contains(".") ? text + "0" : text + ".0"] {
                let r = take(t)
                #expect(r.prefixes && r.whole == within(x) || !within(x) && !r.whole, "\(t) with \(bounds)")
            }
        }
        #expect(!take("1e2").whole && !take("01").prefixes && !take("1.").whole)
        let alphabet = Array("-0123456789.".utf8)
        for a in alphabet { for c in alphabet { for d in alphabet {
            var st = JSONSchemaState(s)
            guard st.feed([a, c, d], s) else { continue }
            var steps = 0
            while !st.isComplete && steps < 20 {
                guard let next = alphabet.first(where: { var t = st; return t.feed($0, s) }) else { break }
                _ = st.feed(next, s)
                steps += 1
            }
            #expect(st.isComplete, "\(String(decoding: [a, c, d], as: UTF8.self)) cannot be finished with \(bounds)")
        } } }
    }

    /// The grid test behind number bounds (values in units): whether a + n·step below b, negated or not, lies within.
    @Test func numberGridsMeetBoundsExactly() {
        func bounds(_ lo: Int128?, _ loStrict: Bool, _ hi: Int128?, _ hiStrict: Bool) -> NumberBounds {
            var b = NumberBounds()
            b.lo = lo; b.loStrict = loStrict; b.hi = hi; b.hiStrict = hiStrict
            return b
        }
        // Grid 0, 10, …, 90.
        let table: [(NumberBounds, Bool, Bool)] = [          // bounds, negative, meets
            (bounds(25, false, 30, false), false, true),     // 30
            (bounds(25, false, 30, true), false, false),     // 30 excluded, 20 below
            (bounds(30, true, 40, false), false, true),      // 40
            (bounds(30, true, 39, false), false, false),
            (bounds(91, false, nil, false), false, false),   // past the grid's end (below 100)
            (bounds(nil, false, -95, false), false, false),
            (bounds(nil, false, 0, false), false, true),     // 0
            (bounds(nil, false, 0, true), false, false),
            (bounds(-30, false, -25, false), true, true),    // −30
            (bounds(-30, true, -25, false), true, false),
            (bounds(-90, false, nil, false), true, true),
            (bounds(-5, true, nil, false), true, true),      // −0
        ]
        for (i, (b, negative, meets)) in table.enumerated() {
            #expect(b.meetsGrid(from: 0, below: 100, step: 10, negative: negative) == meets, "row \(i)")
        }
    }

    /// Objects with other keys than their listed properties: a dict (additionalProperties a schema, no properties,
    /// as Pydantic writes dict[str, int]), listed properties with other keys of a schema, any object (no properties
    /// listed), and any value (true or {}).
    @Test func additionalPropertiesTakeOtherKeysWithTheirSchema() {
        func check(_ json: String, _ cases: [(String, Bool)]) {
            let s = Self.schema(json)
            for (text, whole) in cases {
                var st = JSONSchemaState(s)
                let fed = st.feed(Array(text.utf8), s)
                #expect((fed && st.isComplete) == whole, "\(text) against \(json)")
            }
        }
        check(#"{"type": "object", "additionalProperties": {"type": "integer"}}"#, [
            ("{}", true), (#"{"a": 1, "b": -2}"#, true), (#"{"x\"y\u00e9": 3}"#, true), (#"{"a": "s"}"#, false), (#"{"a": 1.5}"#, false),
            (#"{"a" 1}"#, false), ("{\"a\u{01}\": 1}", false)])
        check(#"{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": {"type": "number"}}"#, [
            (#"{"name": "x", "score": 1.5}"#, true), (#"{"nam": 2, "name": "x", "names": 3}"#, true), (#"{"name": 3}"#, false),
            (#"{"name": "x", "name": "y"}"#, false), (#"{"score": 1}"#, false), (#"{"name": "x", "tag": "t"}"#, false)])
        check(#"{"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": true}"#, [
            (#"{"a": 1, "b": [true, {"c": null}], "d": "e"}"#, true), (#"{"a": "one"}"#, false)])
        check(#"{"type": "object"}"#, [("{}", true), (#"{"k": [1, 2.5e3, {"x": {}}], "s": "t"}"#, true), ("[]", false), ("1", false)])
        check(#"{"type": "array", "items": {}}"#, [(#"[1, "a", null, [], {"b": false}]"#, true), (#"[1,]"#, false)])
        check(#"{"type": "object", "properties": {"x": {"title": "X"}}, "required": ["x"]}"#, [(#"{"x": [1, "a"]}"#, true), (#"{"x": }"#, false)])
        check(#"{"type": "object", "properties": {"a": {"type": "integer"}}}"#, [(#"{"a": 1}"#, true), (#"{"b": 1}"#, false)])
    }

    @Test func unsupportedKeywordsAreRefusedByName() {
        func reason(_ json: String) -> String {
            do { _ = try JSONSchema(try JSONSerialization.jsonObject(with: Data(json.utf8))); return "" } catch { return "\(error)" }
        }
        #expect(reason(#"{"type": "number", "minimum": 3, "exclusiveMaximum": 3}"#).contains("no number of at most 17 digits"))
        #expect(reason(#"{"type": "integer", "minimum": 5, "maximum": 4}"#).contains("no integer lies within"))
        #expect(reason(#"{"type": "array", "items": false}"#).contains("a schema must be an object, true or {}"))
        #expect(reason(#"{"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 3}}}"#)
            .contains("/properties/a: the keyword multipleOf is not supported"))
        #expect(reason(##"{"$ref": "#/$defs/Nope"}"##).contains("does not name an entry"))
        #expect(reason(#"{"type": "object", "properties": {}, "required": ["x"]}"#).contains("required property x is not among the properties"))
        #expect(reason(#"{"minimum": 3}"#).contains("needs a type"))
        #expect(reason(#"{"type": "string", "format": "uri"}"#).contains("the format uri is not supported"))
        #expect(reason(#"{"type": "string", "format": "date", "maxLength": 3}"#).contains("cannot be combined"))
        #expect(reason(#"{"type": "string", "pattern": "(?=x)"}"#).contains("pattern: only (?: … ) groups"))
    }
}
