import Foundation
import MoETestSupport
import Testing
@testable import MoEServer

/// `n_probs` on llama.cpp's /completion against llama.cpp's own server on the same checkpoint
/// (Tests/Fixtures/tiny-mixtral-fim/cases.json, `probability_cases`): per generated token its id, the text it sent,
/// its bytes and log-probability, and the most likely tokens' (from the raw logits), whole and streamed; a token that
/// leaves a character incomplete has no entry, EOS has one with empty text, a stop word's held tokens send empty text
/// and are left out of the whole answer.
struct LlamaCppProbabilitiesTests {
    typealias JSON = [String: Any]

    static var cases: [JSON] { InfillTests.llamaCppAnswers("probability_cases") }

    /// Entry by entry: the same ids, texts and bytes, and log-probabilities within 1e-2 (llama.cpp keeps its KV cache
    /// in f16 by default, this server in f32: their logits part by up to 5e-3 here). Where llama.cpp ended on one of the FIM tokens it counts as an end (this server ends on EOS
    /// only), the last entries' chosen tokens differ but their alternatives, from the same logits, do not.
    func expectSame(_ ours: [JSON], _ theirs: [JSON], _ name: String) {
        #expect(ours.count == theirs.count, "\(name): \(ours.count) entries, llama.cpp \(theirs.count)")
        func same(_ a: JSON, _ b: JSON, chosen: Bool) -> Bool {
            guard let la = a["logprob"] as? Double, let lb = b["logprob"] as? Double else { return false }
            return (!chosen || (a["id"] as? Int == b["id"] as? Int && a["token"] as? String == b["token"] as? String
                                && a["bytes"] as? [Int] == b["bytes"] as? [Int] && abs(la - lb) < 1e-2))
        }
        for (i, (a, b)) in zip(ours, theirs).enumerated() {
            let endedOnFIM = i == theirs.count - 1 && (512...517).contains(b["id"] as? Int ?? 0)
            if endedOnFIM {
                #expect(a["token"] as? String == "" && a["id"] as? Int == 2, "\(name) last entry: \(a)")
            } else {
                #expect(same(a, b, chosen: true), "\(name) entry \(i): \(a) vs llama.cpp \(b)")
            }
            let ta = a["top_logprobs"] as? [JSON] ?? [], tb = b["top_logprobs"] as? [JSON] ?? []
            #expect(ta.count == tb.count && zip(ta, tb).allSatisfy { same($0, $1, chosen: true) },
                    "\(name) entry \(i) alternatives: \(ta) vs llama.cpp \(tb)")
        }
    }

    @Test func nProbsGivesLlamaCppsEntriesWholeAndStreamed() async throws {
        let s = try await LiveServer(model: "tiny-mixtral-fim")
        defer { Task { await s.stop() } }
        #expect(Self.cases.count == 4)
        for c in Self.cases {
            let name = c["name"] as? String ?? ""
            let request = c["request"] as? JSON ?? [:]
            let r = try await HTTP.post(s.base + "/completion", request)
            #expect(r.status == 200, "\(name): \(r.text)")
            #expect(r.json?["content"] as? String == c["content"] as? String && r.json?["stop_type"] as? String == c["stop_type"] as? String,
                    "\(name): \(r.text)")
            expectSame(r.json?["completion_probabilities"] as? [JSON] ?? [], c["completion_probabilities"] as? [JSON] ?? [], name)

            var streamed = request
            streamed["stream"] = true
            let st = try await HTTP.post(s.base + "/completion", streamed)
            let chunks = HTTP.events(st.text).compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? JSON }
            #expect(chunks.compactMap { $0["content"] as? String }.joined() == c["content"] as? String, "\(name) streamed")
            expectSame(chunks.flatMap { $0["completion_probabilities"] as? [JSON] ?? [] },
                       c["streamed_completion_probabilities"] as? [JSON] ?? [], "\(name) streamed")
        }
        // Probabilities after the sampling chain are not computed: a 400 naming the field; n_probs over 20 too.
        let post = try await HTTP.post(s.base + "/completion", ["prompt": "x", "n_predict": 1, "n_probs": 2, "post_sampling_probs": true])
        #expect(post.status == 400 && post.text.contains("post_sampling_probs"), "\(post.text)")
        let many = try await HTTP.post(s.base + "/completion", ["prompt": "x", "n_predict": 1, "n_probs": 21])
        #expect(many.status == 400 && many.text.contains("n_probs"), "\(many.text)")
        let none = try await HTTP.post(s.base + "/completion", ["prompt": "x", "n_predict": 2])
        #expect(none.status == 200 && none.json?["completion_probabilities"] == nil)
    }

    /// llama.cpp's per-token text rule alone: incomplete characters wait for the token that completes them (its own
    /// test: a lead byte among the last four bytes whose character runs past the end), a partial stop word holds the
    /// text back, a whole one is cut.
    @Test func tokenTextsFollowLlamaCppsRules() {
        var t = LlamaCppTokenTexts(stops: ["two"])
        let emoji = Array("🙂".utf8)
        #expect(t.add(Array(" one".utf8), endOfGeneration: false) == Array(" one".utf8))
        #expect(t.add([emoji[0], emoji[1]], endOfGeneration: false) == nil)
        #expect(t.add([emoji[2], emoji[3]], endOfGeneration: false) == emoji)
        #expect(t.add(Array(" t".utf8), endOfGeneration: false) == [])
        #expect(t.add(Array("w".utf8), endOfGeneration: false) == [])
        #expect(t.add(Array("o".utf8), endOfGeneration: false) == Array(" ".utf8))
        #expect(t.text == Array(" one🙂 ".utf8))
        // A lead byte four or more bytes from the end no longer counts as incomplete (llama.cpp's window).
        #expect(LlamaCppTokenTexts.validUTF8Prefix([0xF0, 0x20, 0x6E]) == 0)
        #expect(LlamaCppTokenTexts.validUTF8Prefix([0xF0, 0x20, 0x6E, 0x69]) == 4)
        #expect(LlamaCppTokenTexts.validUTF8Prefix([0x61, 0xC3]) == 1 && LlamaCppTokenTexts.validUTF8Prefix([]) == 0)
        #expect(LlamaCppTokenTexts.partialStop(Array("abc t".utf8), Array("two".utf8)) == 4)
        // At an end (EOS), a partial stop word does not hold the text back.
        var e = LlamaCppTokenTexts(stops: ["two"])
        #expect(e.add(Array("a t".utf8), endOfGeneration: true) == Array("a t".utf8))
    }
}
