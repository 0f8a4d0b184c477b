import MoETokenizer

/// Turns generated token ids into text pieces for a response: incremental detokenisation (never splitting a UTF-8
/// character; special tokens left out unless `skipSpecialTokens` is false) and OpenAI stop strings — generation ends
/// at the first stop string, which is not returned (unless `includeStop`, vLLM's include_stop_str_in_output), and
/// text that could still be the beginning of one is held back until it is not.
struct TextAssembler {
    var decoder: StreamDecoder
    let stops: [String]
    let includeStop: Bool
    private var pending = ""

    init(tokenizer: Tokenizer, stops: [String], includeStop: Bool = false, skipSpecialTokens: Bool = true) {
        decoder = tokenizer.streamDecoder(skipSpecialTokens: skipSpecialTokens)
        self.stops = stops.filter { !$0.isEmpty }
        self.includeStop = includeStop
    }

    /// The text that can be sent after token `id`, and the stop string that ended the generation, if one did.
    mutating func push(_ id: Int32) -> (text: String, stop: String?) {
        pending += decoder.push(Int(id))
        return release()
    }

    /// What is left when generation ends without a stop string.
    mutating func finish() -> (text: String, stop: String?) {
        pending += decoder.finish()
        let r = release()
        if r.stop != nil { return r }
        let rest = pending
        pending = ""
        return (r.text + rest, nil)
    }

    private mutating func release() -> (text: String, stop: String?) {
        if stops.isEmpty {
            defer { pending = "" }
            return (pending, nil)
        }
        let hits = stops.compactMap { s in pending.range(of: s).map { (s, $0) } }
        if let (stop, hit) = hits.min(by: { $0.1.lowerBound < $1.1.lowerBound }) {
            let out = String(pending[..<(includeStop ? hit.upperBound : hit.lowerBound)])
            pending = ""
            return (out, stop)
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        var hold = 0
        for s in stops {
            for k in stride(from: min(s.count - 1, pending.count), to: 0, by: -1) where k > hold {
                if pending.hasSuffix(String(s.prefix(k))) { hold = k; break }
            }
        }
        let out = String(pending.dropLast(hold))
        pending = String(pending.suffix(hold))
        return (out, nil)
    }
}
