import Foundation
import MoEEngine
import MoEModel
import MoETokenizer

/// What one generation streams to its HTTP handler: its prompt's log-probabilities first (when asked for), then
/// text as it can be released with the log-probabilities of the tokens generated since the last event (when asked
/// for; a token's text may come in a later event than its log-probabilities, when it is held back for a stop string
/// or an unfinished UTF-8 character) and the count of tokens generated so far, then its end.
enum GenerationEvent: Sendable {
    /// Before the first text: how many of the prompt's tokens came from the prefix cache.
    case prefilled(cachedTokens: Int)
    case prompt([PositionLogprobs?])
    case text(String, [PositionLogprobs], generated: Int)
    /// The end; `cachedTokens` of the prompt's tokens came from the prefix cache instead of being computed.
    case done(finishReason: String, promptTokens: Int, completionTokens: Int, stopReason: StopMatch?, cachedTokens: Int)
}

/// vLLM's `stop_reason`: the stop string or stop token id that ended a generation (nil when EOS or a length cut did).
enum StopMatch: Sendable, Equatable, Encodable {
    case text(String)
    case token(Int)

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .text(let s): try c.encode(s)
        case .token(let t): try c.encode(t)
        }
    }

    var text: String? { if case .text(let s) = self { return s } else { return nil } }
}

/// A validated request, ready for the engine.
struct PreparedRequest: Sendable {
    var ids: [Int32]
    var params: SamplingParams
    var maxTokens: Int
    var stops: [String]
    var ignoreEOS: Bool
    var stopTokenIds: Set<Int32> = []
    var minTokens = 0
    var includeStop = false
    var skipSpecialTokens = true
    /// What the text must be (response_format, guided_choice, guided_regex).
    var grammar: TokenGrammar?
    /// Alternatives per generated token's log-probabilities, and per prompt token's (nil: none).
    var logprobs: Int?
    var promptLogprobs: Int?
}

/// What a generation run to its end produced.
struct Completed: Sendable {
    var text: String
    var finish: String
    var usage: Usage
    var stopReason: StopMatch?
    var prompt: [PositionLogprobs?] = []
    var logprobs: [PositionLogprobs] = []
}

/// The bridge between HTTP handlers and the engine: validation with OpenAI-style errors, tokenisation, stop strings,
/// the queue limit, and cancellation when a consumer goes away.
public final class GenerationService: @unchecked Sendable {
    public let engine: Engine
    /// Every response is text, so a model is served only with its tokenizer.json.
    public let tokenizer: Tokenizer
    /// The name responses carry (vLLM's first --served-model-name); `modelNames` are every name a request may use.
    public let modelName: String
    public let modelNames: [String]
    public let created: Int
    let eos: Set<Int32>
    /// Requests accepted at once (queued + running); more get 429.
    public let maxOutstanding: Int
    public let chatTemplate: ChatTemplate?
    /// vLLM's structured_outputs_config.enable_in_reasoning: a constrained reply is constrained inside its
    /// reasoning block too (by default the block is free text and the constraint holds after it).
    public var structuredOutputsInReasoning = false
    /// max_tokens of a completion or job item that sets none (OpenAI's default for /v1/completions); chat
    /// completions default to the rest of the context instead.
    static let defaultMaxTokens = 16

    /// `chatTemplate`: a template to render chats with instead of the model's (vLLM's --chat-template); `aliases`:
    /// more names requests may use for the model (vLLM's further --served-model-name values).
    public init(engine: Engine, tokenizer: Tokenizer, modelName: String, aliases: [String] = [], eos: [Int], maxOutstanding: Int,
                chatTemplate source: String? = nil) {
        self.engine = engine
        self.tokenizer = tokenizer
        self.modelName = modelName
        modelNames = [modelName] + aliases.filter { $0 != modelName }
        self.eos = Set(eos.map(Int32.init))
        self.maxOutstanding = maxOutstanding
        created = Int(Date().timeIntervalSince1970)
        chatTemplate = (source ?? tokenizer.chatTemplate).map { ChatTemplate(source: $0, tokenizer: tokenizer) }
    }

