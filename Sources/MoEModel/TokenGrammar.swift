import Foundation

/// A vocabulary as constrained decoding reads it, built once per model: each token's bytes (the text it adds; special
/// tokens add none and are never allowed), the EOS tokens, and which tokens are byte-fallback ones. Those
/// (`<0x22>`, `<0xE6>`) are decoded in runs, and a run that is not valid UTF-8 becomes one U+FFFD per byte, ASCII ones
/// included: so a run never mixes ASCII bytes (which may be structure: a quote, a brace) with others (`byteClass` 1
/// and 2; 0 for every other token).
public final class TokenTable: Sendable {
    public let tokenBytes: [[UInt8]]
    public let byteClass: [UInt8]
    public let eos: Set<Int32>
    /// Tokens whose bytes inside a string leave it a string: no quote, backslash or control byte (most of a
    /// vocabulary, so the mask inside strings tries only the rest).
    let plainInString: [Bool]
    /// Tokens holding a '>': the only ones that can end a reasoning block (`</think>`), so the only ones the mask
    /// checks while in one.
    let closers: [Int]

    public init(tokenBytes: [[UInt8]], byteClass: [UInt8] = [], eos: Set<Int32>) {
        self.tokenBytes = tokenBytes
        self.byteClass = byteClass.isEmpty ? Array(repeating: 0, count: tokenBytes.count) : byteClass
        self.eos = eos
        plainInString = tokenBytes.map {
            !$0.isEmpty && $0.allSatisfy { $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") } && UTF8Step.whole($0)
        }
        closers = tokenBytes.indices.filter { tokenBytes[$0].contains(UInt8(ascii: ">")) }
    }
}

/// Which tokens may come next when the output must be one JSON object (`response_format` json_object), one value of a
/// JSON schema (json_schema), exactly one of some strings (vLLM's guided_choice), a whole match of a regular
/// expression (guided_regex) or a whole text of a GBNF grammar: those whose bytes continue the text so far; EOS once
/// the text is whole (alone, once nothing else could follow).
public final class TokenGrammar: Sendable {
    public enum Language: Sendable {
        case jsonObject
        case schema(JSONSchema)
        /// The UTF-8 of each choice.
        case choice([[UInt8]])
        /// vLLM's guided_regex: the whole text matches.
        case regex(RegexDFA)
        /// llama.cpp's grammar (vLLM's guided_grammar): the whole text is the GBNF grammar's root.
        case gbnf(LazyDFA<GBNFGrammar.State>)
    }
    public let table: TokenTable
    public let language: Language
    public let reasoning: Reasoning

    /// vLLM's structured outputs under a reasoning parser: a thinking model's `<think>…</think>` block is free text,
    /// and the language holds from the first byte after it that is not whitespace.
    public enum Reasoning: Sendable, Equatable {
        /// The language holds from the first token.
        case none
        /// The reply may open with `<think>` (Qwen3's hybrid templates: the model chooses), or begin the answer.
        case optional
        /// The prompt ended inside `<think>` (thinking templates): the reply starts as reasoning.
        case opened
    }

    public init(table: TokenTable, language: Language, reasoning: Reasoning = .none) {
        self.table = table
        self.language = language
        self.reasoning = reasoning
    }

    /// This grammar with its language after a reasoning block.
    public func reasoning(_ r: Reasoning) -> TokenGrammar { TokenGrammar(table: table, language: language, reasoning: r) }

    static let thinkOpen = Array("<think>".utf8), thinkClose = Array("</think>".utf8)

    /// Where the reply is relative to its reasoning block.
    enum Phase: Sendable, Equatable {
        /// Under the language.
        case answer
        /// At the reply's start: the bytes so far are a proper prefix of "<think>" (they go to the answer if the
        /// next byte departs from it).
        case start([UInt8])
        /// Inside the block; the last bytes, to spot "</think>" across tokens.
        case thinking([UInt8])
        /// After "</think>": whitespace until the answer begins.
        case closed
    }

    enum Text: Sendable, Equatable {
        case object(JSONPrefix)
        case schema(JSONSchemaState)
        /// The bytes so far, a prefix of some choice.
        case choice([UInt8])
        /// The automaton's state.
        case regex(Int32)
        /// The grammar automaton's state.
        case gbnf(Int32)
    }

    /// The text so far, and the byte class of its last token.
    public struct State: Sendable, Equatable {
        var text: Text
        var lastByteClass: UInt8 = 0
        var phase = Phase.answer
    }

