import Foundation
import Hummingbird
import MoETokenizer

/// A vocabulary's fill-in-the-middle tokens, found by their text as llama.cpp finds them: Qwen2.5-Coder and
/// Qwen3-Coder (`<|fim_prefix|>` …, `<|repo_name|>`, `<|file_sep|>`), StarCoder and Granite (`<fim_prefix>` …),
/// DeepSeek-Coder (`<｜fim▁begin｜>` …), CodeLlama (`<PRE>` …), GLM-4.5 (`<|code_prefix|>` …).
struct FIMTokens: Sendable, Equatable {
    var prefix, suffix, middle: Int
    /// Padding, repository name and file separator: llama.cpp ends a generation at any of them.
    var pad, repo, fileSep: Int?

    static let prefixNames = ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"]
    static let suffixNames = ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"]
    static let middleNames = ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]
    static let padNames = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]
    static let repoNames = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]
    static let fileSepNames = ["<|file_sep|>"]

    /// The tokens, or what is missing, in llama.cpp's words ("prefix token is missing. …").
    static func find(_ tokenizer: Tokenizer) -> Result<FIMTokens, APIError> {
        func first(_ names: [String]) -> Int? { names.lazy.compactMap { tokenizer.id(for: $0) }.first }
        let p = first(prefixNames), s = first(suffixNames), m = first(middleNames)
        guard let p, let s, let m else {
            let missing = [(p, "prefix"), (s, "suffix"), (m, "middle")].filter { $0.0 == nil }.map { "\($0.1) token is missing." }
            return .failure(APIError.invalid("Infill is not supported by this model: \(missing.joined(separator: " ")) (it has no fill-in-the-middle tokens)",
                                             code: "not_supported"))
        }
        return .success(FIMTokens(prefix: p, suffix: s, middle: m, pad: first(padNames), repo: first(repoNames), fileSep: first(fileSepNames)))
    }

    var stopTokens: [Int] { [pad, repo, fileSep].compactMap { $0 } }
}

/// llama.cpp's /infill prompt (its server's format_infill, with its defaults: batch 2048, n_predict −1), repo-level
/// FIM as Qwen2.5-Coder was trained on it:
///
///     [repo]myproject\n [sep]filename0\n extra text 0 … [sep]filename\n [BOS] [pre] prefix prompt [suf] suffix [mid]
///
/// The prefix keeps its last ≤ 3/4 of a batch of tokens, the suffix its first ≤ 1/4 of a batch less the prompt and
/// two; the extra context fills what the context has beyond a batch (plus 2), from its end. Without a file separator
/// the extra chunks are joined by "\n\n--- snippet ---\n\n" and no file names are written.
enum Infill {
    static let batch = 2048

    struct Extra: Equatable {
        var filename: String
        var text: String
    }

    /// prefix, suffix and prompt as token ids; `text` tokenizes with special tokens' text read as text.
    static func prompt(prefix: [Int], suffix: [Int], extra: [Extra], prompt: [Int], fim: FIMTokens, bos: Int?,
                       contextLimit: Int, text: (String) -> [Int]) -> [Int] {
        var context: [Int] = []
        if let repo = fim.repo { context += [repo] + text("myproject\n") }
        for chunk in extra {
            if let sep = fim.fileSep {
                context += [sep] + text(chunk.filename + "\n")
            } else {
                context += text("\n\n--- snippet ---\n\n")
            }
            context += text(chunk.text)
        }
        if let sep = fim.fileSep { context += [sep] + text("filename\n") }

        let prefixTake = min(prefix.count, 3 * (batch / 4))
        let suffixTake = min(suffix.count, max(0, batch / 4 - (2 + prompt.count)))
        let nPredict = -1
        let extraTake = min(max(0, contextLimit - batch - 2 * nPredict), context.count)
        var out = Array(context.suffix(extraTake))
        if let bos { out.append(bos) }
        out += [fim.prefix] + prefix.suffix(prefixTake) + prompt
        out += [fim.suffix] + suffix.prefix(suffixTake) + [fim.middle]
        return out
    }

    /// A request's prefix or suffix: text, or a list of texts and token ids (llama.cpp's mixed prompt; the ids are
    /// checked against the vocabulary by the route).
    static func mixed(_ value: Any, field: String, text: (String) -> [Int]) throws -> [Int] {
        if let s = value as? String { return text(s) }
        guard let list = value as? [Any] else { throw APIError.invalid("\"\(field)\" must be text or a list of texts and token ids", param: field) }
        return try list.flatMap { v -> [Int] in
            if let s = v as? String { return text(s) }
            // JSON's true and false arrive as NSNumbers of their own class: not token ids.
            if let n = v as? NSNumber, type(of: n) != type(of: NSNumber(value: true)), let id = Int(exactly: n.doubleValue) { return [id] }
            throw APIError.invalid("\"\(field)\" must be text or a list of texts and token ids", param: field)
        }
    }

    /// The extra context as llama.cpp checks it: a list of {"text": string, "filename": string (optional, "tmp")}.
    static func extra(_ value: Any?) throws -> [Extra] {
        guard let value, !(value is NSNull) else { return [] }
        guard let list = value as? [Any] else {
            throw APIError.invalid(#""input_extra" must be an array of {"filename": string, "text": string}"#, param: "input_extra")
        }
        return try list.map { item in
            guard let o = item as? [String: Any], let text = o["text"] as? String else {
                throw APIError.invalid(#"extra_context chunk must contain a "text" field with a string value"#, param: "input_extra")
            }
            if let f = o["filename"], !(f is String) {
                throw APIError.invalid(#"extra_context chunk's "filename" field must be a string"#, param: "input_extra")
            }
            return Extra(filename: o["filename"] as? String ?? "tmp", text: text)
        }
    }
}

extension Routes {
    /// POST /infill: llama.cpp's fill-in-the-middle completion for editors (llama.vscode, llama.vim): `input_prefix`,
    /// `input_suffix`, `input_extra` (other files' chunks), `prompt` (text after the prefix); the rest as /completion.
    func infill(_ req: Request) async throws -> Response {
        let body = try await body(req)
        let r = try APIRewrite.object(body)
        let fim = try FIMTokens.find(service.tokenizer).get()
        if let p = r["prompt"], !(p is String) { throw APIError.invalid(#""prompt" must be a string"#, param: "prompt") }
        guard let prefix = r["input_prefix"] else { throw APIError.invalid(#""input_prefix" is required"#, param: "input_prefix") }
        guard let suffix = r["input_suffix"] else { throw APIError.invalid(#""input_suffix" is required"#, param: "input_suffix") }
        let tokenizer = service.tokenizer
        // Prefix, suffix and extra context read special tokens' text as text; the prompt reads it as the tokens.
        let text = { (s: String) in tokenizer.encode(s, addSpecialTokens: false, splitSpecialTokens: true) }
        func mixed(_ value: Any, _ field: String) throws -> [Int] {
            let ids = try Infill.mixed(value, field: field, text: text)
            try service.checkVocabulary(ids, param: field)
            return ids
        }
        let ids = Infill.prompt(prefix: try mixed(prefix, "input_prefix"), suffix: try mixed(suffix, "input_suffix"),
                                extra: try Infill.extra(r["input_extra"]),
                                prompt: tokenizer.encode(r["prompt"] as? String ?? "", addSpecialTokens: false),
                                fim: fim, bos: tokenizer.addsBOS ? tokenizer.bosTokenId : nil, contextLimit: service.contextLimit, text: text)
        return try await llamaCompletion(body, prompt: ids, stopTokens: fim.stopTokens)
    }
}