    public var contextLimit: Int { engine.contextLimit }

    /// This model's vocabulary as constrained decoding reads it: each token's bytes are what it adds after another
    /// token (so a SentencePiece "▁x" counts its space, which only a text's first token loses; special tokens add
    /// none). A byte-level BPE token that ends inside a character adds that character's first bytes, which the
    /// grammars then need the next tokens to complete, as llama.cpp's do (a lone continuation byte starts no
    /// character); a SentencePiece byte-fallback piece of one decodes to U+FFFD (`byteClass`). Built on first use (a
    /// pass over the vocabulary), then shared by every constrained request.
    var tokenTable: TokenTable {
        tableLock.withLock {
            if let t = builtTable { return t }
            let before = tokenizer.encode("a", addSpecialTokens: false).first
            let lead = before.map { tokenizer.decodeBytes([$0]) } ?? []
            let ids = 0..<engine.transformer.spec.vocabSize
            let bytes = ids.map { id in
                let text = tokenizer.decodeBytes(before.map { [$0, id] } ?? [id], skipSpecialTokens: true)
                return text.starts(with: lead) ? Array(text.dropFirst(lead.count)) : []
            }
            let classes = ids.map { id -> UInt8 in
                guard tokenizer.isGroupedByteToken(id) else { return 0 }
                return bytes[id].count == 1 && bytes[id][0] < 0x80 ? 1 : 2
            }
            let t = TokenTable(tokenBytes: bytes, byteClass: classes, eos: eos)
            builtTable = t
            return t
        }
    }
    private let tableLock = NSLock()
    private var builtTable: TokenTable?

    /// Constrains a request to one JSON object (response_format json_object), one value of a schema (json_schema, or
    /// vLLM's guided_json), one of some strings (guided_choice) or a regex's whole match (guided_regex). min_tokens
    /// cannot be kept with any: once the text is whole only EOS may follow.
    func constrain(_ p: inout PreparedRequest, _ format: OutputFormat, param: String = "response_format") throws {
        let language: TokenGrammar.Language
        switch format {
        case .text: return
        case .jsonObject: language = .jsonObject
        case .choice(let options): language = .choice(options.map { Array($0.utf8) })
        case .regex(let pattern):
            do { language = .regex(RegexDFA(try RegexNFA(pattern))) } catch let e as RegexNFA.Invalid {
                throw APIError.invalid("guided_regex: \(e.description)", param: "guided_regex", code: "unsupported_regex")
            }
        case .jsonSchema(let schema):
            // The schema's keys in the order the request wrote them (PropertyOrder), where a request is being served.
            let order = PropertyOrder.current
            do { language = .schema(try JSONSchema(schema.foundation) { order?.order($0) }) } catch let e as JSONSchema.Unsupported {
                throw APIError.invalid(e.description, param: param, code: "unsupported_schema")
            }
        case .grammar(let source):
            do { language = .gbnf(try GBNFGrammar(source).automaton()) } catch let e as GBNFGrammar.Invalid {
                throw APIError.invalid("grammar: \(e.description)", param: "grammar", code: "invalid_grammar")
            }
        }
        if p.minTokens > 0 {
            throw APIError.invalid("min_tokens cannot be used with a JSON response_format, guided_choice, guided_regex or a grammar (only EOS may follow)",
                                   param: "min_tokens")
        }
        p.grammar = TokenGrammar(table: tokenTable, language: language)
    }

    func checkModel(_ name: String?) throws {
        if let n = name, !modelNames.contains(n) {
            let served = modelNames.map { "`\($0)`" }.joined(separator: ", ")
            throw APIError(.notFound, "The model `\(n)` does not exist; this server serves \(served).", param: "model", code: "model_not_found")
        }
    }

    func tokenize(_ text: String) -> [Int32] { tokenizer.encode(text).map(Int32.init) }

