import MoEModel
import MoETokenizer

/// A completion choice's `logprobs` (OpenAI's legacy shape): per token its text, its log-probability, its most
/// likely alternatives with it (`logprobs` of them, and the token itself) and where its text starts in the
/// choice's text, in characters. The first token of an echoed prompt has null for both.
struct CompletionLogprobs: Encodable, Sendable {
    var tokens: [String] = []
    var tokenLogprobs: [Float?] = []
    var topLogprobs: [[String: Float]?] = []
    var textOffset: [Int] = []
    enum CodingKeys: String, CodingKey {
        case tokens, tokenLogprobs = "token_logprobs", topLogprobs = "top_logprobs", textOffset = "text_offset"
    }

    mutating func append(_ o: CompletionLogprobs) {
        tokens += o.tokens
        tokenLogprobs += o.tokenLogprobs
        topLogprobs += o.topLogprobs
        textOffset += o.textOffset
    }
}

/// A chat choice's `logprobs`: `{"content": [...]}`, each token with its text's UTF-8 bytes and its `top_logprobs`
/// most likely alternatives.
struct ChatLogprobs: Encodable, Sendable {
    struct Alternative: Encodable, Sendable {
        var token: String
        var logprob: Float
        var bytes: [UInt8]
    }
    struct Entry: Encodable, Sendable {
        var token: String
        var logprob: Float
        var bytes: [UInt8]
        var topLogprobs: [Alternative]
        enum CodingKeys: String, CodingKey { case token, logprob, bytes, topLogprobs = "top_logprobs" }
    }
    var content: [Entry]
}

/// One prompt position's entry of vLLM's `prompt_logprobs`: token id (a JSON key) → its log-probability, its rank
/// and its text, for the most likely tokens and the prompt's own token.
typealias PromptLogprobs = [String: PromptLogprob]

struct PromptLogprob: Encodable, Sendable {
    var logprob: Float
    var rank: Int
    var decodedToken: String
    enum CodingKeys: String, CodingKey { case logprob, rank, decodedToken = "decoded_token" }
}

/// Turns the engine's log-probabilities into OpenAI's shapes. A token's text is its own decoding, special tokens
/// included (as vLLM shows them), so tokens that are parts of one UTF-8 character all read "\u{FFFD}" and share a
/// key of a completion's `top_logprobs`; with `asIds` (vLLM's `return_tokens_as_token_ids`) each is "token_id:N".
/// Log-probabilities below −9999 (a masked token's −∞) are sent as −9999, which JSON can carry.
struct LogprobsFormat: Sendable {
    let tokenizer: Tokenizer
    var asIds = false

    func text(_ id: Int32) -> String { asIds ? "token_id:\(id)" : tokenizer.decode([Int(id)]) }

    static func clamp(_ x: Float) -> Float { x.isNaN ? -9999 : max(x, -9999) }

    /// Entries for tokens in order (an echoed prompt's first with nil), their offsets counted on from `offset`,
    /// which is left after the last token's text.
    func completion(_ entries: [(token: Int32, logprobs: PositionLogprobs?)], offset: inout Int) -> CompletionLogprobs {
        var out = CompletionLogprobs()
        for (id, lp) in entries {
            let s = text(id)
            out.tokens.append(s)
            out.textOffset.append(offset)
            offset += s.unicodeScalars.count
            guard let lp else {
                out.tokenLogprobs.append(nil)
                out.topLogprobs.append(nil)
                continue
            }
            out.tokenLogprobs.append(Self.clamp(lp.chosen.logprob))
            var top: [String: Float] = [:]
            for t in lp.top + [lp.chosen] { top[text(t.token)] = Self.clamp(t.logprob) }
            out.topLogprobs.append(top)
        }
        return out
    }

    /// vLLM's prompt_logprobs: per prompt position (the first null) its `n` most likely tokens (ranks 1…n) and the
    /// prompt's token with its own rank.
    func prompt(_ lps: [PositionLogprobs?], n: Int) -> [PromptLogprobs?] {
        lps.map { lp in
            guard let lp else { return nil }
            var entry: PromptLogprobs = [:]
            for (i, t) in lp.top.prefix(n).enumerated() {
                entry[String(t.token)] = PromptLogprob(logprob: Self.clamp(t.logprob), rank: i + 1, decodedToken: text(t.token))
            }
            entry[String(lp.chosen.token)] = PromptLogprob(logprob: Self.clamp(lp.chosen.logprob), rank: lp.rank,
                                                           decodedToken: text(lp.chosen.token))
            return entry
        }
    }

    /// Chat entries for generated tokens.
    func chat(_ lps: [PositionLogprobs]) -> ChatLogprobs {
        func alt(_ t: TokenLogprob) -> ChatLogprobs.Alternative {
            let s = text(t.token)
            return .init(token: s, logprob: Self.clamp(t.logprob), bytes: Array(s.utf8))
        }
        return ChatLogprobs(content: lps.map { lp in
            let c = alt(lp.chosen)
            return .init(token: c.token, logprob: c.logprob, bytes: c.bytes, topLogprobs: lp.top.map(alt))
        })
    }
}
