import Foundation

/// A Hugging Face `tokenizer.json` tokenizer (BPE model) that encodes and
/// decodes exactly like the Rust `tokenizers` library 0.23.
///
/// Immutable after construction, so one instance can serve any number of
/// threads concurrently; per-call scratch state lives on the caller's stack.
public final class Tokenizer: Sendable {
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizerPipeline
    let postProcessor: PostProcessor?
    let decoder: Decoder?
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    /// The same without the special added tokens: HF's `split_special_tokens` (llama.cpp's parse_special false),
    /// where a special token's text in the input is read as text.
    let rawMatcherNoSpecial: AddedTokenMatcher
    let normalizedMatcherNoSpecial: AddedTokenMatcher
    let addedByContent: [String: Int32]
    /// ignore_merges: whole words found in the vocab skip merging.
    let wholeWords: ByteKeyTable?
    /// Dense id -> token string (added tokens win over the model vocab;
    /// normalized added tokens appear in normalized form, as in Rust).
    let tokenStrings: [String?]
    /// Dense id -> "decode(skipSpecialTokens:) drops it" (Rust compares the
    /// token *string* against the special set, so vocab tokens spelled like a
    /// special token are dropped too).
    let skippable: [Bool]
    /// Dense id -> token is a `<0xXX>` byte token (streaming hold-back).
    let isByteToken: [Bool]
    let extraBOS: Int32?
    let extraEOS: Int32?

    public let vocabSize: Int
    public let bosTokenId: Int?
    public let eosTokenIds: [Int]
    public let addsBOS: Bool
    public let specialTokenIds: Set<Int>
    public let chatTemplate: String?

    /// Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json
    /// and DIR/generation_config.json.
    public convenience init(directory: URL) throws {
        let main = directory.appendingPathComponent("tokenizer.json")
        guard let data = try? Data(contentsOf: main) else {
            throw TokenizerError("cannot read tokenizer.json at \(main.path)")
        }
        func optional(_ name: String) -> Data? {
            try? Data(contentsOf: directory.appendingPathComponent(name))
        }
        // transformers (4.43+) saves the chat template as chat_template.jinja beside tokenizer_config.json, and reads
        // it first.
        let jinja = optional("chat_template.jinja").map { String(decoding: $0, as: UTF8.self) }
        try self.init(tokenizerJSON: data, tokenizerConfigJSON: optional("tokenizer_config.json"),
                      generationConfigJSON: optional("generation_config.json"), chatTemplate: jinja)
    }