    func ids(_ prompt: JobPrompt) -> [Int32] {
        switch prompt {
        case .text(let s): return tokenize(s)
        case .ids(let a): return a.map(Int32.init)
        }
    }

    /// Most log-probability alternatives a request may ask for per token (vLLM's default max_logprobs).
    static let maxLogprobs = 20

    /// Checks sampling fields and lengths. `defaultMaxTokens` nil means "the rest of the context"; max_tokens 0 is
    /// accepted only when `allowNoTokens` (a completion that echoes its prompt to score it).
    func prepare(_ ids: [Int32], _ f: SamplingFields, defaultMaxTokens: Int?, maxTokensOverride: Int? = nil,
                 allowNoTokens: Bool = false) throws -> PreparedRequest {
        var ids = ids
        if let k = f.truncatePromptTokens {
            guard k >= 1 || k == -1 else {
                throw APIError.invalid("truncate_prompt_tokens must be an integer >= 1 or -1 (got \(k))", param: "truncate_prompt_tokens")
            }
            guard k <= contextLimit else {
                throw APIError.invalid("truncate_prompt_tokens value (\(k)) is greater than max_model_len (\(contextLimit)). Please, select a smaller truncation size.",
                                       param: "truncate_prompt_tokens")
            }
            // The prompt's end is kept (as vLLM truncates, from the left).
            let keep = k == -1 ? contextLimit : k
            if ids.count > keep { ids = Array(ids.suffix(keep)) }
        }
        guard !ids.isEmpty else { throw APIError.invalid("the prompt is empty", param: "prompt") }
        try checkVocabulary(ids.map(Int.init), param: "prompt")
        let room = contextLimit - ids.count
        if room < 1 {
            throw APIError.invalid("This model's maximum context length is \(contextLimit) tokens. However, your prompt has \(ids.count) tokens.", param: "prompt", code: "context_length_exceeded")
        }
        let requested = maxTokensOverride ?? f.maxTokens
        if let m = requested {
            let least = allowNoTokens ? 0 : 1
            guard m >= least else {
                throw APIError.invalid("max_tokens must be at least \(least) (got \(m))" + (allowNoTokens ? "" : "; 0 only with echo"),
                                       param: "max_tokens")
            }
            guard m <= room else {
                throw APIError.invalid("This model's maximum context length is \(contextLimit) tokens. However, you requested \(ids.count + m) tokens (\(ids.count) in the prompt, \(m) for the completion).", param: "max_tokens", code: "context_length_exceeded")
            }
        }
        let temperature = f.temperature ?? 1
        guard temperature >= 0 && temperature <= 100 else { throw APIError.invalid("temperature must be between 0 and 100", param: "temperature") }
        let topP = f.topP ?? 1
        guard topP > 0 && topP <= 1 else { throw APIError.invalid("top_p must be in (0, 1]", param: "top_p") }
        let minP = f.minP ?? 0
        guard minP >= 0 && minP <= 1 else { throw APIError.invalid("min_p must be in [0, 1] (got \(minP))", param: "min_p") }
        let topK = f.topK ?? 0
        guard topK >= 0 || topK == -1 else { throw APIError.invalid("top_k must be >= 0 (or -1 for off)", param: "top_k") }
        let stops = f.stop?.values ?? []
        guard stops.count <= 16 else { throw APIError.invalid("at most 16 stop strings", param: "stop") }
        for (name, v) in [("presence_penalty", f.presencePenalty), ("frequency_penalty", f.frequencyPenalty)] {
            if let v, !(v >= -2 && v <= 2) { throw APIError.invalid("\(name) must be between -2 and 2 (got \(v))", param: name) }
        }
        let repetition = f.repetitionPenalty ?? 1
        guard repetition > 0 && repetition.isFinite else {
            throw APIError.invalid("repetition_penalty must be greater than 0 (got \(repetition))", param: "repetition_penalty")
        }
        let maxTokens = requested ?? min(defaultMaxTokens ?? room, room)
        let minTokens = f.minTokens ?? 0
        guard minTokens >= 0 && minTokens <= maxTokens else {
            throw APIError.invalid("min_tokens must be between 0 and max_tokens (\(maxTokens)); got \(minTokens)", param: "min_tokens")
        }
        try checkVocabulary(f.stopTokenIds ?? [], param: "stop_token_ids")
        let stopIds = Set((f.stopTokenIds ?? []).map(Int32.init))
        var bias: [Int32: Float] = [:]
        for (key, b) in f.logitBias ?? [:] {
            guard let t = Int(key) else { throw APIError.invalid("logit_bias keys must be token ids (got \"\(key)\")", param: "logit_bias") }
            guard b >= -100 && b <= 100 else { throw APIError.invalid("logit_bias values must be between -100 and 100 (got \(b))", param: "logit_bias") }
            try checkVocabulary([t], param: "logit_bias")
            bias[Int32(t)] = Float(b)
        }
        var allowed: [Int32]?
        if let a = f.allowedTokenIds {
            guard !a.isEmpty else { throw APIError.invalid("allowed_token_ids must not be empty", param: "allowed_token_ids") }
            try checkVocabulary(a, param: "allowed_token_ids")
            allowed = a.map(Int32.init)
        }
        let params = SamplingParams(temperature: Float(temperature), topK: max(topK, 0), topP: Float(topP),
                                    seed: f.seed.map { UInt64(bitPattern: Int64($0)) }, repetitionPenalty: Float(repetition),
                                    frequencyPenalty: Float(f.frequencyPenalty ?? 0), presencePenalty: Float(f.presencePenalty ?? 0),
                                    logitBias: bias, minP: Float(minP), allowedTokens: allowed, badWords: try badWords(f.badWords ?? []))
        var p = PreparedRequest(ids: ids, params: params, maxTokens: maxTokens, stops: stops, ignoreEOS: f.ignoreEOS ?? false,
                                stopTokenIds: stopIds, minTokens: minTokens, includeStop: f.includeStopStrInOutput ?? false,
                                skipSpecialTokens: f.skipSpecialTokens ?? true)
        try constrain(&p, try f.outputFormat())
        return p
    }

