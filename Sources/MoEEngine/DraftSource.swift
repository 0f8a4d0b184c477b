import MoEModel

/// k proposed tokens for one sequence, drafted from its first `position` verified tokens (whose rolling hash is
/// `hash`), and — when sampling — the draft distributions they were drawn from.
public struct Proposal: Sendable {
    public var position: Int
    public var hash: UInt64
    public var tokens: [Int32]
    /// k full-vocabulary distributions (warped like the target's), nil for greedy requests.
    public var q: [[Float]]?

    public init(position: Int, hash: UInt64, tokens: [Int32], q: [[Float]]?) {
        self.position = position
        self.hash = hash
        self.tokens = tokens
        self.q = q
    }
}

/// A rolling hash of a token sequence: both sides of the draft protocol compute it to tell whether a proposal was
/// drafted from the context the verifier has now.
public enum ContextHash {
    public static let empty: UInt64 = 0xcbf29ce484222325
    @inline(__always)
    public static func extend(_ h: UInt64, _ token: Int32) -> UInt64 {
        var x = (h ^ UInt64(UInt32(bitPattern: token))) &* 0x100000001b3
        x ^= x >> 29
        return x &* 0xbf58476d1ce4e5b9
    }
    public static func of(_ tokens: some Sequence<Int32>) -> UInt64 { tokens.reduce(empty, extend) }
}

/// Where draft tokens come from: a draft model in this process, or the draft node over MPI. The generator tells it
/// what the verifier decided; it never waits for the draft beyond what `propose` allows.
public protocol DraftSource: AnyObject {
    /// A new sequence: its verified prompt and how it samples.
    func start(_ seq: Int, prompt: [Int32], params: SamplingParams)
    /// The verifier kept `accepted` (the first tokens of the proposal it verified; none if there was none) and then
    /// `next`. The tokens themselves, not a count: a streaming draft may have sent two proposals from the same
    /// context (different k), and only the verifier knows which one it used.
    func outcome(_ seq: Int, accepted: [Int32], next: Int32)
    /// Proposals for these sequences (k tokens each), from each one's verified context of `position` tokens.
    /// Sequences without a usable proposal are left out (they decode without speculation this step).
    func propose(_ requests: [(seq: Int, position: Int, hash: UInt64, k: Int)]) -> [Int: Proposal]
    func finish(_ seq: Int)
    /// Seconds the verifier waited for the last `propose`.
    var lastWaitSeconds: Double { get }
    /// The draft's cost per drafted token as the verifier pays it: one draft step in this process (without catching
    /// up on verified tokens); a streaming draft's wait divided by k.
    var costPerToken: Double { get }
    /// Seconds of the last `propose` spent feeding the draft new sequences' prompts: a one-off cost, not a cost of the
    /// k chosen. Feeding it text produced while speculation was off is a cost of drafting again and is not in it.
    var lastCatchUpSeconds: Double { get }
    /// Weight bytes one draft step reads, if known: auto k's estimate of a draft step before any is measured.
    var bytesPerStep: Double? { get }
    /// Weight values one draft step multiplies each token by, if known: its arithmetic per sequence.
    var paramsPerStep: Double? { get }
}

extension DraftSource {
    public var lastCatchUpSeconds: Double { 0 }
    public var bytesPerStep: Double? { nil }
    public var paramsPerStep: Double? { nil }
}