    /// `chatTemplate`: a template given apart (chat_template.jinja), over tokenizer_config.json's.
    public init(tokenizerJSON: Data, tokenizerConfigJSON: Data? = nil, generationConfigJSON: Data? = nil,
                chatTemplate template: String? = nil) throws {
        let root = try JSONNode.parse(tokenizerJSON, file: "tokenizer.json")
        guard root.object != nil else { throw TokenizerError("malformed JSON in tokenizer.json: expected an object") }
        if !root["truncation"].isNull {
            throw TokenizerError("unsupported option 'truncation' (non-null) in tokenizer.json")
        }
        if !root["padding"].isNull, root["padding"]["strategy"].object != nil {
            // {"Fixed": n} pads single encodings; "BatchLongest" is a no-op here.
            throw TokenizerError("unsupported option 'padding' with a fixed length in tokenizer.json")
        }

        let model = try BPEModel.parse(root["model"])
        let normalizer = try Normalizer.parse(root["normalizer"])
        var steps = [PreTokenizerStep]()
        try PreTokenizerStep.parse(root["pre_tokenizer"], into: &steps)
        self.model = model
        self.normalizer = normalizer
        let lazy = PreTokenizerPipeline(steps: steps, lazyByteLevel: false).endsWithByteLevel && model.canMapBytesLazily
        self.preTokenizer = PreTokenizerPipeline(steps: steps, lazyByteLevel: lazy)
        self.postProcessor = try PostProcessor.parse(root["post_processor"])
        self.decoder = try Decoder.parse(root["decoder"])
        self.wholeWords = model.ignoreMerges ? model.wholeWordTable(lazyBytes: lazy) : nil

        // Added tokens, with Rust's id assignment and registration order.
        let fileTokens = try (root["added_tokens"].isNull ? [] : root["added_tokens"].requireArray())
            .map(AddedToken.init)
        let vocabulary = AddedVocabulary(fileTokens, model: model, normalizer: normalizer)
        let ordered = vocabulary.registrationOrder
        let raw = ordered.filter { !$0.normalized }
        let norm = ordered.filter { $0.normalized }
        func matcher(_ tokens: [AddedToken], normalized: Bool) -> AddedTokenMatcher {
            AddedTokenMatcher(patterns: tokens.map { normalized ? normalizer?.apply(Array($0.content.utf8)) ?? Array($0.content.utf8) : Array($0.content.utf8) },
                              tokenIds: tokens.map { vocabulary.idByContent[$0.content]! }, flags: vocabulary.tokenById)
        }
        rawMatcher = matcher(raw, normalized: false)
        normalizedMatcher = matcher(norm, normalized: true)
        rawMatcherNoSpecial = matcher(raw.filter { !vocabulary.specialContents.contains($0.content) }, normalized: false)
        normalizedMatcherNoSpecial = matcher(norm.filter { !vocabulary.specialContents.contains($0.content) }, normalized: true)
        addedByContent = vocabulary.idByContent
        specialTokenIds = Set(vocabulary.specialContents.compactMap { vocabulary.idByContent[$0].map(Int.init) })

        vocabSize = max(model.idLimit, vocabulary.tokenById.keys.max().map { Int($0) + 1 } ?? 0)
        // Filled straight from the vocab, then overwritten by the added
        // tokens (which may reuse vocab ids): no intermediate id table.
        var strings = [String?](repeating: nil, count: vocabSize)
        for (t, id) in model.vocab { strings[Int(id)] = t }
        for (id, t) in vocabulary.tokenById { strings[Int(id)] = vocabulary.normalizedForm[id] ?? t.content }
        tokenStrings = strings
        skippable = strings.map { $0.map { vocabulary.specialContents.contains($0) } ?? false }
        // The ByteFallback decoder looks at token strings only, so an added
        // token spelled "<0x0A>" is a byte token too.
        isByteToken = strings.map { $0.map { Decoder.byteValue($0) != nil } ?? false }

        // BOS/EOS: the post-processor is authoritative; tokenizer_config's
        // add_bos_token/add_eos_token only add what it did not already add.
        let configs = try ModelConfigs(tokenizerConfig: tokenizerConfigJSON, generationConfig: generationConfigJSON)
        func resolve(_ name: String?) -> Int? {
            guard let name else { return nil }
            return vocabulary.idByContent[name].map(Int.init) ?? model.vocab[name].map(Int.init)
        }
        let bos = resolve(configs.bosToken) ?? configs.generationBosId
        let eosFromConfig = resolve(configs.eosToken)
        bosTokenId = bos
        eosTokenIds = configs.generationEosIds ?? eosFromConfig.map { [$0] } ?? []
        chatTemplate = template ?? configs.chatTemplate
        let probe = postProcessor?.process([]) ?? []
        let postAddsBOS = bos != nil && probe.first.map(Int.init) == bos
        let postAddsEOS = eosFromConfig != nil && probe.last.map(Int.init) == eosFromConfig
        extraBOS = (configs.addBosToken == true && !postAddsBOS) ? bos.map { Int32($0) } : nil
        extraEOS = (configs.addEosToken == true && !postAddsEOS) ? eosFromConfig.map { Int32($0) } : nil
        addsBOS = postAddsBOS || extraBOS != nil
        // Build the lazily-initialised Unicode class table now, so the first
        // request does not pay for it.
        _ = CharClass.bmpTable.count
    }

    // MARK: - Vocabulary