    /// vLLM's bad_words as token sequences: each word without its leading whitespace, and again after one space
    /// when that spelling starts with another token and has as many (a word inside text, for tokenizers that mark
    /// a word's start); no special tokens added.
    func badWords(_ words: [String]) throws -> [[Int32]] {
        var out: [[Int32]] = []
        for word in words {
            let bare = String(word.drop { $0.isWhitespace })
            let plain = tokenizer.encode(bare, addSpecialTokens: false).map(Int32.init)
            guard !plain.isEmpty else {
                throw APIError.invalid("bad_words entries must tokenize to at least one token (got \"\(word)\")", param: "bad_words")
            }
            out.append(plain)
            let spaced = tokenizer.encode(" " + bare, addSpecialTokens: false).map(Int32.init)
            if spaced.first != plain.first && spaced.count == plain.count { out.append(spaced) }
        }
        try checkVocabulary(out.joined().map(Int.init), param: "bad_words")
        return out
    }

    /// A 400 naming the first token id outside the model's vocabulary, and the field it came in.
    func checkVocabulary(_ ids: some Sequence<Int>, param: String) throws {
        let vocab = engine.transformer.spec.vocabSize
        if let bad = ids.first(where: { $0 < 0 || $0 >= vocab }) {
            throw APIError.invalid("token id \(bad) in \(param) is outside the vocabulary (0..<\(vocab))", param: param)
        }
    }

    /// Checks a count of log-probability alternatives (`logprobs` of a completion, `top_logprobs` of a chat).
    static func logprobsCount(_ n: Int, param: String) throws -> Int {
        guard (0...maxLogprobs).contains(n) else {
            throw APIError.invalid("\(param) must be between 0 and \(maxLogprobs) (got \(n))", param: param)
        }
        return n
    }

