import Foundation
import MoECore
import MoEEngine
import MoEModel

/// The draft rank's loop: keep drafting for every live sequence, ahead of verification (see `DraftProtocol`).
public final class DraftNode {
    let channel: Channel
    let draft: LocalDraft
    let idlePoll: Int

    struct Seq {
        var confirmed: [Int32]          // the verifier's context
        var k: Int
        var sent: Set<Int> = []         // positions a proposal was sent from
    }
    var seqs: [Int: Seq] = [:]

    public init(channel: Channel, draft: LocalDraft, idlePollMicroseconds: Int) {
        self.channel = channel
        self.draft = draft
        idlePoll = idlePollMicroseconds
    }

    public func loop() throws {
        while true {
            var busy = false
            while let (tag, bytes) = try channel.poll() {
                busy = true
                if tag == DraftTag.shutdown { return }
                handle(tag, bytes)
            }
            if try draftRound() { busy = true }
            if !busy { usleep(UInt32(max(idlePoll, 1))) }
        }
    }

    func handle(_ tag: Int, _ bytes: [UInt8]) {
        if draftTrace { trace(tag, bytes) }
        switch tag {
        case DraftTag.start:
            let m = StartMessage(bytes)
            draft.start(m.seq, prompt: m.prompt, params: m.params)
            seqs[m.seq] = Seq(confirmed: m.prompt, k: m.k)
        case DraftTag.outcome:
            let m = OutcomeMessage(bytes)
            guard var s = seqs[m.seq] else { return }
            let truth = s.confirmed + m.accepted + [m.next]
            // Keep the assumed context (and the proposal drafted ahead from it) only if the verifier arrived exactly
            // there; otherwise everything drafted beyond the truth came from a wrong context: draft again from it.
            if draft.context(m.seq) == truth {
                s.sent = s.sent.filter { $0 >= truth.count }
            } else {
                draft.rewind(m.seq, to: truth)
                s.sent = []
            }
            s.confirmed = truth
            s.k = m.k
            seqs[m.seq] = s
        case DraftTag.setK:
            var r = ByteReader(bytes)
            let seq = Int(r.get(Int64.self)), k = Int(r.get(Int32.self))
            seqs[seq]?.k = k
        case DraftTag.finish:
            let seq = seqOf(bytes)
            seqs[seq] = nil
            draft.finish(seq)
        default:
            break
        }
    }

    /// Drafts one proposal for every sequence that lacks one at its current (verified or assumed) context, sends them,
    /// then assumes full acceptance of the proposals made from the verified context and moves their context ahead.
    func draftRound() throws -> Bool {
        var reqs: [(seq: Int, position: Int, hash: UInt64, k: Int)] = []
        for (id, s) in seqs where s.k > 0 {
            guard let ctx = draft.context(id), !s.sent.contains(ctx.count), ctx.count - s.confirmed.count <= s.k + 1 else { continue }
            reqs.append((id, ctx.count, ContextHash.of(ctx), s.k))
        }
        if reqs.isEmpty { return false }
        let proposals = draft.propose(reqs)
        for r in reqs {
            guard let p = proposals[r.seq] else { continue }
            if draftTrace { logLine("draft: send proposal seq \(r.seq) pos \(r.position) hash \(r.hash % 10000) k \(r.k) tokens \(p.tokens) ctx \(draft.context(r.seq)?.count ?? -1)") }
            try channel.send(ProposalMessage(seq: r.seq, proposal: p).encode(), tag: DraftTag.proposal)
            seqs[r.seq]!.sent.insert(r.position)
        }
        // Draft ahead one level: only from the verified context, so at most two proposals wait for verification.
        for r in reqs where r.position == seqs[r.seq]!.confirmed.count && proposals[r.seq] != nil {
            if let guess = draft.guessNext(r.seq) {
                if draftTrace { logLine("draft: ahead seq \(r.seq) guess \(guess)") }
                draft.outcome(r.seq, accepted: proposals[r.seq]!.tokens, next: guess)
            }
        }
        return true
    }
}

/// MOE_DRAFT_TRACE=1 logs every draft-protocol message on both sides (to stderr), for debugging the protocol.
let draftTrace = ProcessInfo.processInfo.environment["MOE_DRAFT_TRACE"] != nil

extension DraftNode {
    func trace(_ tag: Int, _ bytes: [UInt8]) {
        switch tag {
        case DraftTag.start: let m = StartMessage(bytes); logLine("draft: got start seq \(m.seq) k \(m.k) prompt \(m.prompt.count)")
        case DraftTag.outcome:
            let m = OutcomeMessage(bytes)
            let s = seqs[m.seq]
            logLine("draft: got outcome seq \(m.seq) accepted \(m.accepted) next \(m.next) k \(m.k); confirmed \(s?.confirmed.count ?? -1) sent \(s?.sent.sorted() ?? []) ctx \(draft.context(m.seq)?.count ?? -1)")
        case DraftTag.setK: var r = ByteReader(bytes); logLine("draft: got setK seq \(r.get(Int64.self)) k \(r.get(Int32.self))")
        case DraftTag.finish: logLine("draft: got finish seq \(seqOf(bytes))")
        default: logLine("draft: got tag \(tag)")
        }
    }
}