    /// Whether the token is a byte-fallback token (`<0xE6>`) that a ByteFallback decoder groups with its
    /// neighbours: a group that is not valid UTF-8 decodes to one U+FFFD per byte, ASCII bytes included.
    public func isGroupedByteToken(_ id: Int) -> Bool {
        (decoder?.groupsByteTokens ?? false) && id >= 0 && id < isByteToken.count && isByteToken[id]
    }

    /// The token string of an id (added tokens first, then the model vocab).
    public func token(for id: Int) -> String? {
        id >= 0 && id < tokenStrings.count ? tokenStrings[id] : nil
    }

    public func id(for token: String) -> Int? {
        addedByContent[token].map(Int.init) ?? model.vocab[token].map(Int.init)
    }

    // MARK: - Encoding

    /// `splitSpecialTokens` is HF's `split_special_tokens`: special added tokens' text in `text` is tokenized as
    /// text, not read as those tokens.
    public func encode(_ text: String, addSpecialTokens: Bool = true, splitSpecialTokens: Bool = false) -> [Int] {
        encodeIds(text, addSpecialTokens: addSpecialTokens, splitSpecialTokens: splitSpecialTokens).map { Int($0) }
    }

    public func encodeWithTokens(_ text: String, addSpecialTokens: Bool = true) -> (ids: [Int], tokens: [String]) {
        let ids = encode(text, addSpecialTokens: addSpecialTokens)
        return (ids, ids.map { token(for: $0) ?? "" })
    }

    /// `addSpecialTokens` is HF's `add_special_tokens`: when false, the
    /// post-processor adds nothing (see `PostProcessor`) and neither do the
    /// tokenizer_config add_bos/add_eos flags.
    func encodeIds(_ text: String, addSpecialTokens: Bool, splitSpecialTokens: Bool = false) -> [Int32] {
        var ids = encodeNoSpecial(text, splitSpecialTokens: splitSpecialTokens)
        if addSpecialTokens {
            if let pp = postProcessor { ids = pp.process(ids) }
            if let b = extraBOS { ids.insert(b, at: 0) }
            if let e = extraEOS { ids.append(e) }
        }
        return ids
    }

    /// Rust `encode_single_sequence`: extract non-normalized added tokens
    /// from the raw text, normalize each remaining segment, extract
    /// normalized added tokens, pre-tokenize, run the model.
    /// `useCache` overrides the size heuristic (tests compare both paths).
    func encodeNoSpecial(_ text: String, useCache: Bool? = nil, splitSpecialTokens: Bool = false) -> [Int32] {
        let raw = splitSpecialTokens ? rawMatcherNoSpecial : rawMatcher
        let normalized = splitSpecialTokens ? normalizedMatcherNoSpecial : normalizedMatcher
        let bytes = Array(text.utf8)
        let cache = useCache ?? (bytes.count >= 2048)
        var ctx = EncodeContext(expectedWords: cache ? max(64, bytes.count / 8) : 0)
        var out = [Int32]()
        out.reserveCapacity(bytes.count / 3 + 4)
        let pieces = bytes.withUnsafeBufferPointer { raw.split($0, 0, bytes.count) }
        for piece in pieces {
            switch piece {
            case .token(let id):
                out.append(id)
            case .text(let span):
                let segment = span.start == 0 && span.end == bytes.count ? bytes : Array(bytes[span.start..<span.end])
                encodeSegment(segment, atOrigin: span.start == 0, matcher: normalized, &ctx, &out)
            }
        }
        return out
    }

    private func encodeSegment(_ segment: [UInt8], atOrigin: Bool, matcher: AddedTokenMatcher, _ ctx: inout EncodeContext,
                               _ out: inout [Int32]) {
        let normalized = normalizer?.apply(segment) ?? segment
        if matcher.isEmpty {
            encodeNormalized(normalized, atOrigin: atOrigin, &ctx, &out)
            return
        }
        let pieces = normalized.withUnsafeBufferPointer { matcher.split($0, 0, normalized.count) }
        for piece in pieces {
            switch piece {
            case .token(let id): out.append(id)
            case .text(let span):
                encodeNormalized(Array(normalized[span.start..<span.end]), atOrigin: atOrigin && span.start == 0,
                                 &ctx, &out)
            }
        }
    }