    public var start: State {
        var s: State
        switch language {
        case .jsonObject: s = State(text: .object(JSONPrefix()))
        case .schema(let schema): s = State(text: .schema(JSONSchemaState(schema)))
        case .choice: s = State(text: .choice([]))
        case .regex(let dfa): s = State(text: .regex(dfa.start))
        case .gbnf(let dfa): s = State(text: .gbnf(dfa.start))
        }
        switch reasoning {
        case .none: break
        case .optional: s.phase = .start([])
        case .opened: s.phase = .thinking([])
        }
        return s
    }

    /// The text is whole: EOS may come.
    public func isComplete(_ state: State) -> Bool {
        guard state.phase == .answer else { return false }
        switch (state.text, language) {
        case (.object(let p), _): return p.isComplete
        case (.schema(let s), _): return s.isComplete
        case (.choice(let typed), .choice(let options)): return options.contains(typed)
        case (.regex(let s), .regex(let dfa)): return dfa.accepts(s)
        case (.gbnf(let s), .gbnf(let dfa)): return dfa.accepts(s)
        default: return false
        }
    }

    /// Nothing but whitespace could follow: EOS alone may come.
    func isClosed(_ state: State) -> Bool {
        guard state.phase == .answer else { return false }
        switch (state.text, language) {
        case (.object(let p), _): return p.isComplete
        case (.schema(let s), _): return s.isClosed
        case (.choice(let typed), .choice(let options)):
            return options.contains(typed) && !options.contains { $0.count > typed.count && $0.starts(with: typed) }
        case (.regex(let s), .regex(let dfa)): return dfa.accepts(s) && dfa.closed(s)
        case (.gbnf(let s), .gbnf(let dfa)): return dfa.accepts(s) && dfa.closed(s)
        default: return false
        }
    }

    func feed(_ text: inout Text, _ bytes: [UInt8]) -> Bool {
        switch text {
        case .object(var p):
            defer { text = .object(p) }
            return p.feed(bytes)
        case .schema(var s):
            guard case .schema(let schema) = language else { return false }
            defer { text = .schema(s) }
            return s.feed(bytes, schema)
        case .choice(let typed):
            guard case .choice(let options) = language else { return false }
            let t = typed + bytes
            guard options.contains(where: { $0.starts(with: t) }) else { return false }
            text = .choice(t)
            return true
        case .regex(let s):
            guard case .regex(let dfa) = language, let n = dfa.after(s, bytes) else { return false }
            text = .regex(n)
            return true
        case .gbnf(let s):
            guard case .gbnf(let dfa) = language, let n = dfa.after(s, bytes) else { return false }
            text = .gbnf(n)
            return true
        }
    }

    /// Feeds bytes through the reasoning phases into the language.
    func feed(_ s: inout State, _ bytes: [UInt8]) -> Bool {
        var i = 0
        while i < bytes.count {
            switch s.phase {
            case .answer:
                return feed(&s.text, Array(bytes[i...]))
            case .start(let typed):
                let t = typed + [bytes[i]]
                if Self.thinkOpen.starts(with: t) {
                    s.phase = t.count == Self.thinkOpen.count ? .thinking([]) : .start(t)
                    i += 1
                } else {
                    s.phase = .answer     // no reasoning block: what was typed is the answer's start
                    return feed(&s.text, typed + bytes[i...])
                }
            case .thinking(let tail):
                let t = Array((tail + [bytes[i]]).suffix(Self.thinkClose.count))
                s.phase = t == Self.thinkClose ? .closed : .thinking(t)
                i += 1
            case .closed:
                if bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 } else { s.phase = .answer }
            }
        }
        return true
    }

    /// The mask from an automaton's state: each token fed whole under the automaton's one lock, a table lookup a byte.
    private func maskFrom<Node>(_ dfa: LazyDFA<Node>, _ s: Int32, _ last: UInt8, _ logits: UnsafeMutableBufferPointer<Float>) {
        let t = table
        dfa.run(from: s, t.tokenBytes) { i, x in
            let c = t.byteClass[i]
            if i < logits.count && (x < 0 || t.tokenBytes[i].isEmpty || !(c == 0 || last == 0 || c == last)) { logits[i] = -.infinity }
        }
        for i in t.tokenBytes.count..<max(logits.count, t.tokenBytes.count) { logits[i] = -.infinity }
    }

