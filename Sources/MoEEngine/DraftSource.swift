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

/// A draft's pass over verified tokens it had not seen (see `DraftSource.lastCatchUp`).
public struct CatchUp: Sendable, Equatable {
    public var seconds = 0.0, positions = 0, promptSeconds = 0.0
    public init(seconds: Double = 0, positions: Int = 0, promptSeconds: Double = 0) {
        (self.seconds, self.positions, self.promptSeconds) = (seconds, positions, promptSeconds)
    }
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
    /// The last `propose`'s pass over verified tokens the draft had not seen (new prompts, and text decoded while
    /// speculation was off): its seconds, its positions, and the prompts' share of the seconds (by positions).
    /// Prompts are a one-off cost; the rest is what drafting again after plain steps costs. Neither is a cost of the
    /// k chosen: auto k prices the second when it weighs leaving drafting.
    var lastCatchUp: CatchUp { get }
    /// Weight bytes one draft step reads, if known: auto k's estimate of a draft step before any is measured.
    var bytesPerStep: Double? { get }
    /// Weight values one draft step multiplies each token by, if known: its arithmetic per sequence.
    var paramsPerStep: Double? { get }
}

extension DraftSource {
    public var lastCatchUp: CatchUp { CatchUp() }
    public var bytesPerStep: Double? { nil }
    public var paramsPerStep: Double? { nil }
}