    private func encodeNormalized(_ text: [UInt8], atOrigin: Bool, _ ctx: inout EncodeContext, _ out: inout [Int32]) {
        let pre = preTokenizer.run(text, atOrigin: atOrigin)
        pre.buf.withUnsafeBufferPointer { p in
            for span in pre.spans { tokenizeWord(p, span, &ctx, &out) }
        }
    }

    /// Model step for one pre-token, with the ignore_merges shortcut and the
    /// per-call word cache (Rust caches words shorter than 256 bytes).
    @inline(__always)
    private func tokenizeWord(_ p: UnsafeBufferPointer<UInt8>, _ span: Span, _ ctx: inout EncodeContext,
                              _ out: inout [Int32]) {
        let len = span.end - span.start
        let useCache = ctx.cacheEnabled && len < 256
        var h: UInt64 = 0
        if useCache || wholeWords != nil { h = ByteKeyTable.hash(p, span.start, span.end) }
        if let ww = wholeWords, let (id, _) = ww.get(p, span.start, span.end, hash: h) {
            out.append(id)
            return
        }
        if useCache, let (start, count) = ctx.cache.get(p, span.start, span.end, hash: h) {
            out.append(contentsOf: ctx.cacheValues[Int(start)..<Int(start + count)])
            return
        }
        model.initialSymbols(p, span, lazyBytes: preTokenizer.lazyByteLevel, into: &ctx.syms)
        BPEMerge.merge(&ctx.syms, model.merges, &ctx.scratch)
        out.append(contentsOf: ctx.syms)
        if useCache, ctx.cache.insert(p, span.start, span.end, hash: h, Int32(ctx.cacheValues.count),
                                      Int32(ctx.syms.count)) {
            ctx.cacheValues.append(contentsOf: ctx.syms)
        }
    }

    // MARK: - Decoding

    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        let tokens = tokenStrings(ids, skipSpecialTokens: skipSpecialTokens)
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens)
    }

    /// The token strings of `ids` that decode (unknown ids left out; special ones too when asked).
    private func tokenStrings(_ ids: [Int], skipSpecialTokens: Bool) -> [String] {
        var tokens = [String]()
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard id >= 0, id < tokenStrings.count, let t = tokenStrings[id] else { continue }
            if skipSpecialTokens && skippable[id] { continue }
            tokens.append(t)
        }
        return tokens
    }

    /// The bytes `ids` decode to before they are read as UTF-8: with a byte-level BPE the tokens' own bytes, so one
    /// that ends inside a character gives that character's first bytes (where `decode` gives U+FFFD); with other
    /// decoders the UTF-8 of `decode`.
    public func decodeBytes(_ ids: [Int], skipSpecialTokens: Bool = false) -> [UInt8] {
        guard case .byteLevel? = decoder else { return Array(decode(ids, skipSpecialTokens: skipSpecialTokens).utf8) }
        return tokenStrings(ids, skipSpecialTokens: skipSpecialTokens).flatMap { ByteLevelTables.decode($0) ?? Array($0.utf8) }
    }

    public func streamDecoder(skipSpecialTokens: Bool = false) -> StreamDecoder {
        StreamDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }
}

/// Per-call mutable state of one encode.
struct EncodeContext {
    var syms = [Int32]()
    var scratch = BPEScratch()
    let cacheEnabled: Bool
    var cache: ByteKeyTable
    var cacheValues = [Int32]()

    /// A word cache pays off only for long inputs; short prompts skip it.
    init(expectedWords: Int) {
        cacheEnabled = expectedWords > 0
        cache = ByteKeyTable(expectedEntries: cacheEnabled ? min(expectedWords, 1 << 16) : 0,
                             maxEntries: 1 << 18)
    }
}