/// The coordinator's side of the draft protocol: a `DraftSource` fed by the draft node.
public final class RemoteDraft: DraftSource {
    let channel: Channel
    let timeout: Double
    public private(set) var lastWaitSeconds = 0.0
    public var costPerToken: Double { k > 0 ? lastWaitSeconds / Double(k) : 0 }
    /// Weight bytes of one step of the draft node's model (told at start-up).
    public internal(set) var bytesPerStep: Double?
    public internal(set) var paramsPerStep: Double?
    /// k sent with every start/outcome: the most recent k the generator asked for.
    var k: Int
    var received: [Int: [Proposal]] = [:]
    /// The k each sequence's draft was last told.
    var told: [Int: Int] = [:]

    public init(channel: Channel, initialK: Int, timeout: Double) {
        self.channel = channel
        k = initialK
        self.timeout = timeout
    }

    func fail(_ error: Error) -> Never {
        logLine("rank 0 (coordinator): error: draft node: \(error)")
        MPIRuntime.abortJob(code: 1)
    }

    public func start(_ seq: Int, prompt: [Int32], params: SamplingParams) {
        if draftTrace { logLine("coord: start seq \(seq) k \(k) prompt \(prompt.count)") }
        told[seq] = k
        do { try channel.send(StartMessage(seq: seq, k: k, params: params, prompt: prompt).encode(), tag: DraftTag.start) } catch { fail(error) }
    }

    public func outcome(_ seq: Int, accepted: [Int32], next: Int32) {
        if draftTrace { logLine("coord: outcome seq \(seq) accepted \(accepted) next \(next) k \(k)") }
        told[seq] = k
        do { try channel.send(OutcomeMessage(seq: seq, accepted: accepted, next: next, k: k).encode(), tag: DraftTag.outcome) } catch { fail(error) }
    }

    public func finish(_ seq: Int) {
        received[seq] = nil
        told[seq] = nil
        var w = ByteWriter()
        w.put(Int64(seq))
        do { try channel.send(w.bytes, tag: DraftTag.finish) } catch { fail(error) }
    }

    public func shutdown() { try? channel.send([], tag: DraftTag.shutdown); try? channel.progress() }

    func drain() throws {
        while let m = try channel.poll() {
            guard m.tag == DraftTag.proposal else { continue }
            let p = ProposalMessage(m.bytes)
            if draftTrace { logLine("coord: got proposal seq \(p.seq) pos \(p.proposal.position) hash \(p.proposal.hash % 10000) tokens \(p.proposal.tokens)") }
            received[p.seq, default: []].append(p.proposal)
        }
    }

    public func propose(_ requests: [(seq: Int, position: Int, hash: UInt64, k: Int)]) -> [Int: Proposal] {
        k = requests.map(\.k).max() ?? 0
        let wanted = requests.filter { $0.k > 0 }
        let t0 = monotonic()
        defer { lastWaitSeconds = monotonic() - t0 }
        var out: [Int: Proposal] = [:]
        var spins = 0
        if draftTrace { logLine("coord: propose \(requests.map { "seq \($0.seq) pos \($0.position) hash \($0.hash % 10000) k \($0.k)" }) told \(told)") }
        do {
            // A sequence whose draft was told k = 0 drafts nothing until told otherwise.
            for r in wanted where (told[r.seq] ?? 0) == 0 {
                var w = ByteWriter()
                w.put(Int64(r.seq)); w.put(Int32(r.k))
                if draftTrace { logLine("coord: setK seq \(r.seq) k \(r.k)") }
                try channel.send(w.bytes, tag: DraftTag.setK)
                told[r.seq] = r.k
            }
            while true {
                try drain()
                for r in wanted where out[r.seq] == nil {
                    // Drop what was drafted from a context the verifier has left behind.
                    received[r.seq] = received[r.seq]?.filter { $0.position >= r.position }
                    if var p = received[r.seq]?.first(where: { $0.position == r.position && $0.hash == r.hash }) {
                        p.tokens = Array(p.tokens.prefix(r.k))
                        p.q = p.q.map { Array($0.prefix(r.k)) }
                        out[r.seq] = p
                    }
                }
                if out.count == wanted.count { return out }
                if monotonic() - t0 > timeout { throw ClusterFailure.timeout(what: "waiting for the draft node's proposals", seconds: timeout) }
                spins += 1
                if spins > 200 { usleep(20) } else { sched_yield() }
            }
        } catch { fail(error) }
    }
}