    /// Starts a generation. Its events arrive in order; ending the consumer's iteration (or dropping the stream)
    /// cancels the engine request (a client that disconnects frees its KV blocks). Throws 429 when the queue is full.
    func start(_ p: PreparedRequest) throws -> AsyncStream<GenerationEvent> { try start([p])[0] }

    /// Starts several generations in the same engine step (one request's prompts are batched together), or none:
    /// 429 when they do not all fit in the queue.
    func start(_ ps: [PreparedRequest]) throws -> [AsyncStream<GenerationEvent>] {
        guard engine.outstandingRequests + ps.count <= maxOutstanding else {
            throw APIError(.tooManyRequests, "the server is at capacity (\(maxOutstanding) requests in flight); retry shortly",
                           type: "rate_limit_error", code: "queue_full", retryAfter: 1)
        }
        let engine = self.engine
        var streams: [AsyncStream<GenerationEvent>] = [], states: [GenerationState] = []
        var submissions: [(EngineRequest, @Sendable (EngineEvent) -> Void)] = []
        for p in ps {
            let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream(bufferingPolicy: .unbounded)
            let state = GenerationState(TextAssembler(tokenizer: tokenizer, stops: p.stops, includeStop: p.includeStop,
                                                      skipSpecialTokens: p.skipSpecialTokens))
            let includeStop = p.includeStop
            continuation.onTermination = { reason in
                if case .cancelled = reason { state.cancel(engine) }
            }
            let prompt = p.ids.count
            let request = EngineRequest(prompt: p.ids, params: p.params, maxTokens: p.maxTokens, eos: eos, ignoreEOS: p.ignoreEOS,
                                        stopTokenIds: p.stopTokenIds, minTokens: p.minTokens, logprobs: p.logprobs,
                                        promptLogprobs: p.promptLogprobs, grammar: p.grammar)
            submissions.append((request, { event in
                guard !state.done else { return }
                switch event {
                case .prefilled(let cached):
                    state.cached = cached
                    continuation.yield(.prefilled(cachedTokens: cached))
                case .promptLogprobs(let lps):
                    continuation.yield(.prompt(lps))
                case .token(let t, let lp):
                    state.count += 1
                    state.last = t
                    // The token that ends a generation (EOS, a stop token id) is counted, not shown (unless asked), as
                    // vLLM does.
                    let (text, stop) = !includeStop && request.stops(at: t) ? ("", nil) : state.assembler.push(t)
                    if !text.isEmpty || lp != nil { continuation.yield(.text(text, lp.map { [$0] } ?? [], generated: state.count)) }
                    if let stop {
                        state.done = true
                        state.cancel(engine)
                        continuation.yield(.done(finishReason: "stop", promptTokens: prompt, completionTokens: state.count,
                                                 stopReason: .text(stop), cachedTokens: state.cached))
                        continuation.finish()
                    }
                case .finished(let why):
                    state.done = true
                    let (text, stop) = state.assembler.finish()
                    if !text.isEmpty { continuation.yield(.text(text, [], generated: state.count)) }
                    let reason = stop != nil || why == .eos ? "stop" : (why == .length ? "length" : "cancelled")
                    // A stop token id ends it as EOS does; vLLM names the id (EOS itself is no reason).
                    let stopReason: StopMatch? = stop.map { .text($0) }
                        ?? (why == .eos && request.stopTokenIds.contains(state.last) ? .token(Int(state.last)) : nil)
                    continuation.yield(.done(finishReason: reason, promptTokens: prompt, completionTokens: state.count,
                                             stopReason: stopReason, cachedTokens: state.cached))
                    continuation.finish()
                }
            }))
            streams.append(stream)
            states.append(state)
        }
        // prepare() has checked everything submit() refuses (empty prompt, vocabulary, context), so it does not throw here.
        for (state, id) in zip(states, try engine.submit(submissions)) { state.submitted(id, engine) }
        return streams
    }

