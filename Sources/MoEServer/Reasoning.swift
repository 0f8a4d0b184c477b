/// Splits a thinking model's reply (Qwen3: `<think>…</think>` first, then the answer; GLM: the same after a newline)
/// into its reasoning and its content as it streams, as vLLM's `qwen3` reasoning parser and llama.cpp's default do:
/// the reasoning goes to `reasoning_content`, the answer to `content`. A reply that does not open with `<think>`
/// (after newlines) is all content; one cut while thinking is all reasoning. Newlines next to the tags are dropped
/// (the template writes them back when the turn comes round again). Fed a whole reply at once it gives what
/// streaming gave, piece by piece.
struct ReasoningSplitter {
    enum Piece: Equatable, Sendable {
        case reasoning(String)
        case content(String)
    }

    static let open = "<think>", close = "</think>"
    private enum State { case start, thinking, answer }
    private var state: State
    private var buffer = ""
    /// Newlines at the end of the reasoning so far: dropped if </think> follows.
    private var held = ""
    /// Still at the start of reasoning or content (leading newlines dropped).
    private var leading = true

    /// `enabled` false: everything is content. `opened`: the prompt ended in "<think>\n" (a thinking model's
    /// template), so the reply starts inside the reasoning.
    init(enabled: Bool, opened: Bool = false) {
        state = !enabled ? .answer : opened ? .thinking : .start
        leading = enabled
    }

    mutating func feed(_ text: String) -> [Piece] {
        buffer += text
        var out: [Piece] = []
        while true {
            switch state {
            case .start:
                // GLM writes a newline before its <think>.
                let body = buffer.lstrippingNewlines
                if body.hasPrefix(Self.open) {
                    buffer = String(body.dropFirst(Self.open.count))
                    state = .thinking
                    leading = true
                    continue
                }
                if Self.open.hasPrefix(body) { return out }     // may still become "<think>"
                state = .answer
                leading = false
                continue
            case .thinking:
                if let r = buffer.range(of: Self.close) {
                    out += reasoning(String(buffer[..<r.lowerBound]), final: true)
                    buffer = String(buffer[r.upperBound...])
                    state = .answer
                    leading = true
                    continue
                }
                let keep = buffer.partialSuffix(of: Self.close)
                out += reasoning(String(buffer.dropLast(keep)), final: false)
                buffer = String(buffer.suffix(keep))
                return out
            case .answer:
                if leading { buffer = buffer.lstrippingNewlines }
                if buffer.isEmpty { return out }
                leading = false
                out.append(.content(buffer))
                buffer = ""
                return out
            }
        }
    }

    /// The end of the reply.
    mutating func finish() -> [Piece] {
        defer { buffer = ""; held = "" }
        switch state {
        case .start: return buffer.isEmpty ? [] : [.content(buffer)]
        case .thinking: return reasoning(buffer, final: true)
        case .answer: return []
        }
    }

    /// Reasoning text, less its leading newlines and (at its end, `final`) its trailing ones; trailing newlines are
    /// held back until more reasoning follows them.
    private mutating func reasoning(_ text: String, final: Bool) -> [Piece] {
        var t = held + text
        if leading { t = t.lstrippingNewlines }
        let body = t.rstrippingNewlines
        held = final ? "" : String(String.UnicodeScalarView(t.unicodeScalars.dropFirst(body.unicodeScalars.count)))
        if body.isEmpty { return [] }
        leading = false
        return [.reasoning(body)]
    }

    /// A whole reply's reasoning (nil when it has none) and content.
    static func split(_ text: String, enabled: Bool, opened: Bool = false) -> (reasoning: String?, content: String) {
        var s = ReasoningSplitter(enabled: enabled, opened: opened)
        var reasoning: String?, content = ""
        for p in s.feed(text) + s.finish() {
            switch p {
            case .reasoning(let t): reasoning = (reasoning ?? "") + t
            case .content(let t): content += t
            }
        }
        return (reasoning, content)
    }
}
