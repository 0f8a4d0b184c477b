import MoEEngine
import MoEModel

/// The streaming protocol between the coordinator and the draft node (MPI point-to-point, non-blocking, world
/// communicator; all integers little-endian; a list `[T]` is an i32 count then the values). Both sides have loaded
/// and checked the vocabularies before the first message (the start-up agreement in ClusterSession).
///
/// coordinator → draft
///   101 start     seq i64 · k i32 · temperature f32 · top_k i32 · top_p f32 · seed u64 · prompt [i32]
///   102 outcome   seq i64 · next i32 · k i32 · accepted [i32]   (the verifier kept the tokens `accepted` — the
///                 start of the proposal it verified, spelled out because two proposals from one context may
///                 differ in k — then `next`; draft k tokens from now on, 0 = none)
///   103 finish    seq i64
///   104 shutdown
///   105 set k     seq i64 · k i32   (sent when the verifier wants proposals for a sequence it had told to stop)
/// draft → coordinator
///   202 proposal  seq i64 · position i32 · hash u64 · tokens [i32] · q: count i32, then count × [f32] (each a
///                 vocab-sized row; q only when sampling: the draft distributions the tokens were drawn from)
///
/// The draft node does not wait for verification: after sending a proposal it assumes it will be accepted in full,
/// guesses the bonus token itself and drafts the next proposal from there. An outcome that contradicts the
/// assumption rewinds it to the verified context; proposals drafted from a context the verifier does not have
/// carry a `hash` that no longer matches and are dropped by the coordinator. `MOE_DRAFT_TRACE=1` in the environment
/// of both ranks logs every message to stderr.
enum DraftTag {
    static let start = 101, outcome = 102, finish = 103, shutdown = 104, setK = 105
    static let proposal = 202
}

struct StartMessage {
    var seq: Int, k: Int, params: SamplingParams, prompt: [Int32]

    func encode() -> [UInt8] {
        var w = ByteWriter()
        w.put(Int64(seq)); w.put(Int32(k)); w.put(params.temperature); w.put(Int32(params.topK)); w.put(params.topP)
        w.put(params.seed ?? 0); w.put(prompt)
        // The penalties and logit bias: the draft proposes with them, as the verifier will judge.
        w.put(params.repetitionPenalty); w.put(params.frequencyPenalty); w.put(params.presencePenalty)
        let bias = params.logitBias.sorted { $0.key < $1.key }
        w.put(bias.map(\.key)); w.put(bias.map(\.value)); w.put(params.minP)
        // allowed_token_ids (a flag, then the list) and the bad words (a count, then each sequence).
        w.put(Int32(params.allowedTokens == nil ? 0 : 1)); w.put(params.allowedTokens ?? [])
        let bad = params.badWords ?? []
        w.put(Int32(bad.count)); for word in bad { w.put(word) }
        return w.bytes
    }

    init(seq: Int, k: Int, params: SamplingParams, prompt: [Int32]) {
        self.seq = seq; self.k = k; self.params = params; self.prompt = prompt
    }

    init(_ b: [UInt8]) {
        var r = ByteReader(b)
        seq = Int(r.get(Int64.self)); k = Int(r.get(Int32.self))
        let t = r.float(), tk = Int(r.get(Int32.self)), tp = r.float(), seed = r.get(UInt64.self)
        prompt = r.ints()
        let rp = r.float(), fp = r.float(), pp = r.float(), ids = r.ints(), values = r.floats(), minP = r.float()
        let hasAllowed = r.get(Int32.self) != 0, allowed = r.ints()
        let bad = (0..<Int(r.get(Int32.self))).map { _ in r.ints() }
        params = SamplingParams(temperature: t, topK: tk, topP: tp, seed: seed, repetitionPenalty: rp, frequencyPenalty: fp,
                                presencePenalty: pp, logitBias: Dictionary(uniqueKeysWithValues: zip(ids, values)), minP: minP,
                                allowedTokens: hasAllowed ? allowed : nil, badWords: bad.isEmpty ? nil : bad)
    }
}

struct OutcomeMessage {
    var seq: Int, accepted: [Int32], next: Int32, k: Int

    func encode() -> [UInt8] {
        var w = ByteWriter()
        w.put(Int64(seq)); w.put(next); w.put(Int32(k)); w.put(accepted)
        return w.bytes
    }

    init(seq: Int, accepted: [Int32], next: Int32, k: Int) { self.seq = seq; self.accepted = accepted; self.next = next; self.k = k }

    init(_ b: [UInt8]) {
        var r = ByteReader(b)
        seq = Int(r.get(Int64.self)); next = r.get(Int32.self); k = Int(r.get(Int32.self)); accepted = r.ints()
    }
}

struct ProposalMessage {
    var seq: Int
    var proposal: Proposal

    func encode() -> [UInt8] {
        var w = ByteWriter()
        w.put(Int64(seq)); w.put(Int32(proposal.position)); w.put(proposal.hash); w.put(proposal.tokens)
        let q = proposal.q ?? []
        w.put(Int32(q.count))
        for row in q { w.put(row) }
        return w.bytes
    }

    init(seq: Int, proposal: Proposal) { self.seq = seq; self.proposal = proposal }

    init(_ b: [UInt8]) {
        var r = ByteReader(b)
        seq = Int(r.get(Int64.self))
        let position = Int(r.get(Int32.self)), hash = r.get(UInt64.self), tokens = r.ints()
        let n = Int(r.get(Int32.self))
        let q = n > 0 ? (0..<n).map { _ in r.floats() } : nil
        proposal = Proposal(position: position, hash: hash, tokens: tokens, q: q)
    }
}

func seqOf(_ b: [UInt8]) -> Int { var r = ByteReader(b); return Int(r.get(Int64.self)) }
