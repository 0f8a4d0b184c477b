import MoECore
import MoEModel

/// What the engine is asked to generate.
public struct EngineRequest: Sendable {
    public var prompt: [Int32]
    public var params: SamplingParams
    public var maxTokens: Int
    public var eos: Set<Int32>
    public var ignoreEOS: Bool
    /// Tokens that end the generation as EOS does (even with `ignoreEOS`); each is generated, then it stops.
    public var stopTokenIds: Set<Int32>
    /// EOS (unless ignored) and the stop tokens cannot be generated before this many tokens.
    public var minTokens: Int
    /// With each generated token, its log-probability and this many most likely alternatives (nil: none).
    public var logprobs: Int?
    /// Before the first token, the log-probability of every prompt token after the first, each with this many
    /// alternatives (nil: none). Such a prompt is computed whole: the prefix cache is not read for it.
    public var promptLogprobs: Int?
    /// Output constrained to a JSON object, a JSON schema's value, a choice or a regex (`response_format`,
    /// guided_choice, guided_regex): tokens that cannot continue it are masked before anything else reads the logits.
    public var grammar: TokenGrammar?

    public init(prompt: [Int32], params: SamplingParams = SamplingParams(), maxTokens: Int, eos: Set<Int32> = [], ignoreEOS: Bool = false,
                stopTokenIds: Set<Int32> = [], minTokens: Int = 0, logprobs: Int? = nil, promptLogprobs: Int? = nil,
                grammar: TokenGrammar? = nil) {
        self.grammar = grammar
        self.prompt = prompt
        self.params = params
        self.maxTokens = maxTokens
        self.eos = eos
        self.ignoreEOS = ignoreEOS
        self.stopTokenIds = stopTokenIds
        self.minTokens = minTokens
        self.logprobs = logprobs
        self.promptLogprobs = promptLogprobs
    }

    /// What the request's penalties and min_tokens do to its logits; nil when they do nothing.
    var adjustment: LogitsAdjustment? { .of(params, minTokens: minTokens, suppressed: stopTokenIds.union(ignoreEOS ? [] : eos)) }

    /// Whether generating `t` ends the request.
    public func stops(at t: Int32) -> Bool { (!ignoreEOS && eos.contains(t)) || stopTokenIds.contains(t) }
}

/// Why a generation ended.
public enum StopReason: String, Sendable, Codable { case eos, length, cancelled }

/// What a request's stream receives: its prompt's log-probabilities first when asked for, then tokens as they are
/// accepted (each with its log-probabilities when asked for), then exactly one `.finished`. Entry 0 of the prompt's
/// is nil (nothing predicts the first token).
public enum EngineEvent: Sendable, Equatable {
    case promptLogprobs([PositionLogprobs?])
    case token(Int32, PositionLogprobs?)
    case finished(StopReason)
    /// Before a request's first token (or its prompt's log-probabilities when nothing is sampled): how many of its
    /// prompt's tokens came from the prefix cache instead of being computed.
    case prefilled(cachedPromptTokens: Int)
}

public struct EngineConfig: Sendable {
    public var kvDType: KVDType = .f32
    public var blockSize = 16
    /// KV pool size in blocks (takes precedence) or in bytes.
    public var kvBlocks: Int?
    public var kvMemoryBytes: Int = 1 << 30
    public var maxBatchedTokens = 2048
    public var maxSeqs = 64
    public var speculation: Speculation = .off
    /// How the routed experts are stored (their bytes per step are part of auto k's cost prior).
    public var expertFormat: WeightFormat = .f32
    /// Steps the statistics' sliding window covers.
    public var statsWindow = 1000
    public init() {}
}

public enum EngineError: Error, CustomStringConvertible, Equatable {
    case promptTooLong(tokens: Int, limit: Int)
    case emptyPrompt
    case tokenOutOfVocabulary(Int32, vocab: Int)
    case nothingToRebalance

    public var description: String {
        switch self {
        case .promptTooLong(let t, let l): return "prompt and max_tokens need \(t) tokens of context, but the limit is \(l)"
        case .emptyPrompt: return "the prompt is empty"
        case .tokenOutOfVocabulary(let t, let v): return "token id \(t) is outside the vocabulary (0..<\(v))"
        case .nothingToRebalance: return "nothing to rebalance: this cluster has no expert workers (run it under mpirun with -np 2 or more)"
        }
    }
}

/// Counters since start.
public struct EngineStats: Sendable {
    public var steps = 0
    public var promptTokens = 0
    /// Prompt tokens served from the prefix cache instead of computed.
    public var cachedPromptTokens = 0
    /// Tokens the forward passes computed (prompt chunks, decode positions, draft positions).
    public var computedTokens = 0
    public var generatedTokens = 0
    public var preemptions = 0
    public var spec = SpecStats()
    public var finished = 0
    /// Steps with at least one decoding request, and the distinct experts per MoE layer those steps read (summed):
    /// what a step costs on a bandwidth-bound machine.
    public var decodeSteps = 0
    public var distinctExpertsPerLayer = 0.0
}