    /// `n` generations of one prepared prompt (a request's `n` choices), run as separate sequences: with a seed,
    /// choice j samples with seed + j (as vLLM seeds its parallel samples), so each differs and each replays.
    static func choices(_ p: PreparedRequest, n: Int) -> [PreparedRequest] {
        (0..<n).map { j in
            var c = p
            c.params.seed = p.params.seed.map { $0 &+ UInt64(j) }
            return c
        }
    }

    /// Reads a request's started choices to their ends (choice k of prompt k / n, as `choices` made them): each
    /// choice's text and finish, and the request's usage.
    static func collect(_ streams: [AsyncStream<GenerationEvent>], _ ps: [PreparedRequest], choicesPerPrompt n: Int) async
        -> (outs: [Completed], usage: Usage) {
        let totals = UsageTotals(choicesPerPrompt: n)
        var outs: [Completed] = []
        for (i, (p, events)) in zip(ps, streams).enumerated() {
            let out = await collect(events, promptTokens: p.ids.count)
            totals.add(choice: i, promptTokens: out.usage.promptTokens, completionTokens: out.usage.completionTokens,
                       cachedTokens: out.usage.cachedTokens)
            outs.append(out)
        }
        return (outs, totals.usage)
    }

    /// Runs a generation to the end: its text, finish reason and usage.
    func complete(_ p: PreparedRequest) async throws -> Completed {
        await Self.collect(try start(p), promptTokens: p.ids.count)
    }

    /// Reads a started generation to its end.
    static func collect(_ events: AsyncStream<GenerationEvent>, promptTokens: Int) async -> Completed {
        var out = Completed(text: "", finish: "length", usage: Usage(prompt: promptTokens, completion: 0))
        for await e in events {
            switch e {
            case .prefilled: break
            case .prompt(let lps): out.prompt = lps
            case .text(let t, let lps, _):
                out.text += t
                out.logprobs += lps
            case .done(let why, let pt, let ct, let stop, let cached):
                out.finish = why
                out.usage = Usage(prompt: pt, completion: ct, cached: cached)
                out.stopReason = stop
            }
        }
        return out
    }
}

/// One generation's progress. The assembler and counters are touched only by the engine's callbacks (one at a time, on
/// the stepping thread); the engine id is shared with the submitting thread and the stream's termination handler, so
/// it lives under a lock. A cancel asked for before submit() has returned the id is carried out once it has.
private final class GenerationState: @unchecked Sendable {
    var assembler: TextAssembler
    var count = 0
    /// Prompt tokens from the prefix cache (told before the first token).
    var cached = 0
    /// The last token generated.
    var last: Int32 = -1
    var done = false
    private let lock = NSLock()
    private var id: Int?
    private var cancelWanted = false

    init(_ assembler: TextAssembler) { self.assembler = assembler }

    func cancel(_ engine: Engine) {
        let known: Int? = lock.withLock {
            if id == nil { cancelWanted = true }
            return id
        }
        if let known { engine.cancel(known) }
    }

    func submitted(_ id: Int, _ engine: Engine) {
        let cancel = lock.withLock {
            self.id = id
            return cancelWanted
        }
        if cancel { engine.cancel(id) }
    }
}

/// A request's usage as its choices end: each prompt's tokens once (choice k is prompt k / n's), every choice's
/// completion tokens. Touched by one task at a time (a stream's render closure, or a collecting loop).
final class UsageTotals: @unchecked Sendable {
    let n: Int
    private(set) var finished = 0
    private var prompt = 0, completion = 0, cached = 0

    init(choicesPerPrompt n: Int) { self.n = n }

    func add(choice i: Int, promptTokens: Int, completionTokens: Int, cachedTokens: Int = 0) {
        finished += 1
        if i % n == 0 { prompt += promptTokens; cached += cachedTokens }
        completion += completionTokens
    }

    var usage: Usage { Usage(prompt: prompt, completion: completion, cached: cached) }
}