    /// Whether token `i` may follow `state`, and the state after it.
    func step(_ state: State, _ i: Int) -> State? {
        let t = table
        guard i < t.tokenBytes.count, !t.tokenBytes[i].isEmpty else { return nil }
        if case .thinking = state.phase {
            var s = state
            guard feed(&s, t.tokenBytes[i]) else { return nil }
            s.lastByteClass = 0    // reasoning is free text: the answer's first token may be of any class
            return s
        }
        let c = t.byteClass[i]
        if c != 0 && state.lastByteClass != 0 && c != state.lastByteClass { return nil }
        var s = state
        guard feed(&s, t.tokenBytes[i]) else { return nil }
        s.lastByteClass = c
        return s
    }

    /// The state after `tokens` (nil if they leave the grammar, which sampling under the mask never does).
    public func advance(_ state: State, by tokens: some Sequence<Int32>) -> State? {
        var s = state
        for t in tokens {
            if isComplete(s) && table.eos.contains(t) { continue }
            guard let n = step(s, Int(t)) else { return nil }
            s = n
        }
        return s
    }

    /// Sets the logits of tokens that cannot come next to −∞ (vocabulary rows beyond the tokenizer's are masked too).
    /// The states after each first byte, and which second bytes each takes, are found once (at most 256 + 256 × the
    /// first bytes taken tries), so most tokens are settled by their first two bytes and only the rest are fed whole.
    public func mask(_ logits: UnsafeMutableBufferPointer<Float>, after state: State) {
        let t = table
        switch state.phase {
        case .answer: break
        case .thinking:
            // Free text, EOS included (as vLLM leaves a reasoning block), but a token that ends the block must
            // begin a valid answer.
            for i in t.closers where i < logits.count && step(state, i) == nil { logits[i] = -.infinity }
            return
        case .start, .closed:
            // One or two tokens a reply (its first, the one after </think>): each token fed whole.
            for i in 0..<logits.count where step(state, i) == nil { logits[i] = -.infinity }
            return
        }
        let eosKept = isComplete(state) ? t.eos.filter { Int($0) < logits.count }.map { ($0, logits[Int($0)]) } : []
        defer { for (e, v) in eosKept { logits[Int(e)] = v } }
        if isClosed(state) {
            for i in 0..<logits.count { logits[i] = -.infinity }
            return
        }
        // A regex's automaton takes a lock per use: its tokens are fed whole under one (0.28–0.34 ms a step over 32k
        // tokens for four patterns, where the first-bytes path below took a lock per byte and 1.0–1.5 ms for broad ones).
        switch (state.text, language) {
        case (.regex(let s), .regex(let dfa)): return maskFrom(dfa, s, state.lastByteClass, logits)
        case (.gbnf(let s), .gbnf(let dfa)): return maskFrom(dfa, s, state.lastByteClass, logits)
        default: break
        }
        let inString: Bool
        switch state.text {
        case .object(let p): inString = p.mode == .string && p.utf8 == 0   // not inside a character: plain tokens start one
        case .schema(let s): inString = s.inFreeString
        case .choice, .regex, .gbnf: inString = false
        }
        var after = [Text?](repeating: nil, count: 256)
        for b in 0..<256 {
            var text = state.text
            if feed(&text, [UInt8(b)]) { after[b] = text }
        }
        var second = [[Bool]?](repeating: nil, count: 256)
        let last = state.lastByteClass
        for i in 0..<logits.count {
            guard i < t.tokenBytes.count else { logits[i] = -.infinity; continue }
            let c = t.byteClass[i]
            guard c == 0 || last == 0 || c == last else { logits[i] = -.infinity; continue }
            if inString && t.plainInString[i] { continue }
            let bytes = t.tokenBytes[i]
            guard let b0 = bytes.first, let text1 = after[Int(b0)] else { logits[i] = -.infinity; continue }
            if bytes.count == 1 { continue }
            if second[Int(b0)] == nil {
                second[Int(b0)] = (0..<256).map { b in
                    var text = text1
                    return feed(&text, [UInt8(b)])
                }
            }
            guard second[Int(b0)]![Int(bytes[1])] else { logits[i] = -.infinity; continue }
            if bytes.count == 2 { continue }
            var text = text1
            if !feed(&text, Array(bytes.dropFirst())) { logits[i] = -.infinity }
        }
    }
}
